!> Loads one model through `use fkb` with stat/errmsg and prints the error as the CLI does ("fkb: error: ...",
!> exit status 1). Used by run_hostile.py. Usage: hostile_load_f MODEL [CONFIG]
program hostile_load_f
  use fkb
  implicit none
  type(fkb_model) :: net
  character(len=4096) :: path, config
  character(len=:), allocatable :: msg
  integer :: stat, nargs
  nargs = command_argument_count()
  if (nargs < 1 .or. nargs > 2) then
    write (0, '(a)') 'usage: hostile_load_f MODEL [CONFIG]'
    error stop 2
  end if
  call get_command_argument(1, path)
  if (nargs == 2) then
    call get_command_argument(2, config)
    call net%load(trim(path), device='cpu', config=trim(config), verbose=.false., stat=stat, errmsg=msg)
  else
    call net%load(trim(path), device='cpu', verbose=.false., stat=stat, errmsg=msg)
  end if
  if (stat /= FKB_OK) then
    write (0, '(a)') 'fkb: error: '//msg
    error stop 1
  end if
  call net%free()
  print '(a)', 'loaded'
end program hostile_load_f
