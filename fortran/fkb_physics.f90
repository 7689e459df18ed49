!> module fkb_physics: the parameterization drop-in. One namelist, three calls:
!>
!>   use fkb_physics
!>   call fkb_physics_init('fkb.nml')              ! once, at model start
!>   call fkb_physics_run(x, y)                    ! every step: x(n_inputs, ncol) -> y(n_outputs, ncol)
!>   call fkb_physics_finalize()                   ! at the end
!>
!> fkb_physics_run normalizes the inputs, (x - sub) / div, predicts all columns at once, and scales the
!> outputs, y / scale: the SPCAM/CBRAIN convention (the network was trained on normalized inputs and
!> on outputs multiplied by `scale`).
!>
!> The namelist (all entries optional except model_path):
!>
!>   &fkb_nl
!>     model_path        = 'model.h5'       ! Keras .h5 / .keras file
!>     input_sub_file    = 'inp_sub.txt'    ! n_inputs values subtracted from x (default: 0)
!>     input_div_file    = 'inp_div.txt'    ! n_inputs values x is divided by   (default: 1)
!>     output_scale_file = 'out_scale.txt'  ! n_outputs values y is divided by  (default: 1)
!>     device            = 'auto'           ! auto | cpu | cuda | cuda:N
!>     precision         = 'fp32'           ! fp32 | tf32 | bf16 | fp16
!>     max_batch         = 0                ! largest batch compiled for (0 = FKB's default, 4096)
!>     threads           = 0                ! CPU threads (0 = OMP_NUM_THREADS, else all cores)
!>     config_path       = ''               ! Keras JSON/YAML for weights-only model files
!>     verbose           = .true.           ! print one line describing the set-up at init, and FKB's
!>                                          ! device notice ('fkb: device auto -> cpu'); .false.: silent
!>     nonfinite         = 'propagate'      ! propagate | error: a NaN/Inf in the normalized inputs fails
!>                                          ! fkb_physics_run with FKB_ERR_NON_FINITE, naming the column
!>     reproducible      = .false.          ! a column's outputs bitwise independent of batch size/position
!>     nested_threads    = 1                ! CPU threads one run uses inside the caller's OpenMP parallel
!>                                          ! region (1: no oversubscription)
!>   /
!>
!> Relative paths in the namelist are relative to the directory of the namelist file.
!>
!> Normalization files are plain text: numbers separated by blanks, tabs, commas or line breaks (one
!> per line is the usual layout), read in order; '#' or '!' starts a comment that runs to the end of
!> the line; blank lines are ignored. Their count must equal the model's n_inputs (sub, div) or
!> n_outputs (scale), else init fails with a message naming the file and both lengths. Zero or
!> non-finite div/scale values are errors.
!>
!> Errors: optional stat/errmsg as in module fkb; without stat an error stops with the message.
!> A model with several input or output tensors is refused by init (FKB_ERR_UNSUPPORTED).
!>
!> Threads: fkb_physics_run may be called from any number of threads at once, e.g. from every thread of an
!> `!$omp parallel do` over chunks of columns (each thread its own x and y): the module's state (the model,
!> sub, div, scale) is only read by run; the normalized copy of x is a local of each call (no module work
!> array), and errors go to the caller's own stat/errmsg. Each chunk's outputs are those the same call would
!> give from one thread. fkb_physics_init and fkb_physics_finalize change the module state: call them
!> outside parallel regions, with no run in flight.
!>
!> MPI: every rank initializes its own model; the optional `comm` argument of fkb_physics_init is accepted
!> and ignored (each rank runs its own columns; for node-aggregated batches use module fkb_mpi).
!> The normalization runs on the host, so x and y must be host arrays (for device-resident data use module
!> fkb directly). `use fkb_physics` also gives the kinds real32 and real64.
module fkb_physics
  use, intrinsic :: iso_fortran_env, only: real32, real64, int64
  use, intrinsic :: ieee_arithmetic, only: ieee_is_finite
  use fkb
  use fkb_strings, only: itoa
  implicit none
  private

  public :: fkb_physics_init, fkb_physics_run, fkb_physics_finalize
  public :: fkb_physics_n_inputs, fkb_physics_n_outputs, fkb_physics_is_initialized
  public :: fkb_read_vector
  public :: real32, real64  ! iso_fortran_env's, for the arrays of fkb_physics_run

  !> fkb_physics_run(x, y [, stat, errmsg]) for real32 or real64 x(n_inputs, ncol), y(n_outputs, ncol).
  interface fkb_physics_run
    module procedure physics_run_r32, physics_run_r64
  end interface fkb_physics_run

  integer, parameter :: path_len = 4096

  type(fkb_model), save :: net
  logical, save :: initialized = .false.
  integer, save :: nin = 0, nout = 0
  real(real64), allocatable, save :: sub64(:), div64(:), scale64(:)
  real(real32), allocatable, save :: sub32(:), div32(:), scale32(:)
  ! No work arrays here: fkb_physics_run normalizes into a local of each call, so threads never share one.

