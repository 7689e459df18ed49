!> Every error path of `use fkb` and `use fkb_physics` through stat/errmsg: the status code, a message
!> that names what is wrong (file names, both sizes), and the state left behind.
!> Usage: fkb_test_errors DATA_FILE TMP_DIR   (DATA_FILE: a single-input fixture exported by fkb_fixture_export)
program test_errors
  use, intrinsic :: iso_fortran_env, only: real32, real64
  use fkb
  use fkb_physics
  use fkb_test_util
  implicit none
  type(fixture_t) :: f
  character(len=:), allocatable :: tmp, errmsg, nml
  integer :: stat

  call read_fixture(arg(1), f)
  tmp = arg(2)
  call execute_command_line('mkdir -p ' // tmp)

  call model_errors()
  call physics_errors()
  call finish()

contains

  subroutine write_file(path, text)
    character(len=*), intent(in) :: path, text
    integer :: u
    open(newunit=u, file=path, status='replace', action='write')
    write(u, '(a)') text
    close(u)
  end subroutine write_file

  !> Numbers 1..n as text, one per line, except `bad` inserted at line `at` when at > 0.
  function numbers(n, at, bad) result(s)
    integer, intent(in) :: n, at
    character(len=*), intent(in) :: bad
    character(len=:), allocatable :: s
    integer :: i
    s = '# a comment line' // new_line('a')
    do i = 1, n
      if (i == at) then
        s = s // bad // new_line('a')
      else
        s = s // itoa(i) // '.5' // new_line('a')
      end if
    end do
  end function numbers

  subroutine model_errors()
    type(fkb_model) :: net, other
    real(real32), allocatable :: x32(:, :), y32(:, :)
    real(real64), allocatable :: x64(:, :), y64(:, :)
    integer :: n
    character(len=:), allocatable :: name

    call check(len(fkb_version()) > 0, 'fkb_version is not empty: ' // fkb_version())
    call check(fkb_status_name(FKB_ERR_FILE) == 'file error', 'fkb_status_name(FKB_ERR_FILE)')

    ! --- not loaded
    n = net%n_inputs(stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. n == 0 .and. contains_text(errmsg, 'not loaded'), &
               'n_inputs before load: ' // errmsg)
    n = net%n_outputs(stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'not loaded'), 'n_outputs before load')
    name = net%device_name(stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. name == '', 'device_name before load')
    allocate(x32(f%nin, 3), y32(f%nout, 3), x64(f%nin, 3), y64(f%nout, 3))
    x32 = 0.25
    x64 = 0.25
    call net%predict(x32, y32, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'not loaded'), &
               'predict before load: ' // errmsg)
    call net%free(stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK .and. errmsg == '', 'free before load is a no-op')

    ! --- load failures
    call net%load(tmp // '/no_such_model.h5', device='cpu', stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FILE .and. contains_text(errmsg, tmp // '/no_such_model.h5') .and. &
               .not. net%is_loaded(), 'load of a missing file: ' // errmsg)
    call write_file(tmp // '/garbage.h5', 'not a model')
    call net%load(tmp // '/garbage.h5', device='cpu', stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FORMAT .and. contains_text(errmsg, 'garbage.h5'), 'load of a non-Keras file: ' // errmsg)
    call net%load(f%model, device='cpu', precision='fp33', stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'fp33'), 'bad precision: ' // errmsg)
    call net%load(f%model, device='tpu', stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'tpu'), 'bad device: ' // errmsg)
    call net%load(f%model, device='cpu', max_batch=-4, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'max_batch'), 'negative max_batch')
    call net%load(f%model, device='cpu', threads=-1, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'threads'), 'negative threads')
    call check(.not. net%is_loaded(), 'not loaded after failed loads')

    ! --- a good load, then shape errors
    call net%load(f%model, device='cpu', max_batch=16, threads=1, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK .and. errmsg == '' .and. net%is_loaded(), 'load ok: stat 0, empty errmsg')
    call check(all([net%n_inputs(), net%n_outputs()] == [f%nin, f%nout]), 'n_inputs/n_outputs')
    name = net%device_name()
    call check(name(1:3) == 'cpu', 'device_name: ' // name)
    deallocate(x32, x64)
    allocate(x32(f%nin + 3, 3), x64(f%nin + 3, 3))
    x32 = 0.25
    x64 = 0.25
    call net%predict(x32, y32, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'x has ' // itoa(f%nin + 3) // ' rows') &
               .and. contains_text(errmsg, itoa(f%nin) // ' inputs'), 'real32 x rows: ' // errmsg)
    call net%predict(x64, y64, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'x has ' // itoa(f%nin + 3) // ' rows') &
               .and. contains_text(errmsg, itoa(f%nin) // ' inputs'), 'real64 x rows: ' // errmsg)
    deallocate(x32, y32, x64, y64)
    allocate(x32(f%nin, 3), y32(f%nout + 2, 3), x64(f%nin, 3), y64(f%nout, 2))
    x32 = 0.25
    x64 = 0.25
    y32 = 7.0
    call net%predict(x32, y32, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'y has ' // itoa(f%nout + 2) // ' rows') &
               .and. contains_text(errmsg, itoa(f%nout) // ' outputs') .and. all(y32 == 7.0), &
               'y rows (y untouched): ' // errmsg)
    call net%predict(x64, y64, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'x has 3 columns') .and. &
               contains_text(errmsg, 'y has 2'), 'column counts differ: ' // errmsg)
    deallocate(x64, y64)
    allocate(x64(f%nin, 0), y64(f%nout, 0))
    call net%predict(x64, y64, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK .and. errmsg == '', 'ncol = 0 is a no-op')

    ! --- reload, assignment, free twice
    call net%load(f%model, device='cpu', stat=stat)
    call check(stat == FKB_OK .and. net%is_loaded(), 'loading again replaces the model')
    net = other  ! other is not loaded: releases net
    call check(.not. net%is_loaded() .and. .not. other%is_loaded(), 'assigning an empty model frees the target')
    call net%load(f%model, device='cpu')
    call net%free(stat=stat)
    call check(stat == FKB_OK .and. .not. net%is_loaded(), 'free')
    call net%free(stat=stat)
    call check(stat == FKB_OK, 'free twice')
    n = net%n_inputs(stat=stat)
    call check(stat == FKB_ERR_INVALID_ARGUMENT, 'n_inputs after free')
  end subroutine model_errors

  subroutine physics_errors()
    real(real64), allocatable :: x(:, :), y(:, :)
    character(len=:), allocatable :: base

    call check(.not. fkb_physics_is_initialized(), 'fkb_physics not initialized at start')
    allocate(x(f%nin, 2), y(f%nout, 2))
    x = 0.5
    call fkb_physics_run(x, y, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'not initialized'), &
               'run before init: ' // errmsg)

    call fkb_physics_init(tmp // '/missing.nml', stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FILE .and. contains_text(errmsg, 'missing.nml'), 'missing namelist file: ' // errmsg)

    nml = tmp // '/bad.nml'
    call write_file(nml, '&fkb_nl' // new_line('a') // " model_pth = 'x.h5'" // new_line('a') // '/')
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FORMAT .and. contains_text(errmsg, 'bad.nml'), 'misspelled namelist entry: ' // errmsg)

    call write_file(nml, '&other_nl' // new_line('a') // '/')
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FORMAT .and. contains_text(errmsg, '&fkb_nl'), 'no &fkb_nl group: ' // errmsg)

    call write_file(nml, "&fkb_nl device = 'cpu' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'model_path'), 'no model_path: ' // errmsg)

    call write_file(nml, "&fkb_nl model_path = 'nothere.h5' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FILE .and. contains_text(errmsg, tmp // '/nothere.h5'), &
               'missing model, resolved relative to the namelist directory: ' // errmsg)

    base = "&fkb_nl model_path = '" // f%model // "' device = 'cpu' verbose = .false. "
    if (len(f%config) > 0) base = base // " config_path = '" // f%config // "'"

    call write_file(nml, base // "precision = 'half' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'half'), 'bad precision: ' // errmsg)

    call write_file(tmp // '/sub_short.txt', numbers(f%nin - 1, 0, ''))
    call write_file(nml, base // "input_sub_file = 'sub_short.txt' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, tmp // '/sub_short.txt') .and. &
               contains_text(errmsg, itoa(f%nin - 1) // ' values') .and. contains_text(errmsg, itoa(f%nin) // ' inputs'), &
               'input_sub_file too short: ' // errmsg)
    call check(.not. fkb_physics_is_initialized(), 'not initialized after a failed init')

    call write_file(tmp // '/div_long.txt', numbers(f%nin + 2, 0, ''))
    call write_file(nml, base // "input_div_file = 'div_long.txt' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'div_long.txt') .and. &
               contains_text(errmsg, itoa(f%nin + 2) // ' values') .and. contains_text(errmsg, itoa(f%nin) // ' inputs'), &
               'input_div_file too long: ' // errmsg)

    call write_file(tmp // '/scale_bad.txt', numbers(f%nout + 1, 0, ''))
    call write_file(nml, base // "output_scale_file = 'scale_bad.txt' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'scale_bad.txt') .and. &
               contains_text(errmsg, itoa(f%nout + 1) // ' values') .and. contains_text(errmsg, itoa(f%nout) // ' outputs'), &
               'output_scale_file wrong length: ' // errmsg)

    call write_file(tmp // '/div_zero.txt', numbers(f%nin, 1, '0.0'))
    call write_file(nml, base // "input_div_file = 'div_zero.txt' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'div_zero.txt') .and. &
               contains_text(errmsg, 'value 1 '), 'zero in input_div_file: ' // errmsg)

    call write_file(tmp // '/sub_text.txt', numbers(f%nin, 2, '1.0x'))
    call write_file(nml, base // "input_sub_file = 'sub_text.txt' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FORMAT .and. contains_text(errmsg, 'sub_text.txt') .and. &
               contains_text(errmsg, 'line 3') .and. contains_text(errmsg, '1.0x'), 'non-number in a file: ' // errmsg)

    call write_file(nml, base // "input_sub_file = 'no_sub.txt' /")
    call fkb_physics_init(nml, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FILE .and. contains_text(errmsg, 'no_sub.txt'), 'missing normalization file: ' // errmsg)

    ! a good init, then shape errors in run
    call write_file(nml, base // '/')
    call fkb_physics_init(nml, comm=0, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK .and. errmsg == '' .and. fkb_physics_is_initialized(), 'init ok: ' // errmsg)
    call check(fkb_physics_n_inputs() == f%nin .and. fkb_physics_n_outputs() == f%nout, 'physics sizes')
    deallocate(x)
    allocate(x(f%nin + 1, 2))
    x = 0.5
    call fkb_physics_run(x, y, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'x has ' // itoa(f%nin + 1) // ' rows') &
               .and. contains_text(errmsg, itoa(f%nin) // ' inputs'), 'run: x rows: ' // errmsg)
    deallocate(x)
    allocate(x(f%nin, 3))
    x = 0.5
    call fkb_physics_run(x, y, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'x has 3 columns') .and. &
               contains_text(errmsg, 'y has 2'), 'run: column counts: ' // errmsg)
    call fkb_physics_finalize(stat=stat)
    call check(stat == FKB_OK .and. .not. fkb_physics_is_initialized(), 'finalize')
    call fkb_physics_finalize(stat=stat)
    call check(stat == FKB_OK, 'finalize twice')
  end subroutine physics_errors
end program test_errors
