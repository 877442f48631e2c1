! README snippet "Doing the same in a real model", `use mpi_f08` form (online_training_mpi.f90 is the
! `use mpi` form). The lines between the README markers are in the README verbatim (tools/run_tests.py,
! suite examples: compiled with mpifort -Werror, run on 2 ranks with examples/lorenz96/training.yaml).
program online_training
! README: begin
use mpi_f08
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
type(inloop_trainer) :: tr
type(inloop_model)   :: net
real(real64), allocatable :: x(:,:), y(:,:), u(:,:)   ! x(n_features, n_columns), y and u(n_outputs, n_columns)
real(real64) :: state(3, 4), loss                     ! stands for the model state: this rank's 4 columns
integer :: comm, rank, step
integer, parameter :: nsteps = 20, train_every = 2, print_every = 10

call MPI_Init()
call MPI_Comm_rank(MPI_COMM_WORLD, rank)
comm = MPI_COMM_WORLD%MPI_VAL                    ! InLoop takes the integer handle (use mpi: comm = MPI_COMM_WORLD)
call random_number(state)

! -- online training, in the time loop of the run that knows the answer
call tr%create('training.yaml')                  ! network, normalisation, loss, optimizer, schedule, seed
call tr%set_communicator(comm)                   ! collective: data-parallel
do step = 1, nsteps
    call model_step(state)
    if (mod(step, train_every) == 0) then
        call columns(state, x, y)                ! this rank's inputs and targets (a replay buffer helps)
        call tr%step(x, y, loss)                 ! collective: gradients averaged over ranks, global loss
        if (rank == 0 .and. mod(step, print_every) == 0) print *, tr%step_count(), loss
    end if
end do
call tr%save_model('subgrid.safetensors')        ! collective; rank 0 writes

! -- the coarse model with the learned parameterization
call net%load('subgrid.safetensors', comm=comm)  ! collective: rank 0 reads and broadcasts
allocate (u(net%output_size(), size(state, 2)))
do step = 1, nsteps
    call features(state, x)                      ! all of this rank's columns
    call net%forward(x, u)                       ! one batched call per time step
    call dynamics_step(state, u)                 ! U held over the step, like any physics tendency
end do
call net%free()
call tr%free()                                   ! before MPI_Finalize: the trainer holds a duplicate of comm
call MPI_Finalize()
! README: end
contains
    ! Stand-ins for the model's own routines.
    subroutine model_step(s)
        real(real64), intent(inout) :: s(:,:)
        s = 0.9_real64 * s + 0.1_real64 * cshift(s, 1, dim=2)
    end subroutine
    subroutine columns(s, xs, ys)
        real(real64), intent(in) :: s(:,:)
        real(real64), allocatable, intent(out) :: xs(:,:), ys(:,:)
        xs = s
        ys = reshape(sum(s, dim=1), [1, size(s, 2)])
    end subroutine
    subroutine features(s, xs)
        real(real64), intent(in) :: s(:,:)
        real(real64), allocatable, intent(inout) :: xs(:,:)
        xs = s
    end subroutine
    subroutine dynamics_step(s, tend)
        real(real64), intent(inout) :: s(:,:)
        real(real64), intent(in) :: tend(:,:)
        s(1, :) = s(1, :) + 1.0e-3_real64 * tend(1, :)
    end subroutine
end program online_training