contains

  ! ------------------------------------------------------------------------------------------------
  ! helpers

  !> End a call: set stat, or error stop with the message when stat is absent and code /= FKB_OK.
  !> (errmsg is assigned by each public procedure itself: gfortran 12 loses the length of an optional
  !> deferred-length dummy passed on to another optional dummy.)
  subroutine report(code, msg, stat)
    integer, intent(in) :: code
    character(len=*), intent(in) :: msg
    integer, intent(out), optional :: stat
    if (present(stat)) stat = code
    if (code /= FKB_OK .and. .not. present(stat)) then
      error stop 'fkb: ' // msg
    end if
  end subroutine report

  !> `path` made relative to `base_dir` unless it is absolute or empty.
  function resolve(path, base_dir) result(p)
    character(len=*), intent(in) :: path, base_dir
    character(len=:), allocatable :: p
    p = trim(adjustl(path))
    if (len(p) == 0 .or. len(base_dir) == 0) return
    if (p(1:1) == '/') return
    p = base_dir // '/' // p
  end function resolve

  !> Directory part of a path ('' when it has none).
  function dir_name(path) result(d)
    character(len=*), intent(in) :: path
    character(len=:), allocatable :: d
    integer :: k
    k = index(trim(path), '/', back=.true.)
    if (k == 0) then
      d = ''
    else if (k == 1) then
      d = '/'
    else
      d = path(1:k - 1)
    end if
  end function dir_name

  !> Read one line of any length from `unit` into `line`; ios /= 0 at end of file or on error.
  subroutine get_line(unit, line, ios, iomsg)
    integer, intent(in) :: unit
    character(len=:), allocatable, intent(out) :: line
    integer, intent(out) :: ios
    character(len=*), intent(inout) :: iomsg
    character(len=1024) :: chunk
    integer :: n
    line = ''
    do
      read(unit, '(a)', advance='no', iostat=ios, size=n, iomsg=iomsg) chunk
      line = line // chunk(1:n)
      if (ios /= 0) exit
    end do
    if (is_iostat_eor(ios)) ios = 0
    if (is_iostat_end(ios) .and. len(line) > 0) ios = 0
  end subroutine get_line

  !> Read a normalization vector from a text file (format: see the module header).
  !> code /= FKB_OK and msg set on error (missing file, unreadable number).
  subroutine fkb_read_vector(path, values, code, msg)
    character(len=*), intent(in) :: path
    real(real64), allocatable, intent(out) :: values(:)
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    character(len=:), allocatable :: line, tok
    character(len=512) :: iomsg
    real(real64), allocatable :: tmp(:)
    real(real64) :: v
    integer :: unit, ios, n, lineno, i, j, k
    code = FKB_OK
    msg = ''
    allocate(values(0))
    open(newunit=unit, file=path, status='old', action='read', form='formatted', iostat=ios, iomsg=iomsg)
    if (ios /= 0) then
      code = FKB_ERR_FILE
      msg = "cannot open '" // path // "': " // trim(iomsg)
      return
    end if
    allocate(tmp(256))
    n = 0
    lineno = 0
    do
      iomsg = ''
      call get_line(unit, line, ios, iomsg)
      if (ios /= 0) then
        if (.not. is_iostat_end(ios)) then
          code = FKB_ERR_FILE
          msg = "error reading '" // path // "': " // trim(iomsg)
        end if
        exit
      end if
      lineno = lineno + 1
      k = scan(line, '#!')
      if (k > 0) line = line(1:k - 1)
      do i = 1, len(line)
        if (line(i:i) == char(9) .or. line(i:i) == ',' .or. line(i:i) == char(13)) line(i:i) = ' '
      end do
      i = 1
      do while (i <= len(line))
        if (line(i:i) == ' ') then
          i = i + 1
          cycle
        end if
        j = index(line(i:), ' ')
        if (j == 0) then
          j = len(line)
        else
          j = i + j - 2
        end if
        tok = line(i:j)
        read(tok, *, iostat=ios) v
        ! list-directed input also accepts '/', '*' and the like; only plain numbers (or nan/inf) are allowed
        if (ios /= 0 .or. (verify(tok, '0123456789+-.eEdD') /= 0 .and. .not. is_special(tok))) then
          code = FKB_ERR_FORMAT
          msg = "'" // path // "' line " // itoa(lineno) // ": '" // tok // "' is not a number"
          close(unit)
          return
        end if
        if (n == size(tmp)) tmp = [tmp, tmp]
        n = n + 1
        tmp(n) = v
        i = j + 1
      end do
    end do
    close(unit)
    if (code == FKB_OK) values = tmp(1:n)
  contains
    logical function is_special(t)
      character(len=*), intent(in) :: t
      character(len=len(t)) :: u
      integer :: c
      u = t
      do c = 1, len(u)
        if (u(c:c) >= 'a' .and. u(c:c) <= 'z') u(c:c) = achar(iachar(u(c:c)) - 32)
      end do
      is_special = u == 'NAN' .or. u == 'INF' .or. u == '+INF' .or. u == '-INF' .or. u == 'INFINITY' &
                   .or. u == '-INFINITY' .or. u == '+INFINITY'
    end function is_special
  end subroutine fkb_read_vector

  !> Read an optional vector file (empty name: `n` copies of `default`) and check its length/values.
  subroutine load_vector(what, path, n, size_name, default, nonzero, values, code, msg)
    character(len=*), intent(in) :: what, path, size_name
    integer, intent(in) :: n
    real(real64), intent(in) :: default
    logical, intent(in) :: nonzero
    real(real64), allocatable, intent(out) :: values(:)
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    integer :: i
    code = FKB_OK
    msg = ''
    if (len_trim(path) == 0) then
      allocate(values(n))
      values = default
      return
    end if
    call fkb_read_vector(path, values, code, msg)
    if (code /= FKB_OK) then
      msg = what // ': ' // msg
      return
    end if
    if (size(values) /= n) then
      code = FKB_ERR_SHAPE_MISMATCH
      msg = what // " '" // path // "' has " // itoa(size(values)) // ' values but the model has ' // &
            itoa(n) // ' ' // size_name
      return
    end if
    do i = 1, n
      if (.not. ieee_is_finite(values(i)) .or. (nonzero .and. .not. abs(values(i)) > 0.0_real64)) then
        code = FKB_ERR_INVALID_ARGUMENT
        msg = what // " '" // path // "': value " // itoa(i) // ' is zero or not finite (it divides)'
        if (.not. nonzero) msg = what // " '" // path // "': value " // itoa(i) // ' is not finite'
        return
      end if
    end do
  end subroutine load_vector

  ! ------------------------------------------------------------------------------------------------
  ! public procedures

  !> Read the &fkb_nl namelist from `namelist_file`, load the model and the normalization vectors.
  !> `comm` (an MPI communicator, Fortran handle) is accepted and IGNORED: every rank loads its own model and
  !> runs its own columns (module fkb_mpi has the MPI modes). Calling init again re-initializes. Not to be
  !> called while another thread runs fkb_physics_run.
  subroutine fkb_physics_init(namelist_file, comm, stat, errmsg)
    character(len=*), intent(in) :: namelist_file
    integer, intent(in), optional :: comm
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer :: code
    character(len=:), allocatable :: msg
    if (present(comm)) continue  ! reserved for the MPI layer
    call physics_init(namelist_file, code, msg)
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end subroutine fkb_physics_init

  subroutine physics_init(namelist_file, code, msg)
    character(len=*), intent(in) :: namelist_file
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    character(len=path_len) :: model_path, input_sub_file, input_div_file, output_scale_file, config_path
    character(len=64) :: device, precision, nonfinite
    integer :: max_batch, threads, nested_threads
    logical :: verbose, reproducible
    namelist /fkb_nl/ model_path, input_sub_file, input_div_file, output_scale_file, device, precision, &
      max_batch, threads, config_path, verbose, nonfinite, reproducible, nested_threads
    character(len=512) :: iomsg
    character(len=:), allocatable :: base
    integer :: unit, ios

    call fkb_physics_finalize()
    code = FKB_OK
    msg = ''

    model_path = ''
    input_sub_file = ''
    input_div_file = ''
    output_scale_file = ''
    config_path = ''
    device = 'auto'
    precision = 'fp32'
    max_batch = 0
    threads = 0
    verbose = .true.
    nonfinite = 'propagate'
    reproducible = .false.
    nested_threads = 1

    open(newunit=unit, file=namelist_file, status='old', action='read', iostat=ios, iomsg=iomsg)
    if (ios /= 0) then
      code = FKB_ERR_FILE
      msg = "fkb_physics_init: cannot open namelist file '" // trim(namelist_file) // "': " // trim(iomsg)
      return
    end if
    read(unit, nml=fkb_nl, iostat=ios, iomsg=iomsg)
    close(unit)
    if (ios /= 0) then
      code = FKB_ERR_FORMAT
      msg = "fkb_physics_init: cannot read namelist &fkb_nl from '" // trim(namelist_file) // "': " // &
            trim(iomsg)
      return
    end if
    if (len_trim(model_path) == 0) then
      code = FKB_ERR_INVALID_ARGUMENT
      msg = "fkb_physics_init: &fkb_nl in '" // trim(namelist_file) // "' sets no model_path"
      return
    end if

    base = dir_name(namelist_file)
    call net%load(resolve(model_path, base), device=trim(device), precision=trim(precision), &
                  max_batch=max_batch, threads=threads, config=resolve(config_path, base), verbose=verbose, &
                  nonfinite=trim(nonfinite), reproducible=reproducible, nested_threads=nested_threads, &
                  stat=code, errmsg=msg)
    if (code /= FKB_OK) then
      msg = 'fkb_physics_init: ' // msg
      return
    end if
    nin = net%n_inputs()
    nout = net%n_outputs()

    call load_vector('input_sub_file', resolve(input_sub_file, base), nin, 'inputs', 0.0_real64, .false., &
                     sub64, code, msg)
    if (code == FKB_OK) &
      call load_vector('input_div_file', resolve(input_div_file, base), nin, 'inputs', 1.0_real64, .true., &
                       div64, code, msg)
    if (code == FKB_OK) &
      call load_vector('output_scale_file', resolve(output_scale_file, base), nout, 'outputs', 1.0_real64, &
                       .true., scale64, code, msg)
    if (code /= FKB_OK) then
      call fkb_physics_finalize()
      msg = 'fkb_physics_init: ' // msg
      return
    end if
    sub32 = real(sub64, real32)
    div32 = real(div64, real32)
    scale32 = real(scale64, real32)
    initialized = .true.
    if (verbose) then
      write(*, '(a)') 'fkb_physics: ' // trim(resolve(model_path, base)) // ' (' // itoa(nin) // ' inputs -> ' // &
        itoa(nout) // ' outputs) on ' // net%device_name()
    end if
  end subroutine physics_init

  !> Shape checks shared by both kinds.
  subroutine check_run(nx1, nx2, ny1, ny2, code, msg)
    integer, intent(in) :: nx1, nx2, ny1, ny2
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    code = FKB_OK
    msg = ''
    if (.not. initialized) then
      code = FKB_ERR_INVALID_ARGUMENT
      msg = 'fkb_physics_run: not initialized (call fkb_physics_init first)'
    else if (nx1 /= nin) then
      code = FKB_ERR_SHAPE_MISMATCH
      msg = 'fkb_physics_run: x has ' // itoa(nx1) // ' rows (size(x,1)) but the model takes ' // itoa(nin) // &
            ' inputs per column'
    else if (ny1 /= nout) then
      code = FKB_ERR_SHAPE_MISMATCH
      msg = 'fkb_physics_run: y has ' // itoa(ny1) // ' rows (size(y,1)) but the model gives ' // itoa(nout) // &
            ' outputs per column'
    else if (nx2 /= ny2) then
      code = FKB_ERR_SHAPE_MISMATCH
      msg = 'fkb_physics_run: x has ' // itoa(nx2) // ' columns but y has ' // itoa(ny2)
    end if
  end subroutine check_run

  subroutine physics_run_r64(x, y, stat, errmsg)
    real(real64), intent(in) :: x(:, :)
    real(real64), contiguous, intent(inout) :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer :: code
    character(len=:), allocatable :: msg
    call run_r64(x, y, code, msg)
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end subroutine physics_run_r64

  subroutine run_r64(x, y, code, msg)
    real(real64), intent(in) :: x(:, :)
    real(real64), contiguous, intent(inout) :: y(:, :)
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    real(real64), allocatable :: work(:, :)  ! a local of this call: threads never share it
    integer :: j, ncol
    call check_run(size(x, 1), size(x, 2), size(y, 1), size(y, 2), code, msg)
    if (code /= FKB_OK) return
    ncol = size(x, 2)
    allocate(work(nin, ncol))
    do j = 1, ncol
      work(:, j) = (x(:, j) - sub64) / div64
    end do
    call net%predict(work, y, stat=code, errmsg=msg)
    if (code /= FKB_OK) then
      msg = 'fkb_physics_run: ' // msg
      return
    end if
    do j = 1, ncol
      y(:, j) = y(:, j) / scale64
    end do
  end subroutine run_r64

  subroutine physics_run_r32(x, y, stat, errmsg)
    real(real32), intent(in) :: x(:, :)
    real(real32), contiguous, intent(inout) :: y(:, :)
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    integer :: code
    character(len=:), allocatable :: msg
    call run_r32(x, y, code, msg)
    if (present(errmsg)) errmsg = msg
    call report(code, msg, stat)
  end subroutine physics_run_r32

  subroutine run_r32(x, y, code, msg)
    real(real32), intent(in) :: x(:, :)
    real(real32), contiguous, intent(inout) :: y(:, :)
    integer, intent(out) :: code
    character(len=:), allocatable, intent(out) :: msg
    real(real32), allocatable :: work(:, :)  ! a local of this call: threads never share it
    integer :: j, ncol
    call check_run(size(x, 1), size(x, 2), size(y, 1), size(y, 2), code, msg)
    if (code /= FKB_OK) return
    ncol = size(x, 2)
    allocate(work(nin, ncol))
    do j = 1, ncol
      work(:, j) = (x(:, j) - sub32) / div32
    end do
    call net%predict(work, y, stat=code, errmsg=msg)
    if (code /= FKB_OK) then
      msg = 'fkb_physics_run: ' // msg
      return
    end if
    do j = 1, ncol
      y(:, j) = y(:, j) / scale32
    end do
  end subroutine run_r32

  !> Release the model and the normalization vectors. Safe to call twice or before init.
  subroutine fkb_physics_finalize(stat, errmsg)
    integer, intent(out), optional :: stat
    character(len=:), allocatable, intent(out), optional :: errmsg
    call net%free()
    initialized = .false.
    nin = 0
    nout = 0
    if (allocated(sub64)) deallocate(sub64)
    if (allocated(div64)) deallocate(div64)
    if (allocated(scale64)) deallocate(scale64)
    if (allocated(sub32)) deallocate(sub32)
    if (allocated(div32)) deallocate(div32)
    if (allocated(scale32)) deallocate(scale32)
    if (present(errmsg)) errmsg = ''
    if (present(stat)) stat = FKB_OK
  end subroutine fkb_physics_finalize

  pure integer function fkb_physics_n_inputs()
    fkb_physics_n_inputs = nin
  end function fkb_physics_n_inputs

  pure integer function fkb_physics_n_outputs()
    fkb_physics_n_outputs = nout
  end function fkb_physics_n_outputs

  pure logical function fkb_physics_is_initialized()
    fkb_physics_is_initialized = initialized
  end function fkb_physics_is_initialized

end module fkb_physics
