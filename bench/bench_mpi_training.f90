!> Data-parallel training throughput (make bench): Adam steps on column_mlp with a local batch of
!> 256 columns per rank, OpenBLAS at 1 thread per rank; prints samples/s over all ranks.
!> Run as: mpirun -np N bench_mpi_training MODELS_DIR [independent]
!> With `independent`, ranks train without exchanging gradients: the machine's ceiling for N ranks.
program bench_mpi_training
    use mpi
    use inloop
    use, intrinsic :: iso_fortran_env, only: real32, real64, int64
    implicit none
    integer, parameter :: nb = 256, warm = 3, steps = 30
    type(inloop_model) :: net
    type(inloop_trainer) :: tr
    real(real32), allocatable :: x(:,:), y(:,:)
    real(real64) :: t0, t1, best, loss
    integer :: ierr, rank, nranks, i, round
    character(len=512) :: dir, mode

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
    dir = 'build/models'
    if (command_argument_count() > 0) call get_command_argument(1, dir)
    mode = ''
    if (command_argument_count() > 1) call get_command_argument(2, mode)
    call inloop_set_num_threads(1)
    call net%load(trim(dir) // '/column_mlp.safetensors', comm=MPI_COMM_WORLD)
    call tr%create_from_model(net, 'optimizer: {type: adam, lr: 1.0e-5}')
    if (mode /= 'independent') call tr%set_communicator(MPI_COMM_WORLD)
    allocate (x(net%input_size(), nb), y(net%output_size(), nb))
    call random_number(x)
    call random_number(y)
    do i = 1, warm
        call tr%step(x, y, loss)
    end do
    best = huge(1.0_real64)
    do round = 1, 3
        call MPI_Barrier(MPI_COMM_WORLD, ierr)
        t0 = MPI_Wtime()
        do i = 1, steps
            call tr%step(x, y, loss)
        end do
        t1 = MPI_Wtime() - t0
        call MPI_Allreduce(MPI_IN_PLACE, t1, 1, MPI_DOUBLE_PRECISION, MPI_MAX, MPI_COMM_WORLD, ierr)
        best = min(best, t1)
    end do
    if (rank == 0) then
        print '(a,i0,a,f9.2,a,f10.0,a)', 'ranks ', nranks, ': ', 1e3 * best / steps, ' ms per step, ', &
            real(nranks * nb * steps, real64) / best, ' samples/s'
        print '(a,a,i0,a,es14.6)', 'RESULT mpi_training_', trim(mode), nranks, '_samples_per_s ', real(nranks * nb * steps, real64) / best
    end if
    call tr%free()
    call MPI_Finalize(ierr)
end program bench_mpi_training
