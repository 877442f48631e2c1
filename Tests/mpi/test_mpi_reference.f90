!> Models loaded over MPI (rank-0 read + broadcast, `load(..., comm=)`) against independent references
!> on every rank (run with mpirun -np 2 or more):
!>  - Tests/fixtures/onnx/strided_tanh.onnx (strided convolutions around a tanh): each rank's samples
!>    x(10, 10, 2, :) -> y(4, 2, 2, :) equal the float64 NumPy reference;
!>  - the tangent-linear of that graph and of Tests/fixtures/mlp_medium (a tanh MLP), each rank at its
!>    own points, equals real(8) central finite differences of the model.
!> The engine comparing with itself across ranks would not see a wrong output size or derivative.
!> Usage: test_mpi_reference [FIXTURES_DIR]. Rank 0 prints PASS/FAIL lines and "N passed, M failed".
program test_mpi_reference
    use mpi
    use inloop
    use, intrinsic :: iso_fortran_env, only: real64, int64
    implicit none
    character(len=:), allocatable :: fixdir
    character(len=1024) :: arg
    integer :: ierr, rank, nranks, passed = 0, failed = 0, counts(2)

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
    fixdir = 'Tests/fixtures'
    if (command_argument_count() >= 1) then
        call get_command_argument(1, arg)
        fixdir = trim(arg)
    end if

    call strided_tanh(fixdir // '/onnx/strided_tanh.onnx')
    call fd_check(fixdir // '/mlp_medium.safetensors', 'mlp_medium (tanh MLP)')
    call fd_check(fixdir // '/onnx/strided_tanh.onnx', 'strided_tanh.onnx')

    counts = [passed, failed]
    call MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INTEGER, MPI_MAX, MPI_COMM_WORLD, ierr)
    if (rank == 0) print '(i0,a,i0,a)', counts(1), ' passed, ', counts(2), ' failed'
    call MPI_Finalize(ierr)
    if (counts(2) > 0) error stop 1
contains
    !> Forward of this rank's samples (rank+1, rank+1+nranks, ...) against the reference.
    subroutine strided_tanh(path)
        character(len=*), intent(in) :: path
        type(inloop_model) :: m
        real(real64), allocatable :: xf(:), yf(:), x(:,:,:,:), y(:,:,:,:), yref(:,:,:,:)
        integer(int64) :: n_in, n_out, batch
        integer :: stat, mine, k, j
        character(len=300) :: msg
        character(len=400) :: detail
        real(real64) :: err
        logical :: ok
        call read_io(path // '.io.bin', xf, yf, n_in, n_out, batch, ok)
        ok = ok .and. n_in == 200 .and. n_out == 16
        call require('strided_tanh: read the reference', ok, path // '.io.bin')
        if (.not. ok) return
        msg = ''
        call m%load(path, comm=MPI_COMM_WORLD, stat=stat, errmsg=msg)
        call require('strided_tanh: load with comm=', stat == INLOOP_OK, msg)
        if (stat /= INLOOP_OK) return
        mine = 0
        do k = rank + 1, int(batch), nranks
            mine = mine + 1
        end do
        allocate (x(10, 10, 2, mine), y(4, 2, 2, mine), yref(4, 2, 2, mine))
        j = 0
        do k = rank + 1, int(batch), nranks
            j = j + 1
            x(:, :, :, j) = reshape(xf((k - 1) * 200 + 1:k * 200), [10, 10, 2])
            yref(:, :, :, j) = reshape(yf((k - 1) * 16 + 1:k * 16), [4, 2, 2])
        end do
        err = 0
        stat = INLOOP_OK
        if (mine > 0) then
            y = huge(1.0_real64)
            call m%forward(x, y, stat, msg)
            err = maxval(abs(y - yref)) / maxval(abs(yref))
        end if
        write (detail, '(a,i0,a,es10.3,a)') 'stat ', stat, ', max relative error ', err, ' ' // trim(msg)
        call check('strided_tanh.onnx loaded with comm=: every rank''s samples equal the NumPy reference (1e-5)', &
                   stat == INLOOP_OK .and. err < 1e-5_real64, detail)
        call m%free()
    end subroutine

    !> jvp at this rank's points vs (f(x + h dx) - f(x - h dx)) / 2h, f the real(8) forward (y of jvp).
    subroutine fd_check(path, name)
        character(len=*), intent(in) :: path, name
        type(inloop_model) :: m
        real(real64), allocatable :: x(:,:), dx(:,:), tl(:,:), yp(:,:), ym(:,:), tmp(:,:)
        integer(int64) :: ni, no
        integer :: stat, s1, s2, s3, i, k
        character(len=300) :: msg
        real(real64) :: err
        msg = ''
        call m%load(path, comm=MPI_COMM_WORLD, stat=stat, errmsg=msg)
        call require(name // ': load with comm=', stat == INLOOP_OK, msg)
        if (stat /= INLOOP_OK) return
        ni = m%input_size()
        no = m%output_size()
        allocate (x(ni, 3), dx(ni, 3), tl(no, 3), yp(no, 3), ym(no, 3), tmp(no, 3))
        do k = 1, 3
            x(:, k) = 1.5_real64 * sin([(0.37_real64 * (i + 1000 * k + 7919 * rank), i = 1, int(ni))])
            dx(:, k) = cos([(0.91_real64 * (i + 1000 * k + 104729 * rank), i = 1, int(ni))])
        end do
        call m%jvp(x, dx, tl, stat=s1, errmsg=msg)
        call m%jvp(x + 1e-5_real64 * dx, dx, tmp, y=yp, stat=s2, errmsg=msg)
        call m%jvp(x - 1e-5_real64 * dx, dx, tmp, y=ym, stat=s3, errmsg=msg)
        call require(name // ': jvp', s1 == INLOOP_OK .and. s2 == INLOOP_OK .and. s3 == INLOOP_OK, msg)
        err = maxval(abs(tl - (yp - ym) / 2e-5_real64)) / maxval(abs(tl))
        write (msg, '(a,es10.3)') 'max |jvp - central difference| / max |jvp| = ', err
        call check(name // ' loaded with comm=: tangent-linear equals real(8) central differences on every rank', &
                   s1 == INLOOP_OK .and. err < 1e-7_real64, msg)
        call m%free()
    end subroutine

    subroutine read_io(path, x, y, n_in, n_out, batch, ok)
        character(len=*), intent(in) :: path
        real(real64), allocatable, intent(out) :: x(:), y(:)
        integer(int64), intent(out) :: n_in, n_out, batch
        logical, intent(out) :: ok
        integer :: u, ios
        ok = .false.
        open (newunit=u, file=path, access='stream', form='unformatted', status='old', action='read', iostat=ios)
        if (ios /= 0) return
        read (u, iostat=ios) n_in, n_out, batch
        if (ios /= 0 .or. n_in < 1 .or. n_out < 1 .or. batch < 1 .or. n_in * batch > 10**7 .or. n_out * batch > 10**7) then
            close (u)
            return
        end if
        allocate (x(n_in * batch), y(n_out * batch))
        read (u, iostat=ios) x, y
        close (u)
        ok = ios == 0
    end subroutine

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
end program test_mpi_reference
