!> `use fkb_mpi` under mpirun: test_fkb_mpi MODEL MODE
!> Each rank holds an uneven number of columns (rank 1 none); its outputs must equal, bitwise, what `use fkb`
!> computes in one process for the batch that mode runs (node-aggregate: the node's columns in rank order;
!> per-rank and cpu: the rank's own). real64 and real32. Then the last rank passes x with a wrong first
!> extent: it alone gets FKB_ERR_SHAPE_MISMATCH, the others their correct outputs, and the next call works.
!> Prints PASS / FAIL on rank 0; exits non-zero on every rank when any check failed on any rank.
program test_fkb_mpi
  use mpi
  use, intrinsic :: iso_fortran_env, only: real32, real64, error_unit
  use fkb, only: fkb_model
  use fkb_mpi
  implicit none
  integer :: ierr, rank, nranks, nin, nout, r, i, j, stat, total, mine, displ, bad, nfail, allfail
  character(len=1024) :: path, mode
  type(fkb_mpi_model) :: net, unloaded
  type(fkb_model) :: ref
  real(real64), allocatable :: gx(:, :), x(:, :), y(:, :), yref(:, :), xbad(:, :), xv(:, :), yfull(:, :)
  real(real32), allocatable :: x4(:, :), y4(:, :)
  integer, allocatable :: counts(:)
  character(len=:), allocatable :: msg, json

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
  nfail = 0
  call get_command_argument(1, path)
  call get_command_argument(2, mode)

  call net%load(trim(path), comm=MPI_COMM_WORLD, mode=trim(mode), device='cpu', threads=1, stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'load: ' // msg)
  call ref%load(trim(path), device='cpu', threads=1)
  nin = net%n_inputs()
  nout = net%n_outputs()
  call check(nin == 94 .and. nout == 65, 'n_inputs / n_outputs')

  allocate(counts(0:nranks - 1))
  do r = 0, nranks - 1
    counts(r) = 3 + 4 * r
    if (r == 1) counts(r) = 0
  end do
  total = sum(counts)
  mine = counts(rank)
  displ = sum(counts(0:rank - 1))
  allocate(gx(nin, total))
  do j = 1, total
    do i = 1, nin
      gx(i, j) = sin(0.37d0 * i + 1.3d0 * j) + 0.01d0 * j
    end do
  end do
  x = gx(:, displ + 1:displ + mine)

  ! --- real64 and real32, every rank's input valid
  call reference(counts, yref)
  allocate(y(nout, mine))
  y = -1
  call net%predict(x, y, stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'predict real64: ' // msg)
  call check(all(y == yref), 'real64 outputs differ from the single-process outputs')
  x4 = real(x, real32)
  allocate(y4(nout, mine))
  call net%predict(x4, y4, stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'predict real32: ' // msg)
  call check(all(real(y4, real64) == yref), 'real32 outputs differ from the single-process outputs')

  ! --- the last rank's x has a wrong first extent: only it fails
  bad = nranks - 1
  block
    integer, allocatable :: valid(:)
    valid = counts
    valid(bad) = 0
    call reference(valid, yref)
  end block
  y = -1
  if (rank == bad) then
    allocate(xbad(nin + 1, mine))
    xbad = 0
    call net%predict(xbad, y, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_SHAPE_MISMATCH, 'a wrong size(x,1) must give FKB_ERR_SHAPE_MISMATCH on its rank')
    call check(index(msg, 'size(x,1)') > 0, 'the message must name size(x,1): ' // msg)
    call check(all(y == -1), 'a rejected call must not write y')
  else
    call net%predict(x, y, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, 'a good rank failed because another rank had bad input: ' // msg)
    call check(all(y == yref), 'outputs next to a bad rank differ from the single-process outputs')
  end if
  ! ... and the next call works everywhere
  call reference(counts, yref)
  call net%predict(x, y, stat=stat, errmsg=msg)
  call check(stat == FKB_OK .and. all(y == yref), 'the call after a bad one: ' // msg)

  ! --- reports (collective) and local errors
  call net%report(stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'report: ' // msg)
  call net%report_json(json=json, stat=stat, errmsg=msg)
  call check(stat == FKB_OK .and. index(json, '"per_rank"') > 0 .and. index(json, trim(mode)) > 0, 'report_json')
  call net%reset_stats()
  call check(len(net%device_name()) > 0, 'device_name')
  call check(net%is_leader() .eqv. (trim(mode) /= 'node-aggregate' .or. rank == 0), 'is_leader')
  xv = x
  call unloaded%predict(xv, y, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_INVALID_ARGUMENT .and. index(msg, 'not loaded') > 0, 'predict on an unloaded model')

  call net%free()
  call net%free()  ! twice is fine
  call check(.not. net%is_loaded(), 'free')
  call ref%free()

  call MPI_Allreduce(nfail, allfail, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD, ierr)
  if (rank == 0) then
    if (allfail == 0) then
      print '(a, i0, a)', 'PASS (', nranks, ' ranks, mode ' // trim(mode) // ')'
    else
      print '(a, i0, a)', 'FAIL: ', allfail, ' check(s) failed'
    end if
  end if
  call MPI_Finalize(ierr)
  if (allfail /= 0) error stop 1

contains

  subroutine check(ok, what)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    if (.not. ok) then
      nfail = nfail + 1
      write(error_unit, '(a, i0, a)') '[rank ', rank, '] FAIL: ' // what
    end if
  end subroutine check

  !> This rank's expected outputs when ranks contribute `cnt` columns (the batch the mode runs, in one process).
  subroutine reference(cnt, yr)
    integer, intent(in) :: cnt(0:)
    real(real64), allocatable, intent(out) :: yr(:, :)
    real(real64), allocatable :: xb(:, :)
    integer :: q, pos, mypos
    if (trim(mode) == 'node-aggregate') then
      allocate(xb(nin, sum(cnt)))
      pos = 0
      mypos = 0
      do q = 0, nranks - 1
        if (q == rank) mypos = pos
        xb(:, pos + 1:pos + cnt(q)) = gx(:, sum(counts(0:q - 1)) + 1:sum(counts(0:q - 1)) + cnt(q))
        pos = pos + cnt(q)
      end do
      if (allocated(yfull)) deallocate(yfull)
      allocate(yfull(nout, sum(cnt)))
      call ref%predict(xb, yfull)
      yr = yfull(:, mypos + 1:mypos + cnt(rank))
    else
      allocate(yr(nout, cnt(rank)))
      xb = gx(:, displ + 1:displ + cnt(rank))
      call ref%predict(xb, yr)
    end if
  end subroutine reference

end program test_fkb_mpi
