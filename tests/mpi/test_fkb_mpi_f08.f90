!> `use mpi_f08` callers of fkb_mpi: the communicator goes in as comm%MPI_VAL (MPI_COMM_WORLD%MPI_VAL and a
!> type(MPI_Comm) made by MPI_Comm_split). Also, through fkb_mpi_model%load: reproducible (node-aggregate outputs
!> are then bitwise the rank's own single-process outputs), nonfinite = 'error' (a NaN on the last rank fails
!> there only), verbose = .false. (the CTest rejects any fkb_mpi / device line), nested_threads, the refusal of
!> a multi-input model on every rank, the kinds from `use fkb_mpi`; and in per-rank / cpu modes, predict
!> from the threads of an !$omp parallel do, bitwise vs serial.
!> Usage: test_fkb_mpi_f08 MODEL MULTI_IO_MODEL MODE
program test_fkb_mpi_f08
  use mpi_f08
  use fkb_mpi          ! real32, real64 come from here
  use fkb, only: fkb_model
  implicit none
  integer :: rank, nranks, nin, nout, stat, ncol, j, i, nfail, allfail, c, nc, lo, hi, bad, st, provided
  character(len=1024) :: path, multi, mode
  type(MPI_Comm) :: comm
  type(fkb_mpi_model) :: net
  type(fkb_model) :: ref
  real(real64), allocatable :: x(:, :), y(:, :), yref(:, :), yp(:, :)
  character(len=:), allocatable :: msg

  call MPI_Init_thread(MPI_THREAD_FUNNELED, provided)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks)
  nfail = 0
  call get_command_argument(1, path)
  call get_command_argument(2, multi)
  call get_command_argument(3, mode)

  ! MPI_COMM_WORLD%MPI_VAL, reproducible, quiet
  call net%load(trim(path), comm=MPI_COMM_WORLD%MPI_VAL, mode=trim(mode), device='cpu', threads=1, &
                verbose=.false., reproducible=.true., nested_threads=1, stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'load with comm=MPI_COMM_WORLD%MPI_VAL: ' // msg)
  call ref%load(trim(path), device='cpu', threads=1, reproducible=.true., verbose=.false.)
  nin = net%n_inputs()
  nout = net%n_outputs()
  ncol = 3 + 5 * rank
  allocate(x(nin, ncol), y(nout, ncol), yref(nout, ncol))
  do j = 1, ncol
    do i = 1, nin
      x(i, j) = sin(0.37d0 * i + 1.3d0 * (j + 100 * rank)) + 0.01d0 * j
    end do
  end do
  call ref%predict(x, yref)
  y = -1
  call net%predict(x, y, stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'predict: ' // msg)
  ! reproducible: a column's outputs do not depend on the batch it runs in (node-aggregate runs the node's)
  call check(all(y == yref), 'reproducible outputs equal the rank-local single-process outputs bitwise')

  ! per-rank / cpu: predict from the threads of an OpenMP parallel do, bitwise vs the serial calls
  if (trim(mode) /= 'node-aggregate') then
    deallocate(x, y, yref)
    ncol = 700
    allocate(x(nin, ncol), y(nout, ncol), yp(nout, ncol))
    do j = 1, ncol
      do i = 1, nin
        x(i, j) = cos(0.11d0 * i + 0.7d0 * (j + 13 * rank))
      end do
    end do
    nc = (ncol + 6) / 7
    do c = 1, nc
      lo = (c - 1) * 7 + 1
      hi = min(ncol, c * 7)
      call net%predict(x(:, lo:hi), y(:, lo:hi))
    end do
    yp = -1
    bad = 0
    !$omp parallel do schedule(dynamic) private(lo, hi, st) reduction(+:bad)
    do c = 1, nc
      lo = (c - 1) * 7 + 1
      hi = min(ncol, c * 7)
      call net%predict(x(:, lo:hi), yp(:, lo:hi), stat=st)
      if (st /= FKB_OK) bad = bad + 1
    end do
    !$omp end parallel do
    call check(bad == 0 .and. all(yp == y), 'threaded predict (' // trim(mode) // ') equals serial bitwise')
  end if
  call net%free()

  ! a type(MPI_Comm) from MPI_Comm_split, passed as comm%MPI_VAL; nonfinite = 'error' with a NaN on the last rank
  call MPI_Comm_split(MPI_COMM_WORLD, 0, rank, comm)
  call net%load(trim(path), comm=comm%MPI_VAL, mode=trim(mode), device='cpu', threads=1, verbose=.false., &
                nonfinite='error', stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'load with comm=comm%MPI_VAL and nonfinite=error: ' // msg)
  if (allocated(yp)) deallocate(yp)
  deallocate(x, y)
  allocate(x(nin, 4), y(nout, 4))
  x = 0.5d0
  if (rank == nranks - 1) x(3, 2) = ieee_nan()
  call net%predict(x, y, stat=stat, errmsg=msg)
  if (rank == nranks - 1) then
    call check(stat == FKB_ERR_NON_FINITE .and. index(msg, 'column') > 0, 'NaN refused on its rank: ' // msg)
  else
    call check(stat == FKB_OK, 'the other ranks are unaffected: ' // msg)
  end if
  call net%free()

  ! a model with two inputs and two outputs: refused on every rank, at load
  call net%load(trim(multi), comm=comm%MPI_VAL, mode=trim(mode), device='cpu', verbose=.false., stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_UNSUPPORTED .and. index(msg, '2 input tensor(s) and 2 output tensor(s)') > 0 .and. &
             index(msg, 'single-input, single-output') > 0 .and. .not. net%is_loaded(), 'multi-input refused: ' // msg)
  call net%load(trim(path), comm=comm%MPI_VAL, nested_threads=0, verbose=.false., stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_INVALID_ARGUMENT .and. index(msg, 'nested_threads') > 0, 'nested_threads=0: ' // msg)
  call MPI_Comm_free(comm)

  call MPI_Allreduce(nfail, allfail, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD)
  if (rank == 0) then
    if (allfail == 0) then
      write(*, '(a)') 'PASS'
    else
      write(*, '(a, i0, a)') 'FAIL: ', allfail, ' check(s)'
    end if
  end if
  call ref%free()
  call MPI_Finalize()
  if (allfail /= 0) error stop 1

contains

  subroutine check(ok, what)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    if (ok) return
    nfail = nfail + 1
    write(*, '(a, i0, a)') 'rank ', rank, ' FAIL: ' // what
  end subroutine check

  real(real64) function ieee_nan()
    use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan
    ieee_nan = ieee_value(1.0_real64, ieee_quiet_nan)
  end function ieee_nan

end program test_fkb_mpi_f08
