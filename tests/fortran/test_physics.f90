!> fkb_physics against Keras: the network was evaluated by Keras on inputs xk; we give fkb_physics the
!> physical inputs x = xk * div + sub and expect the physical outputs yk / scale (SPCAM/CBRAIN
!> convention), through the namelist and the normalization text files (three layouts of the format).
!> Usage: fkb_test_physics DATA_FILE TMP_DIR
program test_physics
  use, intrinsic :: iso_fortran_env, only: real32, real64
  use fkb, only: FKB_OK
  use fkb_physics
  use fkb_test_util
  implicit none
  real(real64), parameter :: tol = 1.0e-5_real64
  type(fixture_t) :: f
  character(len=:), allocatable :: tmp, errmsg
  real(real64), allocatable :: sub(:), div(:), scale(:), x(:, :), y(:, :), yref(:, :)
  real(real32), allocatable :: x32(:, :), y32(:, :)
  real(real64) :: e
  integer :: i, j, u, stat
  character(len=32) :: buf

  call read_fixture(arg(1), f)
  tmp = arg(2)
  call execute_command_line('mkdir -p ' // tmp)

  allocate(sub(f%nin), div(f%nin), scale(f%nout))
  do i = 1, f%nin
    sub(i) = -3.0_real64 + 0.1_real64 * i
    div(i) = 0.5_real64 + 0.25_real64 * mod(i, 7)
  end do
  do i = 1, f%nout
    scale(i) = 2.0_real64 ** (mod(i, 5) - 2) * 1.5_real64
  end do

  ! sub: all on one line, blank separated, with a comment; div: one per line; scale: comma separated
  open(newunit=u, file=tmp // '/sub.txt', status='replace')
  write(u, '(a)') '# input sub, written by test_physics'
  write(u, '(*(es24.16e3, 1x))') sub
  close(u)
  open(newunit=u, file=tmp // '/div.txt', status='replace')
  write(u, '(es24.16e3, a)') div(1), '   ! first level'
  do i = 2, f%nin
    write(u, '(es24.16e3)') div(i)
  end do
  write(u, '(a)') ''
  close(u)
  open(newunit=u, file=tmp // '/scale.txt', status='replace')
  write(u, '(*(es24.16e3, :, ","))') scale
  close(u)
  open(newunit=u, file=tmp // '/fkb.nml', status='replace')
  write(u, '(a)') '&fkb_nl'
  write(u, '(a)') "  model_path = '" // f%model // "'"
  if (len(f%config) > 0) write(u, '(a)') "  config_path = '" // f%config // "'"
  write(u, '(a)') "  input_sub_file = 'sub.txt'"       ! relative to the namelist's directory
  write(u, '(a)') "  input_div_file = '" // tmp // "/div.txt'"
  write(u, '(a)') "  output_scale_file = 'scale.txt'"
  write(u, '(a)') "  device = 'cpu'"
  write(u, '(a)') '  max_batch = 16'
  write(u, '(a)') '/'
  close(u)

  call fkb_physics_init(tmp // '/fkb.nml', stat=stat, errmsg=errmsg)
  call check(stat == FKB_OK, 'init: ' // errmsg)
  if (stat /= FKB_OK) call finish()

  allocate(x(f%nin, f%ncol), y(f%nout, f%ncol), yref(f%nout, f%ncol))
  do j = 1, f%ncol
    x(:, j) = real(f%x(:, j), real64) * div + sub
    yref(:, j) = real(f%y(:, j), real64) / scale
  end do

  y = -999.0
  call fkb_physics_run(x, y, stat=stat, errmsg=errmsg)
  e = maxval(abs(y - yref)) / maxval(abs(yref))
  write(buf, '(es10.2)') e
  call check(stat == FKB_OK .and. e <= tol, 'real64 run (37 columns > max_batch 16), rel err' // trim(buf))

  x32 = real(x, real32)
  allocate(y32(f%nout, f%ncol))
  y32 = -999.0
  call fkb_physics_run(x32, y32, stat=stat, errmsg=errmsg)
  e = maxval(abs(real(y32, real64) - yref)) / maxval(abs(yref))
  write(buf, '(es10.2)') e
  call check(stat == FKB_OK .and. e <= 1.0e-4_real64, 'real32 run, rel err' // trim(buf))

  ! a smaller batch after a larger one reuses the workspace
  y = -999.0
  call fkb_physics_run(x(:, 5:7), y(:, 1:3))
  e = maxval(abs(y(:, 1:3) - yref(:, 5:7))) / maxval(abs(yref))
  write(buf, '(es10.2)') e
  call check(e <= tol .and. all(y(:, 4:) == -999.0), 'sub-batch of 3 columns, rel err' // trim(buf))

  ! without normalization files: identity normalization, plain network outputs
  open(newunit=u, file=tmp // '/plain.nml', status='replace')
  write(u, '(a)') "&fkb_nl model_path = '" // f%model // "', device = 'cpu', verbose = .false."
  if (len(f%config) > 0) write(u, '(a)') "  config_path = '" // f%config // "'"
  write(u, '(a)') '/'
  close(u)
  call fkb_physics_init(tmp // '/plain.nml')
  y = -999.0
  call fkb_physics_run(real(f%x, real64), y)
  e = rel_max_error(y, f%y)
  write(buf, '(es10.2)') e
  call check(e <= tol, 'no normalization files, rel err' // trim(buf))
  call fkb_physics_finalize()
  call finish()
end program test_physics
