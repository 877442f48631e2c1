!> Checks of the demo's radiation scheme (run by `make test`, suite radiation). Prints `N passed, M failed`.
!>
!>     rad_checks TABLES
!>
!> 1. Energy balance of the whole scheme (gases, Rayleigh, clouds): for SW and LW, TOA net flux = surface
!>    net flux + column absorption (sum of cp/g dp * heating rate), to round-off.
!> 2. Grey longwave limit: one grey absorber, Planck radiance linear in optical depth: the fluxes at every
!>    interface equal the analytic solution of the two-stream (diffusivity) equations.
!> 3. Grey shortwave limit: pure absorption: the direct beam follows Beer's law exactly, nothing goes up.
!> 4. Conservative scattering: nothing absorbed (TOA net = surface net; albedo 1: all light returns).
!> 5. Isothermal column over a black surface at the same temperature: the upward flux is pi B at every
!>    interface (Kirchhoff), and the column cools everywhere.
!> 6. Doubled CO2: the outgoing longwave radiation falls and the stratosphere cools.
program rad_checks
    use rad_scheme
    use column_model
    implicit none
    type(gas_optics) :: opt
    character(len=512) :: path
    character(len=300) :: why
    logical :: ok
    integer :: passed = 0, failed = 0

    if (command_argument_count() < 1) then
        print '(a)', 'usage: rad_checks TABLES'
        print '(a)', '0 passed, 1 failed'
        stop 1
    end if
    call get_command_argument(1, path)
    call opt%read(trim(path), ok, why)
    call check('gas-optics tables read', ok, trim(why))
    if (ok) then
        call check('100..250 g-points in all', opt%n_gpoints() >= 100 .and. opt%n_gpoints() <= 250)
        call energy_balance()
        call isothermal()
        call co2_doubling()
    end if
    call grey_longwave()
    call grey_shortwave()
    call conservative_scattering()
    print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) stop 1

