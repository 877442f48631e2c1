! README snippet "Several inputs or outputs" (compiled by the tests; the model with inputs x1 (N,3,4),
! x2 (N,4) and outputs y1 (N,3,5), y2 (N,4,4) is the path given as argument).
program run_multi
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
type(inloop_model) :: net
integer, parameter :: ncol = 2
integer :: ierr
character(len=256) :: msg = '', path = 'two_inputs.onnx'
if (command_argument_count() > 0) call get_command_argument(1, path)
call net%load(path)
call run_it()
contains
subroutine run_it()
! README: begin
real(real64), allocatable, target :: x1(:,:,:), x2(:,:), y1(:,:,:), y2(:,:,:)
allocate (x1(4, 3, ncol), x2(4, ncol), y1(5, 3, ncol), y2(4, 4, ncol))   ! ONNX x1 (N,3,4), x2 (N,4) -> y1 (N,3,5), y2 (N,4,4)
call net%run([inloop_arg(x1), inloop_arg(x2)], [inloop_arg(y1), inloop_arg(y2)], stat=ierr, errmsg=msg)
! README: end
x1 = 0
x2 = 0
call net%run([inloop_arg(x1), inloop_arg(x2)], [inloop_arg(y1), inloop_arg(y2)], stat=ierr, errmsg=msg)
print '(i0, 1x, a)', ierr, trim(msg)
end subroutine
end program run_multi
