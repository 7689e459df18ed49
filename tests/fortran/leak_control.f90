!> Negative control for the leak check: loads a model through the C API and never frees it. The leak
!> test runs this under the same valgrind command and requires it to FAIL, which shows that a model the
!> finalizer did not free would be caught.
!> Usage: fkb_leak_control DATA_FILE (its first line names the model file)
program leak_control
  use, intrinsic :: iso_c_binding
  implicit none
  interface
    integer(c_int) function fkb_load_ex(path, device, precision, max_batch, threads, config_path, model) bind(c)
      import :: c_int, c_char, c_int64_t, c_int32_t, c_ptr
      character(kind=c_char), dimension(*), intent(in) :: path, device, precision, config_path
      integer(c_int64_t), value :: max_batch
      integer(c_int32_t), value :: threads
      type(c_ptr), intent(out) :: model
    end function fkb_load_ex
  end interface
  character(len=4096) :: path
  integer :: u
  call get_command_argument(1, path)
  open(newunit=u, file=trim(path), status='old', action='read')
  read(u, '(a)') path
  close(u)
  call load_and_forget(trim(path))
contains
  subroutine load_and_forget(p)
    character(len=*), intent(in) :: p
    type(c_ptr) :: h
    if (fkb_load_ex(p // c_null_char, 'cpu' // c_null_char, 'fp32' // c_null_char, 0_c_int64_t, 1_c_int32_t, &
                    c_null_char, h) /= 0) error stop 'load failed'
    h = c_null_ptr  ! the only reference is gone
  end subroutine load_and_forget
end program leak_control
