! README snippet "Which inputs drive an output" (compiled and run by the tests with a fixture model as
! convection.safetensors): a saliency map, backwards optimisation of the input, Grad-CAM on a hidden
! layer and LRP (which this tanh network does not admit: a status and a message).
program explain
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
type(inloop_model) :: net
real(real64), allocatable :: x(:,:), s(:,:), y(:,:), lo(:), hi(:), cam(:,:)
integer :: k, ierr
character(len=200) :: msg
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
allocate (cam(net%gradcam_size('dense_3'), 8))
call net%gradcam(x, 'dense_3', k, cam)     ! Grad-CAM on the first hidden layer (one value per column)
call net%lrp(x, k, s, stat=ierr, errmsg=msg)   ! LRP relevance: ReLU networks
if (ierr /= INLOOP_OK) print '(a)', 'LRP: ' // trim(msg)
! README: end
print '(a,f0.4)', 'y_k after ascent, column 1: ', y(k, 1)
print '(a,f0.4)', 'Grad-CAM, column 1: ', cam(1, 1)
end program explain
