!> module fkb: Keras models in Fortran, over the FKB C API (fkb/fkb.h), ISO_C_BINDING only.
!>
!>   use fkb                            ! also gives the kinds real32 and real64 (iso_fortran_env's)
!>   type(fkb_model) :: net
!>   call net%load('cbrain.h5', device='cpu')
!>   call net%predict(x, y)            ! x(net%n_inputs(), ncol), y(net%n_outputs(), ncol); real32 or real64
!>   call net%free()                   ! optional: the finalizer frees it too
!>
!> Errors: every procedure takes optional `stat` (integer, intent(out)) and `errmsg`
!> (character(len=:), allocatable, intent(out)), like `allocate`. With `stat` present, an error sets
!> stat to an FKB_ERR_* code (the C API's numbers) and errmsg to the message, and the call returns; on
!> success stat = FKB_OK and errmsg = ''. Without `stat`, an error stops the program with the message
!> (error stop).
!>
!> Copies: a loaded fkb_model cannot be copied (the defined assignment stops with a message), so two
!> finalizers never free one model. Assigning a model that is not loaded frees the left-hand side.
!> Pass models by reference (as dummy arguments) or through pointers.
!>
!> The model computes in its precision (fp32 by default) whatever the array kind; real64 arrays are
!> converted inside FKB. x and y may be device arrays (OpenACC host_data / CUDA Fortran) when the model
!> runs on a GPU.
!>
!> Models with several input or output tensors are refused by load (stat = FKB_ERR_UNSUPPORTED, the message
!> names the counts): this module takes single-input, single-output models (use the C++ API for others).
!>
!> Threads: one loaded fkb_model (or fkb_ensemble) may be used by any number of threads at once, e.g. a
!> module variable called from every thread of an `!$omp parallel do` over chunks of columns: predict keeps
!> no state in the Fortran object or in the module (every work variable is a local of the call, errmsg is
!> the caller's own argument, error messages are per thread in the C API), the compiled model is shared and
!> read-only, each call takes its own workspace, and the outputs are those of the same calls made one after
!> another. Inside the caller's parallel region a call uses `nested_threads` CPU threads (load option,
!> default 1), so the cores are not oversubscribed. The queries (n_inputs, n_outputs, device_name,
!> is_loaded) are read-only and safe from any thread. load, free, assignment and finalization change the
!> object: do them outside the parallel region (or from one thread, with no predict on that object in
!> flight). No local variable of these procedures is static (no SAVE, no initialized locals, no large
!> fixed-size local arrays), so this holds whether or not the calling program is compiled with OpenMP.
!>
!> Ensembles (type fkb_ensemble): N Keras models of one architecture in one batched call:
!>   type(fkb_ensemble) :: ens
!>   call ens%load('ensemble.yaml', device='cpu')  ! or a directory of Keras files, or a list file
!>   call ens%predict(x, mean)                      ! mean(n_outputs, ncol)
!>   call ens%predict(x, mean, spread=sd, members=ym)  ! sd(n_outputs, ncol), ym(n_outputs, ncol, n_members)
!> spread is the population standard deviation over members.
!>
!> Custom layers: a Keras layer class FKB does not know, computed by a bind(c) procedure on the host:
!>   call fkb_register_layer('ScaledTanh', c_funloc(my_layer))   ! before loading the models that use it
!> with my_layer matching the abstract interface fkb_layer_fn.
module fkb
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_associated, c_char, c_null_char, c_int, &
                                         c_int32_t, c_int64_t, c_float, c_double, c_size_t, c_loc, c_f_pointer, &
                                         c_funptr
  use, intrinsic :: iso_fortran_env, only: real32, real64, int64
  use fkb_strings, only: c_string, c_chars, c_len, f_string, itoa
  implicit none
  private

  public :: fkb_model, fkb_version, fkb_status_name
  public :: fkb_ensemble, fkb_register_layer, fkb_unregister_layer, fkb_layer_fn
  !> The kinds of iso_fortran_env, so that `use fkb` alone declares real(real64) arrays as the examples
  !> do and passes integer(int64) options (the same entities as iso_fortran_env's: using both modules is fine).
  public :: real32, real64, int64

  !> Status codes (fkb.h / fkb::Status).
  integer, parameter, public :: FKB_OK = 0
  integer, parameter, public :: FKB_ERR_INVALID_ARGUMENT = 1
  integer, parameter, public :: FKB_ERR_FILE = 2
  integer, parameter, public :: FKB_ERR_FORMAT = 3
  integer, parameter, public :: FKB_ERR_UNSUPPORTED = 4
  integer, parameter, public :: FKB_ERR_SHAPE_MISMATCH = 5
  integer, parameter, public :: FKB_ERR_NON_FINITE = 6
  integer, parameter, public :: FKB_ERR_CUDA = 7
  integer, parameter, public :: FKB_ERR_MPI = 8
  integer, parameter, public :: FKB_ERR_OUT_OF_MEMORY = 9
  integer, parameter, public :: FKB_ERR_INTERNAL = 10

  !> A loaded model compiled for one device.
  type :: fkb_model
    private
    type(c_ptr) :: handle = c_null_ptr
    integer :: nin = 0, nout = 0
  contains
    procedure :: load => model_load
    procedure, private :: model_predict_r32
    procedure, private :: model_predict_r64
    generic :: predict => model_predict_r32, model_predict_r64
    procedure :: n_inputs => model_n_inputs
    procedure :: n_outputs => model_n_outputs
    procedure :: device_name => model_device_name
    procedure :: is_loaded => model_is_loaded
    procedure :: free => model_free
    procedure, private :: model_assign
    generic :: assignment(=) => model_assign
    final :: model_finalize
  end type fkb_model

  !> N Keras models of one architecture run in one batched call (fkb.h, fkb_ensemble_*).
  type :: fkb_ensemble
    private
    type(c_ptr) :: handle = c_null_ptr
    integer :: nin = 0, nout = 0, nmem = 0
  contains
    procedure :: load => ensemble_load
    procedure, private :: ensemble_predict_r32
    procedure, private :: ensemble_predict_r64
    generic :: predict => ensemble_predict_r32, ensemble_predict_r64
    procedure :: n_members => ensemble_n_members
    procedure :: n_inputs => ensemble_n_inputs
    procedure :: n_outputs => ensemble_n_outputs
    procedure :: device_name => ensemble_device_name
    procedure :: is_loaded => ensemble_is_loaded
    procedure :: free => ensemble_free
    procedure, private :: ensemble_assign
    generic :: assignment(=) => ensemble_assign
    final :: ensemble_finalize
  end type fkb_ensemble

  !> What a custom layer procedure looks like (fkb.h's fkb_layer_fn): y = f(x) for ncol columns, x(nin, ncol),
  !> y(nout, ncol), float32; return 0 on success, or a status (1..10 becomes that FKB_ERR_* code). Write it
  !> with bind(c) and pass c_funloc(it) to fkb_register_layer. Calls come one at a time, on blocks of columns.
  abstract interface
    integer(c_int) function fkb_layer_fn(x, ncol, nin, y, nout, user_data) bind(c)
      import :: c_int, c_int64_t, c_float, c_ptr
      integer(c_int64_t), value :: ncol, nin, nout
      real(c_float), intent(in) :: x(nin, ncol)
      real(c_float), intent(out) :: y(nout, ncol)
      type(c_ptr), value :: user_data
    end function fkb_layer_fn
  end interface

  interface
    integer(c_int) function fkb_ensemble_load_ex_c(path, device, precision, max_batch, threads, verbose, &
                                                   nested_threads, ens) bind(c, name='fkb_ensemble_load_ex')
      import :: c_int, c_char, c_int64_t, c_int32_t, c_ptr
      character(kind=c_char), dimension(*), intent(in) :: path, device, precision
      integer(c_int64_t), value :: max_batch
      integer(c_int32_t), value :: threads, verbose, nested_threads
      type(c_ptr), intent(out) :: ens
    end function fkb_ensemble_load_ex_c

    integer(c_int) function fkb_ensemble_predict_f32_c(ens, x, ncol, mean, spread, members) &
        bind(c, name='fkb_ensemble_predict_f32')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: ens, x, mean, spread, members
      integer(c_int64_t), value :: ncol
    end function fkb_ensemble_predict_f32_c

    integer(c_int) function fkb_ensemble_predict_f64_c(ens, x, ncol, mean, spread, members) &
        bind(c, name='fkb_ensemble_predict_f64')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: ens, x, mean, spread, members
      integer(c_int64_t), value :: ncol
    end function fkb_ensemble_predict_f64_c

    integer(c_int) function fkb_ensemble_size_c(ens, n) bind(c, name='fkb_ensemble_n_members')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: ens
      integer(c_int64_t), intent(out) :: n
    end function fkb_ensemble_size_c

    integer(c_int) function fkb_ensemble_n_inputs_c(ens, n) bind(c, name='fkb_ensemble_n_inputs')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: ens
      integer(c_int64_t), intent(out) :: n
    end function fkb_ensemble_n_inputs_c

    integer(c_int) function fkb_ensemble_n_outputs_c(ens, n) bind(c, name='fkb_ensemble_n_outputs')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: ens
      integer(c_int64_t), intent(out) :: n
    end function fkb_ensemble_n_outputs_c

    integer(c_int) function fkb_ensemble_device_name_c(ens, buf, buflen) bind(c, name='fkb_ensemble_device_name')
      import :: c_int, c_ptr, c_char, c_size_t
      type(c_ptr), value :: ens
      character(kind=c_char), dimension(*), intent(out) :: buf
      integer(c_size_t), value :: buflen
    end function fkb_ensemble_device_name_c

    integer(c_int) function fkb_ensemble_free_c(ens) bind(c, name='fkb_ensemble_free')
      import :: c_int, c_ptr
      type(c_ptr), value :: ens
    end function fkb_ensemble_free_c

    integer(c_int) function fkb_register_layer_c(class_name, fn, n_out, user_data) bind(c, name='fkb_register_layer')
      import :: c_int, c_char, c_funptr, c_int64_t, c_ptr
      character(kind=c_char), dimension(*), intent(in) :: class_name
      type(c_funptr), value :: fn
      integer(c_int64_t), value :: n_out
      type(c_ptr), value :: user_data
    end function fkb_register_layer_c

    integer(c_int) function fkb_unregister_layer_c(class_name) bind(c, name='fkb_unregister_layer')
      import :: c_int, c_char
      character(kind=c_char), dimension(*), intent(in) :: class_name
    end function fkb_unregister_layer_c
  end interface

  !> The C struct fkb_options (fkb.h), field for field, in its order. It must match fkb.h (module fkb is built
  !> with the library it calls); fkb_options_init fills the defaults of every field, those added later too.
  type, bind(c) :: fkb_options_c
    type(c_ptr) :: device, precision
    integer(c_int64_t) :: max_batch
    integer(c_int32_t) :: threads
    type(c_ptr) :: config_path, nonfinite
    integer(c_int32_t) :: reproducible, verbose, nested_threads
    integer(c_int64_t) :: max_weight_bytes
  end type fkb_options_c

  interface
    integer(c_int) function fkb_options_init_c(options) bind(c, name='fkb_options_init')
      import :: c_int, fkb_options_c
      type(fkb_options_c), intent(out) :: options
    end function fkb_options_init_c

    integer(c_int) function fkb_load_c(path, options, model) bind(c, name='fkb_load')
      import :: c_int, c_char, c_ptr, fkb_options_c
      character(kind=c_char), dimension(*), intent(in) :: path
      type(fkb_options_c), intent(in) :: options
      type(c_ptr), intent(out) :: model
    end function fkb_load_c

    integer(c_int) function fkb_input_count_c(model, n) bind(c, name='fkb_input_count')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: model
      integer(c_int64_t), intent(out) :: n
    end function fkb_input_count_c

    integer(c_int) function fkb_output_count_c(model, n) bind(c, name='fkb_output_count')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: model
      integer(c_int64_t), intent(out) :: n
    end function fkb_output_count_c

    integer(c_int) function fkb_predict_f32_c(model, x, ncol, y) bind(c, name='fkb_predict_f32')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: model, x, y
      integer(c_int64_t), value :: ncol
    end function fkb_predict_f32_c

    integer(c_int) function fkb_predict_f64_c(model, x, ncol, y) bind(c, name='fkb_predict_f64')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: model, x, y
      integer(c_int64_t), value :: ncol
    end function fkb_predict_f64_c

    integer(c_int) function fkb_n_inputs_c(model, n) bind(c, name='fkb_n_inputs')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: model
      integer(c_int64_t), intent(out) :: n
    end function fkb_n_inputs_c

    integer(c_int) function fkb_n_outputs_c(model, n) bind(c, name='fkb_n_outputs')
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: model
      integer(c_int64_t), intent(out) :: n
    end function fkb_n_outputs_c

    integer(c_int) function fkb_device_name_c(model, buf, buflen) bind(c, name='fkb_device_name')
      import :: c_int, c_ptr, c_char, c_size_t
      type(c_ptr), value :: model
      character(kind=c_char), dimension(*), intent(out) :: buf
      integer(c_size_t), value :: buflen
    end function fkb_device_name_c

    integer(c_int) function fkb_free_c(model) bind(c, name='fkb_free')
      import :: c_int, c_ptr
      type(c_ptr), value :: model
    end function fkb_free_c

    pure type(c_ptr) function fkb_last_error_c() bind(c, name='fkb_last_error')  ! reads a thread-local
      import :: c_ptr
    end function fkb_last_error_c

    type(c_ptr) function fkb_status_name_c(status) bind(c, name='fkb_status_name')
      import :: c_ptr, c_int
      integer(c_int), value :: status
    end function fkb_status_name_c

    type(c_ptr) function fkb_version_c() bind(c, name='fkb_version')
      import :: c_ptr
    end function fkb_version_c

  end interface

contains

  ! ------------------------------------------------------------------------------------------------
  ! helpers
  ! (String helpers: module fkb_strings. None returns a deferred-length result: see there why.)

  !> End a call: set stat, or error stop with the message when stat is absent and code /= FKB_OK.
  !> Each public procedure assigns its own errmsg before calling this: gfortran 12 loses the length of
  !> an optional deferred-length dummy that is passed on to another procedure's optional dummy.
  subroutine report(code, msg, stat)
    integer, intent(in) :: code
    character(len=*), intent(in) :: msg
    integer, intent(out), optional :: stat
    if (present(stat)) stat = code
    if (code /= FKB_OK .and. .not. present(stat)) then
      error stop 'fkb: ' // msg
    end if
  end subroutine report

  !> Length of c_message(code).
  pure integer function message_len(code) result(n)
    integer(c_int), intent(in) :: code
    n = 0
    if (code /= FKB_OK) n = c_len(fkb_last_error_c())
  end function message_len

  !> The message for a C API status: fkb_last_error() on failure, '' on success.
  function c_message(code) result(msg)
    integer(c_int), intent(in) :: code
    character(len=message_len(code)) :: msg
    if (len(msg) > 0) msg = f_string(fkb_last_error_c())
  end function c_message

  ! ------------------------------------------------------------------------------------------------
  ! free functions

  !> FKB's version, e.g. '0.1.0'.
  function fkb_version() result(v)
    character(len=:), allocatable :: v
    v = f_string(fkb_version_c())
  end function fkb_version

  !> Short name of a status code ('ok', 'invalid argument', 'file error', ...).
  function fkb_status_name(status) result(name)
    integer, intent(in) :: status
    character(len=:), allocatable :: name
    name = f_string(fkb_status_name_c(int(status, c_int)))
  end function fkb_status_name

  ! ------------------------------------------------------------------------------------------------
  ! type-bound procedures

  !> Load a Keras file and compile it. A model already loaded in `self` is freed first.
  !>   path            .h5 / .keras file (trailing blanks are ignored)
  !>   device          'auto' (default) | 'cpu' | 'cuda' | 'cuda:N'
  !>   precision       'fp32' (default) | 'tf32' | 'bf16' | 'fp16'
  !>   max_batch       largest batch compiled for (default 4096); bigger calls run in chunks
  !>   threads         CPU threads (default 0 = OMP_NUM_THREADS when set, else all cores)
  !>   config          Keras JSON/YAML architecture file for weights-only .h5 files
  !>   verbose         print the one-line device notice ('fkb: device auto -> ...') at load (default .true.)
  !>   nonfinite       'propagate' (default) | 'error': a NaN/Inf input fails predict with FKB_ERR_NON_FINITE,
  !>                   naming the column
  !>   reproducible    a column's output is bitwise independent of the batch size and its position in the
  !>                   batch (default .false.)
  !>   nested_threads  CPU threads one predict uses inside the caller's OpenMP parallel region (default 1)
  !>   max_weight_bytes  integer(int64): the largest sum of weights (bytes, float32) the loader accepts
  !>                   (default 0 = FKB_MAX_WEIGHT_BYTES when set, else 16 GiB; README "Loading policy")
  !> A model with several input or output tensors is refused: stat = FKB_ERR_UNSUPPORTED.
  subroutine model_load(self, path, device, precision, max_batch, threads, config, stat, errmsg, verbose, &
                        nonfinite, reproducible, nested_threads, max_weight_bytes)
    class(fkb_model), intent(inout) :: self
    character(len=*), intent(in) :: path
    character(len=*), intent(in), optional :: device, precision, config
    integer, intent(in), optional :: max_batch, threads
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    logical, intent(in), optional :: verbose, reproducible
    character(len=*), intent(in), optional :: nonfinite
    integer, intent(in), optional :: nested_threads
    integer(int64), intent(in), optional :: max_weight_bytes
    character(kind=c_char), allocatable, target :: c_device(:), c_precision(:), c_config(:), c_nonfinite(:)
    type(fkb_options_c) :: o
    integer(c_int64_t) :: n, nx, ny
    integer(c_int) :: code
    type(c_ptr) :: h
    character(len=:), allocatable :: msg

    call self%free()
    code = fkb_options_init_c(o)
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
    if (present(nested_threads)) o%nested_threads = int(nested_threads, c_int32_t)
    if (present(max_weight_bytes)) o%max_weight_bytes = int(max_weight_bytes, c_int64_t)
    if (present(nested_threads)) then
      if (nested_threads < 1) then  ! the C API reads 0 as the default; here 0 is a mistake worth naming
        msg = 'fkb_model%load: nested_threads must be >= 1, got ' // itoa(int(nested_threads, int64))
        if (present(errmsg)) errmsg = msg
        call report(FKB_ERR_INVALID_ARGUMENT, msg, stat)
        return
      end if
    end if

    code = fkb_load_c(c_string(path), o, h)
    msg = c_message(code)
    if (code == FKB_OK) then
      self%handle = h
      code = fkb_input_count_c(h, nx)
      if (code == FKB_OK) code = fkb_output_count_c(h, ny)
      msg = c_message(code)
      if (code == FKB_OK .and. (nx /= 1 .or. ny /= 1)) then
        code = FKB_ERR_UNSUPPORTED
        msg = "fkb_model%load: '" // trim(path) // "' has " // itoa(nx) // ' input tensor(s) and ' // &
              itoa(ny) // ' output tensor(s); the Fortran API takes single-input, single-output models ' // &
              'only (x(n_inputs, ncol) -> y(n_outputs, ncol)); run this model from C++ (fkb::Runtime)'
      end if
      if (code == FKB_OK) code = fkb_n_inputs_c(h, n)
      if (code == FKB_OK) self%nin = int(n)
      if (code == FKB_OK) code = fkb_n_outputs_c(h, n)
      if (code == FKB_OK) self%nout = int(n)
      if (code /= FKB_OK .and. len(msg) == 0) msg = c_message(code)
    end if
    if (code /= FKB_OK) call self%free()
    if (present(errmsg)) errmsg = msg
    call report(int(code), msg, stat)
  end subroutine model_load

  !> Shape checks shared by the real32/real64 predict: x(nin, ncol), y(nout, ncol).
  subroutine check_shapes(self, xshape, yshape, code, msg)
    class(fkb_model), intent(in) :: self
    integer(int64), intent(in) :: xshape(2), yshape(2)
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    code = FKB_OK
    msg = ''
    if (.not. c_associated(self%handle)) then
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_model%predict: the model is not loaded (call load first)'
    else if (xshape(1) /= self%nin) then
      code = FKB_ERR_SHAPE_MISMATCH
      msg = 'fkb_model%predict: x has ' // itoa(xshape(1)) // ' rows (size(x,1)) but the model takes ' // &
            itoa(int(self%nin, int64)) // ' inputs per column; x must be x(n_inputs, ncol)'
    else if (yshape(1) /= self%nout) then
      code = FKB_ERR_SHAPE_MISMATCH
      msg = 'fkb_model%predict: y has ' // itoa(yshape(1)) // ' rows (size(y,1)) but the model gives ' // &
            itoa(int(self%nout, int64)) // ' outputs per column; y must be y(n_outputs, ncol)'
    else if (xshape(2) /= yshape(2)) then
      code = FKB_ERR_SHAPE_MISMATCH
      msg = 'fkb_model%predict: x has ' // itoa(xshape(2)) // ' columns (size(x,2)) but y has ' // &
            itoa(yshape(2)) // ' (size(y,2))'
    end if
  end subroutine check_shapes

  !> y = model(x) for x(n_inputs, ncol), y(n_outputs, ncol), real32.
  subroutine model_predict_r32(self, x, y, stat, errmsg)
    class(fkb_model), intent(in) :: self
    real(real32), dimension(:, :), contiguous, target, intent(in) :: x
    real(real32), dimension(:, :), contiguous, target, intent(inout) :: y
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer :: code
    character(len=:), allocatable :: msg
    call check_shapes(self, shape(x, kind=int64), shape(y, kind=int64), code, msg)
    if (code == FKB_OK .and. size(x, 2) > 0) then
      code = int(fkb_predict_f32_c(self%handle, c_loc(x), int(size(x, 2), c_int64_t), c_loc(y)))
      msg = c_message(int(code, c_int))
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end subroutine model_predict_r32

  !> y = model(x) for x(n_inputs, ncol), y(n_outputs, ncol), real64.
  subroutine model_predict_r64(self, x, y, stat, errmsg)
    class(fkb_model), intent(in) :: self
    real(real64), dimension(:, :), contiguous, target, intent(in) :: x
    real(real64), dimension(:, :), contiguous, target, intent(inout) :: y
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer :: code
    character(len=:), allocatable :: msg
    call check_shapes(self, shape(x, kind=int64), shape(y, kind=int64), code, msg)
    if (code == FKB_OK .and. size(x, 2) > 0) then
      code = int(fkb_predict_f64_c(self%handle, c_loc(x), int(size(x, 2), c_int64_t), c_loc(y)))
      msg = c_message(int(code, c_int))
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end subroutine model_predict_r64

  !> Features per column of the model input (0 and an error when not loaded).
  integer function model_n_inputs(self, stat, errmsg) result(n)
    class(fkb_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: code
    n = 0
    code = FKB_OK
    msg = ''
    if (c_associated(self%handle)) then
      n = self%nin
    else
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_model%n_inputs: the model is not loaded'
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end function model_n_inputs

  !> Features per column of the model output (0 and an error when not loaded).
  integer function model_n_outputs(self, stat, errmsg) result(n)
    class(fkb_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: code
    n = 0
    code = FKB_OK
    msg = ''
    if (c_associated(self%handle)) then
      n = self%nout
    else
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_model%n_outputs: the model is not loaded'
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end function model_n_outputs

  !> What runs the model, e.g. 'cpu (2 threads)'.
  function model_device_name(self, stat, errmsg) result(name)
    class(fkb_model), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: name
    character(kind=c_char) :: buf(256)
    integer(c_int) :: code
    integer :: i
    character(len=:), allocatable :: msg
    name = ''
    if (c_associated(self%handle)) then
      code = fkb_device_name_c(self%handle, buf, int(size(buf), c_size_t))
      msg = c_message(code)
      if (code == FKB_OK) then
        do i = 1, size(buf)
          if (buf(i) == c_null_char) exit
          name = name // buf(i)
        end do
      end if
    else
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_model%device_name: the model is not loaded'
    end if
    if (present(errmsg)) errmsg = msg
    call report(int(code), msg, stat)
  end function model_device_name

  !> Whether a model is loaded.
  pure logical function model_is_loaded(self)
    class(fkb_model), intent(in) :: self
    model_is_loaded = c_associated(self%handle)
  end function model_is_loaded

  !> Release the model. Safe on a model that is not loaded, and safe to call twice.
  subroutine model_free(self, stat, errmsg)
    class(fkb_model), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: code
    code = FKB_OK
    if (c_associated(self%handle)) code = fkb_free_c(self%handle)
    self%handle = c_null_ptr
    self%nin = 0
    self%nout = 0
    if (present(errmsg)) errmsg = c_message(code)
    call report(int(code), c_message(code), stat)
  end subroutine model_free

  !> Defined assignment: copying a loaded model is an error (one handle, one owner). Assigning a model
  !> that is not loaded releases the left-hand side.
  subroutine model_assign(lhs, rhs)
    class(fkb_model), intent(inout) :: lhs
    class(fkb_model), intent(in) :: rhs
    if (c_associated(rhs%handle)) then
      error stop 'fkb: an fkb_model cannot be copied (two copies would free one model twice); ' // &
                 'pass it as an argument or use a pointer'
    end if
    call lhs%free()
  end subroutine model_assign

  !> Finalizer: frees the model when the variable goes out of scope or is deallocated. Elemental, so
  !> that arrays of models of any rank are finalized too.
  impure elemental subroutine model_finalize(self)
    type(fkb_model), intent(inout) :: self
    integer(c_int) :: code
    if (c_associated(self%handle)) code = fkb_free_c(self%handle)
    self%handle = c_null_ptr
    self%nin = 0
    self%nout = 0
  end subroutine model_finalize

  ! ------------------------------------------------------------------------------------------------
  ! custom layers

  !> Register a bind(c) procedure (matching fkb_layer_fn) for a Keras layer class, before loading the
  !> models that use it. 'Name' matches 'Name' and any 'package>Name'; 'package>Name' matches itself and
  !> the bare 'Name' of .keras files.
  !>   fn         c_funloc(your procedure)
  !>   n_out      values per column of the output (default 0 = the input's shape)
  !>   user_data  passed to every call (default c_null_ptr)
  !> Registering a class twice is an error (fkb_unregister_layer it first).
  subroutine fkb_register_layer(class_name, fn, n_out, user_data, stat, errmsg)
    character(len=*), intent(in) :: class_name
    type(c_funptr), value :: fn  ! by value: a c_funloc() actual argument needs no relocated constant
    integer, intent(in), optional :: n_out
    type(c_ptr), intent(in), optional :: user_data
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int64_t) :: n
    type(c_ptr) :: ud
    integer(c_int) :: code
    character(len=:), allocatable :: msg
    n = 0
    ud = c_null_ptr
    if (present(n_out)) n = int(n_out, c_int64_t)
    if (present(user_data)) ud = user_data
    code = fkb_register_layer_c(c_string(class_name), fn, n, ud)
    msg = c_message(code)
    if (present(errmsg)) errmsg = msg
    call report(int(code), msg, stat)
  end subroutine fkb_register_layer

  !> Remove a registration (the name given to fkb_register_layer). Models already loaded keep the layer.
  subroutine fkb_unregister_layer(class_name, stat, errmsg)
    character(len=*), intent(in) :: class_name
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: code
    character(len=:), allocatable :: msg
    code = fkb_unregister_layer_c(c_string(class_name))
    msg = c_message(code)
    if (present(errmsg)) errmsg = msg
    call report(int(code), msg, stat)
  end subroutine fkb_unregister_layer

  ! ------------------------------------------------------------------------------------------------
  ! fkb_ensemble

  !> Load an ensemble: a directory of Keras files, a list file (.txt/.lst/.list, one path per line) or a
  !> YAML config (.yaml/.yml). Options not given take the YAML's values, else the defaults. An ensemble
  !> already loaded in `self` is freed first.
  !>   verbose         with device 'auto', print which device and engine were chosen (default .true.)
  !>   nested_threads  CPU threads one predict uses inside the caller's OpenMP parallel region (default 1)
  !> (nonfinite and reproducible are not options of ensembles.)
  subroutine ensemble_load(self, path, device, precision, max_batch, threads, stat, errmsg, verbose, nested_threads)
    class(fkb_ensemble), intent(inout) :: self
    character(len=*), intent(in) :: path
    character(len=*), intent(in), optional :: device, precision
    integer, intent(in), optional :: max_batch, threads
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    logical, intent(in), optional :: verbose
    integer, intent(in), optional :: nested_threads
    character(kind=c_char, len=:), allocatable :: c_device, c_precision
    integer(c_int64_t) :: mb, n
    integer(c_int32_t) :: nt, vb, nested
    integer(c_int) :: code
    type(c_ptr) :: h
    character(len=:), allocatable :: msg

    call self%free()
    c_device = c_string('')
    c_precision = c_string('')
    mb = 0
    nt = 0
    vb = 1
    nested = 1
    if (present(device)) c_device = c_string(device)
    if (present(precision)) c_precision = c_string(precision)
    if (present(max_batch)) mb = int(max_batch, c_int64_t)
    if (present(threads)) nt = int(threads, c_int32_t)
    if (present(verbose)) vb = merge(1_c_int32_t, 0_c_int32_t, verbose)
    if (present(nested_threads)) then
      if (nested_threads < 1) then
        msg = 'fkb_ensemble%load: nested_threads must be >= 1, got ' // itoa(int(nested_threads, int64))
        if (present(errmsg)) errmsg = msg
        call report(FKB_ERR_INVALID_ARGUMENT, msg, stat)
        return
      end if
      nested = int(nested_threads, c_int32_t)
    end if
    code = fkb_ensemble_load_ex_c(c_string(path), c_device, c_precision, mb, nt, vb, nested, h)
    if (code == FKB_OK) then
      self%handle = h
      code = fkb_ensemble_n_inputs_c(h, n)
      if (code == FKB_OK) self%nin = int(n)
      if (code == FKB_OK) code = fkb_ensemble_n_outputs_c(h, n)
      if (code == FKB_OK) self%nout = int(n)
      if (code == FKB_OK) code = fkb_ensemble_size_c(h, n)
      if (code == FKB_OK) self%nmem = int(n)
    end if
    msg = c_message(code)
    if (code /= FKB_OK) call self%free()
    if (present(errmsg)) errmsg = msg
    call report(int(code), msg, stat)
  end subroutine ensemble_load

  !> Shape checks shared by the real32/real64 predict. spread/members shapes are checked when given
  !> (shape(...) = -1 when absent).
  subroutine ensemble_check(self, xs, ms, ss, ys, code, msg)
    class(fkb_ensemble), intent(in) :: self
    integer(int64), intent(in) :: xs(2), ms(2), ss(2), ys(3)
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    code = FKB_ERR_SHAPE_MISMATCH
    msg = ''
    if (.not. c_associated(self%handle)) then
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_ensemble%predict: the ensemble is not loaded (call load first)'
    else if (xs(1) /= self%nin) then
      msg = 'fkb_ensemble%predict: x has ' // itoa(xs(1)) // ' rows (size(x,1)) but the members take ' // &
            itoa(int(self%nin, int64)) // ' inputs per column; x must be x(n_inputs, ncol)'
    else if (ms(1) /= self%nout .or. ms(2) /= xs(2)) then
      msg = 'fkb_ensemble%predict: mean is (' // itoa(ms(1)) // ', ' // itoa(ms(2)) // ') but must be (' // &
            itoa(int(self%nout, int64)) // ', ' // itoa(xs(2)) // ') = (n_outputs, ncol)'
    else if (ss(1) >= 0 .and. (ss(1) /= self%nout .or. ss(2) /= xs(2))) then
      msg = 'fkb_ensemble%predict: spread is (' // itoa(ss(1)) // ', ' // itoa(ss(2)) // ') but must be (' // &
            itoa(int(self%nout, int64)) // ', ' // itoa(xs(2)) // ') = (n_outputs, ncol)'
    else if (ys(1) >= 0 .and. (ys(1) /= self%nout .or. ys(2) /= xs(2) .or. ys(3) /= self%nmem)) then
      msg = 'fkb_ensemble%predict: members is (' // itoa(ys(1)) // ', ' // itoa(ys(2)) // ', ' // itoa(ys(3)) // &
            ') but must be (' // itoa(int(self%nout, int64)) // ', ' // itoa(xs(2)) // ', ' // &
            itoa(int(self%nmem, int64)) // ') = (n_outputs, ncol, n_members)'
    else
      code = FKB_OK
    end if
  end subroutine ensemble_check

  !> mean = ensemble mean of the members on x(n_inputs, ncol); optional spread(n_outputs, ncol) (population
  !> standard deviation) and members(n_outputs, ncol, n_members). real32.
  subroutine ensemble_predict_r32(self, x, mean, spread, members, stat, errmsg)
    class(fkb_ensemble), intent(in) :: self
    real(real32), dimension(:, :), contiguous, target, intent(in) :: x
    real(real32), dimension(:, :), contiguous, target, intent(inout) :: mean
    real(real32), dimension(:, :), contiguous, target, intent(inout), optional :: spread
    real(real32), dimension(:, :, :), contiguous, target, intent(inout), optional :: members
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer :: code
    character(len=:), allocatable :: msg
    integer(int64) :: ss(2), ys(3)
    type(c_ptr) :: ps, py
    ss = -1
    ys = -1
    ps = c_null_ptr
    py = c_null_ptr
    if (present(spread)) then
      ss = shape(spread, kind=int64)
      if (size(spread) > 0) ps = c_loc(spread)
    end if
    if (present(members)) then
      ys = shape(members, kind=int64)
      if (size(members) > 0) py = c_loc(members)
    end if
    call ensemble_check(self, shape(x, kind=int64), shape(mean, kind=int64), ss, ys, code, msg)
    if (code == FKB_OK .and. size(x, 2) > 0) then
      code = int(fkb_ensemble_predict_f32_c(self%handle, c_loc(x), int(size(x, 2), c_int64_t), c_loc(mean), ps, py))
      msg = c_message(int(code, c_int))
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end subroutine ensemble_predict_r32

  !> The same for real64 arrays.
  subroutine ensemble_predict_r64(self, x, mean, spread, members, stat, errmsg)
    class(fkb_ensemble), intent(in) :: self
    real(real64), dimension(:, :), contiguous, target, intent(in) :: x
    real(real64), dimension(:, :), contiguous, target, intent(inout) :: mean
    real(real64), dimension(:, :), contiguous, target, intent(inout), optional :: spread
    real(real64), dimension(:, :, :), contiguous, target, intent(inout), optional :: members
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer :: code
    character(len=:), allocatable :: msg
    integer(int64) :: ss(2), ys(3)
    type(c_ptr) :: ps, py
    ss = -1
    ys = -1
    ps = c_null_ptr
    py = c_null_ptr
    if (present(spread)) then
      ss = shape(spread, kind=int64)
      if (size(spread) > 0) ps = c_loc(spread)
    end if
    if (present(members)) then
      ys = shape(members, kind=int64)
      if (size(members) > 0) py = c_loc(members)
    end if
    call ensemble_check(self, shape(x, kind=int64), shape(mean, kind=int64), ss, ys, code, msg)
    if (code == FKB_OK .and. size(x, 2) > 0) then
      code = int(fkb_ensemble_predict_f64_c(self%handle, c_loc(x), int(size(x, 2), c_int64_t), c_loc(mean), ps, py))
      msg = c_message(int(code, c_int))
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end subroutine ensemble_predict_r64

  !> Number of members (0 and an error when not loaded).
  integer function ensemble_n_members(self, stat, errmsg) result(n)
    class(fkb_ensemble), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: code
    n = 0
    code = FKB_OK
    msg = ''
    if (c_associated(self%handle)) then
      n = self%nmem
    else
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_ensemble%n_members: the ensemble is not loaded'
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end function ensemble_n_members

  !> Features per column of the members' input.
  integer function ensemble_n_inputs(self, stat, errmsg) result(n)
    class(fkb_ensemble), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: code
    n = 0
    code = FKB_OK
    msg = ''
    if (c_associated(self%handle)) then
      n = self%nin
    else
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_ensemble%n_inputs: the ensemble is not loaded'
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end function ensemble_n_inputs

  !> Features per column of the members' output.
  integer function ensemble_n_outputs(self, stat, errmsg) result(n)
    class(fkb_ensemble), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: msg
    integer :: code
    n = 0
    code = FKB_OK
    msg = ''
    if (c_associated(self%handle)) then
      n = self%nout
    else
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_ensemble%n_outputs: the ensemble is not loaded'
    end if
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end function ensemble_n_outputs

  !> What runs it and how, e.g. 'cpu (2 threads), cpu-blocked'.
  function ensemble_device_name(self, stat, errmsg) result(name)
    class(fkb_ensemble), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    character(len=:), allocatable :: name
    character(kind=c_char) :: buf(256)
    integer(c_int) :: code
    integer :: i
    character(len=:), allocatable :: msg
    name = ''
    if (c_associated(self%handle)) then
      code = fkb_ensemble_device_name_c(self%handle, buf, int(size(buf), c_size_t))
      msg = c_message(code)
      if (code == FKB_OK) then
        do i = 1, size(buf)
          if (buf(i) == c_null_char) exit
          name = name // buf(i)
        end do
      end if
    else
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_ensemble%device_name: the ensemble is not loaded'
    end if
    if (present(errmsg)) errmsg = msg
    call report(int(code), msg, stat)
  end function ensemble_device_name

  !> Whether an ensemble is loaded.
  pure logical function ensemble_is_loaded(self)
    class(fkb_ensemble), intent(in) :: self
    ensemble_is_loaded = c_associated(self%handle)
  end function ensemble_is_loaded

  !> Release the ensemble. Safe when not loaded, and safe to call twice.
  subroutine ensemble_free(self, stat, errmsg)
    class(fkb_ensemble), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer(c_int) :: code
    code = FKB_OK
    if (c_associated(self%handle)) code = fkb_ensemble_free_c(self%handle)
    self%handle = c_null_ptr
    self%nin = 0
    self%nout = 0
    self%nmem = 0
    if (present(errmsg)) errmsg = c_message(code)
    call report(int(code), c_message(code), stat)
  end subroutine ensemble_free

  !> Copying a loaded ensemble is an error (one handle, one owner); assigning one that is not loaded
  !> releases the left-hand side.
  subroutine ensemble_assign(lhs, rhs)
    class(fkb_ensemble), intent(inout) :: lhs
    class(fkb_ensemble), intent(in) :: rhs
    if (c_associated(rhs%handle)) then
      error stop 'fkb: an fkb_ensemble cannot be copied (two copies would free one ensemble twice); ' // &
                 'pass it as an argument or use a pointer'
    end if
    call lhs%free()
  end subroutine ensemble_assign

  !> Finalizer: frees the ensemble when the variable goes out of scope or is deallocated.
  impure elemental subroutine ensemble_finalize(self)
    type(fkb_ensemble), intent(inout) :: self
    integer(c_int) :: code
    if (c_associated(self%handle)) code = fkb_ensemble_free_c(self%handle)
    self%handle = c_null_ptr
    self%nin = 0
    self%nout = 0
    self%nmem = 0
  end subroutine ensemble_finalize

end module fkb
