! MPI test of the Fortran bindings: a domain decomposition over columns against the serial run.
!
!   mpirun -np 2 test_mpi [MODEL [IO_BIN [NCOL]]]        (any number of ranks, e.g. -np 1, -np 3)
!
! MODEL defaults to Tests/fixtures/mlp_medium.safetensors, IO_BIN to MODEL with .safetensors replaced by
! .io.bin, NCOL (global number of columns) to 1001. Every rank builds the same global input x(n_in, NCOL)
! from a formula, runs the full serial forward itself, and the forward of its own contiguous block of
! columns. Blocks are deliberately uneven: rank r gets a share proportional to r + 1 (with -np 2: 333 and
! 668 columns), so blocks start at odd offsets and have different sizes.
!
! Default mode (optimised GEMM): a column's last bits may depend on its position in the batch, so
!  * block vs the same serial columns: within 1e-6 relative to max |y| (rank 0 prints how many differ);
!  * run-to-run determinism: repeating the same call gives bitwise the same result (serial and block).
! Reproducible mode (set_reproducible(.true.)), the strict checks:
!  * each rank's block equals the same columns of its own serial forward bitwise;
!  * the blocks assembled with MPI_Gatherv on rank 0 equal rank 0's serial forward bitwise (this also
!    compares the ranks with each other, which assumes the same CPU type, hence the same OpenBLAS
!    kernels, on every rank);
!  * the reproducible serial result is within 1e-6 relative of the default one.
! In both modes the reference pair in IO_BIN is split the same way and checked within 1e-5 relative to
! max |y|. Rank 0 prints PASS/FAIL lines and "N passed, M failed"; every rank exits non-zero if M > 0.
program test_mpi
    use, intrinsic :: iso_fortran_env, only: int64, real64, output_unit
    use mpi
    use inloop
    implicit none

    integer, parameter :: detail_len = 240
    integer :: ierr, rank, nranks, npass = 0, nfail = 0
    integer :: stat, ncol, n_in, n_out, lo, hi, i, j
    integer, allocatable :: counts(:), displs(:)
    character(len=:), allocatable :: model_path, io_path, sizes
    character(len=512) :: msg
    type(inloop_model) :: net
    real(real64), allocatable :: x(:,:), y_serial(:,:), y_again(:,:), y_block(:,:), yb_again(:,:)
    real(real64), allocatable :: yr_serial(:,:), yr_block(:,:)
    real(real64), allocatable :: xref(:,:), yref(:,:)
    logical :: have_ref
    integer(int64) :: ndiff_local, ndiff_total
    real(real64) :: tol, diff_local, diff_max

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)

    model_path = arg_or(1, 'Tests/fixtures/mlp_medium.safetensors')
    io_path = arg_or(2, replace_suffix(model_path, '.safetensors', '.io.bin'))
    ncol = 1001
    if (command_argument_count() >= 3) then
        msg = arg_or(3, '1001')
        read (msg, *) ncol
    end if

    ! one BLAS/engine thread per rank: the ranks already fill the cores
    call inloop_set_num_threads(1, stat, msg)
    call require_all('set_num_threads(1) on every rank', stat == INLOOP_OK, trim(msg))

    msg = ''
    call net%load(model_path, stat=stat, errmsg=msg)
    call require_all('load ' // model_path // ' on every rank', stat == INLOOP_OK, trim(msg))
    if (nfail > 0) call finish()
    n_in = int(net%input_size())
    n_out = int(net%output_size())

    ! the same global input on every rank, from a formula
    allocate (x(n_in, ncol))
    do j = 1, ncol
        do i = 1, n_in
            x(i, j) = 2.5_real64 * sin(0.37_real64 * i + 0.011_real64 * j) + 0.1_real64 * cos(1.3_real64 * j)
        end do
    end do

    ! this rank's block lo:hi of the columns
    call partition(ncol, counts, displs)
    lo = displs(rank) + 1
    hi = displs(rank) + counts(rank)
    sizes = itoa(counts(0))
    do i = 1, nranks - 1
        sizes = sizes // '/' // itoa(counts(i))
    end do

    ! ------------------------------------------------------------------ default mode
    allocate (y_serial(n_out, ncol), y_again(n_out, ncol), y_block(n_out, counts(rank)), yb_again(n_out, counts(rank)))
    call net%forward(x, y_serial, stat, msg)
    call require_all('default: serial forward of ' // itoa(ncol) // ' columns', stat == INLOOP_OK, trim(msg))
    call net%forward(x(:, lo:hi), y_block, stat, msg)     ! a contiguous section: no copy
    call require_all('default: block forward (' // sizes // ' columns)', stat == INLOOP_OK, trim(msg))

    call net%forward(x, y_again, stat, msg)
    call check_all('default: repeated serial forward is bitwise identical (run-to-run determinism)', &
                   stat == INLOOP_OK .and. nbits_differ(y_again, y_serial) == 0, &
                   'stat ' // itoa(stat) // ', ' // i8toa(nbits_differ(y_again, y_serial)) // ' values differ')
    call net%forward(x(:, lo:hi), yb_again, stat, msg)
    call check_all('default: repeated block forward is bitwise identical (run-to-run determinism)', &
                   stat == INLOOP_OK .and. nbits_differ(yb_again, y_block) == 0, &
                   'stat ' // itoa(stat) // ', ' // i8toa(nbits_differ(yb_again, y_block)) // ' values differ')

    tol = 1e-6_real64 * maxval(abs(y_serial))
    call check_all('default: block equals serial columns within 1e-6 relative on every rank', &
                   all(abs(y_block - y_serial(:, lo:hi)) <= tol), 'max |diff| = ' // &
                   rtoa(maxdiff(y_block, y_serial(:, lo:hi))) // ', tol ' // rtoa(tol))
    ! how far default mode is from bitwise (information, not a check: no guarantee either way)
    ndiff_local = nbits_differ(y_block, y_serial(:, lo:hi))
    diff_local = maxdiff(y_block, y_serial(:, lo:hi))
    call MPI_Allreduce(ndiff_local, ndiff_total, 1, MPI_INTEGER8, MPI_SUM, MPI_COMM_WORLD, ierr)
    call MPI_Allreduce(diff_local, diff_max, 1, MPI_DOUBLE_PRECISION, MPI_MAX, MPI_COMM_WORLD, ierr)
    if (rank == 0) write (output_unit, '(a)') 'NOTE default: ' // i8toa(ndiff_total) // ' of ' // &
        itoa(ncol * n_out) // ' block values differ bitwise from serial, max |diff| = ' // rtoa(diff_max) // &
        ', max |y| = ' // rtoa(maxval(abs(y_serial)))

    call reference_check('default')

    ! ------------------------------------------------------------------ reproducible mode
    msg = ''
    call net%set_reproducible(.true., stat, msg)
    call require_all('set_reproducible(.true.) on every rank', stat == INLOOP_OK, trim(msg))
    allocate (yr_serial(n_out, ncol), yr_block(n_out, counts(rank)))
    call net%forward(x, yr_serial, stat, msg)
    call require_all('reproducible: serial forward of ' // itoa(ncol) // ' columns', stat == INLOOP_OK, trim(msg))
    call net%forward(x(:, lo:hi), yr_block, stat, msg)
    call require_all('reproducible: block forward (' // sizes // ' columns)', stat == INLOOP_OK, trim(msg))

    call check_all('reproducible: block equals serial columns bitwise on every rank', &
                   nbits_differ(yr_block, yr_serial(:, lo:hi)) == 0, &
                   i8toa(nbits_differ(yr_block, yr_serial(:, lo:hi))) // ' of ' // itoa(size(yr_block)) // &
                   ' values differ, max |diff| = ' // rtoa(maxdiff(yr_block, yr_serial(:, lo:hi))))
    call gather_check('reproducible: gathered blocks equal serial bitwise on rank 0', yr_block, yr_serial)

    tol = 1e-6_real64 * maxval(abs(y_serial))
    call check_all('reproducible serial within 1e-6 relative of default serial', &
                   all(abs(yr_serial - y_serial) <= tol), 'max |diff| = ' // rtoa(maxdiff(yr_serial, y_serial)) // &
                   ', tol ' // rtoa(tol))

    call reference_check('reproducible')

    call net%free(stat, msg)
    call require_all('free on every rank', stat == INLOOP_OK, trim(msg))
    call finish()

contains

    !> A set-up step (collective): not counted when it works on every rank; else a failed check.
    subroutine require_all(name, local_ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: local_ok
        logical :: all_ok
        integer :: e
        call MPI_Allreduce(local_ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD, e)
        if (.not. all_ok) call check_all(name, local_ok, detail)
    end subroutine

    !> Records a check that every rank evaluated; rank 0 prints it with the details of failing ranks.
    subroutine check_all(name, local_ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: local_ok
        integer :: nbad_ranks, r, e
        character(len=detail_len) :: mine
        character(len=detail_len), allocatable :: all_details(:)
        integer :: flag
        integer, allocatable :: flags(:)
        flag = merge(0, 1, local_ok)
        call MPI_Allreduce(flag, nbad_ranks, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD, e)
        mine = detail
        allocate (all_details(0:nranks - 1), flags(0:nranks - 1))
        call MPI_Gather(mine, detail_len, MPI_CHARACTER, all_details, detail_len, MPI_CHARACTER, 0, MPI_COMM_WORLD, e)
        call MPI_Gather(flag, 1, MPI_INTEGER, flags, 1, MPI_INTEGER, 0, MPI_COMM_WORLD, e)
        if (nbad_ranks == 0) then
            npass = npass + 1
            if (rank == 0) write (output_unit, '(a)') 'PASS ' // name
        else
            nfail = nfail + 1
            if (rank == 0) then
                write (output_unit, '(a)') 'FAIL ' // name // ': failed on ' // itoa(nbad_ranks) // ' of ' // &
                    itoa(nranks) // ' ranks'
                do r = 0, nranks - 1
                    if (flags(r) /= 0) write (output_unit, '(a)') '     rank ' // itoa(r) // ': ' // trim(all_details(r))
                end do
            end if
        end if
        if (rank == 0) flush (output_unit)
    end subroutine

    subroutine finish()
        integer :: e
        if (rank == 0) write (output_unit, '(i0, a, i0, a)') npass, ' passed, ', nfail, ' failed'
        if (rank == 0) flush (output_unit)
        call MPI_Finalize(e)
        if (nfail > 0) error stop 1
        stop
    end subroutine

    !> Uneven contiguous blocks of n columns: rank r gets about n (r + 1) / (1 + 2 + ... + nranks)
    !> (all of them with one rank). counts(r) may be 0 when n is small; displs(r) is the 0-based offset.
    subroutine partition(n, counts, displs)
        integer, intent(in) :: n
        integer, allocatable, intent(out) :: counts(:), displs(:)
        integer(int64) :: total_weight, weight_below
        integer :: r
        allocate (counts(0:nranks - 1), displs(0:nranks - 1))
        total_weight = int(nranks, int64) * (nranks + 1) / 2
        weight_below = 0
        do r = 0, nranks - 1
            displs(r) = int(n * weight_below / total_weight)
            weight_below = weight_below + r + 1
            counts(r) = int(n * weight_below / total_weight) - displs(r)
        end do
    end subroutine

    !> The reference pair of IO_BIN (read on first use), split over the ranks like x, within 1e-5.
    subroutine reference_check(mode)
        character(len=*), intent(in) :: mode
        integer, allocatable :: rcounts(:), rdispls(:)
        real(real64), allocatable :: yref_block(:,:)
        integer :: rlo, rhi, st
        character(len=512) :: m
        real(real64) :: rtol
        if (.not. allocated(xref)) then
            call read_io(io_path, xref, yref, have_ref)
            call check_all('read ' // io_path, have_ref, 'cannot read')
            if (have_ref) call check_all('io.bin sizes match the model', &
                                         size(xref, 1) == n_in .and. size(yref, 1) == n_out, &
                                         itoa(size(xref, 1)) // ' -> ' // itoa(size(yref, 1)))
        end if
        if (.not. have_ref) return
        if (size(xref, 1) /= n_in .or. size(yref, 1) /= n_out) return
        call partition(size(xref, 2), rcounts, rdispls)
        rlo = rdispls(rank) + 1
        rhi = rdispls(rank) + rcounts(rank)
        allocate (yref_block(n_out, rcounts(rank)))
        m = ''
        call net%forward(xref(:, rlo:rhi), yref_block, st, m)
        rtol = 1e-5_real64 * maxval(abs(yref)) + 1e-6_real64
        call check_all(mode // ': block of the io.bin reference within 1e-5 (' // itoa(rcounts(rank)) // &
                       ' of ' // itoa(size(xref, 2)) // ' columns on rank ' // itoa(rank) // ')', &
                       st == INLOOP_OK .and. all(abs(yref_block - yref(:, rlo:rhi)) <= rtol), &
                       'stat ' // itoa(st) // ' ' // trim(m) // ', max |y - ref| = ' // &
                       rtoa(maxdiff(yref_block, yref(:, rlo:rhi))) // ', tol ' // rtoa(rtol))
    end subroutine

    !> Assembles the blocks on rank 0 with MPI_Gatherv and compares them with rank 0's `whole` bitwise.
    subroutine gather_check(name, block, whole)
        character(len=*), intent(in) :: name
        real(real64), intent(in) :: block(:,:), whole(:,:)
        real(real64), allocatable :: gathered(:,:)
        integer :: e
        integer(int64) :: nbad
        logical :: good
        if (rank == 0) then
            allocate (gathered(n_out, ncol))
        else
            allocate (gathered(1, 1))
        end if
        gathered = -1
        call MPI_Gatherv(block, size(block), MPI_DOUBLE_PRECISION, gathered, counts * n_out, displs * n_out, &
                         MPI_DOUBLE_PRECISION, 0, MPI_COMM_WORLD, e)
        good = e == MPI_SUCCESS
        nbad = 0
        if (rank == 0) then
            nbad = nbits_differ(gathered, whole)
            good = good .and. nbad == 0
        end if
        call check_all(name, good, 'MPI_Gatherv ierr ' // itoa(e) // ', ' // i8toa(nbad) // ' of ' // &
                       itoa(size(whole)) // ' values differ')
    end subroutine

    !> Number of elements whose bits differ (arrays of the same shape).
    integer(int64) function nbits_differ(a, b)
        real(real64), intent(in) :: a(:,:), b(:,:)
        nbits_differ = count(transfer(a, 0_int64, size(a)) /= transfer(b, 0_int64, size(b)), kind=int64)
    end function

    !> max |a - b|, 0 for empty arrays.
    real(real64) function maxdiff(a, b)
        real(real64), intent(in) :: a(:,:), b(:,:)
        maxdiff = 0
        if (size(a) > 0) maxdiff = maxval(abs(a - b))
    end function

    subroutine read_io(path, x, y, ok)
        character(len=*), intent(in) :: path
        real(real64), allocatable, intent(out) :: x(:,:), y(:,:)
        logical, intent(out) :: ok
        integer(int64) :: n_in, n_out, batch
        integer :: u, ios
        ok = .false.
        open (newunit=u, file=path, access='stream', form='unformatted', status='old', action='read', iostat=ios)
        if (ios /= 0) return
        read (u, iostat=ios) n_in, n_out, batch
        if (ios /= 0 .or. n_in < 1 .or. n_out < 1 .or. batch < 1 .or. n_in * batch > 10**8) then
            close (u)
            return
        end if
        allocate (x(n_in, batch), y(n_out, batch))
        read (u, iostat=ios) x, y
        close (u)
        ok = ios == 0
    end subroutine

    function arg_or(i, default) result(s)
        integer, intent(in) :: i
        character(len=*), intent(in) :: default
        character(len=:), allocatable :: s
        integer :: n, st
        call get_command_argument(i, length=n, status=st)
        if (st /= 0 .or. n == 0) then
            s = default
        else
            allocate (character(len=n) :: s)
            call get_command_argument(i, s)
        end if
    end function

    function replace_suffix(s, old, new) result(r)
        character(len=*), intent(in) :: s, old, new
        character(len=:), allocatable :: r
        if (len(s) >= len(old)) then
            if (s(len(s) - len(old) + 1:) == old) then
                r = s(:len(s) - len(old)) // new
                return
            end if
        end if
        r = s // new
    end function

    function itoa(i) result(s)
        integer, intent(in) :: i
        character(len=:), allocatable :: s
        character(len=16) :: buf
        write (buf, '(i0)') i
        s = trim(buf)
    end function

    function i8toa(i) result(s)
        integer(int64), intent(in) :: i
        character(len=:), allocatable :: s
        character(len=24) :: buf
        write (buf, '(i0)') i
        s = trim(buf)
    end function

    function rtoa(r) result(s)
        real(real64), intent(in) :: r
        character(len=:), allocatable :: s
        character(len=32) :: buf
        write (buf, '(es11.4)') r
        s = trim(adjustl(buf))
    end function

end program test_mpi
