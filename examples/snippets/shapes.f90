! README snippet "Shapes" (compiled by the tests; run where ../shared/models provides cnn2d.onnx:
! ./shapes DIR prints the shapes and one output).
program shapes
use inloop
use, intrinsic :: iso_fortran_env, only: real32
implicit none
integer, parameter :: ncol = 3
character(len=256) :: dir = '.'
if (command_argument_count() > 0) call get_command_argument(1, dir)
call run_cnn(trim(dir))
contains
subroutine run_cnn(dir)
character(len=*), intent(in) :: dir
! README: begin
type(inloop_model) :: cnn
real(real32), allocatable :: img(:,:,:,:), flux(:,:)
call cnn%load(dir // '/cnn2d.onnx')                ! ONNX input x (N, 2, 64, 64), output y (N, 1)
print *, cnn%input_shape(1), cnn%output_shape(1)   ! 64 64 2  1: per sample, Fortran order
allocate (img(64, 64, 2, ncol), flux(1, ncol))     ! img(:, :, c, j): channel c of image j
img = 0
call cnn%forward(img, flux)
! README: end
print *, flux
end subroutine
end program shapes
