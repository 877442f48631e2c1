! The porting guide of docs/FORTRAN.md ("Porting a parameterization"): the physics call
! `call convect(t, q, dt, dtdt, dqdt)` backed by InLoop, with the physical scheme as fall-back. The lines
! between the README markers are in docs/FORTRAN.md verbatim; check_porting.f90 runs it (suite examples).
module convection_nn
! README: begin
use inloop
use, intrinsic :: iso_fortran_env, only: real64
use, intrinsic :: ieee_arithmetic, only: ieee_is_finite
implicit none
private
public :: convect_init, convect, convect_physics
type(inloop_model), save :: net                 ! loaded once, used every time step
logical, save :: use_nn = .false.
! Normalisation of the training data (inputs: K and g/kg; output: heating in K/day)
real(real64), parameter :: t_mean = 250, t_std = 20, q_mean = 5, q_std = 4, heat_std = 2
real(real64), parameter :: cp = 1004.64_real64, lv = 2.501e6_real64   ! J/(kg K), J/kg
contains
subroutine convect_init(path, comm)             ! at start-up; comm: collective load (rank 0 reads)
    character(len=*), intent(in) :: path
    integer, intent(in), optional :: comm
    integer :: ierr
    character(len=256) :: msg = ''              ! errmsg is written only on failure
    call net%load(path, comm=comm, stat=ierr, errmsg=msg)
    use_nn = ierr == INLOOP_OK
    if (.not. use_nn) print '(2a)', 'convection: physical scheme: ', trim(msg)
end subroutine
! Same interface as the scheme: t(nlev, ncol) in K, q(nlev, ncol) in kg/kg, dt in s; tendencies per s.
subroutine convect(t, q, dt, dtdt, dqdt)
    real(real64), intent(in) :: t(:,:), q(:,:), dt
    real(real64), intent(out) :: dtdt(:,:), dqdt(:,:)
    real(real64) :: x(2 * size(t, 1), size(t, 2)), y(size(t, 1), size(t, 2))
    integer :: nlev, ierr
    nlev = size(t, 1)
    if (use_nn) then                             ! one column per network sample: x(features, columns)
        x(1:nlev, :) = (t - t_mean) / t_std
        x(nlev + 1:, :) = (1000 * q - q_mean) / q_std      ! the network was trained on g/kg
        call net%forward(x, y, stat=ierr)        ! a wrong shape or a bad model: ierr /= 0, y untouched
        if (ierr == INLOOP_OK .and. all(ieee_is_finite(y))) then   ! range flags come with issue 15
            dtdt = y * heat_std / 86400          ! K/day -> K/s
            dqdt = -cp / lv * dtdt               ! latent heating dries the column: cp dT + L dq = 0
            return
        end if
    end if
    call convect_physics(t, q, dt, dtdt, dqdt)   ! the fall-back: the physical scheme itself
end subroutine
! README: end
! A stand-in for the physical scheme: relaxation of T towards a moist adiabat-like profile over 2 h.
subroutine convect_physics(t, q, dt, dtdt, dqdt)
    real(real64), intent(in) :: t(:,:), q(:,:), dt
    real(real64), intent(out) :: dtdt(:,:), dqdt(:,:)
    real(real64), parameter :: tau = 7200
    integer :: k
    do k = 1, size(t, 1)
        dtdt(k, :) = (t_mean + 30 - 6 * k - t(k, :)) / max(tau, dt)
    end do
    dqdt = -cp / lv * dtdt * merge(1.0_real64, 0.0_real64, q > 0)
end subroutine
end module convection_nn
