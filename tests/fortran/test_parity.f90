!> Parity of `use fkb` with Keras: for each fixture data file given on the command line, predict with
!> real32 and real64 arrays and compare with Keras' own model.predict output (relative max error <= 1e-5),
!> whole batch, one column at a time, and through a non-contiguous section (copy-in/copy-out).
program test_parity
  use, intrinsic :: iso_fortran_env, only: real32, real64
  use fkb
  use fkb_test_util
  implicit none
  real(real64), parameter :: tol = 1.0e-5_real64
  type(fixture_t) :: f
  type(fkb_model) :: net
  real(real32), allocatable :: y32(:, :), x32big(:, :), y32big(:, :)
  real(real64), allocatable :: x64(:, :), y64(:, :)
  real(real64) :: e
  integer :: i, j, stat
  character(len=:), allocatable :: errmsg, name
  character(len=32) :: buf

  do i = 1, command_argument_count()
    call read_fixture(arg(i), f)
    name = arg(i)
    name = name(index(name, '/', back=.true.) + 1:)
    if (len(f%config) > 0) then
      call net%load(f%model, device='cpu', config=f%config, stat=stat, errmsg=errmsg)
    else
      call net%load(f%model, device='cpu', stat=stat, errmsg=errmsg)
    end if
    call check(stat == FKB_OK, name // ': load (' // errmsg // ')')
    if (stat /= FKB_OK) cycle
    call check(all([net%n_inputs(), net%n_outputs()] == [f%nin, f%nout]), name // ': n_inputs/n_outputs')

    ! real32, whole batch
    allocate(y32(f%nout, f%ncol))
    y32 = -999.0
    call net%predict(f%x, y32, stat=stat, errmsg=errmsg)
    e = rel_max_error(real(y32, real64), f%y)
    write(buf, '(es10.2)') e
    call check(stat == FKB_OK .and. e <= tol, name // ': real32 batch, rel err' // trim(buf))

    ! real64, whole batch
    x64 = real(f%x, real64)
    allocate(y64(f%nout, f%ncol))
    y64 = -999.0
    call net%predict(x64, y64, stat=stat, errmsg=errmsg)
    e = rel_max_error(y64, f%y)
    write(buf, '(es10.2)') e
    call check(stat == FKB_OK .and. e <= tol, name // ': real64 batch, rel err' // trim(buf))

    ! real64, one column at a time (x64(:, j:j) is contiguous)
    y64 = -999.0
    do j = 1, f%ncol
      call net%predict(x64(:, j:j), y64(:, j:j))
    end do
    e = rel_max_error(y64, f%y)
    write(buf, '(es10.2)') e
    call check(e <= tol, name // ': real64 column by column, rel err' // trim(buf))

    ! non-contiguous actual arguments: every other column of a wider array
    allocate(x32big(f%nin, 2 * f%ncol), y32big(f%nout, 2 * f%ncol))
    x32big = 1.0e6
    x32big(:, 1::2) = f%x
    y32big = -999.0
    call net%predict(x32big(:, 1::2), y32big(:, 1::2))
    e = rel_max_error(real(y32big(:, 1::2), real64), f%y)
    write(buf, '(es10.2)') e
    call check(e <= tol .and. all(y32big(:, 2::2) == -999.0), name // ': strided sections, rel err' // trim(buf))

    call net%free()
    deallocate(y32, y64, x32big, y32big)
  end do
  call check(command_argument_count() > 0, 'at least one fixture given')
  call finish()
end program test_parity
