!> column_model: the toy atmosphere of module column_physics, run with its reference physics scheme or
!> with a Keras network in its place. The emulator needs exactly one call:
!>
!>     call fkb_physics_run(x, y)      ! x = (T, q) of every column, y = (dT/dt, dq/dt)
!>
!> Modes:
!>   column_model --generate FILE [--ncol N] [--steps S]
!>       run the reference scheme and write training samples (states and perturbed states) (float32 stream file: int32 nin, nout, n;
!>       then x(nin, n), y(nout, n)) for train.py
!>   column_model --compare NAMELIST [--ncol N] [--steps S] [--batch B] [--max-drift K]
!>       run reference and emulator side by side from the same state, print the drift, then time a batch;
!>       with --max-drift, exit 1 when the final RMS temperature difference exceeds K kelvin
!>   column_model --check NAMELIST FILE
!>       compare fkb_physics_run with Keras' own outputs (FILE written by train.py); exit 1 on mismatch
program column_model
  use, intrinsic :: iso_fortran_env, only: real32, real64, int32, int64, output_unit
  use column_physics
  use fkb_physics
  implicit none

  character(len=4096) :: mode, path, path2, buf
  integer :: ncol, steps, batch, i, nargs, ios
  real(real64) :: max_drift

  ncol = -1
  steps = -1
  batch = 8192
  max_drift = -1
  mode = ''
  path = ''
  path2 = ''
  nargs = command_argument_count()
  i = 1
  do while (i <= nargs)
    call get_command_argument(i, buf)
    select case (trim(buf))
    case ('--generate', '--compare', '--check')
      mode = buf
      i = i + 1
      call get_command_argument(i, path)
      if (trim(buf) == '--check') then
        i = i + 1
        call get_command_argument(i, path2)
      end if
    case ('--ncol')
      i = i + 1
      ncol = int_arg(i)
    case ('--steps')
      i = i + 1
      steps = int_arg(i)
    case ('--batch')
      i = i + 1
      batch = int_arg(i)
    case ('--max-drift')
      i = i + 1
      call get_command_argument(i, buf)
      read(buf, *, iostat=ios) max_drift
      if (ios /= 0) call usage()
    case default
      call usage()
    end select
    i = i + 1
  end do

  call setup_levels()
  select case (trim(mode))
  case ('--generate')
    call generate(trim(path), merge(ncol, 256, ncol > 0), merge(steps, 1200, steps > 0))
  case ('--compare')
    call compare(trim(path), merge(ncol, 128, ncol > 0), merge(steps, 480, steps > 0), batch, max_drift)
  case ('--check')
    call check(trim(path), trim(path2))
  case default
    call usage()
  end select

