!> The demo's column model: many independent columns in radiative-convective equilibrium.
!> Each column: temperature T(nlay) on fixed pressure layers, humidity at a fixed relative-humidity
!> profile (Manabe and Wetherald 1967), an ozone profile, a slab surface (temperature t_sfc). A step of
!> length dt: the held radiative heating, bulk surface fluxes of sensible and latent heat (the latent heat
!> warms the lowest layer: condensation is assumed where the water evaporated), convective adjustment to
!> a critical lapse rate conserving the column's enthalpy, the humidity re-set. Radiation (scheme or
!> emulator) is called every n_rad steps by the driver and its heating held in between.
module column_model
    use rad_scheme
    implicit none
    private

    ! Fluxes held by the model, in this order; the first n_flux are radiation output (scheme or emulator).
    ! The last, the surface's upward LW flux, is computed from t_sfc and the downward flux as the scheme
    ! does (surface_lw_up) in both runs: the surface's own emission, sigma T^4 in effect, is not emulated.
    integer, parameter, public :: n_flux = 4
    integer, parameter, public :: F_SW_UP_TOA = 1, F_SW_DN_SFC = 2, F_LW_UP_TOA = 3, F_LW_DN_SFC = 4, F_LW_UP_SFC = 5
    character(len=*), parameter, public :: flux_names(n_flux) = &
        [character(len=11) :: 'SW up TOA', 'SW down sfc', 'LW up TOA', 'LW down sfc']
    real(wp), parameter, public :: p_sfc = 100000.0_wp, co2_mmr = 6.08e-4_wp   ! 400 ppmv
    real(wp), parameter, public :: s_toa = 1361.0_wp * 0.5_wp                  ! solar constant x day fraction
    real(wp), parameter, public :: emissivity = 0.98_wp
    real(wp), parameter :: r_dry = 287.04_wp, latent = 2.501e6_wp, lapse_crit = 6.5e-3_wp
    real(wp), parameter :: c_sfc = 4.2e6_wp           ! 1 m of water, J m-2 K-1
    real(wp), parameter :: c_exch = 1.2e-3_wp * 5.0_wp   ! bulk transfer coefficient x wind, m s-1
    real(wp), parameter :: q_strat = 3.0e-6_wp

    type, public :: column_set
        integer :: nlay = 0, n = 0
        real(wp), allocatable :: p_half(:), p_full(:)             ! (0:nlay), (nlay) Pa
        real(wp), allocatable :: t(:, :), q(:, :), o3(:, :)       ! (nlay, n)
        real(wp), allocatable :: t_sfc(:), albedo(:), mu0(:), rh_sfc(:)
        real(wp), allocatable :: hr_sw(:, :), hr_lw(:, :), flux(:, :)   ! held radiation output (nlay, n), (n_flux + 1, n)
    contains
        procedure :: init => columns_init
        procedure :: step => columns_step
        procedure :: features => columns_features
        procedure :: targets => columns_targets
        procedure :: set_radiation => columns_set_radiation
        procedure :: humidity => columns_humidity
    end type

    public :: scheme_radiation, n_features, n_targets, saturation_q

