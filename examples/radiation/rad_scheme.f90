!> The demo's radiation scheme: correlated-k gas optics (H2O, CO2, O3; tables from make_tables.py),
!> two-stream shortwave (delta-Eddington scaling, Zdunkowski PIFM coefficients, adding method) and
!> longwave (absorption and emission, diffusivity 1.66, source linear in optical depth), optional grey
!> clouds, surface albedo and emissivity, solar zenith angle. Equations: examples/radiation/README.md.
!> Levels are numbered from the top: interface 0 is the top of the atmosphere, interface nlay the surface;
!> layer k lies between interfaces k-1 and k. Fluxes are positive, W m-2; heating rates K day-1.
module rad_scheme
    use, intrinsic :: iso_fortran_env, only: wp => real64
    implicit none
    private
    public :: wp

    real(wp), parameter, public :: grav = 9.80665_wp, cp_air = 1004.64_wp, sigma_sb = 5.670374419e-8_wp
    real(wp), parameter, public :: pi = 3.14159265358979323846_wp, diffusivity = 1.66_wp, p_ref = 101325.0_wp
    real(wp), parameter, public :: seconds_per_day = 86400.0_wp
    real(wp), parameter :: cloud_ssa = 0.999_wp, cloud_asym = 0.85_wp
    integer, parameter, public :: n_gas = 3   ! h2o, co2, o3

    !> The gas-optics tables.
    type, public :: gas_optics
        integer :: nlw = 0, nsw = 0, ng = 0, np = 0, nt = 0
        real(wp), allocatable :: lnp(:), t(:), gw(:)       ! table axes (ln Pa, K); g-interval widths
        real(wp), allocatable :: klw(:, :, :, :)           ! (nlw*ng, np, nt, n_gas) m2 kg-1
        real(wp), allocatable :: ksw(:, :, :, :)           ! (nsw*ng, np, nt, n_gas)
        real(wp), allocatable :: cont(:)                   ! (nlw) H2O self-continuum, m2 kg-1 at e = 1 hPa, 296 K
        real(wp), allocatable :: planck(:, :)              ! (0:300, nlw) band Planck radiance at 100..400 K
        real(wp), allocatable :: solar_frac(:), tau_rayleigh(:)   ! (nsw)
    contains
        procedure :: read => optics_read
        procedure :: n_gpoints
    end type

    !> One column's fluxes (interfaces 0:nlay) and heating rates (layers).
    type, public :: column_fluxes
        real(wp), allocatable :: sw_up(:), sw_dn(:), lw_up(:), lw_dn(:), hr_sw(:), hr_lw(:)
    contains
        procedure :: init => fluxes_init
    end type

    public :: rad_column, lw_solve, sw_solve, heating_rates, surface_lw_up

