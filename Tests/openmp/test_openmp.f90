!> Host threads (issue 11, part 8): an OpenMP Fortran model runs InLoop from its own threads.
!>  * Each thread holds its own model handle (loaded inside the parallel region) and runs its blocks of
!>    columns inside `!$omp parallel do`: the result is bitwise the serial run over the same blocks
!>    (real32 and real64), and in reproducible mode bitwise the serial run over the whole batch.
!>  * One handle used from two threads at once: a call either succeeds with the serial result
!>    bitwise or returns INLOOP_ERR_BUSY with a message — never a wrong result, another status, or a
!>    crash — and BUSY is seen.
!> Usage: test_openmp [MODEL]   (prints "N passed, M failed")
program test_openmp
    use inloop
    use omp_lib
    use, intrinsic :: iso_fortran_env, only: real32, real64, int32, int64
    implicit none
    integer, parameter :: ncol = 1200, blk = 37, nthreads = 4
    type(inloop_model) :: serial
    type(inloop_model), allocatable :: nets(:)
    real(real32), allocatable :: x(:, :), ys(:, :), yp(:, :), ywhole(:, :), yt(:, :)
    real(real64), allocatable :: xd(:, :), ysd(:, :), ypd(:, :)
    integer :: n_in, n_out, stat, nb, b, lo, hi, tid, load_errors, call_errors, passed = 0, failed = 0
    integer :: busy, oks, wrong, others, no_message, i, j, seen_busy, seen_ok
    real(real64) :: t0
    character(len=512) :: path
    character(len=300) :: msg

    path = 'Tests/fixtures/mlp_medium.safetensors'
    if (command_argument_count() > 0) call get_command_argument(1, path)
    call inloop_set_num_threads(1)            ! InLoop's own (OpenBLAS) threads: one per host thread
    call omp_set_num_threads(nthreads)    ! whatever OMP_NUM_THREADS says
    call serial%load(path)
    n_in = int(serial%input_size())
    n_out = int(serial%output_size())
    allocate (x(n_in, ncol), xd(n_in, ncol), ys(n_out, ncol), yp(n_out, ncol), ywhole(n_out, ncol))
    allocate (ysd(n_out, ncol), ypd(n_out, ncol))
    do j = 1, ncol
        do i = 1, n_in
            x(i, j) = real(sin(0.013_real64 * i + 0.071_real64 * j), real32)
        end do
    end do
    xd = x
    nb = (size(x, 2) + blk - 1) / blk

    ! Serial reference over the same blocks.
    do b = 1, nb
        lo = (b - 1) * blk + 1
        hi = min(ncol, b * blk)
        call serial%forward(x(:, lo:hi), ys(:, lo:hi))
        call serial%forward(xd(:, lo:hi), ysd(:, lo:hi))
    end do

    ! One handle per thread, loaded by that thread.
    allocate (nets(0:nthreads - 1))
    load_errors = 0
    !$omp parallel private(tid, stat, msg) reduction(+:load_errors)
    tid = omp_get_thread_num()
    call nets(tid)%load(path, stat=stat, errmsg=msg)
    if (stat /= INLOOP_OK) load_errors = load_errors + 1
    !$omp end parallel
    call check('every thread loads its own handle', load_errors == 0, '')

    yp = -1
    ypd = -1
    call_errors = 0
    !$omp parallel do schedule(dynamic) private(lo, hi, tid, stat) reduction(+:call_errors)
    do b = 1, nb
        lo = (b - 1) * blk + 1
        hi = min(ncol, b * blk)
        tid = omp_get_thread_num()
        call nets(tid)%forward(x(:, lo:hi), yp(:, lo:hi), stat=stat)
        if (stat /= INLOOP_OK) call_errors = call_errors + 1
        call nets(tid)%forward(xd(:, lo:hi), ypd(:, lo:hi), stat=stat)
        if (stat /= INLOOP_OK) call_errors = call_errors + 1
    end do
    !$omp end parallel do
    call check('parallel do over blocks: every call OK', call_errors == 0, '')
    call check('parallel do over blocks (real32): bitwise the serial run', same32(yp, ys), '')
    call check('parallel do over blocks (real64): bitwise the serial run', same64(ypd, ysd), '')

    ! Reproducible mode: blocks in threads equal the whole batch at once, bitwise.
    call serial%set_reproducible(.true.)
    call serial%forward(x, ywhole)
    do tid = 0, nthreads - 1
        call nets(tid)%set_reproducible(.true.)
    end do
    yp = -1
    call_errors = 0
    !$omp parallel do schedule(dynamic) private(lo, hi, stat) reduction(+:call_errors)
    do b = 1, nb
        lo = (b - 1) * blk + 1
        hi = min(ncol, b * blk)
        call nets(omp_get_thread_num())%forward(x(:, lo:hi), yp(:, lo:hi), stat=stat)
        if (stat /= INLOOP_OK) call_errors = call_errors + 1
    end do
    !$omp end parallel do
    call check('reproducible mode: threads over blocks equal the serial whole batch bitwise', &
               call_errors == 0 .and. same32(yp, ywhole), '')
    call serial%set_reproducible(.false.)

    ! One handle from two threads at once: OK with the serial result, or BUSY; BUSY is seen.
    call serial%forward(x, ys)
    busy = 0
    oks = 0
    wrong = 0
    others = 0
    no_message = 0
    !$omp parallel num_threads(2) private(i, stat, msg, yt, seen_busy, seen_ok, t0) shared(busy, oks, wrong, others, no_message)
    allocate (yt(n_out, ncol))
    t0 = omp_get_wtime()
    do i = 1, 100000
        if (omp_get_wtime() - t0 > 20) exit   ! bounded: no fairness is promised on a loaded machine
        msg = ''
        call serial%forward(x, yt, stat=stat, errmsg=msg)
        if (stat == INLOOP_OK) then
            !$omp atomic
            oks = oks + 1
            if (.not. same32(yt, ys)) then
                !$omp atomic
                wrong = wrong + 1
            end if
        else if (stat == INLOOP_ERR_BUSY) then
            !$omp atomic
            busy = busy + 1
            if (len_trim(msg) == 0) then
                !$omp atomic
                no_message = no_message + 1
            end if
        else
            !$omp atomic
            others = others + 1
        end if
        !$omp atomic read
        seen_busy = busy
        !$omp atomic read
        seen_ok = oks
        if (seen_busy >= 10 .and. seen_ok >= 2) exit
    end do
    deallocate (yt)
    !$omp end parallel
    call check('one handle, two threads: BUSY is returned', busy > 0, itoa(busy) // ' BUSY, ' // itoa(oks) // ' OK')
    call check('one handle, two threads: every OK call has the serial result bitwise', wrong == 0 .and. oks > 0, &
               itoa(wrong) // ' wrong of ' // itoa(oks))
    call check('one handle, two threads: no other status; BUSY has a message', others == 0 .and. no_message == 0, '')

    deallocate (nets)   ! finalizers free the handles
    call serial%free()
    print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) error stop 1

contains

    subroutine check(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        if (ok) then
            passed = passed + 1
        else
            failed = failed + 1
            print '(a)', 'FAIL ' // name // ': ' // detail
        end if
    end subroutine

    logical function same32(a, b)
        real(real32), intent(in) :: a(:, :), b(:, :)
        same32 = all(transfer(a, 0_int32, size(a)) == transfer(b, 0_int32, size(b)))
    end function

    logical function same64(a, b)
        real(real64), intent(in) :: a(:, :), b(:, :)
        same64 = all(transfer(a, 0_int64, size(a)) == transfer(b, 0_int64, size(b)))
    end function

    function itoa(i) result(s)
        integer, intent(in) :: i
        character(len=:), allocatable :: s
        character(len=16) :: buf
        write (buf, '(i0)') i
        s = trim(buf)
    end function
end program
