! The `use mpi` form of mpi_basics_f08.f90 (README snippet "MPI"). Compiled by the tests.
program mpi_basics
use mpi
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
type(inloop_model) :: net
type(inloop_trainer) :: tr
real(real64), allocatable :: x_local(:,:), y_local(:,:)
real(real64) :: loss
integer :: comm, ierr
call MPI_Init(ierr)
comm = MPI_COMM_WORLD                         ! use mpi: the communicator is an integer
call net%load('convection.safetensors', comm=comm)   ! collective: rank 0 reads, broadcasts the bytes
call tr%create('training.yaml')
call tr%set_communicator(comm)                ! collective, data-parallel: rank 0's weights are broadcast
allocate (x_local(3, 5), y_local(1, 5))       ! each rank its own columns (any number, even 0)
call random_number(x_local)
y_local = 1
call tr%step(x_local, y_local, loss)          ! collective: averaged gradients, global loss
call MPI_Finalize(ierr)
end program mpi_basics
