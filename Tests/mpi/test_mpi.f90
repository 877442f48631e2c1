! MPI test of the Fortran bindings: a domain decomposition over columns must reproduce the serial run.
!
!   mpirun -np 2 test_mpi [MODEL [IO_BIN [NCOL]]]
!
! MODEL defaults to Tests/fixtures/mlp_medium.safetensors, IO_BIN to MODEL with .safetensors replaced by
! .io.bin, NCOL (global number of columns) to 1001, so that two ranks get blocks of unequal size.
! Every rank builds the same global input x(n_in, NCOL) from a formula, runs the full serial forward and
! the forward of its own contiguous block of columns; blocks must equal the serial columns bitwise, on
! every rank and after MPI_Gatherv on rank 0. The reference pair in IO_BIN is split the same way and
! checked within 1e-5 relative to max |y|.
! Rank 0 prints PASS/FAIL lines and "N passed, M failed"; every rank exits non-zero if M > 0.
program test_mpi
    use, intrinsic :: iso_fortran_env, only: int64, real64, output_unit
    use mpi
    use inloop
    implicit none

    integer, parameter :: detail_len = 240
    integer :: ierr, rank, nranks, npass = 0, nfail = 0
    integer :: stat, ncol, n_in, n_out, lo, hi, i, j
    integer, allocatable :: counts(:), displs(:)
    character(len=:), allocatable :: model_path, io_path
    character(len=512) :: msg
    type(inloop_model) :: net
    real(real64), allocatable :: x(:,:), y_serial(:,:), y_block(:,:), y_gathered(:,:)
    real(real64), allocatable :: xref(:,:), yref(:,:), yref_block(:,:)
    logical :: ok, have_ref
    integer :: nbad
    real(real64) :: tol

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
    call inloop_set_threads(1, stat, msg)
    call check_all('set_threads(1) on every rank', stat == INLOOP_OK, trim(msg))

    msg = ''
    call net%load(model_path, stat, msg)
    call check_all('load ' // model_path // ' on every rank', stat == INLOOP_OK, trim(msg))
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

    ! this rank's contiguous block of columns lo:hi (sizes differ by one when nranks does not divide ncol)
    allocate (counts(0:nranks - 1), displs(0:nranks - 1))
    do i = 0, nranks - 1
        counts(i) = ncol / nranks + merge(1, 0, i < mod(ncol, nranks))
    end do
    displs(0) = 0
    do i = 1, nranks - 1
        displs(i) = displs(i - 1) + counts(i - 1)
    end do
    lo = displs(rank) + 1
    hi = displs(rank) + counts(rank)

    allocate (y_serial(n_out, ncol), y_block(n_out, counts(rank)))
    call net%forward(x, y_serial, stat, msg)
    call check_all('serial forward of ' // itoa(ncol) // ' columns', stat == INLOOP_OK, trim(msg))
    call net%forward(x(:, lo:hi), y_block, stat, msg)     ! a contiguous section: no copy
    call check_all('block forward (' // itoa(counts(0)) // ' / ' // itoa(counts(nranks - 1)) // ' columns)', &
                   stat == INLOOP_OK, trim(msg))

    nbad = count(transfer(y_block, 0_int64, size(y_block)) /= transfer(y_serial(:, lo:hi), 0_int64, size(y_block)))
    call check_all('block equals serial columns bitwise on every rank', nbad == 0, &
                   itoa(nbad) // ' of ' // itoa(size(y_block)) // ' values differ, max |diff| = ' // &
                   rtoa(maxval(abs(y_block - y_serial(:, lo:hi)))) // ', max |y| = ' // rtoa(maxval(abs(y_serial))))

    ! not a substitute for the bitwise check above: it says how far apart the two are when that one fails
    tol = 1e-5_real64 * maxval(abs(y_serial)) + 1e-6_real64
    call check_all('block equals serial columns within 1e-5 relative on every rank', &
                   all(abs(y_block - y_serial(:, lo:hi)) <= tol), 'max |diff| = ' // &
                   rtoa(maxval(abs(y_block - y_serial(:, lo:hi)))) // ', tol ' // rtoa(tol))

    ! assemble on rank 0
    if (rank == 0) then
        allocate (y_gathered(n_out, ncol))
    else
        allocate (y_gathered(1, 1))
    end if
    y_gathered = -1
    call MPI_Gatherv(y_block, size(y_block), MPI_DOUBLE_PRECISION, y_gathered, counts * n_out, displs * n_out, &
                     MPI_DOUBLE_PRECISION, 0, MPI_COMM_WORLD, ierr)
    ok = ierr == MPI_SUCCESS
    nbad = 0
    if (rank == 0) then
        nbad = count(transfer(y_gathered, 0_int64, size(y_gathered)) /= transfer(y_serial, 0_int64, size(y_serial)))
        ok = ok .and. nbad == 0
    end if
    call check_all('gathered result equals serial bitwise on rank 0', ok, 'MPI_Gatherv ierr ' // itoa(ierr) // &
                   ', ' // itoa(nbad) // ' values differ')

    ! the reference pair, split the same way
    call read_io(io_path, xref, yref, have_ref)
    call check_all('read ' // io_path, have_ref, 'cannot read')
    if (have_ref) then
        call check_all('io.bin sizes match the model', size(xref, 1) == n_in .and. size(yref, 1) == n_out, &
                       itoa(size(xref, 1)) // ' -> ' // itoa(size(yref, 1)))
        if (size(xref, 1) == n_in .and. size(yref, 1) == n_out) then
            call block_of(size(xref, 2), lo, hi)
            allocate (yref_block(n_out, hi - lo + 1))
            call net%forward(xref(:, lo:hi), yref_block, stat, msg)
            tol = 1e-5_real64 * maxval(abs(yref)) + 1e-6_real64
            call check_all('block of the io.bin reference within 1e-5 (' // itoa(hi - lo + 1) // ' columns here)', &
                           stat == INLOOP_OK .and. all(abs(yref_block - yref(:, lo:hi)) <= tol), &
                           'stat ' // itoa(stat) // ' ' // trim(msg) // ', max |y - ref| = ' // &
                           rtoa(maxval(abs(yref_block - yref(:, lo:hi)))) // ', tol ' // rtoa(tol))
        end if
    end if

    call net%free(stat, msg)
    call check_all('free on every rank', stat == INLOOP_OK, trim(msg))
    call finish()

contains

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

    !> This rank's block lo:hi of n columns (same rule as above).
    subroutine block_of(n, lo, hi)
        integer, intent(in) :: n
        integer, intent(out) :: lo, hi
        integer :: r
        lo = 1
        do r = 0, rank - 1
            lo = lo + n / nranks + merge(1, 0, r < mod(n, nranks))
        end do
        hi = lo + n / nranks + merge(1, 0, rank < mod(n, nranks)) - 1
    end subroutine

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

    function rtoa(r) result(s)
        real(real64), intent(in) :: r
        character(len=:), allocatable :: s
        character(len=32) :: buf
        write (buf, '(es11.4)') r
        s = trim(adjustl(buf))
    end function

end program test_mpi