contains

  subroutine usage()
    write(*, '(a)') 'usage: column_model --generate FILE [--ncol N] [--steps S]'
    write(*, '(a)') '       column_model --compare NAMELIST [--ncol N] [--steps S] [--batch B] [--max-drift K]'
    write(*, '(a)') '       column_model --check NAMELIST FILE'
    error stop 2
  end subroutine usage

  integer function int_arg(k)
    integer, intent(in) :: k
    character(len=64) :: s
    integer :: ios
    call get_command_argument(k, s)
    read(s, *, iostat=ios) int_arg
    if (ios /= 0 .or. int_arg <= 0) call usage()
  end function int_arg

  !> x = (T, q) stacked per column, as the network sees it.
  subroutine pack_state(t, q, x)
    real(real64), intent(in) :: t(:, :), q(:, :)
    real(real64), intent(out) :: x(:, :)
    x(1:nlev, :) = t
    x(nlev + 1:2 * nlev, :) = q
  end subroutine pack_state

  subroutine step_state(t, q, ft, fq, dtdt, dqdt)
    real(real64), intent(inout) :: t(:, :), q(:, :)
    real(real64), intent(in) :: ft(:, :), fq(:, :), dtdt(:, :), dqdt(:, :)
    t = t + dt * (ft + dtdt)
    q = max(q + dt * (fq + dqdt), 0.0_real64)
  end subroutine step_state

  real(real64) function rms(a)
    real(real64), intent(in) :: a(:, :)
    rms = sqrt(sum(a * a) / size(a))
  end function rms

  real(real64) function seconds(c0, c1, rate)
    integer(int64), intent(in) :: c0, c1, rate
    seconds = real(c1 - c0, real64) / real(rate, real64)
  end function seconds

  ! ----------------------------------------------------------------------------------------------
  subroutine generate(file, ncol, steps)
    character(len=*), intent(in) :: file
    integer, intent(in) :: ncol, steps
    integer, parameter :: every = 4
    real(real64), allocatable :: t(:, :), q(:, :), ft(:, :), fq(:, :), dtdt(:, :), dqdt(:, :)
    real(real64), allocatable :: tp(:, :), qp(:, :), dtp(:, :), dqp(:, :)
    real(real32), allocatable :: x(:, :), y(:, :)
    integer :: n, u, nsamples, ios
    allocate(t(nlev, ncol), q(nlev, ncol), ft(nlev, ncol), fq(nlev, ncol), dtdt(nlev, ncol), dqdt(nlev, ncol))
    allocate(tp(nlev, ncol), qp(nlev, ncol), dtp(nlev, ncol), dqp(nlev, ncol))
    allocate(x(2 * nlev, ncol), y(2 * nlev, ncol))
    call initial_state(1, t, q)
    open(newunit=u, file=file, access='stream', form='unformatted', status='replace', action='write', iostat=ios)
    if (ios /= 0) error stop 'cannot write ' // file
    nsamples = 0
    write(u) int(2 * nlev, int32), int(2 * nlev, int32), int(0, int32)  ! n is written at the end
    do n = 1, steps
      call forcing(n, ncol, 0.0_real64, ft, fq)
      call reference_physics(t, q, dtdt, dqdt)
      if (mod(n, every) == 0) then
        ! the model's own state, and a perturbed copy with the scheme's response to it
        x(1:nlev, :) = real(t, real32)
        x(nlev + 1:, :) = real(q, real32)
        y(1:nlev, :) = real(dtdt, real32)
        y(nlev + 1:, :) = real(dqdt, real32)
        write(u) x, y
        call perturb(t, q, 3.0_real64, 0.3_real64, tp, qp)
        call reference_physics(tp, qp, dtp, dqp)
        x(1:nlev, :) = real(tp, real32)
        x(nlev + 1:, :) = real(qp, real32)
        y(1:nlev, :) = real(dtp, real32)
        y(nlev + 1:, :) = real(dqp, real32)
        write(u) x, y
        nsamples = nsamples + 2 * ncol
      end if
      call step_state(t, q, ft, fq, dtdt, dqdt)
    end do
    write(u, pos=9) int(nsamples, int32)
    close(u)
    write(*, '(a, i0, a, i0, a, i0, a)') 'wrote ', nsamples, ' samples (', ncol, ' columns x ', steps / every, &
      ' times, each also perturbed) to ' // file
    write(*, '(a, f8.2, a, f8.2, a)') 'final state: T in [', minval(t), ', ', maxval(t), '] K'
  end subroutine generate

  ! ----------------------------------------------------------------------------------------------
  subroutine compare(nml, ncol, steps, batch, max_drift)
    character(len=*), intent(in) :: nml
    integer, intent(in) :: ncol, steps, batch
    real(real64), intent(in) :: max_drift
    real(real64), allocatable :: tr(:, :), qr(:, :), te(:, :), qe(:, :), ft(:, :), fq(:, :)
    real(real64), allocatable :: dtdt(:, :), dqdt(:, :), x(:, :), y(:, :), xb(:, :), yb(:, :)
    real(real64), allocatable :: rt(:, :), rq(:, :)
    integer(int64) :: c0, c1, rate
    real(real64) :: t_ref, t_emu, off_t, off_q
    integer :: n, j, reps
    integer, parameter :: report_every = 48

    call fkb_physics_init(nml)
    allocate(tr(nlev, ncol), qr(nlev, ncol), ft(nlev, ncol), fq(nlev, ncol), dtdt(nlev, ncol), dqdt(nlev, ncol))
    allocate(x(2 * nlev, ncol), y(2 * nlev, ncol), rt(nlev, ncol), rq(nlev, ncol))
    ! a state and a forcing phase the network was not trained on
    call initial_state(2, tr, qr)
    te = tr
    qe = qr
    t_ref = 0
    t_emu = 0
    call system_clock(count_rate=rate)

    write(*, '(a, i0, a, i0, a, i0, a, f5.1, a)') 'column model: ', ncol, ' columns x ', nlev, ' levels, ', steps, &
      ' steps of 30 min (', steps * dt / 86400, ' days); reference scheme and emulator side by side'
    write(*, '(a)') '   step    day   RMS(T_emu-T_ref) [K]   max|dT| [K]   RMS(q_emu-q_ref) [g/kg]' // &
      '   offline err dT/dt [K/day]   dq/dt [g/kg/day]'
    do n = 1, steps
      call forcing(n, ncol, 0.37_real64, ft, fq)
      ! reference
      call system_clock(c0)
      call reference_physics(tr, qr, dtdt, dqdt)
      call system_clock(c1)
      t_ref = t_ref + seconds(c0, c1, rate)
      call step_state(tr, qr, ft, fq, dtdt, dqdt)
      ! emulator: the one call that replaces reference_physics
      call pack_state(te, qe, x)
      call system_clock(c0)
      call fkb_physics_run(x, y)
      call system_clock(c1)
      t_emu = t_emu + seconds(c0, c1, rate)
      if (mod(n, report_every) == 0 .or. n == steps) then
        ! offline error: reference scheme and network on the same (emulator) state
        call reference_physics(te, qe, rt, rq)
        off_t = rms(y(1:nlev, :) - rt) * 86400
        off_q = rms(y(nlev + 1:, :) - rq) * 86400 * 1000
      end if
      call step_state(te, qe, ft, fq, y(1:nlev, :), y(nlev + 1:, :))
      if (mod(n, report_every) == 0 .or. n == steps) then
        write(*, '(i7, f7.2, f17.4, f19.4, f20.5, f25.4, f22.5)') n, n * dt / 86400, rms(te - tr), &
          maxval(abs(te - tr)), rms(qe - qr) * 1000, off_t, off_q
      end if
    end do
    write(*, '(a, i0, a, f5.1, a, f8.4, a, f8.5, a)') 'emulator drift after ', steps, ' steps (', &
      steps * dt / 86400, ' days): RMS T difference ', rms(te - tr), ' K, RMS q difference ', &
      rms(qe - qr) * 1000, ' g/kg'
    write(*, '(a, f9.3, a, f9.3, a)') 'time per step and column: reference scheme ', t_ref / steps / ncol * 1e6, &
      ' us, emulator ', t_emu / steps / ncol * 1e6, ' us'

    ! a timed batch: the emulator on `batch` columns at once
    allocate(xb(2 * nlev, batch), yb(2 * nlev, batch))
    do j = 1, batch
      xb(:, j) = x(:, mod(j - 1, ncol) + 1)
    end do
    call fkb_physics_run(xb, yb)  ! warm-up
    reps = max(3, min(50, 200000 / batch))
    call system_clock(c0)
    do n = 1, reps
      call fkb_physics_run(xb, yb)
    end do
    call system_clock(c1)
    write(*, '(a, i0, a, i0, a, i0, a, i0, a, f10.3, a, f9.3, a, i0, a)') 'timed batch: x(', size(xb, 1), ', ', batch, &
      ') -> y(', size(yb, 1), ', ', batch, '): ', seconds(c0, c1, rate) / reps / batch * 1e6, ' us per column (', &
      seconds(c0, c1, rate) / reps * 1e3, ' ms per call, mean of ', reps, ' calls, real64 in/out)'
    call fkb_physics_finalize()
    if (max_drift > 0 .and. .not. rms(te - tr) <= max_drift) then
      write(*, '(a, f8.3, a)') 'FAILED: drift above --max-drift ', max_drift, ' K'
      error stop 1
    end if
  end subroutine compare

  ! ----------------------------------------------------------------------------------------------
  subroutine check(nml, file)
    character(len=*), intent(in) :: nml, file
    real(real64), allocatable :: x(:, :), yk(:, :), y(:, :)
    integer :: u, nin, nout, n, ios
    real(real64) :: err
    open(newunit=u, file=file, status='old', action='read', iostat=ios)
    if (ios /= 0) error stop 'cannot open ' // file
    read(u, *) nin, nout, n
    allocate(x(nin, n), yk(nout, n), y(nout, n))
    read(u, *) x
    read(u, *) yk
    close(u)
    call fkb_physics_init(nml)
    call fkb_physics_run(x, y)
    err = maxval(abs(y - yk)) / maxval(abs(yk))
    write(*, '(a, i0, a, es10.3)') 'fkb_physics vs Keras on ', n, ' columns (physical units): relative max error ', err
    call fkb_physics_finalize()
    if (err > 1.0e-5_real64) then
      write(*, '(a)') 'FAILED: above 1e-5'
      error stop 1
    end if
    write(output_unit, '(a)') 'ok'
  end subroutine check

end program column_model
