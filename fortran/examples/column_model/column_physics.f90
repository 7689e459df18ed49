!> A toy atmosphere: ncol independent columns of nlev levels holding temperature T [K] and specific
!> humidity q [kg/kg], driven by a prescribed "large-scale" forcing, with a reference physics scheme:
!>
!>   1. relaxation: T towards a radiative-equilibrium profile (5 days), q towards 60 % relative humidity
!>      (2 days);
!>   2. dry convective adjustment: unstable neighbouring layers (potential temperature decreasing with
!>      height) are mixed, conserving enthalpy and moisture (three sweeps); the column relaxes towards the
!>      adjusted profile with a 2-hour time scale (Betts-Miller style, rather than in one step);
!>   3. large-scale condensation: supersaturation condenses, releasing latent heat, over 2 hours.
!>
!> The scheme depends on (T, q) only, so a network can learn the map (T, q) -> (dT/dt, dq/dt); the
!> forcing varies between columns and in time so the training data covers stable, convecting and
!> condensing columns. Level 1 is the top (100 hPa), level nlev the surface layer (~980 hPa).
module column_physics
  use, intrinsic :: iso_fortran_env, only: real64, int64
  implicit none
  private
  public :: nlev, dt, p, setup_levels, reference_physics, forcing, initial_state, perturb, qsat

  integer, parameter :: nlev = 20
  real(real64), parameter :: dt = 1800.0_real64         !< time step [s]
  real(real64), parameter :: cp = 1004.0_real64, rd = 287.0_real64, rv = 461.5_real64, lv = 2.5e6_real64
  real(real64), parameter :: kappa = rd / cp, p0 = 1.0e5_real64, ps = 1.0e5_real64, ptop = 1.0e4_real64
  real(real64), parameter :: tau_t = 5.0_real64 * 86400.0_real64, tau_q = 2.0_real64 * 86400.0_real64
  real(real64), parameter :: tau_conv = 2.0_real64 * 3600.0_real64, tau_cond = 2.0_real64 * 3600.0_real64
  real(real64), parameter :: pi = 3.141592653589793_real64
  real(real64) :: p(nlev), exner(nlev), t_eq(nlev)
  integer(int64) :: rng_state = 1

