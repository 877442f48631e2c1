! README snippet "Training, checkpoints, derivatives" (compiled and run by the tests in a directory holding
! examples/lorenz96/training.yaml: 3 inputs, 1 output).
program training
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
integer, parameter :: nsteps = 5, ncol = 16
real(real64) :: x(3, ncol), y(1, ncol), dx(3, ncol), dy(1, ncol), loss
integer :: step
call random_number(x)
y(1, :) = sum(x, dim=1)
dx = 1
call train()
print '(a, es12.4)', 'loss', loss
print '(a, 4es12.4)', 'dy', dy(1, 1:4)
contains
subroutine train()
! README: begin
type(inloop_trainer) :: tr
type(inloop_model) :: net
call tr%create('training.yaml')              ! layers, loss, optimizer, schedule, seed (YAML or JSON)
do step = 1, nsteps
    call tr%step(x, y, loss)                 ! x(n_in, ncol), y(n_out, ncol); real(4) or real(8)
end do
call tr%save_checkpoint('run.ckpt')          ! exact restart: continuing gives bitwise the same weights
call tr%save_model('learned.safetensors')    ! a plain model for inloop_model_load
call tr%copy_model(net)                      ! or the current weights as a model, without a file
call net%jvp(x, dx, dy)                      ! tangent-linear, adjoint (net%vjp) and net%jacobian
! README: end
end subroutine
end program training
