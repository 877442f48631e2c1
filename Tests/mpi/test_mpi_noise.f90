!> Stochastic runs over MPI (issue 15, item 4), in reproducible mode: K = 48 columns split over the ranks, 3 ensemble members
!> per column, a model with 2 noise features stepped 20 times (x <- x + 0.05 tanh(model(x)), one
!> batched forward per step for all local columns of all members: set_noise_step(step, first global
!> column, block = local columns, stride = K)). Checks: the gathered result equals, bitwise, rank 0's
!> serial run of all K columns in one call; a restart after step 10 (state and step written to a file,
!> a new model handle, the run continued) ends bitwise where the uninterrupted run ended; bad
!> decompositions fail with a status on the rank that has them. Writes the final state (global order,
!> raw float64) to OUT, which the test suite compares across 1, 2 and 4 ranks.
!>     mpirun -np N test_mpi_noise MODEL.safetensors OUT [BUILD_DIR]
!> Prints PASS/FAIL lines and "N passed, M failed" on rank 0 (every rank's checks are combined).
program test_mpi_noise
    use mpi_f08
    use inloop
    use, intrinsic :: iso_fortran_env, only: real64, int64
    implicit none
    integer, parameter :: k_global = 48, members = 3, nsteps = 20, restart_at = 10
    integer(int64), parameter :: seed = 8675309_int64
    character(len=512) :: model_path, out_path, dir
    type(inloop_model) :: net
    real(real64), allocatable :: yl(:, :), x(:, :), xr(:, :), xs(:, :), xall(:, :), xg(:, :)
    integer :: rank, nranks, nk, off, nf, no, stat, passed = 0, failed = 0, u, m, s0
    integer :: counts(2)
    integer(int64) :: saved_step
    character(len=300) :: msg

    call MPI_Init()
    call MPI_Comm_rank(MPI_COMM_WORLD, rank)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks)
    call get_command_argument(1, model_path)
    call get_command_argument(2, out_path)
    call get_command_argument(3, dir)
    if (len_trim(dir) == 0) dir = 'build'
    msg = ''
    if (mod(k_global, nranks) /= 0) then
        if (rank == 0) print '(a)', 'FAIL the ranks must divide 48'
        call MPI_Finalize()
        stop 1
    end if
    nk = k_global / nranks
    off = rank * nk

    call net%load(trim(model_path), stat=stat, errmsg=msg)
    call require('load the model', stat == INLOOP_OK, msg)
    call net%set_reproducible(.true.)   ! outputs independent of the batch: any decomposition
    nf = int(net%input_size())
    no = int(net%output_size())
    call net%set_noise_input(nf - 1, 2, seed, stat=stat, errmsg=msg)
    call require('declare the last two input features noise', stat == INLOOP_OK, msg)

    ! --- the decomposed run: local columns off+1..off+nk of every member, one forward per step
    allocate (x(nf, nk * members))
    call initial(x, off, nk)
    call advance(net, x, 0, nsteps, off, nk)

    ! --- rank 0: all K columns alone, in one call
    allocate (xall(nf, k_global * members), xg(nf, k_global * members))
    if (rank == 0) then
        call initial(xall, 0, k_global)
        call advance(net, xall, 0, nsteps, 0, k_global)
    end if
    call gather(x, xg)
    if (rank == 0) call check('the decomposed stochastic run equals the serial one bitwise (' // text(nranks) // ' ranks)', &
                              same(xg, xall), 'states differ')

    ! --- restart: run to step 10, write state and step, new handle, read them, continue
    allocate (xr(nf, nk * members), xs(nf, k_global * members))
    call initial(xr, off, nk)
    call advance(net, xr, 0, restart_at, off, nk)
    call gather(xr, xs)
    if (rank == 0) then
        open (newunit=u, file=trim(dir) // '/test_mpi_noise.restart', access='stream', form='unformatted', status='replace')
        write (u) int(restart_at, int64), xs
        close (u)
    end if
    call net%free()
    call MPI_Barrier(MPI_COMM_WORLD)
    xr = 0
    open (newunit=u, file=trim(dir) // '/test_mpi_noise.restart', access='stream', form='unformatted', status='old', action='read')
    read (u) saved_step, xs
    close (u)
    do m = 1, members
        xr(:, (m - 1) * nk + 1:m * nk) = xs(:, (m - 1) * k_global + off + 1:(m - 1) * k_global + off + nk)
    end do
    call net%load(trim(model_path), stat=stat, errmsg=msg)
    call require('reload the model', stat == INLOOP_OK, msg)
    call net%set_reproducible(.true.)
    call net%set_noise_input(nf - 1, 2, seed)
    s0 = int(saved_step)
    call advance(net, xr, s0, nsteps, off, nk)
    call gather(xr, xs)
    if (rank == 0) call check('a restart at step 10 (state + step from a file, a new handle) ends bitwise the same', &
                              same(xs, xg), 'states differ')

    ! --- noise changes the result (the test is not vacuous): another seed, other bits
    call net%set_noise_input(nf - 1, 2, seed + 1)
    call initial(xr, off, nk)
    call advance(net, xr, 0, nsteps, off, nk)
    call gather(xr, xs)
    if (rank == 0) call check('another seed gives another result', .not. same(xs, xg), 'the same bits')

    ! --- a column beyond 2**32 fails with a status on this rank
    call net%set_noise_step(0_int64, 4294967295_int64 - nk, block=nk, stride=k_global, stat=stat)
    allocate (yl(no, nk * members))
    if (stat == INLOOP_OK) call net%forward(x, yl, stat=stat)
    call combine('columns reaching 2**32 are INVALID_ARGUMENT on every rank', stat == INLOOP_ERR_INVALID_ARGUMENT)

    if (rank == 0) then
        open (newunit=u, file=trim(out_path), access='stream', form='unformatted', status='replace')
        write (u) xg
        close (u)
    end if
    call net%free()
    counts = [passed, failed]
    call MPI_Bcast(counts, 2, MPI_INTEGER, 0, MPI_COMM_WORLD)
    if (rank == 0) print '(i0,a,i0,a)', counts(1), ' passed, ', counts(2), ' failed'
    call MPI_Finalize()
    if (counts(2) > 0) stop 1

contains

    !> Member m, global column g: smooth values of (g, m, feature); the noise features are left at 0.
    subroutine initial(xx, first, n)
        real(real64), intent(out) :: xx(:, :)
        integer, intent(in) :: first, n
        integer :: mm, jj, i
        do mm = 1, members
            do jj = 1, n
                do i = 1, nf
                    xx(i, (mm - 1) * n + jj) = sin(0.3_real64 * (first + jj) + 0.7_real64 * i)
                end do
            end do
        end do
        xx(nf - 1:nf, :) = 0
    end subroutine

    !> Steps from..to-1: the key of step s is (seed, s, global column); the batch is `members` blocks of
    !> n columns from global column `first`, k_global apart.
    subroutine advance(mdl, xx, from, to, first, n)
        type(inloop_model), intent(inout) :: mdl
        real(real64), intent(inout) :: xx(:, :)
        integer, intent(in) :: from, to, first, n
        real(real64) :: y(no, size(xx, 2))
        integer :: s, i
        do s = from, to - 1
            call mdl%set_noise_step(int(s, int64), int(first, int64), block=n, stride=k_global)
            call mdl%forward(xx, y)
            do i = 1, nf - 2
                xx(i, :) = xx(i, :) + 0.05_real64 * tanh(y(mod(i - 1, no) + 1, :))
            end do
        end do
    end subroutine

    !> The members' columns of every rank in global order (member-major) on rank 0.
    subroutine gather(xl, xgl)
        real(real64), intent(in) :: xl(:, :)
        real(real64), intent(out) :: xgl(:, :)
        real(real64) :: buf(nf, nk, members), every(nf, nk, members, nranks)
        integer :: r, mm
        buf = reshape(xl, [nf, nk, members])
        call MPI_Gather(buf, size(buf), MPI_DOUBLE_PRECISION, every, size(buf), MPI_DOUBLE_PRECISION, 0, MPI_COMM_WORLD)
        if (rank /= 0) return
        do mm = 1, members
            do r = 1, nranks
                xgl(:, (mm - 1) * k_global + (r - 1) * nk + 1:(mm - 1) * k_global + r * nk) = every(:, :, mm, r)
            end do
        end do
    end subroutine

    logical function same(a, b)
        real(real64), intent(in) :: a(:, :), b(:, :)
        same = all(transfer(a, 1_int64, size(a)) == transfer(b, 1_int64, size(b)))
    end function

    function text(i) result(s)
        integer, intent(in) :: i
        character(len=:), allocatable :: s
        character(len=12) :: b
        write (b, '(i0)') i
        s = trim(b)
    end function

    !> A check every rank makes: passes when it passes on all of them.
    subroutine combine(what, ok)
        character(len=*), intent(in) :: what
        logical, intent(in) :: ok
        logical :: all_ok
        call MPI_Allreduce(ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD)
        if (rank == 0) call check(what, all_ok, 'failed on some rank')
    end subroutine

    subroutine require(what, ok, detail)
        character(len=*), intent(in) :: what, detail
        logical, intent(in) :: ok
        logical :: all_ok
        call MPI_Allreduce(ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD)
        if (rank == 0) call check(what, all_ok, detail)
        if (.not. all_ok) then
            if (rank == 0) print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
            call MPI_Finalize()
            stop 1
        end if
    end subroutine

    subroutine check(what, ok, detail)
        character(len=*), intent(in) :: what, detail
        logical, intent(in) :: ok
        if (ok) then
            passed = passed + 1
            print '(a)', 'PASS ' // what
        else
            failed = failed + 1
            print '(a)', 'FAIL ' // what // ': ' // trim(detail)
        end if
    end subroutine

end program test_mpi_noise
