!> `type(fkb_ensemble)` against Keras: the 8-member ensemble of tests/fixtures/ensemble8 (made by real Keras;
!> the export holds each member's own model.predict output and numpy's mean and population standard
!> deviation), loaded from a directory, a list file and a YAML config; real32 and real64; mean alone and with
!> spread and members; the stat/errmsg error paths, the mismatch rejection, and copies/finalization.
!> Usage: test_ensemble ensemble8.txt
program test_ensemble
  use, intrinsic :: iso_fortran_env, only: real32, real64
  use fkb
  use fkb_test_util
  implicit none
  real(real64), parameter :: tol = 1.0e-5_real64
  character(len=4096) :: paths(4)
  integer :: nin, nout, ncol, nmem, u, i, m, stat
  real(real32), allocatable :: x(:, :), mean_ref(:, :), sd_ref(:, :), mem_ref(:, :, :)
  real(real32), allocatable :: mean32(:, :), sd32(:, :), mem32(:, :, :)
  real(real64), allocatable :: x64(:, :), mean64(:, :), sd64(:, :), mem64(:, :, :)
  type(fkb_ensemble) :: ens, other
  character(len=:), allocatable :: errmsg, what
  character(len=32) :: buf
  real(real64) :: e

  open(newunit=u, file=arg(1), status='old', action='read')
  do i = 1, 4
    read(u, '(a)') paths(i)
  end do
  read(u, *) nin, nout, ncol, nmem
  allocate(x(nin, ncol), mean_ref(nout, ncol), sd_ref(nout, ncol), mem_ref(nout, ncol, nmem))
  read(u, *) x
  read(u, *) mean_ref
  read(u, *) sd_ref
  read(u, *) mem_ref
  close(u)
  allocate(mean32(nout, ncol), sd32(nout, ncol), mem32(nout, ncol, nmem))
  allocate(mean64(nout, ncol), sd64(nout, ncol), mem64(nout, ncol, nmem))
  x64 = real(x, real64)

  do i = 1, 3
    what = trim(paths(i))
    what = what(index(what, '/', back=.true.) + 1:)
    call ens%load(trim(paths(i)), device='cpu', stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, what // ': load (' // errmsg // ')')
    if (stat /= FKB_OK) cycle
    call check(all([ens%n_members(), ens%n_inputs(), ens%n_outputs()] == [nmem, nin, nout]), &
               what // ': n_members/n_inputs/n_outputs')
    call check(contains_text(ens%device_name(), 'cpu'), what // ': device_name ' // ens%device_name())

    mean32 = -999.0
    sd32 = -999.0
    mem32 = -999.0
    call ens%predict(x, mean32, spread=sd32, members=mem32, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, what // ': real32 predict (' // errmsg // ')')
    e = rel_max_error(real(mean32, real64), mean_ref)
    write(buf, '(es10.2)') e
    call check(e <= tol, what // ': real32 mean, rel err' // trim(buf))
    e = rel_max_error(real(sd32, real64), sd_ref)
    write(buf, '(es10.2)') e
    call check(e <= tol, what // ': real32 spread, rel err' // trim(buf))
    do m = 1, nmem
      e = rel_max_error(real(mem32(:, :, m), real64), mem_ref(:, :, m))
      write(buf, '(es10.2)') e
      call check(e <= tol, what // ': real32 member ' // itoa(m) // ', rel err' // trim(buf))
    end do

    mean64 = -999.0
    sd64 = -999.0
    mem64 = -999.0
    call ens%predict(x64, mean64, sd64, mem64)
    e = max(rel_max_error(mean64, mean_ref), rel_max_error(sd64, sd_ref))
    do m = 1, nmem
      e = max(e, rel_max_error(mem64(:, :, m), mem_ref(:, :, m)))
    end do
    write(buf, '(es10.2)') e
    call check(e <= tol, what // ': real64 mean, spread, members, rel err' // trim(buf))

    ! mean alone, column sections
    mean64 = -999.0
    call ens%predict(x64(:, 1:ncol / 2), mean64(:, 1:ncol / 2))
    call ens%predict(x64(:, ncol / 2 + 1:), mean64(:, ncol / 2 + 1:))
    e = rel_max_error(mean64, mean_ref)
    write(buf, '(es10.2)') e
    call check(e <= tol, what // ': real64 mean alone in two calls, rel err' // trim(buf))
    call ens%free()
    call check(.not. ens%is_loaded(), what // ': free')
  end do

  ! Errors with stat/errmsg.
  call ens%predict(x, mean32, stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'not loaded'), 'predict before load')
  call ens%load(trim(paths(4)), device='cpu', stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'odd_width.keras') .and. &
             contains_text(errmsg, '(20,)') .and. contains_text(errmsg, '(24,)'), 'mismatch: ' // errmsg)
  call check(.not. ens%is_loaded(), 'not loaded after a failed load')
  call ens%load('/nonexistent/ensemble.yaml', stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_FILE .and. contains_text(errmsg, '/nonexistent/ensemble.yaml'), 'missing: ' // errmsg)
  call ens%load(trim(paths(3)), device='cpu', max_batch=7, threads=1, stat=stat, errmsg=errmsg)
  call check(stat == FKB_OK, 'load with options (' // errmsg // ')')
  call ens%predict(x(1:nin - 1, :), mean32, stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'x has'), 'x rows: ' // errmsg)
  call ens%predict(x, mean32(:, 1:ncol - 1), stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'mean is'), 'mean shape: ' // errmsg)
  call ens%predict(x, mean32, spread=sd32(1:nout - 1, :), stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'spread is'), 'spread shape: ' // errmsg)
  call ens%predict(x, mean32, members=mem32(:, :, 1:nmem - 1), stat=stat, errmsg=errmsg)
  call check(stat == FKB_ERR_SHAPE_MISMATCH .and. contains_text(errmsg, 'n_members'), 'members shape: ' // errmsg)
  ! Chunked by max_batch 7, still Keras' numbers.
  mean32 = -999.0
  call ens%predict(x, mean32, stat=stat)
  e = rel_max_error(real(mean32, real64), mean_ref)
  call check(stat == FKB_OK .and. e <= tol, 'max_batch 7')
  ! Assigning an ensemble that is not loaded releases the left-hand side; free twice is fine.
  ens = other
  call check(.not. ens%is_loaded(), 'assignment of an unloaded ensemble releases')
  call ens%free()
  call ens%free()
  call finish()
end program test_ensemble
