! README snippet "Out-of-distribution columns" (compiled and run by the tests with a fixture model as
! convection.safetensors): ranges from training samples, a flag per column, the physical scheme where
! a column lies outside the range the network was trained on.
program range_guard
use inloop
use, intrinsic :: iso_fortran_env, only: real64, int32
implicit none
type(inloop_model) :: net
real(real64), allocatable :: x_train(:,:), x(:,:), y(:,:)
integer(int32), allocatable :: outside(:)
integer :: c, ncol
ncol = 64
call net%load('convection.safetensors')
allocate (x_train(net%input_size(), 1000), x(net%input_size(), ncol), y(net%output_size(), ncol), outside(ncol))
call random_number(x_train)
call random_number(x)
x(:, 1:ncol:8) = 2 * x(:, 1:ncol:8)                   ! every 8th column drifts out of the training range
! README: begin
call net%set_input_range_from_samples(x_train)   ! ONNX models; a model saved by a trainer has its ranges
call net%set_range_check(INLOOP_RANGE_FLAG_ONLY)
call net%forward(x, y)
call net%range_flags(outside)                    ! per column: 1 if any input is outside, else 0
do c = 1, ncol
    if (outside(c) > 0) y(:, c) = physical_scheme(x(:, c), size(y, 1))
end do
! README: end
print '(a,i0,a,i0,a)', 'out of range: ', count(outside > 0), ' of ', ncol, ' columns'
contains
function physical_scheme(xc, n) result(yc)
    real(real64), intent(in) :: xc(:)
    integer, intent(in) :: n
    real(real64) :: yc(n)
    yc = sum(xc) / size(xc)
end function
end program range_guard
