!> Without `stat`, an error stops the program with the message (error stop, nonzero exit).
!> Usage: fkb_test_stop MODE DATA_FILE; run by run_expect_stop.cmake, which checks the exit code and text.
program test_stop
  use, intrinsic :: iso_fortran_env, only: real32
  use fkb
  use fkb_physics
  use fkb_test_util
  implicit none
  type(fixture_t) :: f
  type(fkb_model) :: a, b
  real(real32), allocatable :: x(:, :), y(:, :)
  character(len=:), allocatable :: mode

  mode = arg(1)
  call read_fixture(arg(2), f)
  select case (mode)
  case ('load_missing')
    call a%load('/nonexistent/missing_model.h5', device='cpu')
  case ('predict_shape')
    call a%load(f%model, device='cpu')
    allocate(x(f%nin + 1, 2), y(f%nout, 2))
    x = 0
    call a%predict(x, y)
  case ('copy')
    call a%load(f%model, device='cpu')
    b = a
  case ('physics_uninit')
    allocate(x(f%nin, 2), y(f%nout, 2))
    x = 0
    call fkb_physics_run(x, y)
  case default
    error stop 'unknown mode'
  end select
  print '(a)', 'NOT STOPPED'
end program test_stop