contains

    integer function n_features(nlay)
        integer, intent(in) :: nlay
        n_features = 3 * nlay + 3
    end function

    integer function n_targets(nlay)
        integer, intent(in) :: nlay
        n_targets = 2 * nlay + n_flux
    end function

    !> n columns drawn from a random stream seeded by `seed` (the global column index decides the draw:
    !> column j of the global set is the same on any number of ranks).
    subroutine columns_init(self, nlay, n, first_global, seed)
        class(column_set), intent(inout) :: self
        integer, intent(in) :: nlay, n, first_global, seed
        integer :: k, j
        real(wp) :: r(6), z, t0, amp
        self%nlay = nlay
        self%n = n
        allocate (self%p_half(0:nlay), self%p_full(nlay))
        do k = 0, nlay      ! thin layers aloft, ~25 hPa near the surface; top interface 0 Pa
            self%p_half(k) = p_sfc * (real(k, wp) / nlay)**1.5_wp
        end do
        self%p_full = 0.5_wp * (self%p_half(0:nlay - 1) + self%p_half(1:nlay))
        allocate (self%t(nlay, n), self%q(nlay, n), self%o3(nlay, n), self%t_sfc(n), self%albedo(n), self%mu0(n), &
                  self%rh_sfc(n), self%hr_sw(nlay, n), self%hr_lw(nlay, n), self%flux(n_flux + 1, n))
        do j = 1, n
            call column_random(seed, first_global + j - 1, r)
            self%mu0(j) = 0.32_wp + 0.1_wp * r(1)
            self%albedo(j) = 0.1_wp + 0.2_wp * r(2)
            self%rh_sfc(j) = 0.6_wp + 0.25_wp * r(3)
            ! initial surface temperature: a rough equilibrium for the absorbed sunlight, +-4 K
            t0 = 278 + 0.75_wp * (s_toa * self%mu0(j) * (1 - self%albedo(j)) - 203) + 8 * (r(4) - 0.5_wp)
            amp = 0.7_wp + 0.6_wp * r(5)
            self%t_sfc(j) = t0
            do k = 1, nlay
                z = -r_dry * 250.0_wp / grav * log(self%p_full(k) / p_sfc)     ! rough height
                self%t(k, j) = max(t0 - 2 + 4 * (r(6) - 0.5_wp) - lapse_crit * z, 205.0_wp + 20 * r(6))
                ! ozone: a peak near 10 hPa (mass mixing ratio up to ~8e-6)
                self%o3(k, j) = amp * 8.0e-6_wp * exp(-log(self%p_full(k) / 1000.0_wp)**2 / (2 * 0.9_wp**2)) + 3e-8_wp
            end do
        end do
        call self%humidity()
        self%hr_sw = 0
        self%hr_lw = 0
        self%flux = 0
    end subroutine

    !> Six uniform numbers in [0, 1) for (seed, column): a small counter-based hash (splitmix64).
    subroutine column_random(seed, column, r)
        integer, intent(in) :: seed, column
        real(wp), intent(out) :: r(6)
        integer :: i
        integer(8) :: x
        do i = 1, 6
            x = int(seed, 8) * 1000003_8 + int(column, 8) * 7919_8 + i
            x = ieor(x, ishft(x, -31))
            x = x * 5851342689891053457_8 + 1442695040888963407_8   ! wraps: two's complement, as intended
            x = ieor(x, ishft(x, -29))
            x = x * 3037000493_8
            x = ieor(x, ishft(x, -32))
            r(i) = real(iand(x, 2147483647_8), wp) / 2147483648.0_wp
        end do
    end subroutine

    pure real(wp) function saturation_q(t, p)
        real(wp), intent(in) :: t, p
        real(wp) :: es
        es = 611.2_wp * exp(17.67_wp * (t - 273.15_wp) / (t - 29.65_wp))   ! Bolton (1980), Pa
        es = min(es, 0.5_wp * p)
        saturation_q = 0.622_wp * es / (p - 0.378_wp * es)
    end function

    !> q = RH(p) q_sat(T, p), RH(p) = RH_sfc (p/ps - 0.02)/0.98, at least q_strat, at most saturation.
    subroutine columns_humidity(self)
        class(column_set), intent(inout) :: self
        integer :: j, k
        real(wp) :: rh, qs
        do j = 1, self%n
            do k = 1, self%nlay
                rh = self%rh_sfc(j) * max(0.0_wp, (self%p_full(k) / p_sfc - 0.02_wp) / 0.98_wp)
                qs = saturation_q(self%t(k, j), self%p_full(k))
                self%q(k, j) = min(max(rh * qs, q_strat), qs)
            end do
        end do
    end subroutine

    !> One step of length dt (s) with the held radiative heating and fluxes.
    subroutine columns_step(self, dt)
        class(column_set), intent(inout) :: self
        real(wp), intent(in) :: dt
        integer :: j, nl
        real(wp) :: rho, sh, lh, r_net, dpk(self%nlay), exner(self%nlay)
        nl = self%nlay
        dpk = self%p_half(1:nl) - self%p_half(0:nl - 1)
        exner = (self%p_full / p_sfc)**(r_dry * lapse_crit / grav)
        do j = 1, self%n
            self%t(:, j) = self%t(:, j) + dt * (self%hr_sw(:, j) + self%hr_lw(:, j)) / seconds_per_day
            rho = self%p_full(nl) / (r_dry * self%t(nl, j))
            sh = rho * cp_air * c_exch * (self%t_sfc(j) - self%t(nl, j))
            lh = rho * latent * c_exch * max(0.0_wp, saturation_q(self%t_sfc(j), p_sfc) - self%q(nl, j))
            r_net = (1 - self%albedo(j)) * self%flux(F_SW_DN_SFC, j) + self%flux(F_LW_DN_SFC, j) - self%flux(F_LW_UP_SFC, j)
            self%t_sfc(j) = self%t_sfc(j) + dt * (r_net - sh - lh) / c_sfc
            self%t(nl, j) = self%t(nl, j) + dt * (sh + lh) * grav / (cp_air * dpk(nl))
            call adjust(nl, dpk, exner, self%t(:, j))
        end do
        call self%humidity()
    end subroutine

    !> Convective adjustment to the critical lapse rate: with phi = T / (p/ps)^(R Gamma/g) (constant along
    !> the critical lapse rate), a column is stable where phi does not decrease upwards. Unstable runs of
    !> layers are mixed to a common phi that keeps their enthalpy sum(cp T dp/g): the pool-adjacent-violators
    !> algorithm, bottom up, exact in one pass (O(nlay)).
    pure subroutine adjust(nl, dp, exner, t)
        integer, intent(in) :: nl
        real(wp), intent(in) :: dp(nl), exner(nl)
        real(wp), intent(inout) :: t(nl)
        real(wp) :: w(nl), wphi(nl)
        integer :: first(nl), nb, k, b
        nb = 0
        do k = nl, 1, -1
            nb = nb + 1
            first(nb) = k
            w(nb) = dp(k) * exner(k)
            wphi(nb) = dp(k) * t(k)
            ! block nb (above) lower in phi than block nb-1 (below): unstable, merge
            do while (nb > 1)
                if (wphi(nb) * w(nb - 1) >= wphi(nb - 1) * w(nb)) exit
                w(nb - 1) = w(nb - 1) + w(nb)
                wphi(nb - 1) = wphi(nb - 1) + wphi(nb)
                first(nb - 1) = first(nb)
                nb = nb - 1
            end do
        end do
        k = nl
        do b = 1, nb          ! block b covers layers first(b)..k
            if (k > first(b)) t(first(b):k) = exner(first(b):k) * (wphi(b) / w(b))
            k = first(b) - 1
        end do
    end subroutine

    !> The emulator's inputs for every column: T (nlay), q (nlay), O3 (nlay), t_sfc, albedo, mu0.
    subroutine columns_features(self, x)
        class(column_set), intent(in) :: self
        real(wp), intent(out) :: x(:, :)
        integer :: nl
        nl = self%nlay
        x(1:nl, 1:self%n) = self%t
        x(nl + 1:2 * nl, 1:self%n) = self%q
        x(2 * nl + 1:3 * nl, 1:self%n) = self%o3
        x(3 * nl + 1, 1:self%n) = self%t_sfc
        x(3 * nl + 2, 1:self%n) = self%albedo
        x(3 * nl + 3, 1:self%n) = self%mu0
    end subroutine

    !> The radiation output as the emulator's targets: SW heating (nlay), LW heating (nlay), fluxes.
    subroutine columns_targets(self, y)
        class(column_set), intent(in) :: self
        real(wp), intent(out) :: y(:, :)
        integer :: nl
        nl = self%nlay
        y(1:nl, 1:self%n) = self%hr_sw
        y(nl + 1:2 * nl, 1:self%n) = self%hr_lw
        y(2 * nl + 1:2 * nl + n_flux, 1:self%n) = self%flux
    end subroutine

    !> Holds radiation output laid out as the targets (scheme or emulator), and the surface's upward LW flux.
    subroutine columns_set_radiation(self, opt, y)
        class(column_set), intent(inout) :: self
        type(gas_optics), intent(in) :: opt
        real(wp), intent(in) :: y(:, :)
        integer :: nl, j
        nl = self%nlay
        self%hr_sw = y(1:nl, 1:self%n)
        self%hr_lw = y(nl + 1:2 * nl, 1:self%n)
        self%flux(1:n_flux, :) = y(2 * nl + 1:2 * nl + n_flux, 1:self%n)
        do j = 1, self%n
            self%flux(F_LW_UP_SFC, j) = surface_lw_up(opt, self%t_sfc(j), emissivity, self%flux(F_LW_DN_SFC, j))
        end do
    end subroutine

    !> The scheme on every column; y(n_targets, n) as columns_targets lays it out.
    subroutine scheme_radiation(opt, c, y)
        type(gas_optics), intent(in) :: opt
        type(column_set), intent(in) :: c
        real(wp), intent(out) :: y(:, :)
        type(column_fluxes) :: f
        real(wp) :: t_half(0:c%nlay), lp(c%nlay), w
        integer :: j, k, nl
        nl = c%nlay
        lp = log(c%p_full)
        do j = 1, c%n
            ! interface temperatures: linear in ln p between layer centres; the top one that of layer 1,
            ! the lowest one extrapolated
            t_half(0) = c%t(1, j)
            do k = 1, nl - 1
                w = (log(c%p_half(k)) - lp(k)) / (lp(k + 1) - lp(k))
                t_half(k) = c%t(k, j) + w * (c%t(k + 1, j) - c%t(k, j))
            end do
            w = (log(c%p_half(nl)) - lp(nl)) / (lp(nl) - lp(nl - 1))
            t_half(nl) = c%t(nl, j) + w * (c%t(nl, j) - c%t(nl - 1, j))
            call rad_column(opt, nl, c%p_half, c%t(:, j), t_half, c%q(:, j), c%o3(:, j), co2_mmr, c%t_sfc(j), &
                            c%albedo(j), emissivity, c%mu0(j), s_toa, f)
            y(1:nl, j) = f%hr_sw
            y(nl + 1:2 * nl, j) = f%hr_lw
            y(2 * nl + F_SW_UP_TOA, j) = f%sw_up(0)
            y(2 * nl + F_SW_DN_SFC, j) = f%sw_dn(nl)
            y(2 * nl + F_LW_UP_TOA, j) = f%lw_up(0)
            y(2 * nl + F_LW_DN_SFC, j) = f%lw_dn(nl)
        end do
    end subroutine

end module column_model
