!> One shared model called from the threads of an `!$omp parallel do` (issue 10): fkb_model (real32 and real64),
!> fkb_ensemble and fkb_physics_run, over chunks of 1, 7, 37, 512 and 3000 columns, several rounds each.
!> Every threaded result must equal, bitwise, the serial result of the same calls on the same chunks, and
!> Keras' own outputs within 1e-5 (the inputs tile the fixture's columns, so every column has a Keras
!> reference). Every call's stat must be FKB_OK.
!> Usage: test_threads CBRAIN.txt ENSEMBLE.txt TMP_DIR   (run with OMP_NUM_THREADS >= 2)
!> FKB_THREADS_QUICK=1 in the environment (ThreadSanitizer builds): one round, at most 300 columns per size.
program test_threads
  use omp_lib, only: omp_get_max_threads
  use fkb
  use fkb_physics, only: fkb_physics_init, fkb_physics_run, fkb_physics_finalize
  use fkb_test_util
  implicit none
  real(real64), parameter :: tol = 1.0e-5_real64
  integer, parameter :: chunks(5) = [1, 7, 37, 512, 3000]
  integer :: rounds = 3, max_cols = 6000
  type(fixture_t) :: f
  character(len=:), allocatable :: tmp, errmsg
  type(fkb_model) :: net, net2
  type(fkb_ensemble) :: ens
  real(real64), allocatable :: x(:, :), yref(:, :)
  integer :: nthreads, ncol_total, stat, u

  call read_fixture(arg(1), f)
  tmp = arg(3)
  call execute_command_line('mkdir -p ' // tmp)
  call get_environment_variable('FKB_THREADS_QUICK', length=u)
  if (u > 0) then
    rounds = 1
    max_cols = 300
  end if
  nthreads = omp_get_max_threads()
  write(*, '(a, i0, a)') 'OpenMP threads: ', nthreads, ' (OMP_NUM_THREADS)'
  call check(nthreads >= 2, 'the test runs with at least 2 OpenMP threads')

  ! 6000 columns: the fixture's columns repeated, so Keras' outputs are the reference of every column.
  ncol_total = 6000
  call tile(real(f%x, real64), real(f%y, real64), ncol_total, x, yref)

  call net%load(f%model, device='cpu', stat=stat, errmsg=errmsg)
  call check(stat == FKB_OK, 'load: ' // errmsg)
  call model_r64(net, 'default options')
  call model_r32(net, 'default options')
  ! A second model in the same process with 2 threads per call inside the region.
  call net2%load(f%model, device='cpu', nested_threads=2, stat=stat, errmsg=errmsg)
  call check(stat == FKB_OK, 'load nested_threads=2: ' // errmsg)
  call model_r64(net2, 'nested_threads=2')
  call net%free()
  call net2%free()

  call ensemble_test(arg(2))
  call physics_test()
  call finish()

contains

  subroutine tile(x0, y0, n, xt, yt)
    real(real64), intent(in) :: x0(:, :), y0(:, :)
    integer, intent(in) :: n
    real(real64), allocatable, intent(out) :: xt(:, :), yt(:, :)
    integer :: j
    allocate(xt(size(x0, 1), n), yt(size(y0, 1), n))
    do j = 1, n
      xt(:, j) = x0(:, mod(j - 1, size(x0, 2)) + 1)
      yt(:, j) = y0(:, mod(j - 1, size(y0, 2)) + 1)
    end do
  end subroutine tile

  character(len=16) function es(v)
    real(real64), intent(in) :: v
    write(es, '(es10.2)') v
  end function es

  !> How many chunks of `cs` columns cover `n`.
  integer function nchunks(n, cs)
    integer, intent(in) :: n, cs
    nchunks = (n + cs - 1) / cs
  end function nchunks

  subroutine model_r64(m, what)
    type(fkb_model), intent(in) :: m
    character(len=*), intent(in) :: what
    real(real64), allocatable :: ys(:, :), yp(:, :)
    integer :: ic, r, c, lo, hi, n, bad, st
    allocate(ys(m%n_outputs(), ncol_total), yp(m%n_outputs(), ncol_total))
    do ic = 1, size(chunks)
      n = min(ncol_total, max(2 * chunks(ic), 1000), max_cols)
      ys = -999
      do c = 1, nchunks(n, chunks(ic))  ! serial: the same calls, one after another
        lo = (c - 1) * chunks(ic) + 1
        hi = min(n, c * chunks(ic))
        call m%predict(x(:, lo:hi), ys(:, lo:hi))
      end do
      call check(rel_err(ys(:, 1:n)) <= tol, 'real64 ' // what // ', chunk ' // itoa(chunks(ic)) // &
                 ': serial vs Keras, rel err' // es(rel_err(ys(:, 1:n))))
      do r = 1, rounds
        yp = -999
        bad = 0
        !$omp parallel do schedule(dynamic) private(lo, hi, st) reduction(+:bad)
        do c = 1, nchunks(n, chunks(ic))
          lo = (c - 1) * chunks(ic) + 1
          hi = min(n, c * chunks(ic))
          call m%predict(x(:, lo:hi), yp(:, lo:hi), stat=st)
          if (st /= FKB_OK) bad = bad + 1
        end do
        !$omp end parallel do
        call check(bad == 0 .and. all(yp(:, 1:n) == ys(:, 1:n)), 'real64 ' // what // ', chunk ' // &
                   itoa(chunks(ic)) // ', ' // itoa(n) // ' columns, round ' // itoa(r) // &
                   ': threaded == serial bitwise (' // itoa(count(yp(:, 1:n) /= ys(:, 1:n))) // ' differ, ' // &
                   itoa(bad) // ' failed calls)')
      end do
      call check(rel_err(yp(:, 1:n)) <= tol, 'real64 ' // what // ', chunk ' // itoa(chunks(ic)) // &
                 ': threaded vs Keras, rel err' // es(rel_err(yp(:, 1:n))))
    end do
  end subroutine model_r64

  subroutine model_r32(m, what)
    type(fkb_model), intent(in) :: m
    character(len=*), intent(in) :: what
    real(real32), allocatable :: x4(:, :), ys(:, :), yp(:, :)
    integer :: ic, r, c, lo, hi, n, bad, st
    allocate(x4(size(x, 1), size(x, 2)), ys(m%n_outputs(), ncol_total), yp(m%n_outputs(), ncol_total))
    x4(:, :) = real(x, real32)
    do ic = 1, size(chunks)
      n = min(ncol_total, max(2 * chunks(ic), 1000), max_cols)
      do c = 1, nchunks(n, chunks(ic))
        lo = (c - 1) * chunks(ic) + 1
        hi = min(n, c * chunks(ic))
        call m%predict(x4(:, lo:hi), ys(:, lo:hi))
      end do
      do r = 1, rounds
        yp = -999
        bad = 0
        !$omp parallel do schedule(static, 1) private(lo, hi, st) reduction(+:bad)
        do c = 1, nchunks(n, chunks(ic))
          lo = (c - 1) * chunks(ic) + 1
          hi = min(n, c * chunks(ic))
          call m%predict(x4(:, lo:hi), yp(:, lo:hi), stat=st)
          if (st /= FKB_OK) bad = bad + 1
        end do
        !$omp end parallel do
        call check(bad == 0 .and. all(yp(:, 1:n) == ys(:, 1:n)), 'real32 ' // what // ', chunk ' // &
                   itoa(chunks(ic)) // ', round ' // itoa(r) // ': threaded == serial bitwise (' // &
                   itoa(count(yp(:, 1:n) /= ys(:, 1:n))) // ' differ)')
      end do
      call check(rel_err(real(yp(:, 1:n), real64)) <= tol, 'real32 ' // what // ', chunk ' // itoa(chunks(ic)) // &
                 ': threaded vs Keras, rel err' // es(rel_err(real(yp(:, 1:n), real64))))
    end do
  end subroutine model_r32

  !> max|y - yref| / max|yref| over the first size(y,2) columns.
  real(real64) function rel_err(y)
    real(real64), intent(in) :: y(:, :)
    integer :: n
    n = size(y, 2)
    rel_err = maxval(abs(y - yref(:, 1:n))) / maxval(abs(yref(:, 1:n)))
    if (any(y /= y)) rel_err = huge(1.0_real64)
  end function rel_err

  subroutine ensemble_test(path)
    character(len=*), intent(in) :: path
    character(len=4096) :: dir
    integer :: u, nin, nout, ncol0, nmem, ic, r, c, lo, hi, n, bad, st, i
    real(real32), allocatable :: x0(:, :), mean0(:, :), sd0(:, :)
    real(real64), allocatable :: xe(:, :), mref(:, :), ms(:, :), ss(:, :), mp(:, :), sp(:, :), sdref(:, :)
    real(real64) :: e
    open(newunit=u, file=path, status='old', action='read')
    read(u, '(a)') dir
    do i = 2, 4
      read(u, '(a)')
    end do
    read(u, *) nin, nout, ncol0, nmem
    allocate(x0(nin, ncol0), mean0(nout, ncol0), sd0(nout, ncol0))
    read(u, *) x0
    read(u, *) mean0
    read(u, *) sd0
    close(u)
    call tile(real(x0, real64), real(mean0, real64), 2000, xe, mref)
    call tile(real(x0, real64), real(sd0, real64), 2000, xe, sdref)
    call ens%load(trim(dir), device='cpu', verbose=.false., stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, 'ensemble load: ' // errmsg)
    if (stat /= FKB_OK) return
    allocate(ms(nout, 2000), ss(nout, 2000), mp(nout, 2000), sp(nout, 2000))
    do ic = 1, 4  ! chunks 1, 7, 37, 512
      n = min(2000, max(2 * chunks(ic), 600), max_cols)
      do c = 1, nchunks(n, chunks(ic))
        lo = (c - 1) * chunks(ic) + 1
        hi = min(n, c * chunks(ic))
        call ens%predict(xe(:, lo:hi), ms(:, lo:hi), spread=ss(:, lo:hi))
      end do
      e = maxval(abs(ms(:, 1:n) - mref(:, 1:n))) / maxval(abs(mref(:, 1:n)))
      call check(e <= tol, 'ensemble chunk ' // itoa(chunks(ic)) // ': serial mean vs Keras, rel err' // es(e))
      do r = 1, rounds
        mp = -999
        sp = -999
        bad = 0
        !$omp parallel do schedule(dynamic) private(lo, hi, st) reduction(+:bad)
        do c = 1, nchunks(n, chunks(ic))
          lo = (c - 1) * chunks(ic) + 1
          hi = min(n, c * chunks(ic))
          call ens%predict(xe(:, lo:hi), mp(:, lo:hi), spread=sp(:, lo:hi), stat=st)
          if (st /= FKB_OK) bad = bad + 1
        end do
        !$omp end parallel do
        call check(bad == 0 .and. all(mp(:, 1:n) == ms(:, 1:n)) .and. all(sp(:, 1:n) == ss(:, 1:n)), &
                   'ensemble chunk ' // itoa(chunks(ic)) // ', round ' // itoa(r) // &
                   ': threaded mean and spread == serial bitwise (' // &
                   itoa(count(mp(:, 1:n) /= ms(:, 1:n)) + count(sp(:, 1:n) /= ss(:, 1:n))) // ' differ)')
      end do
      e = maxval(abs(mp(:, 1:n) - mref(:, 1:n))) / maxval(abs(mref(:, 1:n)))
      e = max(e, maxval(abs(sp(:, 1:n) - sdref(:, 1:n))) / maxval(abs(sdref(:, 1:n))))
      call check(e <= tol, 'ensemble chunk ' // itoa(chunks(ic)) // ': threaded mean, spread vs Keras, rel err' // &
                 es(e))
    end do
    call ens%free()
  end subroutine ensemble_test

  !> fkb_physics_run from every thread: normalization on the host (the old module work array was shared).
  subroutine physics_test()
    real(real64), allocatable :: sub(:), div(:), scale(:), xp(:, :), yp_ref(:, :), ys(:, :), yp(:, :)
    integer :: i, j, u, ic, r, c, lo, hi, n, bad, st
    real(real64) :: e
    allocate(sub(f%nin), div(f%nin), scale(f%nout))
    do i = 1, f%nin
      sub(i) = -3.0_real64 + 0.1_real64 * i
      div(i) = 0.5_real64 + 0.25_real64 * mod(i, 7)
    end do
    do i = 1, f%nout
      scale(i) = 2.0_real64 ** (mod(i, 5) - 2) * 1.5_real64
    end do
    open(newunit=u, file=tmp // '/sub.txt', status='replace')
    write(u, '(es24.16e3)') sub
    close(u)
    open(newunit=u, file=tmp // '/div.txt', status='replace')
    write(u, '(es24.16e3)') div
    close(u)
    open(newunit=u, file=tmp // '/scale.txt', status='replace')
    write(u, '(es24.16e3)') scale
    close(u)
    open(newunit=u, file=tmp // '/fkb.nml', status='replace')
    write(u, '(a)') "&fkb_nl model_path = '" // f%model // "', input_sub_file = 'sub.txt',"
    write(u, '(a)') "  input_div_file = 'div.txt', output_scale_file = 'scale.txt', device = 'cpu', verbose = .false. /"
    close(u)
    call fkb_physics_init(tmp // '/fkb.nml', stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, 'physics init: ' // errmsg)
    if (stat /= FKB_OK) return
    allocate(xp(f%nin, ncol_total), yp_ref(f%nout, ncol_total), ys(f%nout, ncol_total), yp(f%nout, ncol_total))
    do j = 1, ncol_total
      xp(:, j) = x(:, j) * div + sub          ! physical inputs whose normalization is the fixture's x
      yp_ref(:, j) = yref(:, j) / scale      ! physical outputs
    end do
    do ic = 1, size(chunks)
      n = min(ncol_total, max(2 * chunks(ic), 1000), max_cols)
      do c = 1, nchunks(n, chunks(ic))
        lo = (c - 1) * chunks(ic) + 1
        hi = min(n, c * chunks(ic))
        call fkb_physics_run(xp(:, lo:hi), ys(:, lo:hi))
      end do
      do r = 1, rounds
        yp = -999
        bad = 0
        !$omp parallel do schedule(dynamic) private(lo, hi, st) reduction(+:bad)
        do c = 1, nchunks(n, chunks(ic))
          lo = (c - 1) * chunks(ic) + 1
          hi = min(n, c * chunks(ic))
          call fkb_physics_run(xp(:, lo:hi), yp(:, lo:hi), stat=st)
          if (st /= FKB_OK) bad = bad + 1
        end do
        !$omp end parallel do
        call check(bad == 0 .and. all(yp(:, 1:n) == ys(:, 1:n)), 'physics chunk ' // itoa(chunks(ic)) // &
                   ', round ' // itoa(r) // ': threaded == serial bitwise (' // &
                   itoa(count(yp(:, 1:n) /= ys(:, 1:n))) // ' differ)')
      end do
      e = maxval(abs(yp(:, 1:n) - yp_ref(:, 1:n))) / maxval(abs(yp_ref(:, 1:n)))
      call check(e <= tol, 'physics chunk ' // itoa(chunks(ic)) // ': threaded vs Keras, rel err' // es(e))
    end do
    call fkb_physics_finalize()
  end subroutine physics_test

end program test_threads