contains

    subroutine check(name, cond, detail)
        character(len=*), intent(in) :: name
        logical, intent(in) :: cond
        character(len=*), intent(in), optional :: detail
        if (cond) then
            passed = passed + 1
            print '(a)', 'ok   ' // name
        else
            failed = failed + 1
            if (present(detail)) then
                print '(a)', 'FAIL ' // name // ': ' // detail
            else
                print '(a)', 'FAIL ' // name
            end if
        end if
    end subroutine

    function fmt(x) result(s)
        real(wp), intent(in) :: x
        character(len=16) :: s
        write (s, '(es12.4)') x
    end function

    !> A few model columns (warm/cold, sun high/low/absent, with and without grey clouds).
    subroutine energy_balance()
        type(column_set) :: c
        type(column_fluxes) :: f
        real(wp) :: t_half(0:60), cl_sw(60), cl_lw(60), err_sw, err_lw, err_up, toa, sfc, col, mu0, scale
        integer :: j, k, case
        call c%init(60, 4, 1, 7)
        err_sw = 0
        err_lw = 0
        err_up = 0
        scale = 0
        do case = 1, 3
            do j = 1, c%n
                t_half(0) = c%t(1, j)
                t_half(1:59) = 0.5_wp * (c%t(1:59, j) + c%t(2:60, j))
                t_half(60) = c%t(60, j)
                cl_sw = 0
                cl_lw = 0
                if (case >= 2) then            ! a grey cloud deck at layers 40..45
                    cl_sw(40:45) = 2
                    cl_lw(40:45) = 1
                end if
                mu0 = merge(-0.1_wp, c%mu0(j), case == 3)
                call rad_column(opt, 60, c%p_half, c%t(:, j), t_half, c%q(:, j), c%o3(:, j), co2_mmr, c%t_sfc(j), &
                                c%albedo(j), emissivity, mu0, s_toa, f, cl_sw, cl_lw)
                toa = f%sw_dn(0) - f%sw_up(0)
                sfc = f%sw_dn(60) - f%sw_up(60)
                col = sum([(cp_air / grav * (c%p_half(k) - c%p_half(k - 1)) * f%hr_sw(k) / seconds_per_day, k = 1, 60)])
                err_sw = max(err_sw, abs(toa - sfc - col))
                scale = max(scale, f%sw_dn(0), f%lw_up(60))
                toa = f%lw_dn(0) - f%lw_up(0)
                sfc = f%lw_dn(60) - f%lw_up(60)
                col = sum([(cp_air / grav * (c%p_half(k) - c%p_half(k - 1)) * f%hr_lw(k) / seconds_per_day, k = 1, 60)])
                err_lw = max(err_lw, abs(toa - sfc - col))
                err_up = max(err_up, abs(f%lw_up(60) - surface_lw_up(opt, c%t_sfc(j), emissivity, f%lw_dn(60))))
            end do
        end do
        call check('energy balance SW: TOA net = surface net + column absorption (max error ' // trim(fmt(err_sw)) // &
                   ' W/m2)', err_sw <= 1e-11_wp * scale)
        call check('energy balance LW: TOA net = surface net + column absorption (max error ' // trim(fmt(err_lw)) // &
                   ' W/m2)', err_lw <= 1e-11_wp * scale)
        call check('surface_lw_up (the column model''s surface emission) = the scheme''s upward LW flux at the surface', &
                   err_up <= 1e-12_wp * scale)
        call check('no sun (mu0 <= 0): no shortwave flux', maxval(abs(f%sw_dn)) + maxval(abs(f%sw_up)) <= 0)
    end subroutine

    !> Grey longwave: tau uniform in pressure (total tau_s), B = a + b tau (tau from the top), surface
    !> radiance b_s, black surface. Analytic solution with x = D tau, c = b / D:
    !>   F_dn(x) = pi [ (a + c x)(1 - e^-x) - c (1 - (1 + x) e^-x) ]
    !>   F_up(x) = pi [ b_s e^-L + (a + c x)(1 - e^-L) + c (1 - (1 + L) e^-L) ],  L = D tau_s - x
    subroutine grey_longwave()
        integer, parameter :: nl = 60
        real(wp) :: p_half(0:nl), tau(1, nl), b_lev(1, 0:nl), b_sfc(1), up(0:nl), dn(0:nl), tau_c(0:nl)
        real(wp) :: a, b, bs, x, l, cc, err, ref_up, ref_dn, tau_s
        real(wp), parameter :: tau_cases(3) = [0.3_wp, 2.0_wp, 12.0_wp], b_cases(3) = [0.0_wp, 30.0_wp, 8.0_wp]
        integer :: k, case
        do k = 0, nl
            p_half(k) = 1e5_wp * (real(k, wp) / nl)**1.5_wp
        end do
        err = 0
        do case = 1, 3
            tau_s = tau_cases(case)
            a = 40.0_wp
            b = b_cases(case)
            bs = a + b * tau_s + 5
            tau_c = tau_s * p_half / p_half(nl)
            tau(1, :) = tau_c(1:nl) - tau_c(0:nl - 1)
            b_lev(1, :) = a + b * tau_c
            b_sfc = bs
            call lw_solve(nl, 1, tau, b_lev, b_sfc, 1.0_wp, up, dn)
            cc = b / diffusivity
            do k = 0, nl
                x = diffusivity * tau_c(k)
                l = diffusivity * tau_s - x
                ref_dn = pi * ((a + cc * x) * (1 - exp(-x)) - cc * (1 - (1 + x) * exp(-x)))
                ref_up = pi * (bs * exp(-l) + (a + cc * x) * (1 - exp(-l)) + cc * (1 - (1 + l) * exp(-l)))
                err = max(err, abs(dn(k) - ref_dn) / (pi * bs), abs(up(k) - ref_up) / (pi * bs))
            end do
        end do
        call check('grey longwave limit = analytic solution at every interface (max relative error ' // &
                   trim(fmt(err)) // ')', err < 1e-12_wp)
    end subroutine

    !> Grey shortwave, pure absorption, black surface: F_dn(tau) = F0 mu0 exp(-tau/mu0), F_up = 0.
    subroutine grey_shortwave()
        integer, parameter :: nl = 60
        real(wp) :: tau(1, nl), ssa(1, nl), asym(1, nl), up(0:nl), dn(0:nl), tc, err, mu0
        integer :: k
        tau = 0.8_wp / nl
        ssa = 0
        asym = 0
        mu0 = 0.6_wp
        call sw_solve(nl, 1, tau, ssa, asym, mu0, [1000.0_wp], 0.0_wp, up, dn)
        err = 0
        do k = 0, nl
            tc = 0.8_wp * k / nl
            err = max(err, abs(dn(k) - 1000 * mu0 * exp(-tc / mu0)) / 1000, abs(up(k)) / 1000)
        end do
        call check('grey shortwave limit (absorption only) = Beer''s law (max relative error ' // trim(fmt(err)) // ')', &
                   err < 1e-12_wp)
    end subroutine

    !> ssa = 1: the column absorbs nothing. (The two-stream eigenvalue is floored at 1e-6 for ssa = 1,
    !> which leaks ~1e-6 of the flux per unit optical depth: the tolerance.)
    subroutine conservative_scattering()
        integer, parameter :: nl = 60
        real(wp) :: tau(1, nl), ssa(1, nl), asym(1, nl), up(0:nl), dn(0:nl), err1, err2
        tau = 5.0_wp / nl
        ssa = 1
        asym = 0.7_wp
        call sw_solve(nl, 1, tau, ssa, asym, 0.5_wp, [1000.0_wp], 0.3_wp, up, dn)
        err1 = abs((dn(0) - up(0)) - (dn(nl) - up(nl))) / 500
        call sw_solve(nl, 1, tau, ssa, asym, 0.5_wp, [1000.0_wp], 1.0_wp, up, dn)
        err2 = maxval(abs(dn - up)) / 500
        call check('conservative scattering: TOA net = surface net (relative error ' // trim(fmt(err1)) // ')', err1 < 1e-5_wp)
        call check('conservative scattering over a white surface: zero net flux everywhere (relative error ' // &
                   trim(fmt(err2)) // ')', err2 < 1e-5_wp)
    end subroutine

    !> Isothermal column (260 K) with moist air over a black surface at 260 K: the upward radiance is the
    !> Planck radiance everywhere (emission and absorption balance along the way up); the column only cools.
    subroutine isothermal()
        type(column_set) :: c
        type(column_fluxes) :: f
        real(wp) :: t_half(0:60), tt(60)
        call c%init(60, 1, 1, 3)
        tt = 260
        t_half = 260
        call rad_column(opt, 60, c%p_half, tt, t_half, c%q(:, 1), c%o3(:, 1), co2_mmr, 260.0_wp, 0.2_wp, 1.0_wp, &
                        0.5_wp, s_toa, f)
        call check('isothermal black column: upward flux the same at every interface (Kirchhoff; max deviation ' // &
                   trim(fmt(maxval(abs(f%lw_up - f%lw_up(60))))) // ' W/m2), cooling everywhere', &
                   maxval(abs(f%lw_up - f%lw_up(60))) < 1e-12_wp * f%lw_up(60) .and. all(f%hr_lw <= 0))
    end subroutine

    !> CO2 doubled: OLR falls and the upper stratosphere (layers above 10 hPa) cools more.
    subroutine co2_doubling()
        type(column_set) :: c
        type(column_fluxes) :: f1, f2
        real(wp) :: t_half(0:60)
        integer :: k
        call c%init(60, 1, 1, 5)
        t_half(0) = c%t(1, 1)
        t_half(1:59) = 0.5_wp * (c%t(1:59, 1) + c%t(2:60, 1))
        t_half(60) = c%t(60, 1)
        call rad_column(opt, 60, c%p_half, c%t(:, 1), t_half, c%q(:, 1), c%o3(:, 1), co2_mmr, c%t_sfc(1), 0.2_wp, &
                        emissivity, 0.5_wp, s_toa, f1)
        call rad_column(opt, 60, c%p_half, c%t(:, 1), t_half, c%q(:, 1), c%o3(:, 1), 2 * co2_mmr, c%t_sfc(1), 0.2_wp, &
                        emissivity, 0.5_wp, s_toa, f2)
        k = count(c%p_full < 1000.0_wp)
        call check('doubled CO2: OLR falls (' // trim(fmt(f1%lw_up(0))) // ' -> ' // trim(fmt(f2%lw_up(0))) // &
                   ' W/m2) and the stratosphere above 10 hPa cools more', &
                   f2%lw_up(0) < f1%lw_up(0) .and. sum(f2%hr_lw(1:k)) < sum(f1%hr_lw(1:k)))
    end subroutine

end program rad_checks
