! README snippet "Hard physical constraints" (compiled and run by the tests with convection.safetensors, a
! 20 -> 10 model: it prints the largest relative column-integral error and the smallest value).
program constraints
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
integer, parameter :: nlev = 10, ncol = 4
real(real64) :: dp_over_g(nlev)
real(real64), target :: x(20, ncol), colsum(1, ncol), q(nlev, ncol)
integer :: j
dp_over_g = [(50.0_real64 + 5 * j, j = 1, nlev)]
x = 0.5_real64
colsum = 0.5_real64 * sum(dp_over_g)            ! a column mean of 0.5
block
! README: begin
type(inloop_model) :: net
call net%load('convection.safetensors')
call net%add_constraint('conservation', dp_over_g)  ! sum(dp_over_g*q(:,j)) = colsum(1,j), to round-off
call net%add_constraint('mass_fixer', dp_over_g)    ! no negative q; the column integrals are kept
call net%run([inloop_arg(x), inloop_arg(colsum)], [inloop_arg(q)])   ! colsum: a new input
! README: end
print '(a, es10.2, a, es10.2)', 'max column error', maxval([(abs(sum(dp_over_g * q(:, j)) - colsum(1, j)) / &
      colsum(1, j), j = 1, ncol)]), '  min q', minval(q)
end block
end program constraints
