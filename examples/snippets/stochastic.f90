! README snippet "Stochastic parameterizations" (compiled and run by the tests with a fixture model as
! convection.safetensors): the model's last two input features become noise features, filled by the
! engine at each forward with N(0, 1) numbers keyed by (seed, step, global column, feature); this rank
! holds global columns first_col .. first_col + ncol - 1. The same step gives the same numbers (a
! restart passes the step), another step other numbers.
program stochastic
use inloop
use, intrinsic :: iso_fortran_env, only: real64, int64
implicit none
type(inloop_model) :: net
real(real64), allocatable :: x(:,:), y(:,:), y_again(:,:)
integer(int64) :: step, first_col
integer :: n_in, ncol
ncol = 64
first_col = 128                                  ! e.g. this rank's offset in the global column numbering
call net%load('convection.safetensors')
n_in = int(net%input_size())
allocate (x(n_in, ncol), y(net%output_size(), ncol), y_again(net%output_size(), ncol))
call random_number(x)
! README: begin
call net%set_reproducible(.true.)                ! outputs independent of the decomposition
call net%set_noise_input(n_in - 1, 2, seed=2026_int64)   ! features n_in-1 and n_in: engine-filled noise
do step = 1, 3
    call net%set_noise_step(step, first_col)     ! key: (seed, step, first_col + j - 1, feature)
    call net%forward(x, y)                       ! x(n_in-1:n_in, :) is ignored (and not changed)
end do
! README: end
call net%set_noise_step(3_int64, first_col)
call net%forward(x, y_again)
print '(a,l1,a,l1)', 'stochastic: the same step repeats bitwise: ', same(y, y_again), &
    '; another step differs: ', .not. same(y, step_output(2_int64))
contains
logical function same(a, b)
    real(real64), intent(in) :: a(:,:), b(:,:)
    same = all(transfer(a, 1_int64, size(a)) == transfer(b, 1_int64, size(b)))
end function
function step_output(s) result(ys)
    integer(int64), intent(in) :: s
    real(real64) :: ys(size(y, 1), size(y, 2))
    call net%set_noise_step(s, first_col)
    call net%forward(x, ys)
end function
end program stochastic
