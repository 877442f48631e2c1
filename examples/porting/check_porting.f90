! Runs the porting guide (convection_nn.f90) against Tests/fixtures/mlp_medium (20 inputs = T and q on
! 10 levels, 10 outputs = the heating): the network path against the fixture's NumPy reference outputs,
! the fall-back to the physical scheme for a wrong-shaped call and for a missing model file.
! ./check_porting Tests/fixtures/mlp_medium   (ends "N passed, M failed")
program check_porting
use convection_nn
use, intrinsic :: iso_fortran_env, only: int64, real64
implicit none
character(len=512) :: base
integer(int64) :: n(3)
integer :: u, passed = 0, failed = 0
real(real64), allocatable :: x(:,:), y(:,:), t(:,:), q(:,:), dtdt(:,:), dqdt(:,:), pt(:,:), pq(:,:)
real(real64), parameter :: dt = 900
real(real64) :: err
call get_command_argument(1, base)
open (newunit=u, file=trim(base) // '.io.bin', access='stream', status='old')
read (u) n
allocate (x(n(1), n(3)), y(n(2), n(3)))
read (u) x, y
close (u)
! the physical state the fixture's normalised inputs stand for
t = x(1:10, :) * 20 + 250
q = (x(11:20, :) * 4 + 5) / 1000
allocate (dtdt, dqdt, pt, pq, mold=t)

call convect_init(trim(base) // '.safetensors')
call convect(t, q, dt, dtdt, dqdt)
err = maxval(abs(dtdt * 86400 / 2 - y)) / maxval(abs(y))
call check('network path equals the NumPy reference (relative error < 1e-5)', err < 1e-5)
call check('moistening from enthalpy conservation', maxval(abs(1004.64_real64 * dtdt + 2.501e6_real64 * dqdt)) < 1e-12)
! a wrong-shaped call (9 levels: 18 features, the network takes 20) falls back to the scheme
call convect(t(1:9, :), q(1:9, :), dt, dtdt(1:9, :), dqdt(1:9, :))
call convect_physics(t(1:9, :), q(1:9, :), dt, pt(1:9, :), pq(1:9, :))
call check('wrong shape: the physical scheme', same(dtdt(1:9, :), pt(1:9, :)) .and. same(dqdt(1:9, :), pq(1:9, :)))
! a missing model: the scheme from the start
call convect_init(trim(base) // '.does-not-exist')
call convect(t, q, dt, dtdt, dqdt)
call convect_physics(t, q, dt, pt, pq)
call check('missing model file: the physical scheme', same(dtdt, pt) .and. same(dqdt, pq))
print '(i0, a, i0, a)', passed, ' passed, ', failed, ' failed'
if (failed > 0) error stop 1
contains
logical function same(a, b)   ! bitwise equal
    real(real64), intent(in) :: a(:,:), b(:,:)
    same = all(transfer(a, 0_int64, size(a)) == transfer(b, 0_int64, size(b)))
end function
subroutine check(what, ok)
    character(len=*), intent(in) :: what
    logical, intent(in) :: ok
    if (ok) then
        passed = passed + 1
        print '(2a)', 'PASS porting/', what
    else
        failed = failed + 1
        print '(2a)', 'FAIL porting/', what
    end if
end subroutine
end program check_porting