contains

    subroutine optics_read(self, path, ok, why)
        class(gas_optics), intent(inout) :: self
        character(len=*), intent(in) :: path
        logical, intent(out) :: ok
        character(len=*), intent(out) :: why
        integer :: u, ios, b, m, n
        real(wp) :: wn(2), p_tab(64)
        character(len=200) :: comment
        ok = .false.
        open (newunit=u, file=path, status='old', action='read', iostat=ios)
        if (ios /= 0) then
            why = 'cannot open ' // trim(path) // ' (make_tables.py writes it)'
            return
        end if
        read (u, '(a)', iostat=ios) comment
        read (u, *, iostat=ios) self%nlw, self%nsw, self%ng, self%np, self%nt
        if (ios /= 0 .or. self%np > 64 .or. min(self%nlw, self%nsw, self%ng, self%np, self%nt) < 1) then
            why = 'bad header in ' // trim(path)
            close (u)
            return
        end if
        n = self%ng
        allocate (self%lnp(self%np), self%t(self%nt), self%gw(n), self%cont(self%nlw), self%planck(0:300, self%nlw))
        allocate (self%klw(self%nlw * n, self%np, self%nt, n_gas), self%ksw(self%nsw * n, self%np, self%nt, n_gas))
        allocate (self%solar_frac(self%nsw), self%tau_rayleigh(self%nsw))
        read (u, *, iostat=ios) p_tab(1:self%np)
        self%lnp = log(p_tab(1:self%np))
        if (ios == 0) read (u, *, iostat=ios) self%t
        if (ios == 0) read (u, *, iostat=ios) self%gw
        do b = 1, self%nlw
            if (ios == 0) read (u, *, iostat=ios) wn, self%cont(b)
            do m = 1, n_gas
                if (ios == 0) read (u, *, iostat=ios) self%klw((b - 1) * n + 1:b * n, :, :, m)
            end do
            if (ios == 0) read (u, *, iostat=ios) self%planck(:, b)
        end do
        do b = 1, self%nsw
            if (ios == 0) read (u, *, iostat=ios) wn, self%solar_frac(b), self%tau_rayleigh(b)
            do m = 1, n_gas
                if (ios == 0) read (u, *, iostat=ios) self%ksw((b - 1) * n + 1:b * n, :, :, m)
            end do
        end do
        close (u)
        if (ios /= 0) then
            why = 'truncated or malformed ' // trim(path)
            return
        end if
        ok = .true.
        why = ''
    end subroutine

    integer function n_gpoints(self)
        class(gas_optics), intent(in) :: self
        n_gpoints = (self%nlw + self%nsw) * self%ng
    end function

    subroutine fluxes_init(self, nlay)
        class(column_fluxes), intent(inout) :: self
        integer, intent(in) :: nlay
        if (allocated(self%sw_up)) then
            if (size(self%hr_sw) == nlay) return
            deallocate (self%sw_up, self%sw_dn, self%lw_up, self%lw_dn, self%hr_sw, self%hr_lw)
        end if
        allocate (self%sw_up(0:nlay), self%sw_dn(0:nlay), self%lw_up(0:nlay), self%lw_dn(0:nlay))
        allocate (self%hr_sw(nlay), self%hr_lw(nlay))
    end subroutine

    !> The whole scheme on one column. p_half(0:nlay) Pa (p_half(0) may be 0); t(nlay), t_half(0:nlay) K;
    !> q, o3 (nlay) and co2 mass mixing ratios (kg/kg); s_toa: solar flux through a plane normal to the
    !> beam at the top (W m-2), mu0 the cosine of the zenith angle (no sunlight for mu0 <= 0); optional
    !> grey cloud optical depths per layer (shortwave, scattering; longwave, absorbing).
    subroutine rad_column(opt, nlay, p_half, t, t_half, q, o3, co2, t_sfc, albedo, emissivity, mu0, s_toa, f, &
                          cloud_tau_sw, cloud_tau_lw)
        type(gas_optics), intent(in) :: opt
        integer, intent(in) :: nlay
        real(wp), intent(in) :: p_half(0:nlay), t(nlay), t_half(0:nlay), q(nlay), o3(nlay), co2
        real(wp), intent(in) :: t_sfc, albedo, emissivity, mu0, s_toa
        type(column_fluxes), intent(inout) :: f
        real(wp), intent(in), optional :: cloud_tau_sw(nlay), cloud_tau_lw(nlay)
        real(wp) :: tau_lw(opt%nlw * opt%ng, nlay), tau_sw(opt%nsw * opt%ng, nlay)
        real(wp) :: ssa(opt%nsw * opt%ng, nlay), asym(opt%nsw * opt%ng, nlay)
        real(wp) :: b_lev(opt%nlw * opt%ng, 0:nlay), b_sfc(opt%nlw * opt%ng), toa(opt%nsw * opt%ng)
        real(wp) :: u(n_gas), w(4), dp, e_h2o, tr, ts, sc
        integer :: k, ip, it, b, g0, n, gl
        n = opt%ng
        call f%init(nlay)
        do k = 1, nlay
            dp = p_half(k) - p_half(k - 1)
            u = [q(k), co2, o3(k)] * dp / grav                           ! absorber amounts, kg m-2
            call table_weights(opt, 0.5_wp * (p_half(k - 1) + p_half(k)), t(k), ip, it, w)
            ! k(g) = sum over gases of u_m * (bilinear interpolation of k_m in ln p and T)
            tau_lw(:, k) = u(1) * (w(1) * opt%klw(:, ip, it, 1) + w(2) * opt%klw(:, ip + 1, it, 1) + &
                                   w(3) * opt%klw(:, ip, it + 1, 1) + w(4) * opt%klw(:, ip + 1, it + 1, 1)) &
                         + u(2) * (w(1) * opt%klw(:, ip, it, 2) + w(2) * opt%klw(:, ip + 1, it, 2) + &
                                   w(3) * opt%klw(:, ip, it + 1, 2) + w(4) * opt%klw(:, ip + 1, it + 1, 2)) &
                         + u(3) * (w(1) * opt%klw(:, ip, it, 3) + w(2) * opt%klw(:, ip + 1, it, 3) + &
                                   w(3) * opt%klw(:, ip, it + 1, 3) + w(4) * opt%klw(:, ip + 1, it + 1, 3))
            ! water-vapour self-continuum: k = c_b (e / 1 hPa) (296 K / T)^4
            e_h2o = q(k) * 0.5_wp * (p_half(k - 1) + p_half(k)) / (0.622_wp + 0.378_wp * q(k))
            sc = u(1) * (e_h2o / 100.0_wp) * (296.0_wp / t(k))**4
            do b = 1, opt%nlw
                g0 = (b - 1) * n
                tau_lw(g0 + 1:g0 + n, k) = tau_lw(g0 + 1:g0 + n, k) + sc * opt%cont(b)
            end do
            if (present(cloud_tau_lw)) tau_lw(:, k) = tau_lw(:, k) + cloud_tau_lw(k)
            if (mu0 > 0) then
                tau_sw(:, k) = u(1) * (w(1) * opt%ksw(:, ip, it, 1) + w(2) * opt%ksw(:, ip + 1, it, 1) + &
                                       w(3) * opt%ksw(:, ip, it + 1, 1) + w(4) * opt%ksw(:, ip + 1, it + 1, 1)) &
                             + u(2) * (w(1) * opt%ksw(:, ip, it, 2) + w(2) * opt%ksw(:, ip + 1, it, 2) + &
                                       w(3) * opt%ksw(:, ip, it + 1, 2) + w(4) * opt%ksw(:, ip + 1, it + 1, 2)) &
                             + u(3) * (w(1) * opt%ksw(:, ip, it, 3) + w(2) * opt%ksw(:, ip + 1, it, 3) + &
                                       w(3) * opt%ksw(:, ip, it + 1, 3) + w(4) * opt%ksw(:, ip + 1, it + 1, 3))
                ! + Rayleigh (conservative, g = 0) + cloud (ssa 0.999, g 0.85)
                do b = 1, opt%nsw
                    g0 = (b - 1) * n
                    tr = opt%tau_rayleigh(b) * dp / p_ref
                    sc = 0
                    if (present(cloud_tau_sw)) sc = cloud_tau_sw(k)
                    tau_sw(g0 + 1:g0 + n, k) = tau_sw(g0 + 1:g0 + n, k) + tr + sc
                    ssa(g0 + 1:g0 + n, k) = (tr + cloud_ssa * sc) / max(tau_sw(g0 + 1:g0 + n, k), tiny(1.0_wp))
                    asym(g0 + 1:g0 + n, k) = cloud_asym * cloud_ssa * sc / max(tr + cloud_ssa * sc, tiny(1.0_wp))
                end do
            end if
        end do
        ! Planck radiance of each g-point: the band's, times the g-interval width (fractions uniform in g)
        do b = 1, opt%nlw
            g0 = (b - 1) * n
            do k = 0, nlay
                tr = band_planck(opt, b, t_half(k))
                b_lev(g0 + 1:g0 + n, k) = tr * opt%gw
            end do
            ts = band_planck(opt, b, t_sfc)
            b_sfc(g0 + 1:g0 + n) = ts * opt%gw
        end do
        call lw_solve(nlay, opt%nlw * n, tau_lw, b_lev, b_sfc, emissivity, f%lw_up, f%lw_dn)
        if (mu0 > 0) then
            do b = 1, opt%nsw
                g0 = (b - 1) * n
                toa(g0 + 1:g0 + n) = s_toa * opt%solar_frac(b) * opt%gw
            end do
            gl = opt%nsw * n
            call sw_solve(nlay, gl, tau_sw, ssa, asym, mu0, toa, albedo, f%sw_up, f%sw_dn)
        else
            f%sw_up = 0
            f%sw_dn = 0
        end if
        call heating_rates(nlay, p_half, f%sw_dn - f%sw_up, f%hr_sw)
        call heating_rates(nlay, p_half, f%lw_dn - f%lw_up, f%hr_lw)
    end subroutine

    !> The upward longwave flux at the surface, as rad_column computes it: emission e pi sum_b B_b(t_sfc)
    !> plus the reflected part (1 - e) of the downward flux.
    pure real(wp) function surface_lw_up(opt, t_sfc, emissivity, lw_dn)
        type(gas_optics), intent(in) :: opt
        real(wp), intent(in) :: t_sfc, emissivity, lw_dn
        integer :: b
        surface_lw_up = 0
        do b = 1, opt%nlw
            surface_lw_up = surface_lw_up + band_planck(opt, b, t_sfc) * sum(opt%gw)
        end do
        surface_lw_up = emissivity * pi * surface_lw_up + (1 - emissivity) * lw_dn
    end function

    !> Bilinear interpolation weights in (ln p, T), clamped to the table.
    pure subroutine table_weights(opt, p, t, ip, it, w)
        type(gas_optics), intent(in) :: opt
        real(wp), intent(in) :: p, t
        integer, intent(out) :: ip, it
        real(wp), intent(out) :: w(4)
        real(wp) :: x, fp, ft
        x = log(max(p, 1.0_wp))
        ip = 1
        do while (ip < opt%np - 1 .and. x > opt%lnp(ip + 1))
            ip = ip + 1
        end do
        fp = min(1.0_wp, max(0.0_wp, (x - opt%lnp(ip)) / (opt%lnp(ip + 1) - opt%lnp(ip))))
        it = 1
        do while (it < opt%nt - 1 .and. t > opt%t(it + 1))
            it = it + 1
        end do
        ft = min(1.0_wp, max(0.0_wp, (t - opt%t(it)) / (opt%t(it + 1) - opt%t(it))))
        w = [(1 - fp) * (1 - ft), fp * (1 - ft), (1 - fp) * ft, fp * ft]
    end subroutine

    !> Band-integrated Planck radiance (W m-2 sr-1), linear in the 1 K table (clamped to 100..400 K).
    pure real(wp) function band_planck(opt, b, t)
        type(gas_optics), intent(in) :: opt
        integer, intent(in) :: b
        real(wp), intent(in) :: t
        real(wp) :: x
        integer :: i
        x = min(399.999_wp, max(100.0_wp, t)) - 100.0_wp
        i = int(x)
        band_planck = opt%planck(i, b) + (x - i) * (opt%planck(i + 1, b) - opt%planck(i, b))
    end function

    !> Longwave: non-scattering two-stream, diffusivity D. tau(g, k): vertical optical depth of layer k;
    !> b_lev(g, 0:nlay) Planck radiance at the interfaces (the source is linear in optical depth inside a
    !> layer); b_sfc(g); emissivity e (reflectivity 1 - e). Fluxes summed over g.
    pure subroutine lw_solve(nlay, ng, tau, b_lev, b_sfc, emissivity, f_up, f_dn)
        integer, intent(in) :: nlay, ng
        real(wp), intent(in) :: tau(ng, nlay), b_lev(ng, 0:nlay), b_sfc(ng), emissivity
        real(wp), intent(out) :: f_up(0:nlay), f_dn(0:nlay)
        real(wp) :: trans(ng, nlay), lin(ng, nlay), rad(ng), d
        integer :: k, g
        do k = 1, nlay
            do g = 1, ng
                d = diffusivity * tau(g, k)
                trans(g, k) = exp(-d)
                if (d > 1e-3_wp) then
                    lin(g, k) = (1 - (1 + d) * trans(g, k)) / d        ! int_0^d (1 - s/d) e^-s ds ...
                else
                    lin(g, k) = d * (0.5_wp - d * (1.0_wp / 3 - d * 0.125_wp))
                end if
            end do
        end do
        rad = 0
        f_dn(0) = 0
        do k = 1, nlay      ! I_out = I_in T + B_out (1 - T) - (B_out - B_in) lin
            rad = rad * trans(:, k) + b_lev(:, k) * (1 - trans(:, k)) - (b_lev(:, k) - b_lev(:, k - 1)) * lin(:, k)
            f_dn(k) = pi * sum(rad)
        end do
        rad = emissivity * b_sfc + (1 - emissivity) * rad
        f_up(nlay) = pi * sum(rad)
        do k = nlay, 1, -1
            rad = rad * trans(:, k) + b_lev(:, k - 1) * (1 - trans(:, k)) - (b_lev(:, k - 1) - b_lev(:, k)) * lin(:, k)
            f_up(k - 1) = pi * sum(rad)
        end do
    end subroutine

    !> Shortwave: two-stream with delta-Eddington scaling and the Zdunkowski (PIFM) coefficients, layers
    !> combined by the adding method. tau, ssa, asym (g, k); toa(g): direct flux through a plane normal to
    !> the beam at the top; the surface reflects direct and diffuse light with the same albedo.
    pure subroutine sw_solve(nlay, ng, tau, ssa, asym, mu0, toa, albedo, f_up, f_dn)
        integer, intent(in) :: nlay, ng
        real(wp), intent(in) :: tau(ng, nlay), ssa(ng, nlay), asym(ng, nlay), mu0, toa(ng), albedo
        real(wp), intent(out) :: f_up(0:nlay), f_dn(0:nlay)
        real(wp), dimension(ng, nlay) :: r_dif, t_dif, r_dir, t_dir, t_dd
        real(wp), dimension(ng, 0:nlay) :: direct, alb, src, diffuse, up
        real(wp) :: od, om, gg, f, g1, g2, g3, g4, kk, e, e2, k2e, fac, km, omk, a1, a2, inv
        integer :: k, g
        do k = 1, nlay
            do g = 1, ng
                f = asym(g, k)**2                                       ! delta scaling
                od = tau(g, k) * (1 - ssa(g, k) * f)
                om = ssa(g, k) * (1 - f) / (1 - ssa(g, k) * f)
                gg = asym(g, k) / (1 + asym(g, k))
                g1 = (8 - om * (5 + 3 * gg)) * 0.25_wp
                g2 = 3 * om * (1 - gg) * 0.25_wp
                g3 = (2 - 3 * mu0 * gg) * 0.25_wp
                g4 = 1 - g3
                kk = sqrt(max((g1 - g2) * (g1 + g2), 1e-12_wp))
                e = exp(-kk * od)
                e2 = e * e
                k2e = 2 * kk * e
                fac = 1 / (kk + g1 + (kk - g1) * e2)
                r_dif(g, k) = g2 * (1 - e2) * fac
                t_dif(g, k) = k2e * fac
                t_dd(g, k) = exp(-od / mu0)
                km = kk * mu0
                omk = 1 - km * km
                if (abs(omk) < 1e-12_wp) omk = sign(1e-12_wp, omk)
                a1 = g1 * g4 + g2 * g3
                a2 = g1 * g3 + g2 * g4
                r_dir(g, k) = (om * fac / omk) * ((1 - km) * (a2 + kk * g3) - (1 + km) * (a2 - kk * g3) * e2 &
                              - k2e * (g3 - a2 * mu0) * t_dd(g, k))
                t_dir(g, k) = -(om * fac / omk) * (t_dd(g, k) * (1 + km) * (a1 + kk * g4) &
                              - t_dd(g, k) * (1 - km) * (a1 - kk * g4) * e2 - k2e * (g4 + a1 * mu0))
                r_dir(g, k) = max(0.0_wp, min(r_dir(g, k), 1 - t_dd(g, k)))
                t_dir(g, k) = max(0.0_wp, min(t_dir(g, k), 1 - t_dd(g, k) - r_dir(g, k)))
            end do
        end do
        direct(:, 0) = toa * mu0
        do k = 1, nlay
            direct(:, k) = direct(:, k - 1) * t_dd(:, k)
        end do
        alb(:, nlay) = albedo                      ! up = alb * diffuse down + src, at each interface
        src(:, nlay) = albedo * direct(:, nlay)
        do k = nlay, 1, -1
            do g = 1, ng
                inv = 1 / (1 - alb(g, k) * r_dif(g, k))
                alb(g, k - 1) = r_dif(g, k) + t_dif(g, k)**2 * alb(g, k) * inv
                src(g, k - 1) = r_dir(g, k) * direct(g, k - 1) + &
                                t_dif(g, k) * (alb(g, k) * t_dir(g, k) * direct(g, k - 1) + src(g, k)) * inv
            end do
        end do
        diffuse(:, 0) = 0
        up(:, 0) = src(:, 0)
        do k = 1, nlay
            do g = 1, ng
                diffuse(g, k) = (t_dif(g, k) * diffuse(g, k - 1) + r_dif(g, k) * src(g, k) + t_dir(g, k) * direct(g, k - 1)) &
                                / (1 - alb(g, k) * r_dif(g, k))
                up(g, k) = alb(g, k) * diffuse(g, k) + src(g, k)
            end do
        end do
        do k = 0, nlay
            f_up(k) = sum(up(:, k))
            f_dn(k) = sum(direct(:, k)) + sum(diffuse(:, k))
        end do
    end subroutine

    !> Heating rate of each layer (K day-1) from the net downward flux at the interfaces.
    pure subroutine heating_rates(nlay, p_half, f_net, hr)
        integer, intent(in) :: nlay
        real(wp), intent(in) :: p_half(0:nlay), f_net(0:nlay)
        real(wp), intent(out) :: hr(nlay)
        integer :: k
        do k = 1, nlay
            hr(k) = grav / cp_air * (f_net(k - 1) - f_net(k)) / (p_half(k) - p_half(k - 1)) * seconds_per_day
        end do
    end subroutine

end module rad_scheme
