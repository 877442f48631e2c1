!> Collective calls fail together, from Fortran (issue 11, part 4): an argument error on one rank of a
!> collective call — a step whose y has one column fewer than x, x with a wrong number of rows, NaN, a
!> trainer that was never created — gives a status on every rank: the failing rank's own message there,
!> "rank r: <message>" on the others, and nobody waits for ever (run under `timeout`). Covers step (real32
!> and real64), save_checkpoint, save_model, set_communicator, load(comm=) and load_checkpoint(comm=).
!> Usage: mpirun -np N test_collective_f TMPDIR
program test_collective_f
    use mpi
    use inloop
    use, intrinsic :: iso_fortran_env, only: real32, real64, int64
    use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan
    implicit none
    type(inloop_trainer) :: tr, tr2, never, back
    type(inloop_model) :: net
    real(real64) :: x(2, 5), y(1, 5), x3(3, 5), loss, loss_lo, loss_hi
    real(real32) :: xs(2, 5), ys(1, 5)
    integer :: stat, rank, nranks, ierr, bad, k, passed = 0, failed = 0, i
    integer(int64) :: steps0, steps1
    character(len=400) :: msg
    character(len=300) :: tmp, ckpt, saved, missing

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
    tmp = '/tmp'
    if (command_argument_count() > 0) call get_command_argument(1, tmp)
    ckpt = trim(tmp) // '/collective_f_' // itoa(nranks) // '.ckpt'
    saved = trim(tmp) // '/collective_f_' // itoa(nranks) // '.safetensors'
    missing = trim(tmp) // '/no_such_dir/none.safetensors'
    do i = 1, 5
        x(1, i) = 0.1_real64 * i + 0.3_real64 * rank
        x(2, i) = -0.2_real64 * i
        y(1, i) = sin(x(1, i)) * cos(x(2, i))
    end do
    x3 = 0.5_real64
    xs = real(x, real32)
    ys = real(y, real32)

    call tr%create('model: {inputs: 2, layers: [{type: dense, out: 8, activation: tanh}, {type: dense, out: 1}]}', &
                   stat=stat, errmsg=msg)
    if (stat == INLOOP_OK) call tr%set_communicator(MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call check('data-parallel trainer set up', stat == INLOOP_OK, msg)
    call tr2%create('model: {inputs: 2, layers: [{type: dense, out: 1}]}', stat=stat, errmsg=msg)
    call tr%step(x, y, loss, stat=stat, errmsg=msg)
    call check('a good step', stat == INLOOP_OK, msg)
    steps0 = tr%step_count()

    do k = 1, min(2, nranks)
        bad = merge(nranks - 1, 0, k == 1)
        msg = ''
        ! The issue's case: y has one column fewer than x on one rank.
        if (rank == bad) then
            call tr%step(x, y(:, 1:4), loss, stat=stat, errmsg=msg)
        else
            call tr%step(x, y, loss, stat=stat, errmsg=msg)
        end if
        call together('step: y has one column fewer than x', INLOOP_ERR_SIZE_MISMATCH)
        if (rank == bad) then
            call tr%step(x3, y, loss, stat=stat, errmsg=msg)
        else
            call tr%step(x, y, loss, stat=stat, errmsg=msg)
        end if
        call together('step: x has 3 rows, the model takes 2', INLOOP_ERR_SIZE_MISMATCH)
        if (rank == bad) then
            xs(2, 3) = ieee_value(1.0_real32, ieee_quiet_nan)
            call tr%step(xs, ys, loss, stat=stat, errmsg=msg)
            xs(2, 3) = real(x(2, 3), real32)
        else
            call tr%step(xs, ys, loss, stat=stat, errmsg=msg)
        end if
        call together('step (real32): NaN in x', INLOOP_ERR_NONFINITE)
        if (rank == bad) then
            call never%step(x, y, loss, stat=stat, errmsg=msg)
        else
            call tr%step(x, y, loss, stat=stat, errmsg=msg)
        end if
        call together('step on a trainer never created', INLOOP_ERR_NULL_POINTER)
        steps1 = tr%step_count()
        call check('refused steps change nothing (step count)', steps1 == steps0, '')

        if (rank == bad) then
            call never%save_checkpoint(ckpt, stat=stat, errmsg=msg)
        else
            call tr%save_checkpoint(ckpt, stat=stat, errmsg=msg)
        end if
        call together('save_checkpoint of a trainer never created', INLOOP_ERR_NULL_POINTER)
        if (rank == bad) then
            call never%save_model(saved, stat=stat, errmsg=msg)
        else
            call tr%save_model(saved, stat=stat, errmsg=msg)
        end if
        call together('save_model of a trainer never created', INLOOP_ERR_NULL_POINTER)
        if (rank == bad) then
            call never%set_communicator(MPI_COMM_WORLD, stat=stat, errmsg=msg)
        else
            call tr2%set_communicator(MPI_COMM_WORLD, stat=stat, errmsg=msg)
        end if
        call together('set_communicator of a trainer never created', INLOOP_ERR_NULL_POINTER)
    end do

    ! Errors seen on rank 0 only (it reads and writes the files): every rank gets rank 0's.
    bad = 0
    call net%load(missing, stat=stat, errmsg=msg, comm=MPI_COMM_WORLD)
    call together('load(comm=) of a missing file', INLOOP_ERR_IO)
    call back%load_checkpoint(missing, comm=MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call together('load_checkpoint(comm=) of a missing file', INLOOP_ERR_IO)
    call tr%save_checkpoint(missing, stat=stat, errmsg=msg)
    call together('save_checkpoint to an unwritable path', INLOOP_ERR_IO)

    ! Still working together.
    call tr%step(x, y, loss, stat=stat, errmsg=msg)
    steps1 = tr%step_count()
    call check('a good step after the failures', stat == INLOOP_OK .and. steps1 == steps0 + 1, msg)
    call MPI_Allreduce(loss, loss_lo, 1, MPI_DOUBLE_PRECISION, MPI_MIN, MPI_COMM_WORLD, ierr)
    call MPI_Allreduce(loss, loss_hi, 1, MPI_DOUBLE_PRECISION, MPI_MAX, MPI_COMM_WORLD, ierr)
    call check('the same loss on every rank', transfer(loss_lo, 0_int64) == transfer(loss_hi, 0_int64), '')
    call tr%save_checkpoint(ckpt, stat=stat, errmsg=msg)
    if (stat == INLOOP_OK) call back%load_checkpoint(ckpt, comm=MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call check('save_checkpoint and load_checkpoint(comm=) after the failures', stat == INLOOP_OK, msg)
    call tr%save_model(saved, stat=stat, errmsg=msg)
    if (stat == INLOOP_OK) call net%load(saved, stat=stat, errmsg=msg, comm=MPI_COMM_WORLD)
    call check('save_model and load(comm=) after the failures', stat == INLOOP_OK, msg)

    call back%free()
    call net%free()
    call tr2%free()
    call tr%free()
    call MPI_Barrier(MPI_COMM_WORLD, ierr)
    if (rank == 0) then
        open (unit=11, file=ckpt, status='old', iostat=ierr)
        if (ierr == 0) close (11, status='delete')
        open (unit=11, file=saved, status='old', iostat=ierr)
        if (ierr == 0) close (11, status='delete')
    end if
    if (rank == 0) print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    call MPI_Finalize(ierr)
    if (failed > 0) error stop 1

contains

    !> A check every rank makes; it passes only when it holds on every rank.
    subroutine check(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        logical :: all_ok
        if (.not. ok) print '(a,i0,a)', 'rank ', rank, ': FAIL ' // name // ': ' // trim(detail)
        call MPI_Allreduce(ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD, ierr)
        if (all_ok) then
            passed = passed + 1
        else
            failed = failed + 1
        end if
    end subroutine

    !> The last call failed on rank `bad` with `own`: the same stat on every rank, bad's own message
    !> there, "rank bad: <bad's message>" on the others.
    subroutine together(name, own)
        character(len=*), intent(in) :: name
        integer, intent(in) :: own
        character(len=400) :: theirs
        character(len=:), allocatable :: want
        logical :: ok
        theirs = msg
        call MPI_Bcast(theirs, len(theirs), MPI_CHARACTER, bad, MPI_COMM_WORLD, ierr)
        if (rank == bad) then
            ok = stat == own .and. len_trim(msg) > 0 .and. msg(1:5) /= 'rank '
        else
            want = 'rank ' // itoa(bad) // ': ' // trim(theirs)
            ok = stat == own .and. msg(1:min(len(want), len(msg))) == want(1:min(len(want), len(msg)))
        end if
        call check(name // ' (failing rank ' // itoa(bad) // ')', ok, 'stat ' // itoa(stat) // ', message: ' // trim(msg))
    end subroutine

    function itoa(i) result(s)
        integer, intent(in) :: i
        character(len=:), allocatable :: s
        character(len=16) :: b
        write (b, '(i0)') i
        s = trim(b)
    end function
end program
