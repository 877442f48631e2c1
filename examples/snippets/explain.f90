! README snippet "Which inputs drive an output" (compiled and run by the tests with a fixture model as
! convection.safetensors): a saliency map and backwards optimisation of the input.
program explain
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
type(inloop_model) :: net
real(real64), allocatable :: x(:,:), s(:,:), y(:,:), lo(:), hi(:)
integer :: k
call net%load('convection.safetensors')
allocate (x(net%input_size(), 8), s(net%input_size(), 8), y(net%output_size(), 8))
allocate (lo(net%input_size()), hi(net%input_size()))
call random_number(x)
lo = 0
hi = 1
k = 1
! README: begin
call net%saliency(x, k, s)                 ! s(:, c) = d y_k / d x at column c
print *, 'most influential input of column 1: ', maxloc(abs(s(:, 1)))
call net%optimize_input(x, k, 50, 0.01d0, lo, hi, y)   ! the inputs in [lo, hi] that raise y_k
! README: end
print '(a,f0.4)', 'y_k after ascent, column 1: ', y(k, 1)
end program explain
