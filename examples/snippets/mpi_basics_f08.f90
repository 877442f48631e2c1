! README snippet "MPI", `use mpi_f08` form (mpi_basics_mpi.f90: the `use mpi` form). Compiled by the tests.
program mpi_basics
! README: begin
use mpi_f08
use inloop
use, intrinsic :: iso_fortran_env, only: real64
implicit none
type(inloop_model) :: net
type(inloop_trainer) :: tr
real(real64), allocatable :: x_local(:,:), y_local(:,:)
real(real64) :: loss
integer :: comm
call MPI_Init()
comm = MPI_COMM_WORLD%MPI_VAL                 ! InLoop's comm= is the integer handle (use mpi: comm = MPI_COMM_WORLD)
call net%load('convection.safetensors', comm=comm)   ! collective: rank 0 reads, broadcasts the bytes
call tr%create('training.yaml')
call tr%set_communicator(comm)                ! collective, data-parallel: rank 0's weights are broadcast
allocate (x_local(3, 5), y_local(1, 5))       ! each rank its own columns (any number, even 0)
call random_number(x_local)
y_local = 1
call tr%step(x_local, y_local, loss)          ! collective: averaged gradients, global loss
! README: end
call MPI_Finalize()
end program mpi_basics
