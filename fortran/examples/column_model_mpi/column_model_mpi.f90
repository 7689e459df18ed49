!> A toy climate-model driver for `module fkb_mpi`: each MPI rank owns a different number of atmospheric
!> columns (as a GCM's domain decomposition gives), and every time step asks a Keras parameterization for the
!> tendencies of all its columns at once, then applies them.
!>
!>   mpirun -np 4 fkb_column_model_mpi MODEL [MODE [NSTEPS [REPORT.json]]]
!>     MODE   per-rank (default) | node-aggregate | cpu
!>
!> The state is real64 (as in a GCM); the network maps the column state (n_inputs values) to tendencies of
!> its first n_outputs values. On the first step every rank also runs the same columns through `use fkb`
!> alone and checks the two agree within the numerical contract (1e-5 relative), so the example fails if the
!> MPI layer mixes up columns. At the end it prints a global checksum and the per-rank report.
program column_model_mpi
  use mpi
  use, intrinsic :: iso_fortran_env, only: real64, error_unit
  use, intrinsic :: ieee_arithmetic, only: ieee_is_nan
  use fkb, only: fkb_model
  use fkb_mpi
  implicit none
  integer :: ierr, rank, nranks, ncol, nin, nout, nsteps, step, i, j, stat, nbad, allbad
  character(len=1024) :: path, mode, arg, json_file
  type(fkb_mpi_model) :: net
  type(fkb_model) :: serial
  real(real64), allocatable :: state(:, :), tend(:, :), check(:, :)
  real(real64), parameter :: dt = 1.0d-3
  real(real64) :: local_sum, global_sum, err, scale, t0, t1
  character(len=:), allocatable :: msg

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
  if (command_argument_count() < 1) then
    if (rank == 0) write(error_unit, '(a)') 'usage: fkb_column_model_mpi MODEL [MODE [NSTEPS [REPORT.json]]]'
    call MPI_Finalize(ierr)
    error stop 2
  end if
  call get_command_argument(1, path)
  mode = 'per-rank'
  nsteps = 10
  json_file = ''
  if (command_argument_count() >= 2) call get_command_argument(2, mode)
  if (command_argument_count() >= 3) then
    call get_command_argument(3, arg)
    read(arg, *) nsteps
  end if
  if (command_argument_count() >= 4) call get_command_argument(4, json_file)

  ! Collective: every rank loads; the device comes from the node-local rank (or FKB_DEVICE).
  call net%load(trim(path), comm=MPI_COMM_WORLD, mode=trim(mode), stat=stat, errmsg=msg)
  if (stat /= FKB_OK) then
    write(error_unit, '(a, i0, a)') '[rank ', rank, '] load failed: ' // msg
    call MPI_Finalize(ierr)
    error stop 1
  end if
  nin = net%n_inputs()
  nout = net%n_outputs()

  ! An uneven decomposition: 96 + 37 * rank columns.
  ncol = 96 + 37 * rank
  allocate(state(nin, ncol), tend(nout, ncol))
  do j = 1, ncol
    do i = 1, nin
      state(i, j) = 0.5d0 * sin(0.1d0 * i + 0.01d0 * (j + 1000 * rank))
    end do
  end do

  nbad = 0
  call MPI_Barrier(MPI_COMM_WORLD, ierr)
  t0 = MPI_Wtime()
  do step = 1, nsteps
    call net%predict(state, tend, stat=stat, errmsg=msg)
    if (stat /= FKB_OK) then
      write(error_unit, '(a, i0, a)') '[rank ', rank, '] predict failed: ' // msg
      nbad = nbad + 1
      exit
    end if
    if (step == 1) then
      ! The same columns through the serial module: must agree within the numerical contract.
      call serial%load(trim(path), device='cpu', threads=1)
      allocate(check(nout, ncol))
      call serial%predict(state, check)
      scale = max(maxval(abs(check)), tiny(1.0d0))
      err = maxval(abs(tend - check)) / scale
      if (.not. (err <= 1.0d-5)) then
        write(error_unit, '(a, i0, a, es10.3)') '[rank ', rank, '] MPI and serial outputs differ: ', err
        nbad = nbad + 1
      end if
      call serial%free()
    end if
    if (any(ieee_is_nan(tend))) nbad = nbad + 1
    ! Apply bounded tendencies to the first nout state variables.
    state(1:nout, :) = state(1:nout, :) + dt * tanh(tend)
  end do
  t1 = MPI_Wtime()

  local_sum = sum(state)
  call MPI_Allreduce(local_sum, global_sum, 1, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD, ierr)
  call MPI_Allreduce(nbad, allbad, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD, ierr)
  if (rank == 0) then
    print '(a, a, a, i0, a, i0, a, f10.3, a)', 'column_model_mpi: mode ', trim(mode), ', ', nranks, ' ranks, ', &
      nsteps, ' steps in ', 1d3 * (t1 - t0), ' ms'
    print '(a, es24.16)', 'column_model_mpi: checksum ', global_sum
  end if
  call net%report()
  if (len_trim(json_file) > 0) call net%report_json(file=trim(json_file))
  call net%free()
  if (rank == 0) then
    if (allbad == 0) then
      print '(a)', 'PASS'
    else
      print '(a)', 'FAIL'
    end if
  end if
  call MPI_Finalize(ierr)
  if (allbad /= 0) error stop 1
end program column_model_mpi
