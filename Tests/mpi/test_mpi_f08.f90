!> The communicator of `use mpi_f08` (type(MPI_Comm)) reaches InLoop through its %MPI_VAL:
!> rank-0 load + broadcast (the broadcast model computes bitwise what a local load does) and
!> data-parallel training with it (every rank reports the same global loss) (mpirun -np 2).
program test_mpi_f08
    use mpi_f08
    use inloop
    use, intrinsic :: iso_fortran_env, only: real64, int64
    implicit none
    type(MPI_Comm) :: comm
    type(inloop_model) :: net, local
    type(inloop_trainer) :: tr
    real(real64) :: x(20, 4), y(10, 4), y_local(10, 4), loss, lmax, lmin
    integer :: stat, rank, passed = 0, failed = 0, counts(2)
    character(len=300) :: msg
    character(len=512) :: path

    call MPI_Init()
    call MPI_Comm_dup(MPI_COMM_WORLD, comm)
    call MPI_Comm_rank(comm, rank)
    path = 'Tests/fixtures/mlp_medium.safetensors'
    if (command_argument_count() > 0) call get_command_argument(1, path)
    call net%load(path, stat=stat, errmsg=msg, comm=comm%MPI_VAL)
    call require('load with comm=comm%MPI_VAL', stat == INLOOP_OK, msg)
    call local%load(path, stat=stat, errmsg=msg)
    call require('load without a communicator', stat == INLOOP_OK, msg)
    x = 0.25_real64
    x(:, 2) = -0.5_real64
    x(3, 3) = 1.5_real64
    call net%forward(x, y, stat=stat, errmsg=msg)
    call require('forward of the broadcast model', stat == INLOOP_OK, msg)
    call local%forward(x, y_local, stat=stat, errmsg=msg)
    call require('forward of the local model', stat == INLOOP_OK, msg)
    call check('the broadcast model computes bitwise what a local load computes', &
               all(transfer(y, 1_int64, size(y)) == transfer(y_local, 1_int64, size(y_local))), 'outputs differ')
    call tr%create('model: {inputs: 20, layers: [{type: dense, out: 10}]}', stat=stat, errmsg=msg)
    call tr%set_communicator(comm%MPI_VAL, stat=stat, errmsg=msg)
    call require('set_communicator(comm%MPI_VAL)', stat == INLOOP_OK, msg)
    call tr%step(x(:, 1:rank + 1), y(:, 1:rank + 1), loss, stat=stat, errmsg=msg)
    call require('data-parallel step over an mpi_f08 communicator', stat == INLOOP_OK, msg)
    call MPI_Allreduce(loss, lmax, 1, MPI_DOUBLE_PRECISION, MPI_MAX, comm)
    call MPI_Allreduce(loss, lmin, 1, MPI_DOUBLE_PRECISION, MPI_MIN, comm)
    write (msg, '(a,es23.16,a,es23.16)') 'losses from ', lmin, ' to ', lmax
    call check('data-parallel step over an mpi_f08 communicator: every rank has the same global loss', &
               stat == INLOOP_OK .and. transfer(lmax, 1_int64) == transfer(lmin, 1_int64) .and. lmax > 0, msg)
    counts = [passed, failed]
    call MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INTEGER, MPI_MAX, comm)
    if (rank == 0) print '(i0,a,i0,a)', counts(1), ' passed, ', counts(2), ' failed'
    call tr%free()
    call MPI_Comm_free(comm)
    call MPI_Finalize()
    if (counts(2) > 0) error stop 1
contains
    !> A set-up step: not counted when it works, a failure when not.
    subroutine require(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        if (.not. ok) call check(name, ok, detail)
    end subroutine

    subroutine check(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        if (ok) then
            passed = passed + 1
            if (rank == 0) print '(a)', 'PASS ' // name
        else
            failed = failed + 1
            print '(a)', 'FAIL ' // name // ': ' // trim(detail)
        end if
    end subroutine
end program test_mpi_f08
