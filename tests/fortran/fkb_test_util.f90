!> Helpers for the Fortran tests: fixture data written by fkb_fixture_export, comparisons, checks.
module fkb_test_util
  use, intrinsic :: iso_fortran_env, only: real32, real64, error_unit
  use, intrinsic :: ieee_arithmetic, only: ieee_is_nan
  implicit none
  private
  public :: fixture_t, read_fixture, rel_max_error, check, contains_text, failures, finish, arg, itoa

  !> A fixture: the model file, an optional config file, inputs x(nin, ncol) and Keras' outputs y(nout, ncol).
  type :: fixture_t
    character(len=:), allocatable :: model, config
    integer :: nin = 0, nout = 0, ncol = 0
    real(real32), allocatable :: x(:, :), y(:, :)
  end type fixture_t

  integer, save :: failures = 0

contains

  function arg(i) result(s)
    integer, intent(in) :: i
    character(len=:), allocatable :: s
    integer :: n
    call get_command_argument(i, length=n)
    allocate(character(len=n) :: s)
    call get_command_argument(i, s)
  end function arg

  function itoa(i) result(s)
    integer, intent(in) :: i
    character(len=:), allocatable :: s
    character(len=24) :: buf
    write(buf, '(i0)') i
    s = trim(buf)
  end function itoa

  subroutine read_fixture(path, f)
    character(len=*), intent(in) :: path
    type(fixture_t), intent(out) :: f
    character(len=4096) :: line
    integer :: u, ios
    open(newunit=u, file=path, status='old', action='read', iostat=ios)
    if (ios /= 0) error stop 'cannot open fixture data ' // path
    read(u, '(a)') line
    f%model = trim(line)
    read(u, '(a)') line
    f%config = trim(line)
    if (f%config == '-') f%config = ''
    read(u, *) f%nin, f%nout, f%ncol
    allocate(f%x(f%nin, f%ncol), f%y(f%nout, f%ncol))
    read(u, *) f%x
    read(u, *) f%y
    close(u)
  end subroutine read_fixture

  !> max|got - ref| / max|ref| (DESIGN.md's numerical contract); NaN in got gives huge().
  real(real64) function rel_max_error(got, ref) result(e)
    real(real64), intent(in) :: got(:, :)
    real(real32), intent(in) :: ref(:, :)
    real(real64) :: mx
    if (any(ieee_is_nan(got))) then
      e = huge(1.0_real64)
      return
    end if
    mx = maxval(abs(real(ref, real64)))
    e = maxval(abs(got - real(ref, real64)))
    if (mx > 0) e = e / mx
  end function rel_max_error

  subroutine check(cond, what)
    logical, intent(in) :: cond
    character(len=*), intent(in) :: what
    if (cond) then
      write(*, '(a)') 'ok    ' // what
    else
      write(*, '(a)') 'FAIL  ' // what
      failures = failures + 1
    end if
  end subroutine check

  logical function contains_text(s, sub)
    character(len=*), intent(in) :: s, sub
    contains_text = index(s, sub) > 0
  end function contains_text

  !> Stop with a nonzero code when any check failed.
  subroutine finish()
    if (failures > 0) then
      write(error_unit, '(a,i0,a)') 'FAILED: ', failures, ' check(s)'
      error stop 1
    end if
    write(*, '(a)') 'all checks passed'
  end subroutine finish
end module fkb_test_util
