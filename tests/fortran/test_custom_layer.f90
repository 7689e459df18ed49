!> A custom layer written in Fortran: the Keras class ScaledTanh (y = scale * tanh(x), scale 1.7 passed as
!> user data) registered as a bind(c) procedure with fkb_register_layer, then the fixtures k3_custom_keras and
!> k3_custom_h5 predicted and compared with Keras' own outputs; registration errors, unregistering, and a
!> layer that reports an error.
!> Usage: test_custom_layer k3_custom_keras.txt k3_custom_h5.txt
module custom_layers
  use, intrinsic :: iso_c_binding, only: c_int, c_int64_t, c_float, c_ptr, c_f_pointer, c_associated
  implicit none
  private
  public :: scaled_tanh, failing_layer
contains
  integer(c_int) function scaled_tanh(x, ncol, nin, y, nout, user_data) bind(c)
    integer(c_int64_t), value :: ncol, nin, nout
    real(c_float), intent(in) :: x(nin, ncol)
    real(c_float), intent(out) :: y(nout, ncol)
    type(c_ptr), value :: user_data
    real(c_float), pointer :: scale
    call c_f_pointer(user_data, scale)
    if (nin /= nout) then
      scaled_tanh = 5
      return
    end if
    y = scale * tanh(x)
    scaled_tanh = 0
  end function scaled_tanh

  integer(c_int) function failing_layer(x, ncol, nin, y, nout, user_data) bind(c)
    integer(c_int64_t), value :: ncol, nin, nout
    real(c_float), intent(in) :: x(nin, ncol)
    real(c_float), intent(out) :: y(nout, ncol)
    type(c_ptr), value :: user_data
    y = x(1, 1)
    if (c_associated(user_data)) y = 0
    failing_layer = 6  ! FKB_ERR_NON_FINITE
  end function failing_layer
end module custom_layers

program test_custom_layer
  use, intrinsic :: iso_c_binding, only: c_funloc, c_loc, c_float
  use, intrinsic :: iso_fortran_env, only: real32, real64
  use fkb
  use fkb_test_util
  use custom_layers
  implicit none
  real(real64), parameter :: tol = 1.0e-5_real64
  real(c_float), target, save :: scale = 1.7
  type(fixture_t) :: f
  type(fkb_model) :: net
  real(real32), allocatable :: y32(:, :)
  real(real64), allocatable :: y64(:, :)
  integer :: i, stat
  character(len=:), allocatable :: errmsg, name
  character(len=32) :: buf
  real(real64) :: e

  call fkb_register_layer('ScaledTanh', c_funloc(scaled_tanh), user_data=c_loc(scale), stat=stat, errmsg=errmsg)
  call check(stat == FKB_OK, 'register ScaledTanh (' // errmsg // ')')
  call fkb_register_layer('ScaledTanh', c_funloc(scaled_tanh), user_data=c_loc(scale), stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'already registered'), &
             'registering twice: ' // errmsg)

  do i = 1, command_argument_count()
    call read_fixture(arg(i), f)
    name = arg(i)
    name = name(index(name, '/', back=.true.) + 1:)
    call net%load(f%model, device='cpu', stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, name // ': load (' // errmsg // ')')
    if (stat /= FKB_OK) cycle
    allocate(y32(f%nout, f%ncol), y64(f%nout, f%ncol))
    y32 = -999.0
    call net%predict(f%x, y32, stat=stat, errmsg=errmsg)
    e = rel_max_error(real(y32, real64), f%y)
    write(buf, '(es10.2)') e
    call check(stat == FKB_OK .and. e <= tol, name // ': real32, rel err' // trim(buf))
    y64 = -999.0
    call net%predict(real(f%x, real64), y64)
    e = rel_max_error(y64, f%y)
    write(buf, '(es10.2)') e
    call check(e <= tol, name // ': real64, rel err' // trim(buf))
    call net%free()
    deallocate(y32, y64)
  end do

  ! Unregistered: loading fails with the loader's message; unregistering twice is an error.
  call fkb_unregister_layer('ScaledTanh', stat=stat, errmsg=errmsg)
  call check(stat == FKB_OK, 'unregister (' // errmsg // ')')
  call fkb_unregister_layer('ScaledTanh', stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'not registered'), &
             'unregister twice: ' // errmsg)
  call read_fixture(arg(1), f)
  call net%load(f%model, device='cpu', stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_UNSUPPORTED .and. contains_text(errmsg, 'ScaledTanh'), 'load unregistered: ' // errmsg)

  ! A layer that reports an error fails predict with its status, naming the layer.
  call fkb_register_layer('ScaledTanh', c_funloc(failing_layer), stat=stat)
  call check(stat == FKB_OK, 'register a failing layer')
  call net%load(f%model, device='cpu', stat=stat, errmsg=errmsg)
  call check(stat == FKB_OK, 'load with the failing layer (' // errmsg // ')')
  allocate(y32(f%nout, f%ncol))
  call net%predict(f%x, y32, stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_NON_FINITE .and. contains_text(errmsg, 'scaled_tanh'), 'failing layer: ' // errmsg)
  call net%free()
  call fkb_unregister_layer('ScaledTanh')
  ! Built-in classes cannot be registered.
  call fkb_register_layer('Dense', c_funloc(scaled_tanh), stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'built-in'), 'register Dense: ' // errmsg)
  call finish()
end program test_custom_layer
