!> Load options reach the library from Fortran (fkb_model%load, fkb_ensemble%load, the &fkb_nl namelist of
!> fkb_physics), multi-input/output models are refused at load/init, and `use fkb` alone gives the kinds.
!> Usage: test_options MODE SMALL.txt CBRAIN.txt MULTI_IO_MODEL ENSEMBLE.txt TMP_DIR
!>   MODE quiet:   every load asks for device 'auto' with verbose off, and runs every check; the CTest
!>                 rejects any device notice or fkb_physics line in the output (stdout and stderr).
!>   MODE verbose: the same loads with verbose on; the CTest requires each notice.
!> SMALL/CBRAIN: fixtures exported by fkb_fixture_export (Keras' own outputs); ENSEMBLE: the ensemble export.
program test_options
  use fkb          ! alone: real32 / real64 / int64 below come from module fkb (no iso_fortran_env here)
  use fkb_physics, only: fkb_physics_init, fkb_physics_run, fkb_physics_finalize
  use fkb_test_util
  use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan
  implicit none
  real(real64), parameter :: tol = 1.0e-5_real64
  character(len=:), allocatable :: mode, multi, tmp, errmsg
  type(fixture_t) :: small, cbrain
  character(len=4096) :: ens_dir
  logical :: verbose
  integer :: u

  mode = arg(1)
  call read_fixture(arg(2), small)
  call read_fixture(arg(3), cbrain)
  multi = arg(4)
  open(newunit=u, file=arg(5), status='old', action='read')
  read(u, '(a)') ens_dir
  close(u)
  tmp = arg(6)
  call execute_command_line('mkdir -p ' // tmp)
  verbose = mode == 'verbose'
  if (.not. verbose .and. mode /= 'quiet') error stop 'MODE must be quiet or verbose'

  call model_options()
  call multi_io()
  call ensemble_options()
  call physics_options()
  call finish()

contains

  subroutine model_options()
    type(fkb_model) :: net
    real(real64), allocatable :: x(:, :), y(:, :), y1(:, :)
    real(real32), allocatable :: x4(:, :), y4(:, :)
    integer :: stat, j
    character(len=32) :: buf
    real(real64) :: e

    ! verbose: what this load prints (or not) is checked by the CTest; the numbers by Keras' outputs.
    call net%load(small%model, device='auto', verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, 'load on the auto device with the verbose option: ' // errmsg)
    allocate(y(small%nout, small%ncol))
    x = real(small%x, real64)
    call net%predict(x, y, stat=stat)
    e = rel_max_error(y, small%y)
    write(buf, '(es10.2)') e
    call check(stat == FKB_OK .and. e <= tol, 'real64 outputs vs Keras, rel err' // trim(buf))

    ! nonfinite: 'propagate' (default) lets a NaN through; 'error' fails with FKB_ERR_NON_FINITE naming the column.
    x(2, 3) = ieee_value(1.0_real64, ieee_quiet_nan)
    call net%predict(x, y, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, 'the default nonfinite policy (propagate) accepts a NaN input: ' // errmsg)
    call net%load(small%model, device='cpu', nonfinite='error', verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, "load with nonfinite='error': " // errmsg)
    call net%predict(x, y, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_NON_FINITE .and. contains_text(errmsg, 'column'), &
               "nonfinite='error' refuses a NaN input: " // errmsg)
    x4 = real(small%x, real32)
    x4(1, small%ncol) = ieee_value(1.0_real32, ieee_quiet_nan)
    allocate(y4(small%nout, small%ncol))
    call net%predict(x4, y4, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_NON_FINITE, "nonfinite='error' refuses a NaN in real32 input: " // errmsg)
    call net%load(small%model, device='cpu', nonfinite='sometimes', verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'sometimes') .and. &
               .not. net%is_loaded(), 'an unknown nonfinite value is refused by name: ' // errmsg)

    ! reproducible: each column alone gives, bitwise, what it gives inside the whole batch.
    call net%load(cbrain%model, device='cpu', reproducible=.true., verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, 'load with reproducible: ' // errmsg)
    deallocate(y)
    allocate(y(cbrain%nout, cbrain%ncol), y1(cbrain%nout, 1))
    x = real(cbrain%x, real64)
    call net%predict(x, y)
    e = rel_max_error(y, cbrain%y)
    write(buf, '(es10.2)') e
    call check(e <= tol, 'reproducible: outputs vs Keras, rel err' // trim(buf))
    stat = 0
    do j = 1, cbrain%ncol
      call net%predict(x(:, j:j), y1)
      if (any(y1(:, 1) /= y(:, j))) stat = stat + 1
    end do
    call check(stat == 0, 'reproducible: every column alone is bitwise its value in the batch (' // &
               itoa(stat) // ' differ)')

    ! nested_threads: accepted >= 1, refused below.
    call net%load(small%model, device='cpu', nested_threads=2, verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK .and. net%is_loaded(), 'nested_threads = 2 accepted: ' // errmsg)
    call net%load(small%model, device='cpu', nested_threads=0, verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'nested_threads') .and. &
               .not. net%is_loaded(), 'nested_threads = 0 refused: ' // errmsg)

    ! max_weight_bytes (README "Loading policy"): a model over the limit is refused before its weights are read.
    call net%load(small%model, device='cpu', max_weight_bytes=16_int64, verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_FORMAT .and. contains_text(errmsg, 'over the limit of 16 bytes') .and. &
               .not. net%is_loaded(), 'max_weight_bytes = 16 refuses the model: ' // errmsg)
    call net%load(small%model, device='cpu', max_weight_bytes=2_int64**30, verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK .and. net%is_loaded(), 'max_weight_bytes = 1 GiB accepted: ' // errmsg)
    call net%free()
  end subroutine model_options

  subroutine multi_io()
    type(fkb_model) :: net
    integer :: stat
    call net%load(multi, device='cpu', verbose=verbose, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_UNSUPPORTED, 'a 2-input, 2-output model is refused at load (stat ' // itoa(stat) // ')')
    call check(contains_text(errmsg, '2 input tensor(s) and 2 output tensor(s)') .and. &
               contains_text(errmsg, 'single-input, single-output') .and. contains_text(errmsg, 'k3_multi_io') .and. &
               .not. contains_text(errmsg, 'C API'), 'the message names the counts and the rule: ' // errmsg)
    call check(.not. net%is_loaded(), 'nothing is loaded after the refusal')
  end subroutine multi_io

  subroutine ensemble_options()
    type(fkb_ensemble) :: ens
    integer :: stat
    call ens%load(trim(ens_dir), device='auto', verbose=verbose, nested_threads=2, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, 'ensemble load with verbose and nested_threads: ' // errmsg)
    call check(ens%n_members() == 8, 'ensemble of 8 members')
    call ens%load(trim(ens_dir), device='cpu', nested_threads=0, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'nested_threads'), &
               'ensemble nested_threads = 0 refused: ' // errmsg)
    call ens%free()
  end subroutine ensemble_options

  subroutine write_nml(path, model, extra)
    character(len=*), intent(in) :: path, model, extra
    integer :: un
    open(newunit=un, file=path, status='replace', action='write')
    write(un, '(a)') '&fkb_nl'
    write(un, '(a)') "  model_path = '" // model // "'"
    write(un, '(a)') "  device = 'auto'"
    if (verbose) then
      write(un, '(a)') '  verbose = .true.'
    else
      write(un, '(a)') '  verbose = .false.'
    end if
    if (len(extra) > 0) write(un, '(a)') '  ' // extra
    write(un, '(a)') '/'
    close(un)
  end subroutine write_nml

  subroutine physics_options()
    real(real64), allocatable :: x(:, :), y(:, :)
    integer :: stat
    character(len=32) :: buf
    real(real64) :: e

    allocate(y(small%nout, small%ncol))
    call write_nml(tmp // '/plain.nml', small%model, "nonfinite = 'propagate', reproducible = .true.")
    call fkb_physics_init(tmp // '/plain.nml', stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, 'physics init with verbose, nonfinite, reproducible: ' // errmsg)
    x = real(small%x, real64)
    call fkb_physics_run(x, y, stat=stat, errmsg=errmsg)
    e = rel_max_error(y, small%y)
    write(buf, '(es10.2)') e
    call check(stat == FKB_OK .and. e <= tol, 'physics outputs vs Keras, rel err' // trim(buf))
    x(1, 2) = ieee_value(1.0_real64, ieee_quiet_nan)
    call fkb_physics_run(x, y, stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, "physics nonfinite = 'propagate' accepts a NaN input: " // errmsg)

    call write_nml(tmp // '/error.nml', small%model, "nonfinite = 'error', nested_threads = 2")
    call fkb_physics_init(tmp // '/error.nml', stat=stat, errmsg=errmsg)
    call check(stat == FKB_OK, "physics init with nonfinite = 'error', nested_threads = 2: " // errmsg)
    call fkb_physics_run(x, y, stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_NON_FINITE .and. contains_text(errmsg, 'column'), &
               "physics nonfinite = 'error' refuses a NaN: " // errmsg)

    call write_nml(tmp // '/nested0.nml', small%model, 'nested_threads = 0')
    call fkb_physics_init(tmp // '/nested0.nml', stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_INVALID_ARGUMENT .and. contains_text(errmsg, 'nested_threads'), &
               'physics nested_threads = 0 refused: ' // errmsg)

    call write_nml(tmp // '/multi.nml', multi, '')
    call fkb_physics_init(tmp // '/multi.nml', stat=stat, errmsg=errmsg)
    call check(stat == FKB_ERR_UNSUPPORTED .and. contains_text(errmsg, 'fkb_physics_init') .and. &
               contains_text(errmsg, '2 input tensor(s) and 2 output tensor(s)'), &
               'physics init refuses a multi-input model: ' // errmsg)
    call fkb_physics_finalize()
  end subroutine physics_options

end program test_options
