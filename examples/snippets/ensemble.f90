! README snippet "How certain is the prediction" (compiled and run by the tests with the fixtures of
! Tests/fixtures/make_ensemble.py as member_1..3.safetensors and dropout_net.onnx): an ensemble of three
! trained networks in one handle, and MC-dropout on a network with dropout, each giving the mean and
! the spread per output value.
program ensemble
use inloop
use, intrinsic :: iso_fortran_env, only: real64, int64
implicit none
type(inloop_model) :: ens, net
real(real64), allocatable :: x(:,:), mean(:,:), spread(:,:), xd(:,:), md(:,:), sd(:,:)
integer :: ncol
ncol = 16
! README: begin
call ens%load_ensemble([character(len=32) :: 'member_1.safetensors', 'member_2.safetensors', &
                        'member_3.safetensors'])          ! one handle, members run batched
allocate (x(ens%input_size(), ncol), mean(ens%output_size(), ncol), spread(ens%output_size(), ncol))
call random_number(x)
call ens%forward(x, mean, spread)          ! mean and standard deviation over the members, per value

call net%load('dropout_net.onnx')
call net%set_mc_dropout(100, 2026_int64)   ! 100 samples per call, dropout active, seeded: reproducible
! README: end
allocate (xd(net%input_size(), ncol), md(net%output_size(), ncol), sd(net%output_size(), ncol))
call random_number(xd)
call net%forward(xd, md, sd)
print '(a,es12.4,a,es12.4)', 'ensemble: mean ', mean(1, 1), ' spread ', spread(1, 1)
print '(a,es12.4,a,es12.4)', 'mc-dropout: mean ', md(1, 1), ' spread ', sd(1, 1)
end program ensemble
