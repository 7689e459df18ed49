!> module fkb_mpi: one Keras model per MPI communicator, over the C API fkb/fkb_mpi.h (ISO_C_BINDING only).
!>
!>   use mpi                 ! or mpi_f08: pass comm%MPI_VAL (see below)
!>   use fkb_mpi             ! also gives the kinds real32, real64 (iso_fortran_env's)
!>   type(fkb_mpi_model) :: net
!>   call net%load('cbrain.h5', comm=MPI_COMM_WORLD, mode='node-aggregate')   ! collective
!>   call net%predict(x, y)   ! x(net%n_inputs(), ncol), y(net%n_outputs(), ncol); real32 or real64; ncol may be 0
!>   call net%report()        ! collective: rank 0 prints min / median / max over ranks
!>   call net%free()          ! collective (the finalizer does it too)
!>
!> Modes: 'per-rank' (default; predict is local), 'node-aggregate' (the ranks of a node that share a device
!> batch their columns through an MPI-3 shared-memory window and one leader runs them; predict is collective
!> over the node: every rank calls it, in the same order, whatever its column count), 'cpu'.
!> Devices: by node-local rank (local_rank % n_gpus); device= or the FKB_DEVICE environment variable override.
!>
!> Errors: optional stat / errmsg on every call, like `allocate` and module fkb (the status numbers are
!> fkb's FKB_OK, FKB_ERR_*; FKB_ERR_MPI = 8). Without stat an error stops the program (error stop).
!> In node-aggregate mode a rank whose arrays are wrong (size(x,1) /= n_inputs, size(y,1) /= n_outputs,
!> size(x,2) /= size(y,2), a NaN under nonfinite 'error') still takes part in the collective and gets the error;
!> the other ranks' results are computed normally. A failure of the leader's run is returned to every rank.
!>
!> Communicators: `comm` is the INTEGER handle of the communicator (`use mpi` / mpif.h: MPI_COMM_WORLD or any
!> integer communicator). With `use mpi_f08`, pass the handle's integer component: comm=MPI_COMM_WORLD%MPI_VAL
!> (or my_comm%MPI_VAL for a type(MPI_Comm) variable); the two name the same communicator (MPI 3.1 §17.2.5).
!>
!> Models with several input or output tensors are refused by load on every rank (stat = FKB_ERR_UNSUPPORTED,
!> the message names the counts): this module takes single-input, single-output models.
!>
!> Threads: in modes 'per-rank' and 'cpu', predict may be called on one model from any number of threads of a
!> rank at once (e.g. every thread of an `!$omp parallel do` over chunks of columns): predict communicates
!> nothing, keeps no state in the Fortran object or module, and each call's outputs are those of the same
!> call made from one thread; inside the parallel region a call uses `nested_threads` CPU threads (default 1).
!> No MPI call is made by predict in these modes, so MPI_THREAD_FUNNELED (or even SINGLE) suffices.
!> In mode 'node-aggregate' predict is collective over the node and owns the shared window while it runs:
!> call it from ONE thread per rank (outside the parallel region, or inside `!$omp single` / `!$omp masked`),
!> the same number of times on every rank. A second call on a rank while one is in flight is refused with
!> stat = FKB_ERR_UNSUPPORTED and a message saying so (it does not touch the window nor join the group's
!> batch), never answered with wrong numbers. load, report, report_json, reset_stats and free must not
!> overlap predict calls.
!>
!> Copies: a loaded fkb_mpi_model cannot be copied (defined assignment stops), so two finalizers never free
!> one session. free() and the finalizer are collective while MPI is running: let every rank's model go out of
!> scope together (or call free() on every rank before MPI_Finalize).
module fkb_mpi
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_associated, c_char, c_null_char, c_int, &
                                         c_int32_t, c_int64_t, c_size_t, c_loc, c_f_pointer
  use, intrinsic :: iso_fortran_env, only: real32, real64, int64
  use fkb, only: FKB_OK, FKB_ERR_INVALID_ARGUMENT, FKB_ERR_FILE, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, &
                 FKB_ERR_SHAPE_MISMATCH, FKB_ERR_NON_FINITE, FKB_ERR_CUDA, FKB_ERR_MPI, FKB_ERR_OUT_OF_MEMORY, &
                 FKB_ERR_INTERNAL
  use fkb_strings, only: c_string, c_chars, c_len, f_string, itoa
  implicit none
  private

  public :: fkb_mpi_model
  public :: real32, real64  ! iso_fortran_env's kinds, so that `use fkb_mpi` declares the arrays of predict
  public :: FKB_OK, FKB_ERR_INVALID_ARGUMENT, FKB_ERR_FILE, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, &
            FKB_ERR_SHAPE_MISMATCH, FKB_ERR_NON_FINITE, FKB_ERR_CUDA, FKB_ERR_MPI, FKB_ERR_OUT_OF_MEMORY, &
            FKB_ERR_INTERNAL

  !> A model loaded on every rank of a communicator.
  type :: fkb_mpi_model
    private
    type(c_ptr) :: handle = c_null_ptr
    integer :: nin = 0, nout = 0
  contains
    procedure :: load => mpi_load
    procedure, private :: mpi_predict_r32
    procedure, private :: mpi_predict_r64
    generic :: predict => mpi_predict_r32, mpi_predict_r64
    procedure :: n_inputs => mpi_n_inputs
    procedure :: n_outputs => mpi_n_outputs
    procedure :: device_name => mpi_device_name
    procedure :: is_loaded => mpi_is_loaded
    procedure :: is_leader => mpi_is_leader
    procedure :: report => mpi_report
    procedure :: report_json => mpi_report_json
    procedure :: reset_stats => mpi_reset_stats
    procedure :: free => mpi_free
    procedure, private :: mpi_assign
    generic :: assignment(=) => mpi_assign
    final :: mpi_finalize
  end type fkb_mpi_model

  !> The C struct fkb_mpi_options (fkb/fkb_mpi.h), field for field, in its order (built with the library it
  !> calls); fkb_mpi_options_init fills every field's default.
  type, bind(c) :: fkb_mpi_options_c
    type(c_ptr) :: mode, device, precision
    integer(c_int64_t) :: max_batch
    integer(c_int32_t) :: threads
    type(c_ptr) :: config_path, nonfinite
    integer(c_int32_t) :: reproducible, verbose, use_env, nested_threads
  end type fkb_mpi_options_c

  interface
    integer(c_int) function fkb_mpi_options_init_c(options) bind(c, name='fkb_mpi_options_init')
      import :: c_int, fkb_mpi_options_c
      type(fkb_mpi_options_c), intent(out) :: options
    end function fkb_mpi_options_init_c

    integer(c_int) function fkb_mpi_load_c(path, comm, options, session) bind(c, name='fkb_mpi_load')
      import :: c_int, c_char, c_ptr, fkb_mpi_options_c
      character(kind=c_char), dimension(*), intent(in) :: path
      integer(c_int), value :: comm
      type(fkb_mpi_options_c), intent(in) :: options
      type(c_ptr), intent(out) :: session
    end function fkb_mpi_load_c

    integer(c_int) function fkb_mpi_input_count_c(s, n) bind(c, name='fkb_mpi_input_count')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: s
      integer(c_int64_t), intent(out) :: n
    end function fkb_mpi_input_count_c

    integer(c_int) function fkb_mpi_output_count_c(s, n) bind(c, name='fkb_mpi_output_count')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: s
      integer(c_int64_t), intent(out) :: n
    end function fkb_mpi_output_count_c

    integer(c_int) function fkb_mpi_predict_checked_f32_c(s, x, xf, xn, y, yf, yn) &
        bind(c, name='fkb_mpi_predict_checked_f32')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: s, x, y
      integer(c_int64_t), value :: xf, xn, yf, yn
    end function fkb_mpi_predict_checked_f32_c

    integer(c_int) function fkb_mpi_predict_checked_f64_c(s, x, xf, xn, y, yf, yn) &
        bind(c, name='fkb_mpi_predict_checked_f64')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: s, x, y
      integer(c_int64_t), value :: xf, xn, yf, yn
    end function fkb_mpi_predict_checked_f64_c

    integer(c_int) function fkb_mpi_n_inputs_c(s, n) bind(c, name='fkb_mpi_n_inputs')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: s
      integer(c_int64_t), intent(out) :: n
    end function fkb_mpi_n_inputs_c

    integer(c_int) function fkb_mpi_n_outputs_c(s, n) bind(c, name='fkb_mpi_n_outputs')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: s
      integer(c_int64_t), intent(out) :: n
    end function fkb_mpi_n_outputs_c

    integer(c_int) function fkb_mpi_device_name_c(s, buf, buflen) bind(c, name='fkb_mpi_device_name')
      import :: c_int, c_ptr, c_char, c_size_t
      type(c_ptr), value :: s
      character(kind=c_char), dimension(*), intent(out) :: buf
      integer(c_size_t), value :: buflen
    end function fkb_mpi_device_name_c

    integer(c_int) function fkb_mpi_is_leader_c(s, leader) bind(c, name='fkb_mpi_is_leader')
      import :: c_int, c_ptr, c_int32_t
      type(c_ptr), value :: s
      integer(c_int32_t), intent(out) :: leader
    end function fkb_mpi_is_leader_c

    integer(c_int) function fkb_mpi_report_c(s) bind(c, name='fkb_mpi_report')
      import :: c_int, c_ptr
      type(c_ptr), value :: s
    end function fkb_mpi_report_c

    integer(c_int) function fkb_mpi_report_json_c(s, json) bind(c, name='fkb_mpi_report_json')
      import :: c_int, c_ptr
      type(c_ptr), value :: s
      type(c_ptr), intent(out) :: json
    end function fkb_mpi_report_json_c

    integer(c_int) function fkb_mpi_write_report_json_c(s, path) bind(c, name='fkb_mpi_write_report_json')
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: s
      character(kind=c_char), dimension(*), intent(in) :: path
    end function fkb_mpi_write_report_json_c

    subroutine fkb_mpi_free_string_c(str) bind(c, name='fkb_mpi_free_string')
      import :: c_ptr
      type(c_ptr), value :: str
    end subroutine fkb_mpi_free_string_c

    integer(c_int) function fkb_mpi_reset_stats_c(s) bind(c, name='fkb_mpi_reset_stats')
      import :: c_int, c_ptr
      type(c_ptr), value :: s
    end function fkb_mpi_reset_stats_c

    integer(c_int) function fkb_mpi_free_c(s) bind(c, name='fkb_mpi_free')
      import :: c_int, c_ptr
      type(c_ptr), value :: s
    end function fkb_mpi_free_c

    type(c_ptr) function fkb_mpi_last_error_c() bind(c, name='fkb_mpi_last_error')
      import :: c_ptr
    end function fkb_mpi_last_error_c

  end interface

contains

  ! ------------------------------------------------------------------------------------------------
  ! helpers

  !> The outcome of a call: stat (when present) and the message in `em`, or error stop when stat is absent.
  !> `em` is a plain local of the public procedure, which copies it to its optional errmsg itself: gfortran 12
  !> loses the length of an optional deferred-length character dummy passed on through another procedure.
  subroutine report_status(code, msg, stat, em)
    integer, intent(in) :: code
    character(len=*), intent(in) :: msg
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out) :: em
    if (present(stat)) stat = code
    if (code == FKB_OK) then
      em = ''
    else
      em = msg
    end if
    if (code /= FKB_OK .and. .not. present(stat)) then
      error stop 'fkb_mpi: ' // msg
    end if
  end subroutine report_status

  subroutine report_c(code, stat, em)
    integer(c_int), intent(in) :: code
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out) :: em
    if (code == FKB_OK) then
      call report_status(FKB_OK, '', stat, em)
    else
      call report_status(int(code), f_string(fkb_mpi_last_error_c()), stat, em)
    end if
  end subroutine report_c

  subroutine not_loaded(what, stat, em)
    character(len=*), intent(in) :: what
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out) :: em
    call report_status(FKB_ERR_INVALID_ARGUMENT, 'fkb_mpi_model%' // what // ': the model is not loaded ' // &
                       '(call load first, on every rank)', stat, em)
  end subroutine not_loaded

  ! ------------------------------------------------------------------------------------------------
  ! type-bound procedures

  !> Load a Keras file on every rank of `comm`. Collective; all-or-nothing (if any rank fails, every rank gets
  !> an error naming the first failing rank). A model already loaded in `self` is freed first (collectively).
  !>   comm            the communicator's integer handle (use mpi: MPI_COMM_WORLD; use mpi_f08: comm%MPI_VAL)
  !>   mode            'per-rank' (default) | 'node-aggregate' | 'cpu'
  !>   device          'auto' (default) | 'cpu' | 'cuda' | 'cuda:N' | comma list indexed by node-local rank
  !>   precision       'fp32' (default) | 'tf32' | 'bf16' | 'fp16'
  !>   max_batch       plan size of each runtime (default 4096)
  !>   threads         CPU threads per runtime (default 0: the node's cores shared among its CPU runtimes)
  !>   config          Keras JSON/YAML architecture file for weights-only .h5 files
  !>   verbose         rank 0 prints one line describing the device assignment (default .true.); no rank
  !>                   prints anything else at load
  !>   nonfinite       'propagate' (default) | 'error': a NaN/Inf input fails that rank's predict with
  !>                   FKB_ERR_NON_FINITE (node-aggregate: the other ranks' columns are still computed)
  !>   reproducible    a column's output is bitwise independent of batch size, position and decomposition
  !>   nested_threads  CPU threads one predict uses inside the caller's OpenMP parallel region (default 1)
  !> A model with several input or output tensors is refused on every rank: stat = FKB_ERR_UNSUPPORTED.
  subroutine mpi_load(self, path, comm, mode, device, precision, max_batch, threads, config, stat, errmsg, &
                      verbose, nonfinite, reproducible, nested_threads)
    class(fkb_mpi_model), intent(inout) :: self
    character(len=*), intent(in) :: path
    integer, intent(in) :: comm
    character(len=*), intent(in), optional :: mode, device, precision, config
    integer, intent(in), optional :: max_batch, threads
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    logical, intent(in), optional :: verbose, reproducible
    character(len=*), intent(in), optional :: nonfinite
    integer, intent(in), optional :: nested_threads
    character(len=:), allocatable :: em
    character(kind=c_char), allocatable, target :: c_mode(:), c_device(:), c_precision(:), c_config(:), &
                                                   c_nonfinite(:)
    type(fkb_mpi_options_c) :: o
    integer(c_int64_t) :: n, nx, ny
    integer(c_int) :: code
    type(c_ptr) :: h

    call self%free()
    nx = 1
    ny = 1
    code = fkb_mpi_options_init_c(o)
    if (present(mode)) then
      call c_chars(mode, c_mode)
      o%mode = c_loc(c_mode)
    end if
    if (present(device)) then
      call c_chars(device, c_device)
      o%device = c_loc(c_device)
    end if
    if (present(precision)) then
      call c_chars(precision, c_precision)
      o%precision = c_loc(c_precision)
    end if
    if (present(config)) then
      call c_chars(config, c_config)
      o%config_path = c_loc(c_config)
    end if
    if (present(nonfinite)) then
      call c_chars(nonfinite, c_nonfinite)
      o%nonfinite = c_loc(c_nonfinite)
    end if
    if (present(max_batch)) o%max_batch = int(max_batch, c_int64_t)
    if (present(threads)) o%threads = int(threads, c_int32_t)
    if (present(verbose)) o%verbose = merge(1_c_int32_t, 0_c_int32_t, verbose)
    if (present(reproducible)) o%reproducible = merge(1_c_int32_t, 0_c_int32_t, reproducible)
    if (present(nested_threads)) then
      ! Checked before the collective, like the C API's argument checks: pass the same value on every rank.
      if (nested_threads < 1) then
        call report_status(FKB_ERR_INVALID_ARGUMENT, 'fkb_mpi_model%load: nested_threads must be >= 1, got ' // &
                           itoa(int(nested_threads, int64)), stat, em)
        if (present(errmsg)) errmsg = em
        return
      end if
      o%nested_threads = int(nested_threads, c_int32_t)
    end if
    code = fkb_mpi_load_c(c_string(path), int(comm, c_int), o, h)
    if (code /= FKB_OK) then
      call report_c(code, stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    self%handle = h
    code = fkb_mpi_input_count_c(h, nx)
    if (code == FKB_OK) code = fkb_mpi_output_count_c(h, ny)
    if (code == FKB_OK .and. (nx /= 1 .or. ny /= 1)) then
      ! Every rank loaded the same file (the load agreed), so every rank takes this branch: free is collective.
      call self%free()
      call report_status(FKB_ERR_UNSUPPORTED, "fkb_mpi_model%load: '" // trim(path) // "' has " // itoa(nx) // &
                         ' input tensor(s) and ' // itoa(ny) // ' output tensor(s); the Fortran API takes ' // &
                         'single-input, single-output models only (x(n_inputs, ncol) -> y(n_outputs, ncol)); ' // &
                         'run this model from C++ (fkb::mpi::Session)', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    if (code == FKB_OK) code = fkb_mpi_n_inputs_c(h, n)
    if (code == FKB_OK) self%nin = int(n)
    if (code == FKB_OK) code = fkb_mpi_n_outputs_c(h, n)
    if (code == FKB_OK) self%nout = int(n)
    call report_c(code, stat, em)
    if (present(errmsg)) errmsg = em
  end subroutine mpi_load

  !> y = model(x) for x(n_inputs, ncol), y(n_outputs, ncol), real32. ncol may be 0 and may differ per rank.
  !> Collective over the node in node-aggregate mode (every rank calls it, even with wrong arrays).
  subroutine mpi_predict_r32(self, x, y, stat, errmsg)
    class(fkb_mpi_model), intent(in) :: self
    real(real32), dimension(:, :), contiguous, target, intent(in) :: x
    real(real32), dimension(:, :), contiguous, target, intent(inout) :: y
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    type(c_ptr) :: px, py
    if (.not. c_associated(self%handle)) then
      call not_loaded('predict', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    ! Shapes are checked inside (after this rank's verdict is shared), never here: an early return would
    ! leave the other ranks of a node-aggregate group waiting.
    px = c_null_ptr
    py = c_null_ptr
    if (size(x) > 0) px = c_loc(x)
    if (size(y) > 0) py = c_loc(y)
    call report_c(fkb_mpi_predict_checked_f32_c(self%handle, px, size(x, 1, kind=c_int64_t), &
                  size(x, 2, kind=c_int64_t), py, size(y, 1, kind=c_int64_t), size(y, 2, kind=c_int64_t)), &
                  stat, em)
    if (present(errmsg)) errmsg = em
  end subroutine mpi_predict_r32

  !> y = model(x) for x(n_inputs, ncol), y(n_outputs, ncol), real64 (converted inside FKB).
  subroutine mpi_predict_r64(self, x, y, stat, errmsg)
    class(fkb_mpi_model), intent(in) :: self
    real(real64), dimension(:, :), contiguous, target, intent(in) :: x
    real(real64), dimension(:, :), contiguous, target, intent(inout) :: y
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    type(c_ptr) :: px, py
    if (.not. c_associated(self%handle)) then
      call not_loaded('predict', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    px = c_null_ptr
    py = c_null_ptr
    if (size(x) > 0) px = c_loc(x)
    if (size(y) > 0) py = c_loc(y)
    call report_c(fkb_mpi_predict_checked_f64_c(self%handle, px, size(x, 1, kind=c_int64_t), &
                  size(x, 2, kind=c_int64_t), py, size(y, 1, kind=c_int64_t), size(y, 2, kind=c_int64_t)), &
                  stat, em)
    if (present(errmsg)) errmsg = em
  end subroutine mpi_predict_r64

  integer function mpi_n_inputs(self, stat, errmsg) result(n)
    class(fkb_mpi_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    n = 0
    if (.not. c_associated(self%handle)) then
      call not_loaded('n_inputs', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    n = self%nin
    call report_status(FKB_OK, '', stat, em)
    if (present(errmsg)) errmsg = em
  end function mpi_n_inputs

  integer function mpi_n_outputs(self, stat, errmsg) result(n)
    class(fkb_mpi_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    n = 0
    if (.not. c_associated(self%handle)) then
      call not_loaded('n_outputs', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    n = self%nout
    call report_status(FKB_OK, '', stat, em)
    if (present(errmsg)) errmsg = em
  end function mpi_n_outputs

  !> What computes this rank's columns, e.g. 'cpu (1 thread)' (node-aggregate: the leader's runtime).
  function mpi_device_name(self, stat, errmsg) result(name)
    class(fkb_mpi_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    character(len=:), allocatable :: name
    character(kind=c_char) :: buf(256)
    integer(c_int) :: code
    integer :: i
    name = ''
    if (.not. c_associated(self%handle)) then
      call not_loaded('device_name', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    code = fkb_mpi_device_name_c(self%handle, buf, int(size(buf), c_size_t))
    if (code == FKB_OK) then
      do i = 1, size(buf)
        if (buf(i) == c_null_char) exit
        name = name // buf(i)
      end do
    end if
    call report_c(code, stat, em)
    if (present(errmsg)) errmsg = em
  end function mpi_device_name

  logical function mpi_is_loaded(self)
    class(fkb_mpi_model), intent(in) :: self
    mpi_is_loaded = c_associated(self%handle)
  end function mpi_is_loaded

  !> Whether this rank runs a runtime (always, except the non-leaders of node-aggregate mode).
  logical function mpi_is_leader(self)
    class(fkb_mpi_model), intent(in) :: self
    integer(c_int32_t) :: l
    mpi_is_leader = .false.
    if (.not. c_associated(self%handle)) return
    if (fkb_mpi_is_leader_c(self%handle, l) == FKB_OK) mpi_is_leader = l /= 0
  end function mpi_is_leader

  !> Collective: rank 0 prints calls, columns and time per phase (min / median / max over ranks).
  subroutine mpi_report(self, stat, errmsg)
    class(fkb_mpi_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    if (.not. c_associated(self%handle)) then
      call not_loaded('report', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    call report_c(fkb_mpi_report_c(self%handle), stat, em)
    if (present(errmsg)) errmsg = em
  end subroutine mpi_report

  !> Collective: the report as JSON, returned in `json` (every rank) and/or written by rank 0 to `file`.
  subroutine mpi_report_json(self, json, file, stat, errmsg)
    class(fkb_mpi_model), intent(in) :: self
    character(len=:), allocatable, intent(out), optional :: json
    character(len=*), intent(in), optional :: file
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    type(c_ptr) :: p
    integer(c_int) :: code
    if (.not. c_associated(self%handle)) then
      call not_loaded('report_json', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    code = FKB_OK
    if (present(json)) then
      code = fkb_mpi_report_json_c(self%handle, p)
      if (code == FKB_OK) then
        json = f_string(p)
        call fkb_mpi_free_string_c(p)
      else
        json = ''
      end if
    end if
    if (present(file) .and. code == FKB_OK) code = fkb_mpi_write_report_json_c(self%handle, c_string(file))
    call report_c(code, stat, em)
    if (present(errmsg)) errmsg = em
  end subroutine mpi_report_json

  !> Local: restart this rank's statistics (e.g. after warm-up steps).
  subroutine mpi_reset_stats(self, stat, errmsg)
    class(fkb_mpi_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    if (.not. c_associated(self%handle)) then
      call not_loaded('reset_stats', stat, em)
      if (present(errmsg)) errmsg = em
      return
    end if
    call report_c(fkb_mpi_reset_stats_c(self%handle), stat, em)
    if (present(errmsg)) errmsg = em
  end subroutine mpi_reset_stats

  !> Release the model: collective while MPI is running. Safe when not loaded, and safe to call twice.
  subroutine mpi_free(self, stat, errmsg)
    class(fkb_mpi_model), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: em
    integer(c_int) :: code
    code = FKB_OK
    if (c_associated(self%handle)) code = fkb_mpi_free_c(self%handle)
    self%handle = c_null_ptr
    self%nin = 0
    self%nout = 0
    call report_c(code, stat, em)
    if (present(errmsg)) errmsg = em
  end subroutine mpi_free

  !> Copying a loaded model is an error (one session, one owner); assigning an unloaded one frees the lhs.
  subroutine mpi_assign(lhs, rhs)
    class(fkb_mpi_model), intent(inout) :: lhs
    class(fkb_mpi_model), intent(in) :: rhs
    if (c_associated(rhs%handle)) then
      error stop 'fkb_mpi: an fkb_mpi_model cannot be copied (two copies would free one session twice); ' // &
                 'pass it as an argument or use a pointer'
    end if
    call lhs%free()
  end subroutine mpi_assign

  subroutine mpi_finalize(self)
    type(fkb_mpi_model), intent(inout) :: self
    integer(c_int) :: code
    if (c_associated(self%handle)) code = fkb_mpi_free_c(self%handle)
    self%handle = c_null_ptr
    self%nin = 0
    self%nout = 0
  end subroutine mpi_finalize

end module fkb_mpi
