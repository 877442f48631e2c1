!> Data-parallel training steps allocate nothing in InLoop once warm (run with mpirun -np 2, through
!> node-shared memory and, with INLOOP_MPI_SHARED_MEMORY=0, through MPI collectives). Allocations
!> made inside the MPI library (temporary buffers of its collectives) are counted apart and shown.
!> Uneven local batches, gradient clipping and Adam, float32 and float64.
program test_mpi_alloc
    use mpi
    use inloop
    use, intrinsic :: iso_c_binding, only: c_long
    use, intrinsic :: iso_fortran_env, only: real32, real64
    implicit none
    interface
        subroutine test_count_start() bind(C)
        end subroutine
        function test_count_stop() bind(C) result(n)
            import c_long
            integer(c_long) :: n
        end function
        function test_count_mpi() bind(C) result(n)
            import c_long
            integer(c_long) :: n
        end function
    end interface
    character(len=*), parameter :: nl = new_line('a')
    type(inloop_trainer) :: tr
    real(real64), allocatable :: x(:,:), y(:,:)
    real(real64) :: loss
    integer :: ierr, rank, nb, i, stat, passed = 0, failed = 0, counts(2), p
    integer(c_long) :: n, nmpi
    character(len=16) :: precision(2) = [character(len=16) :: 'float32', 'float64']
    character(len=200) :: msg

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call inloop_set_num_threads(1)
    nb = 40 + 23 * rank
    allocate (x(5, nb), y(3, nb))
    call random_number(x)
    call random_number(y)
    do p = 1, 2
        call tr%create('model: {inputs: 5, layers: [{type: dense, out: 96, activation: leaky_relu}, ' // &
                       '{type: dense, out: 96, activation: tanh}, {type: dense, out: 3}]}' // nl // &
                       'optimizer: {type: adam, lr: 0.001, clip_norm: 0.5}' // nl // 'precision: ' // trim(precision(p)) // nl)
        call tr%set_communicator(MPI_COMM_WORLD, stat=stat, errmsg=msg)
        call require('set_communicator (' // trim(precision(p)) // ')', stat == INLOOP_OK, msg)
        do i = 1, 3
            call tr%step(x, y, loss)
        end do
        call test_count_start()
        do i = 1, 10
            call tr%step(x, y, loss, stat=stat)
        end do
        n = test_count_stop()
        nmpi = test_count_mpi()
        write (msg, '(i0,a,i0,a)') n, ' allocations by InLoop (', nmpi, ' inside MPI)'
        call check('10 data-parallel steps allocate nothing in InLoop (' // trim(precision(p)) // ')', &
                   n == 0 .and. stat == INLOOP_OK, msg)
        if (rank == 0) print '(a)', 'INFO ' // trim(precision(p)) // ': ' // trim(msg)
        call tr%free()
    end do

    counts = [passed, failed]
    call MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INTEGER, MPI_MAX, MPI_COMM_WORLD, ierr)
    if (rank == 0) print '(i0,a,i0,a)', counts(1), ' passed, ', counts(2), ' failed'
    call MPI_Finalize(ierr)
    if (counts(2) > 0) error stop 1
contains
    !> A set-up step: not counted when it works on every rank, a failure when not (collective).
    subroutine require(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        logical :: all_ok
        integer :: e
        call MPI_Allreduce(ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD, e)
        if (.not. all_ok) then
            failed = failed + 1
            if (.not. ok) print '(a,i0,a)', 'FAIL ' // name // ' (rank ', rank, '): ' // trim(detail)
        end if
    end subroutine

    subroutine check(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        logical :: all_ok
        integer :: e
        call MPI_Allreduce(ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD, e)
        if (all_ok) then
            passed = passed + 1
            if (rank == 0) print '(a)', 'PASS ' // name
        else
            failed = failed + 1
            if (.not. ok) print '(a,i0,a)', 'FAIL ' // name // ' (rank ', rank, '): ' // trim(detail)
        end if
    end subroutine
end program test_mpi_alloc