contains

  subroutine setup_levels()
    integer :: k
    do k = 1, nlev
      p(k) = ptop + (ps - ptop) * (k - 0.5_real64) / nlev
      exner(k) = (p(k) / p0) ** kappa
      ! 6.5 K/km below a 200 K stratosphere, heights from a 7.5 km scale height
      t_eq(k) = max(200.0_real64, 288.0_real64 - 6.5e-3_real64 * 7500.0_real64 * log(ps / p(k)))
    end do
  end subroutine setup_levels

  !> Saturation specific humidity [kg/kg] (Bolton's saturation vapour pressure).
  elemental real(real64) function qsat(t, pres)
    real(real64), intent(in) :: t, pres
    real(real64) :: es
    es = 611.2_real64 * exp(17.67_real64 * (t - 273.15_real64) / (t - 29.65_real64))
    qsat = 0.622_real64 * es / max(pres - 0.378_real64 * es, 0.1_real64 * pres)
  end function qsat

  !> The reference scheme: tendencies dtdt [K/s], dqdt [kg/kg/s] of the columns t(nlev, ncol), q(nlev, ncol).
  subroutine reference_physics(t, q, dtdt, dqdt)
    real(real64), intent(in) :: t(:, :), q(:, :)
    real(real64), intent(out) :: dtdt(:, :), dqdt(:, :)
    real(real64) :: tc(nlev), qc(nlev), ta(nlev), qa(nlev), theta, qs, dq
    integer :: j, k, sweep
    do j = 1, size(t, 2)
      ! 1. relaxation
      tc = t(:, j) - dt * (t(:, j) - t_eq) / tau_t
      qc = q(:, j) + dt * (0.6_real64 * qsat(t(:, j), p) - q(:, j)) / tau_q
      ! 2. dry convective adjustment (enthalpy- and moisture-conserving mixing of unstable pairs),
      !    approached over tau_conv
      ta = tc
      qa = qc
      do sweep = 1, 3
        do k = nlev - 1, 1, -1
          if (ta(k + 1) / exner(k + 1) > ta(k) / exner(k)) then
            theta = (ta(k) + ta(k + 1)) / (exner(k) + exner(k + 1))
            ta(k) = theta * exner(k)
            ta(k + 1) = theta * exner(k + 1)
            qa(k:k + 1) = 0.5_real64 * (qa(k) + qa(k + 1))
          end if
        end do
      end do
      tc = tc + (dt / tau_conv) * (ta - tc)
      qc = qc + (dt / tau_conv) * (qa - qc)
      ! 3. large-scale condensation (saturation adjustment, one Newton step), approached over tau_cond
      do k = 1, nlev
        qs = qsat(tc(k), p(k))
        if (qc(k) > qs) then
          dq = (dt / tau_cond) * (qc(k) - qs) / (1.0_real64 + lv * lv * qs / (cp * rv * tc(k) * tc(k)))
          qc(k) = qc(k) - dq
          tc(k) = tc(k) + lv / cp * dq
        end if
      end do
      dtdt(:, j) = (tc - t(:, j)) / dt
      dqdt(:, j) = (qc - q(:, j)) / dt
    end do
  end subroutine reference_physics

  !> The prescribed large-scale forcing at step `n`: heating and moistening of the lower troposphere,
  !> travelling across the columns with a 3-day period, plus upper-level cooling.
  subroutine forcing(n, ncol, phase0, ft, fq)
    integer, intent(in) :: n, ncol
    real(real64), intent(in) :: phase0
    real(real64), intent(out) :: ft(:, :), fq(:, :)
    real(real64) :: phase, low(nlev), high(nlev), a
    integer :: j
    low = exp(-((p - 8.5e4_real64) / 1.5e4_real64) ** 2)
    high = exp(-((p - 3.0e4_real64) / 1.0e4_real64) ** 2)
    do j = 1, ncol
      phase = 2 * pi * (real(j - 1, real64) / ncol + n * dt / (3.0_real64 * 86400.0_real64)) + phase0
      a = 0.5_real64 * (1.0_real64 + sin(phase))
      ft(:, j) = (6.0_real64 * a * low - 1.5_real64 * high) / 86400.0_real64                  ! K/day -> K/s
      fq(:, j) = (4.0e-3_real64 * a * a + 0.5e-3_real64) * low / 86400.0_real64              ! kg/kg/day -> /s
    end do
  end subroutine forcing

  !> Park-Miller minimal standard generator: no overflow in 64-bit integers, the same on every compiler.
  real(real64) function uniform()
    rng_state = modulo(rng_state * 48271_int64, 2147483647_int64)
    uniform = real(rng_state, real64) / 2147483647.0_real64
  end function uniform

  !> Equilibrium profiles with a deterministic perturbation per column.
  subroutine initial_state(seed, t, q)
    integer, intent(in) :: seed
    real(real64), intent(out) :: t(:, :), q(:, :)
    integer :: j, k
    rng_state = modulo(int(seed, int64) * 7919_int64 + 12345_int64, 2147483646_int64) + 1_int64
    do j = 1, size(t, 2)
      do k = 1, nlev
        t(k, j) = t_eq(k) + 4.0_real64 * (uniform() - 0.5_real64)
        q(k, j) = (0.3_real64 + 0.6_real64 * uniform()) * qsat(t(k, j), p(k))
      end do
    end do
  end subroutine initial_state

  !> Randomly perturbed copies of the columns (vertically smoothed temperature noise up to +-amp_t K,
  !> relative humidity noise up to +-amp_q), so the training data also shows how the scheme responds to
  !> states off the model's own trajectory, which an emulator meets as soon as it makes an error.
  subroutine perturb(t, q, amp_t, amp_q, tp, qp)
    real(real64), intent(in) :: t(:, :), q(:, :), amp_t, amp_q
    real(real64), intent(out) :: tp(:, :), qp(:, :)
    real(real64) :: nt(nlev), nq(nlev), a
    integer :: j, k
    do j = 1, size(t, 2)
      a = uniform()
      do k = 1, nlev
        nt(k) = 2 * uniform() - 1
        nq(k) = 2 * uniform() - 1
      end do
      nt(2:nlev - 1) = 0.25_real64 * (nt(1:nlev - 2) + 2 * nt(2:nlev - 1) + nt(3:nlev))
      tp(:, j) = t(:, j) + amp_t * a * nt
      qp(:, j) = q(:, j) * max(0.0_real64, 1 + amp_q * a * nq)
    end do
  end subroutine perturb

end module column_physics
