! Tests of the Fortran bindings for ONNX models: arrays of rank 1 to 4 in `forward`, several inputs and
! outputs with `run` and `inloop_arg`, the shape queries, and the shape errors.
!
!   test_onnx [SHARED_DIR [IO_DIR [FIXTURES_DIR]]]
!
! SHARED_DIR   (default ../shared/models) the shared models <m>.onnx; a missing model is a SKIP.
! IO_DIR       (default build/models) their references <m>.onnx.io.bin, written by
!              `python3 Tests/fortran/onnx_io_bin.py --src SHARED_DIR --out IO_DIR` (a missing one is a FAIL).
! FIXTURES_DIR (default Tests/fixtures) mlp_medium.safetensors (+ .io.bin), a native model: `run` and the
!              queries on a model that is not ONNX; and onnx/two_io.onnx (+ .io.bin, made by
!              Tests/fixtures/onnx/make_two_io.py with onnxruntime): two inputs, two outputs.
!
! Layout: the ONNX tensor (N, C, H, W) is the Fortran array x(W, H, C, N): the test reads each io.bin as
! flat samples and points arrays of the model's shape (its own table, checked against input_shape) at them.
! Tolerance: |y - ref| <= 1e-5 max|ref| + 1e-6 for every element; exact copies (two_io's y2) bitwise.
!
! Prints PASS/FAIL/SKIP lines, then "N passed, M failed"; exits non-zero if M > 0.
program test_onnx
    use, intrinsic :: iso_fortran_env, only: int64, real32, real64, output_unit
    use, intrinsic :: ieee_arithmetic, only: ieee_is_finite
    use inloop
    implicit none

    integer :: npass = 0, nfail = 0
    character(len=:), allocatable :: shared, iodir, fixdir
    character(len=1024) :: last_msg = ''

    shared = arg_or(1, '../shared/models')
    iodir = arg_or(2, 'build/models')
    fixdir = arg_or(3, 'Tests/fixtures')

    call native_checks(fixdir // '/mlp_medium')
    ! expected per-sample shapes in Fortran order (the ONNX shapes reversed, without the batch)
    call shared_model('l96', [1_int64], [1_int64])
    call shared_model('column_mlp', [94_int64], [65_int64])
    call shared_model('column_mlp_small', [48_int64], [48_int64])
    call shared_model('column_conv1d', [60_int64, 4_int64], [60_int64, 2_int64])
    call shared_model('cnn2d', [64_int64, 64_int64, 2_int64], [1_int64])
    call shape_errors()
    call two_io_checks(fixdir // '/onnx/two_io')
    call strided_tanh_checks(fixdir // '/onnx/strided_tanh.onnx')

    write (output_unit, '(i0, a, i0, a)') npass, ' passed, ', nfail, ' failed'
    if (nfail > 0) error stop 1

contains

    ! ======================================================================== a native (safetensors) model
    ! run, inloop_arg and the queries do not depend on the file format; their argument errors need no ONNX.
    subroutine native_checks(base)
        character(len=*), intent(in) :: base
        type(inloop_model) :: m, copy, never
        type(inloop_arg) :: unset
        real(real64), allocatable, target :: x(:,:), yref(:,:), y(:,:), ywide(:,:), x3(:,:,:)
        real(real32), allocatable, target :: x32(:,:), y32(:,:)
        real(real64), target :: scalar
        integer(int64), allocatable :: s(:)
        integer :: stat, n_in, n_out, nb, n(2)
        character(len=512) :: msg
        logical :: ok
        real(real64) :: tol

        msg = ''
        call m%load(base // '.safetensors', stat=stat, errmsg=msg)
        call check('native: load ' // base // '.safetensors', stat == INLOOP_OK, trim(msg))
        if (stat /= INLOOP_OK) return
        call read_io2(base // '.io.bin', x, yref, ok)
        call check('native: read ' // base // '.io.bin', ok, 'cannot read it')
        if (.not. ok) return
        n_in = size(x, 1)
        n_out = size(yref, 1)
        nb = size(x, 2)
        tol = 1e-5_real64 * maxval(abs(yref)) + 1e-6_real64

        n = [m%num_inputs(), m%num_outputs()]
        call check('native: num_inputs() = 1, num_outputs() = 1', all(n == 1), itoa(n(1)) // ', ' // itoa(n(2)))
        s = m%input_shape(1)
        call check('native: input_shape(1) = [input_size()]', same_dims(s, [m%input_size()]), dims_str(s))
        s = m%output_shape(1)
        call check('native: output_shape(1) = [output_size()]', same_dims(s, [m%output_size()]), dims_str(s))
        call check('native: input_index(input_name()) = 1', m%input_index(m%input_name()) == 1, &
                   itoa(m%input_index(m%input_name())))
        call check('native: output_index(output_name(1)) = 1', m%output_index(m%output_name(1)) == 1, &
                   itoa(m%output_index(m%output_name(1))))

        ! run = forward, real64 and real32
        allocate (y(n_out, nb), y32(n_out, nb))
        y = huge(1.0_real64)
        call m%run([inloop_arg(x)], [inloop_arg(y)], stat, msg)
        call check_close('native: run real64 x(n_in, N)', stat, msg, [y], [yref], tol)
        x32 = real(x, real32)
        y32 = huge(1.0_real32)
        call m%run([inloop_arg(x32)], [inloop_arg(y32)], stat, msg)
        call check_close('native: run real32 x(n_in, N)', stat, msg, [real(y32, real64)], [yref], tol)
        y = huge(1.0_real64)
        call m%run([inloop_arg(x(:, 2))], [inloop_arg(y(:, 2))], stat, msg)
        call check_close('native: run one sample x(n_in) (a contiguous column)', stat, msg, y(:, 2), yref(:, 2), tol)
        call m%run([inloop_arg(x(:, 1:0))], [inloop_arg(y(:, 1:0))], stat, msg)
        call check('native: run with zero samples', stat == INLOOP_OK, 'stat ' // itoa(stat) // ': ' // trim(msg))

        ! argument errors: outputs untouched
        y = 42
        call expect('native: run with a non-contiguous inloop_arg', INLOOP_ERR_INVALID_ARGUMENT, &
                    run_err(m, [inloop_arg(x(:, 1:nb:2))], [inloop_arg(y(:, 1:(nb + 1) / 2))]), 'not contiguous')
        call expect('native: run with real32 x and real64 y', INLOOP_ERR_INVALID_ARGUMENT, &
                    run_err(m, [inloop_arg(x32)], [inloop_arg(y)]), 'one kind')
        call expect('native: run with an inloop_arg not made by inloop_arg()', INLOOP_ERR_INVALID_ARGUMENT, &
                    run_err(m, [unset], [inloop_arg(y)]), 'inloop_arg')
        call expect('native: run with two inputs for a one-input model', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(x), inloop_arg(x)], [inloop_arg(y)]), 'inputs')
        allocate (ywide(n_out + 1, nb))
        call expect('native: run with y(n_out + 1, N)', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(x)], [inloop_arg(ywide)]), '(' // itoa(n_out) // ',N)')
        call expect('native: run with y(n_out, N - 1)', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(x)], [inloop_arg(y(:, 1:nb - 1))]), 'samples')
        allocate (x3(n_in, 1, nb))
        x3 = 0
        call expect('native: run with x(n_in, 1, N) (rank 3 for a rank-1 input)', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(x3)], [inloop_arg(y)]), 'shape (' // itoa(n_in) // ',1,')
        scalar = 1
        call expect('native: run with a scalar x', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(scalar)], [inloop_arg(y)]), 'scalar')
        call check('native: failed runs leave y untouched', same_bits([y], [42.0_real64]), 'y was written')

        ! queries out of range, names that do not exist
        s = m%input_shape(2, stat, last_msg)
        call expect('native: input_shape(2) of a one-input model', INLOOP_ERR_INVALID_ARGUMENT, stat, 'out of range')
        s = m%output_shape(0, stat, last_msg)
        call expect('native: output_shape(0)', INLOOP_ERR_INVALID_ARGUMENT, stat, 'out of range')
        call check('native: shape query error gives a zero-sized shape', size(s) == 0, dims_str(s))
        msg = m%input_name(2, stat, last_msg)
        call expect('native: input_name(2) of a one-input model', INLOOP_ERR_INVALID_ARGUMENT, stat, 'out of range')
        call check('native: input_index of an unknown name is an error', &
                   m%input_index('no such input', stat, last_msg) == 0 .and. stat /= INLOOP_OK, 'stat ' // itoa(stat))
        call check('native: output_index of an unknown name is an error', &
                   m%output_index('no such output', stat, last_msg) == 0 .and. stat /= INLOOP_OK, 'stat ' // itoa(stat))

        ! unloaded and freed models
        call expect('native: run on an unloaded model', INLOOP_ERR_NULL_POINTER, &
                    run_err(never, [inloop_arg(x)], [inloop_arg(y)]), 'NULL')
        call check('native: num_inputs() of an unloaded model is -1', never%num_inputs(stat) == -1 .and. stat /= INLOOP_OK, &
                   'stat ' // itoa(stat))
        s = never%input_shape(1, stat, last_msg)
        call expect('native: input_shape(1) of an unloaded model', INLOOP_ERR_NULL_POINTER, stat)
        copy = m
        call m%free(stat, msg)
        call expect('native: run through a copy of a freed model', INLOOP_ERR_INVALID_HANDLE, &
                    run_err(copy, [inloop_arg(x)], [inloop_arg(y)]), 'freed')
        call expect('native: run with zero samples through a copy of a freed model', INLOOP_ERR_INVALID_HANDLE, &
                    run_err(copy, [inloop_arg(x(:, 1:0))], [inloop_arg(y(:, 1:0))]), 'freed')
        call expect('native: forward through a copy of a freed model', INLOOP_ERR_INVALID_HANDLE, fwd_err(copy, x, y), 'freed')
        call copy%free(stat)
    end subroutine

    ! ======================================================================== the shared ONNX models
    subroutine shared_model(name, fin, fout)
        character(len=*), intent(in) :: name
        integer(int64), intent(in) :: fin(:), fout(:)   ! expected per-sample shapes, Fortran order
        type(inloop_model) :: m
        real(real64), allocatable, target :: x(:), yref(:), y(:), xs(:), ys(:)
        real(real32), allocatable, target :: x32(:), y32(:)
        integer(int64), allocatable :: s(:)
        integer, allocatable :: counts(:)
        character(len=8), allocatable :: names(:)
        integer(int64) :: n_in, n_out, nb, j, k
        integer :: stat
        character(len=:), allocatable :: path, label
        character(len=512) :: msg
        logical :: ok
        real(real64) :: tol

        path = shared // '/' // name // '.onnx'
        if (.not. exists(path)) then
            write (output_unit, '(a)') 'SKIP ' // name // '.onnx: ' // path // ' not found'
            return
        end if
        call read_io(iodir // '/' // name // '.onnx.io.bin', x, yref, n_in, n_out, nb, ok)
        call check('read ' // iodir // '/' // name // '.onnx.io.bin', ok, &
                   'missing or unreadable: run python3 Tests/fortran/onnx_io_bin.py --src ' // shared // ' --out ' // iodir)
        if (.not. ok) return
        msg = ''
        call m%load(path, stat=stat, errmsg=msg)
        call require('load ' // path, stat == INLOOP_OK, trim(msg))
        if (stat /= INLOOP_OK) return
        label = name // ' ' // dims_str(fin) // ' -> ' // dims_str(fout)

        ! queries against the test's own table
        counts = [m%num_inputs(), m%num_outputs(), m%input_index('x'), m%output_index('y')]
        names = [character(len=8) :: m%input_name(), m%output_name()]
        call check(name // ': one input "x", one output "y" (counts, names, indices)', all(counts == 1) .and. &
                   names(1) == 'x' .and. names(2) == 'y', itoa(counts(1)) // ' inputs, ' // itoa(counts(2)) // &
                   ' outputs, names ' // names(1) // ', ' // names(2))
        s = m%input_shape(1)
        call check(name // ': input_shape(1) = ' // dims_str(fin) // ' (Fortran order)', same_dims(s, fin), 'got ' // dims_str(s))
        s = m%output_shape(1)
        call check(name // ': output_shape(1) = ' // dims_str(fout), same_dims(s, fout), 'got ' // dims_str(s))
        call check(name // ': input_size() = product of the input shape = n_in of the io.bin', &
                   m%input_size() == product(fin) .and. product(fin) == n_in, &
                   itoa(m%input_size()) // ' / ' // itoa(product(fin)) // ' / ' // itoa(n_in))
        call check(name // ': output_size() = product of the output shape = n_out', &
                   m%output_size() == product(fout) .and. product(fout) == n_out, &
                   itoa(m%output_size()) // ' / ' // itoa(product(fout)) // ' / ' // itoa(n_out))
        if (product(fin) /= n_in .or. product(fout) /= n_out) return
        tol = 1e-5_real64 * maxval(abs(yref)) + 1e-6_real64

        ! forward with arrays of the model's shape, batch last: real64, real32
        allocate (y(n_out * nb), y32(n_out * nb))
        y = huge(1.0_real64)
        call shaped64(m, fin, fout, nb, x, y, 'forward', stat, msg)
        call check_close(label // ': forward real64, batch ' // itoa(nb), stat, msg, y, yref, tol)
        x32 = real(x, real32)
        y32 = huge(1.0_real32)
        call shaped32(m, fin, fout, nb, x32, y32, 'forward', stat, msg)
        call check_close(label // ': forward real32, batch ' // itoa(nb), stat, msg, real(y32, real64), yref, tol)

        ! run with inloop_arg: real64, real32
        y = huge(1.0_real64)
        call shaped64(m, fin, fout, nb, x, y, 'run', stat, msg)
        call check_close(label // ': run real64', stat, msg, y, yref, tol)
        y32 = huge(1.0_real32)
        call shaped32(m, fin, fout, nb, x32, y32, 'run', stat, msg)
        call check_close(label // ': run real32', stat, msg, real(y32, real64), yref, tol)

        ! one sample, without the batch dimension: x(W, H, C) -> y(...)
        do k = 1, 2
            j = merge(1_int64, nb, k == 1)
            xs = x((j - 1) * n_in + 1:j * n_in)
            allocate (ys(n_out))
            ys = huge(1.0_real64)
            call shaped64(m, fin, fout, 0_int64, xs, ys, 'forward', stat, msg)
            call check_close(label // ': forward one sample (no batch dimension), sample ' // itoa(j), stat, msg, ys, &
                             yref((j - 1) * n_out + 1:j * n_out), tol)
            ys = huge(1.0_real64)
            call shaped64(m, fin, fout, 0_int64, xs, ys, 'run', stat, msg)
            call check_close(label // ': run one sample, sample ' // itoa(j), stat, msg, ys, &
                             yref((j - 1) * n_out + 1:j * n_out), tol)
            deallocate (ys)
        end do

        ! every other sample: x(..., 1:N:2) -> y(..., 1:N:2), non-contiguous (the compiler copies)
        y = -7
        call shaped64(m, fin, fout, nb, x, y, 'strided', stat, msg)
        call check_close(label // ': forward x(..., 1:N:2) -> y(..., 1:N:2)', stat, msg, &
                         strided(y, n_out, nb), strided(yref, n_out, nb), tol)
        call check(label // ': forward into y(..., 1:N:2) leaves the other samples', &
                   same_bits(strided(y(n_out + 1:), n_out, nb - 1), [-7.0_real64]), 'samples outside the section were written')
        call m%free(stat, msg)
        call require(name // ': free', stat == INLOOP_OK, trim(msg))
    end subroutine

    !> Points arrays of shape (fin, nb) and (fout, nb) (without the batch if nb = 0: one sample) at x and y,
    !> and calls forward ('forward'), run with inloop_arg ('run'), or forward on every other sample
    !> ('strided'). The rank combinations are those of the shared models.
    subroutine shaped64(m, fin, fout, nb, x, y, how, stat, msg)
        type(inloop_model), intent(in) :: m
        integer(int64), intent(in) :: fin(:), fout(:), nb
        real(real64), intent(in), target, contiguous :: x(:)
        real(real64), intent(inout), target, contiguous :: y(:)
        character(len=*), intent(in) :: how
        integer, intent(out) :: stat
        character(len=*), intent(inout) :: msg
        real(real64), pointer :: x1(:), x2(:,:), x3(:,:,:), x4(:,:,:,:), y1(:), y2(:,:), y3(:,:,:)
        integer(int64) :: sx(4), sy(4)
        integer :: rx, ry
        call full_shape(fin, nb, sx, rx)
        call full_shape(fout, nb, sy, ry)
        stat = -1
        msg = 'untested rank combination x rank ' // itoa(rx) // ', y rank ' // itoa(ry)
        select case (10 * rx + ry)
        case (11)   ! x(n) -> y(m): one sample of a rank-1 model
            x1(1:sx(1)) => x
            y1(1:sy(1)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x1)], [inloop_arg(y1)], stat, msg)
            else
                call m%forward(x1, y1, stat, msg)
            end if
        case (22)   ! x(n, N) -> y(m, N), or x(L, C) -> y(L, C') one sample of a conv1d
            x2(1:sx(1), 1:sx(2)) => x
            y2(1:sy(1), 1:sy(2)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x2)], [inloop_arg(y2)], stat, msg)
            else if (how == 'strided') then
                call m%forward(x2(:, 1:nb:2), y2(:, 1:nb:2), stat, msg)
            else
                call m%forward(x2, y2, stat, msg)
            end if
        case (33)   ! x(L, C, N) -> y(L, C', N): conv1d
            x3(1:sx(1), 1:sx(2), 1:sx(3)) => x
            y3(1:sy(1), 1:sy(2), 1:sy(3)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x3)], [inloop_arg(y3)], stat, msg)
            else if (how == 'strided') then
                call m%forward(x3(:, :, 1:nb:2), y3(:, :, 1:nb:2), stat, msg)
            else
                call m%forward(x3, y3, stat, msg)
            end if
        case (42)   ! x(W, H, C, N) -> y(m, N): cnn2d
            x4(1:sx(1), 1:sx(2), 1:sx(3), 1:sx(4)) => x
            y2(1:sy(1), 1:sy(2)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x4)], [inloop_arg(y2)], stat, msg)
            else if (how == 'strided') then
                call m%forward(x4(:, :, :, 1:nb:2), y2(:, 1:nb:2), stat, msg)
            else
                call m%forward(x4, y2, stat, msg)
            end if
        case (31)   ! x(W, H, C) -> y(m): one sample of cnn2d
            x3(1:sx(1), 1:sx(2), 1:sx(3)) => x
            y1(1:sy(1)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x3)], [inloop_arg(y1)], stat, msg)
            else
                call m%forward(x3, y1, stat, msg)
            end if
        end select
    end subroutine

    subroutine shaped32(m, fin, fout, nb, x, y, how, stat, msg)
        type(inloop_model), intent(in) :: m
        integer(int64), intent(in) :: fin(:), fout(:), nb
        real(real32), intent(in), target, contiguous :: x(:)
        real(real32), intent(inout), target, contiguous :: y(:)
        character(len=*), intent(in) :: how
        integer, intent(out) :: stat
        character(len=*), intent(inout) :: msg
        real(real32), pointer :: x2(:,:), x3(:,:,:), x4(:,:,:,:), y2(:,:), y3(:,:,:)
        integer(int64) :: sx(4), sy(4)
        integer :: rx, ry
        call full_shape(fin, nb, sx, rx)
        call full_shape(fout, nb, sy, ry)
        stat = -1
        msg = 'untested rank combination x rank ' // itoa(rx) // ', y rank ' // itoa(ry)
        select case (10 * rx + ry)
        case (22)
            x2(1:sx(1), 1:sx(2)) => x
            y2(1:sy(1), 1:sy(2)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x2)], [inloop_arg(y2)], stat, msg)
            else
                call m%forward(x2, y2, stat, msg)
            end if
        case (33)
            x3(1:sx(1), 1:sx(2), 1:sx(3)) => x
            y3(1:sy(1), 1:sy(2), 1:sy(3)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x3)], [inloop_arg(y3)], stat, msg)
            else
                call m%forward(x3, y3, stat, msg)
            end if
        case (42)
            x4(1:sx(1), 1:sx(2), 1:sx(3), 1:sx(4)) => x
            y2(1:sy(1), 1:sy(2)) => y
            if (how == 'run') then
                call m%run([inloop_arg(x4)], [inloop_arg(y2)], stat, msg)
            else
                call m%forward(x4, y2, stat, msg)
            end if
        end select
    end subroutine

    subroutine full_shape(per_sample, nb, s, r)
        integer(int64), intent(in) :: per_sample(:), nb
        integer(int64), intent(out) :: s(4)
        integer, intent(out) :: r
        r = size(per_sample)
        s = 1
        s(1:r) = per_sample
        if (nb > 0) then
            r = r + 1
            s(r) = nb
        end if
    end subroutine

    !> Samples 1, 3, 5, ... of nb samples of n values each.
    function strided(v, n, nb) result(w)
        real(real64), intent(in) :: v(:)
        integer(int64), intent(in) :: n, nb
        real(real64), allocatable :: w(:)
        integer(int64) :: j
        allocate (w(0))
        do j = 1, nb, 2
            w = [w, v((j - 1) * n + 1:j * n)]
        end do
    end function

    ! ======================================================================== shape errors (shared models)
    subroutine shape_errors()
        type(inloop_model) :: cnn, conv
        real(real64), allocatable, target :: x4(:,:,:,:), x3(:,:,:), x2(:,:), y2(:,:), y3(:,:,:)
        real(real32), allocatable :: x4s(:,:,:,:), y2s(:,:)
        integer :: stat
        character(len=512) :: msg

        if (exists(shared // '/cnn2d.onnx')) then
            call cnn%load(shared // '/cnn2d.onnx', stat=stat, errmsg=msg)
            call require('load cnn2d.onnx for the shape errors', stat == INLOOP_OK, trim(msg))
            if (stat == INLOOP_OK) then
                allocate (x4(64, 64, 3, 2), y2(1, 2))
                x4 = 0
                y2 = 42
                call expect('cnn2d: x(64,64,3,2), 3 channels for 2', INLOOP_ERR_SIZE_MISMATCH, fwd_err(cnn, x4, y2), &
                            'x has shape (64,64,3,2) but model input ''x'' is (64,64,2,N) in Fortran order = (N,2,64,64) in ONNX order')
                deallocate (x4)
                allocate (x4s(64, 64, 3, 2), y2s(1, 2))
                x4s = 0
                msg = ''
                call cnn%forward(x4s, y2s, stat, msg)
                call expect_msg('cnn2d: real32 x(64,64,3,2)', INLOOP_ERR_SIZE_MISMATCH, stat, msg, '(N,2,64,64)')
                allocate (x4(2, 64, 64, 2))   ! ONNX order written as a Fortran shape: the classic mistake
                x4 = 0
                call expect('cnn2d: x(2,64,64,N) (ONNX order, not reversed)', INLOOP_ERR_SIZE_MISMATCH, &
                            fwd_err(cnn, x4, y2), '(64,64,2,N)')
                deallocate (x4)
                allocate (x2(64 * 64 * 2, 2))   ! flattened samples: refused, the layout cannot be checked
                x2 = 0
                call expect('cnn2d: flattened x(8192, N)', INLOOP_ERR_SIZE_MISMATCH, fwd_err(cnn, x2, y2), '(8192,2)')
                allocate (x4(64, 64, 2, 3))
                x4 = 0
                call expect('cnn2d: x with 3 samples, y with 2', INLOOP_ERR_SIZE_MISMATCH, fwd_err(cnn, x4, y2), &
                            'x holds 3 samples (size(x, 4)) but y holds 2 samples (size(y, 2))')
                deallocate (y2)
                allocate (y2(2, 3))
                y2 = 42
                call expect('cnn2d: y(2, N) for an output of 1', INLOOP_ERR_SIZE_MISMATCH, fwd_err(cnn, x4, y2), &
                            'y has shape (2,3) but model output ''y'' is (1,N)')
                call check('cnn2d: y untouched after the shape errors', same_bits([y2], [42.0_real64]), 'y was written')
                call expect('cnn2d: run with x(64,64,2,3) and y(2,3)', INLOOP_ERR_SIZE_MISMATCH, &
                            run_err(cnn, [inloop_arg(x4)], [inloop_arg(y2)]), 'outputs(1) has shape (2,3)')
                deallocate (y2)
                allocate (y2(1, 3))
                call cnn%forward(x4(:, :, :, 1:0), y2(:, 1:0), stat, msg)
                call check('cnn2d: zero samples x(64,64,2,0)', stat == INLOOP_OK, 'stat ' // itoa(stat) // ': ' // trim(msg))
                deallocate (x4)
                allocate (x4(64, 64, 1, 0))
                call expect('cnn2d: zero samples with a wrong shape x(64,64,1,0)', INLOOP_ERR_SIZE_MISMATCH, &
                            fwd_err(cnn, x4, y2(:, 1:0)), '(64,64,1,0)')
            end if
        else
            write (output_unit, '(a)') 'SKIP cnn2d shape errors: ' // shared // '/cnn2d.onnx not found'
        end if

        if (exists(shared // '/column_conv1d.onnx')) then
            call conv%load(shared // '/column_conv1d.onnx', stat=stat, errmsg=msg)
            call require('load column_conv1d.onnx for the shape errors', stat == INLOOP_OK, trim(msg))
            if (stat == INLOOP_OK) then
                allocate (x3(4, 60, 2), y3(60, 2, 2))
                x3 = 0
                y3 = 42
                call expect('column_conv1d: x(C, L, N) = x(4,60,2) instead of x(L, C, N)', INLOOP_ERR_SIZE_MISMATCH, &
                            fwd_err(conv, x3, y3), 'x has shape (4,60,2) but model input ''x'' is (60,4,N) in Fortran ' // &
                            'order = (N,4,60) in ONNX order')
                deallocate (x3)
                allocate (x3(60, 4, 2))
                x3 = 0
                deallocate (y3)
                allocate (y3(60, 3, 2))
                y3 = 42
                call expect('column_conv1d: y(60,3,N) for 2 output channels', INLOOP_ERR_SIZE_MISMATCH, &
                            fwd_err(conv, x3, y3), '(60,2,N)')
                call check('column_conv1d: y untouched', same_bits([y3], [42.0_real64]), 'y was written')
            end if
        else
            write (output_unit, '(a)') 'SKIP column_conv1d shape errors: ' // shared // '/column_conv1d.onnx not found'
        end if
    end subroutine

    ! ======================================================================== two inputs, two outputs
    subroutine two_io_checks(base)
        character(len=*), intent(in) :: base
        type(inloop_model) :: m
        type(inloop_arg) :: ins(2), outs(2)
        real(real64), allocatable :: x(:,:), y(:,:)
        real(real64), allocatable, target :: x1(:,:,:), x2(:,:), y1(:,:,:), y2(:,:,:), r1(:,:,:), r2(:,:,:)
        real(real64), allocatable, target :: x1s(:,:), x2s(:), y1s(:,:), y2s(:,:), x2short(:,:)
        real(real32), allocatable, target :: x1f(:,:,:), x2f(:,:), y1f(:,:,:), y2f(:,:,:)
        integer(int64), allocatable :: s(:)
        integer, allocatable :: counts(:)
        character(len=8), allocatable :: names(:)
        integer :: stat, nb
        character(len=512) :: msg
        logical :: ok
        real(real64) :: tol

        msg = ''
        call m%load(base // '.onnx', stat=stat, errmsg=msg)
        call check('two_io: load ' // base // '.onnx', stat == INLOOP_OK, trim(msg))
        if (stat /= INLOOP_OK) return
        call read_io2(base // '.io.bin', x, y, ok)
        call check('two_io: read ' // base // '.io.bin', ok .and. size(x, 1) == 16 .and. size(y, 1) == 31, &
                   'missing, or not 16 inputs and 31 outputs per sample')
        if (.not. ok) return
        nb = size(x, 2)
        ! a sample's x is x1 (3, 4) then x2 (4), y is y1 (3, 5) then y2 (4, 4), each row-major (ONNX order),
        ! which reshape (column-major) turns into the Fortran arrays x1(4, 3, N), ...
        x1 = reshape(x(1:12, :), [4, 3, nb])
        x2 = x(13:16, :)
        r1 = reshape(y(1:15, :), [5, 3, nb])
        r2 = reshape(y(16:31, :), [4, 4, nb])
        tol = 1e-5_real64 * maxval(abs(r1)) + 1e-6_real64

        ! queries
        counts = [m%num_inputs(), m%num_outputs()]
        call check('two_io: 2 inputs, 2 outputs', all(counts == [2, 2]), itoa(counts(1)) // ', ' // itoa(counts(2)))
        names = [character(len=8) :: m%input_name(1), m%input_name(2), m%output_name(1), m%output_name(2)]
        call check('two_io: names x1, x2 -> y1, y2', all(names == [character(len=8) :: 'x1', 'x2', 'y1', 'y2']), &
                   names(1) // names(2) // names(3) // names(4))
        counts = [m%input_index('x2'), m%input_index('x1'), m%output_index('y2')]
        call check('two_io: input_index(''x2'') = 2, input_index(''x1'') = 1, output_index(''y2'') = 2', &
                   all(counts == [2, 1, 2]), itoa(counts(1)) // ', ' // itoa(counts(2)) // ', ' // itoa(counts(3)))
        s = m%input_shape(1)
        call check('two_io: input_shape(1) = [4, 3]', same_dims(s, [4_int64, 3_int64]), dims_str(s))
        s = m%input_shape(2)
        call check('two_io: input_shape(2) = [4]', same_dims(s, [4_int64]), dims_str(s))
        s = m%output_shape(1)
        call check('two_io: output_shape(1) = [5, 3]', same_dims(s, [5_int64, 3_int64]), dims_str(s))
        s = m%output_shape(2)
        call check('two_io: output_shape(2) = [4, 4]', same_dims(s, [4_int64, 4_int64]), dims_str(s))
        s = m%input_shape(3, stat, last_msg)
        call expect('two_io: input_shape(3)', INLOOP_ERR_INVALID_ARGUMENT, stat, 'out of range')
        call check('two_io: input_index(''y1'') is an error (an output)', m%input_index('y1', stat, last_msg) == 0 .and. &
                   stat /= INLOOP_OK, 'stat ' // itoa(stat))

        ! run, real64: y2 copies the inputs, so it must equal them bitwise
        allocate (y1(5, 3, nb), y2(4, 4, nb))
        y1 = huge(1.0_real64)
        y2 = huge(1.0_real64)
        call m%run([inloop_arg(x1), inloop_arg(x2)], [inloop_arg(y1), inloop_arg(y2)], stat, msg)
        call check_close('two_io: run real64 y1(5,3,N)', stat, msg, [y1], [r1], tol)
        call check('two_io: run real64 y2(4,4,N) equals the inputs bitwise', stat == INLOOP_OK .and. same_bits([y2], [r2]), &
                   'stat ' // itoa(stat) // ', max |y2 - x| = ' // rtoa(maxval(abs(y2 - r2))))

        ! real32
        x1f = real(x1, real32)
        x2f = real(x2, real32)
        allocate (y1f(5, 3, nb), y2f(4, 4, nb))
        y1f = huge(1.0_real32)
        y2f = huge(1.0_real32)
        call m%run([inloop_arg(x1f), inloop_arg(x2f)], [inloop_arg(y1f), inloop_arg(y2f)], stat, msg)
        call check_close('two_io: run real32 y1', stat, msg, [real(y1f, real64)], [r1], tol)
        call check('two_io: run real32 y2 equals the inputs bitwise', stat == INLOOP_OK .and. same_bits([real(y2f, real64)], [r2]), &
                   'stat ' // itoa(stat))

        ! arguments placed by name
        y1 = huge(1.0_real64)
        y2 = huge(1.0_real64)
        ins(m%input_index('x2')) = inloop_arg(x2)
        ins(m%input_index('x1')) = inloop_arg(x1)
        outs(m%output_index('y2')) = inloop_arg(y2)
        outs(m%output_index('y1')) = inloop_arg(y1)
        call m%run(ins, outs, stat, msg)
        call check('two_io: run with arguments placed by input_index/output_index', stat == INLOOP_OK .and. &
                   all(abs(y1 - r1) <= tol) .and. same_bits([y2], [r2]), 'stat ' // itoa(stat) // ': ' // trim(msg))

        ! one sample (no batch dimension): sample 2
        x1s = x1(:, :, 2)
        x2s = x2(:, 2)
        allocate (y1s(5, 3), y2s(4, 4))
        call m%run([inloop_arg(x1s), inloop_arg(x2s)], [inloop_arg(y1s), inloop_arg(y2s)], stat, msg)
        call check('two_io: run one sample x1(4,3), x2(4) -> y1(5,3), y2(4,4)', stat == INLOOP_OK .and. &
                   all(abs(y1s - r1(:, :, 2)) <= tol) .and. same_bits([y2s], [r2(:, :, 2)]), 'stat ' // itoa(stat) // ': ' // trim(msg))

        ! errors; outputs untouched
        y1 = 42
        y2 = 42
        call expect('two_io: inputs in the wrong order', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(x2), inloop_arg(x1)], [inloop_arg(y1), inloop_arg(y2)]), &
                    'inputs(1) has shape (4,' // itoa(nb) // ') but model input 1 ''x1'' is (4,3,N)')
        allocate (x2short(4, nb - 1))
        x2short = 0
        call expect('two_io: x2 with one sample less', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(x1), inloop_arg(x2short)], [inloop_arg(y1), inloop_arg(y2)]), &
                    'inputs(1) holds ' // itoa(nb) // ' samples (size(inputs(1), 3)) but inputs(2) holds ' // itoa(nb - 1))
        call expect('two_io: one input array for two', INLOOP_ERR_SIZE_MISMATCH, &
                    run_err(m, [inloop_arg(x1)], [inloop_arg(y1), inloop_arg(y2)]), 'x1, x2')
        call expect('two_io: real32 x1 with real64 x2', INLOOP_ERR_INVALID_ARGUMENT, &
                    run_err(m, [inloop_arg(x1f), inloop_arg(x2)], [inloop_arg(y1), inloop_arg(y2)]), &
                    'inputs(1) is real(real32) and inputs(2) is real(real64)')
        call expect('two_io: a non-contiguous output', INLOOP_ERR_INVALID_ARGUMENT, &
                    run_err(m, [inloop_arg(x1), inloop_arg(x2)], [inloop_arg(y1), inloop_arg(y2(:, 1:3, :))]), 'outputs(2)')
        call expect('two_io: forward on a two-input model', INLOOP_ERR_INVALID_ARGUMENT, fwd_err(m, x2, y2(:, 1, :)), 'run(')
        call check('two_io: outputs untouched after the errors', same_bits([y1, y2], [42.0_real64]), 'written')
    end subroutine

    ! ======================================================================== calls returning stat
    integer function run_err(m, inputs, outputs) result(stat)
        type(inloop_model), intent(in) :: m
        type(inloop_arg), intent(in) :: inputs(:), outputs(:)
        last_msg = ''
        call m%run(inputs, outputs, stat, last_msg)
    end function

    integer function fwd_err(m, x, y) result(stat)
        type(inloop_model), intent(in) :: m
        real(real64), intent(in) :: x(..)
        real(real64), intent(inout) :: y(..)
        last_msg = ''
        select rank (x)
        rank (2)
            select rank (y)
            rank (2)
                call m%forward(x, y, stat, last_msg)
            rank (3)
                call m%forward(x, y, stat, last_msg)
            rank default
                stat = -2
            end select
        rank (3)
            select rank (y)
            rank (3)
                call m%forward(x, y, stat, last_msg)
            rank default
                stat = -2
            end select
        rank (4)
            select rank (y)
            rank (2)
                call m%forward(x, y, stat, last_msg)
            rank default
                stat = -2
            end select
        rank default
            stat = -2
        end select
        if (stat == -2) last_msg = 'test bug: rank combination not in fwd_err'
    end function

    ! ======================================================================== reporting
    !> A set-up step (e.g. loading): not counted when it works (later checks depend on it), a failure when not.
    subroutine require(name, cond, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: cond
        if (.not. cond) call check(name, cond, detail)
    end subroutine

    subroutine check(name, cond, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: cond
        if (cond) then
            npass = npass + 1
            write (output_unit, '(a)') 'PASS ' // name
        else
            nfail = nfail + 1
            write (output_unit, '(a)') 'FAIL ' // name // ': ' // detail
        end if
    end subroutine

    !> The status of the last *_err call (or `stat` with last_msg) is `want` and its message contains `part`.
    subroutine expect(name, want, stat, part)
        character(len=*), intent(in) :: name
        integer, intent(in) :: want, stat
        character(len=*), intent(in), optional :: part
        call expect_msg(name, want, stat, last_msg, part)
    end subroutine

    subroutine expect_msg(name, want, stat, msg, part)
        character(len=*), intent(in) :: name, msg
        integer, intent(in) :: want, stat
        character(len=*), intent(in), optional :: part
        logical :: ok
        ok = stat == want .and. len_trim(msg) > 0
        if (present(part)) ok = ok .and. index(msg, part) > 0
        if (ok) then
            call check(name // ' [' // inloop_status_string(stat) // ' | ' // trim(msg) // ']', .true., '')
        else if (present(part)) then
            call check(name, .false., 'stat ' // itoa(stat) // ' (want ' // itoa(want) // '), errmsg "' // trim(msg) // &
                       '" (want it to contain "' // part // '")')
        else
            call check(name, .false., 'stat ' // itoa(stat) // ' (want ' // itoa(want) // '), errmsg "' // trim(msg) // '"')
        end if
    end subroutine

    subroutine check_close(name, stat, msg, y, yref, tol)
        character(len=*), intent(in) :: name, msg
        integer, intent(in) :: stat
        real(real64), intent(in) :: y(:), yref(:), tol
        if (stat /= INLOOP_OK) then
            call check(name, .false., 'stat ' // itoa(stat) // ': ' // trim(msg))
        else if (size(y) /= size(yref)) then
            call check(name, .false., 'test bug: ' // itoa(size(y)) // ' values vs ' // itoa(size(yref)) // ' in the reference')
        else
            ! all(... <= ...) is false for NaN, which maxval would skip
            call check(name, all(abs(y - yref) <= tol), 'max |y - ref| = ' // rtoa(maxval(abs(y - yref))) // ' > tol ' // &
                       rtoa(tol) // ', non-finite values: ' // itoa(count(.not. ieee_is_finite(y))))
        end if
    end subroutine

    !> a equals b bitwise, or every element of a equals b(1) bitwise if b has one element.
    logical function same_bits(a, b)
        real(real64), intent(in) :: a(:), b(:)
        integer(int64) :: ia(size(a)), ib(size(b))
        ia = transfer(a, 0_int64, size(a))
        ib = transfer(b, 0_int64, size(b))
        if (size(b) == 1) then
            same_bits = all(ia == ib(1))
        else
            same_bits = size(a) == size(b)
            if (same_bits) same_bits = all(ia == ib)
        end if
    end function

    logical function same_dims(a, b)
        integer(int64), intent(in) :: a(:), b(:)
        same_dims = size(a) == size(b)
        if (same_dims) same_dims = all(a == b)
    end function

    function dims_str(d) result(s)
        integer(int64), intent(in) :: d(:)
        character(len=:), allocatable :: s
        integer :: k
        s = '['
        do k = 1, size(d)
            if (k > 1) s = s // ', '
            s = s // itoa(d(k))
        end do
        s = s // ']'
    end function

    ! ======================================================================== strided convolutions + tanh
    !> Tests/fixtures/onnx/strided_tanh.onnx (x(10, 10, 2, N) -> y(4, 2, 2, N), two strided convolutions
    !> around a tanh) against its float64 NumPy reference, real(8) and real(4); its tangent-linear against
    !> real(8) central finite differences (independent of the engine's own derivatives).
    subroutine strided_tanh_checks(path)
        character(len=*), intent(in) :: path
        type(inloop_model) :: m
        real(real64), allocatable :: xf(:), yf(:), xs(:,:), dx(:,:), tl(:,:), yp(:,:), ym(:,:), tmp(:,:)
        real(real64) :: x(10, 10, 2, 4), y(4, 2, 2, 4), yref(4, 2, 2, 4), err
        real(real32) :: y4(4, 2, 2, 4)
        integer(int64) :: n_in, n_out, batch
        integer :: stat, k, i
        character(len=400) :: msg
        logical :: ok
        call read_io(path // '.io.bin', xf, yf, n_in, n_out, batch, ok)
        call require('strided_tanh: read the reference', ok .and. n_in == 200 .and. n_out == 16 .and. batch == 4, path // '.io.bin')
        if (.not. ok .or. n_in /= 200 .or. n_out /= 16 .or. batch /= 4) return
        x = reshape(xf, shape(x))
        yref = reshape(yf, shape(yref))
        msg = ''
        call m%load(path, stat=stat, errmsg=msg)
        call require('load ' // path, stat == INLOOP_OK, trim(msg))
        if (stat /= INLOOP_OK) return
        y = huge(1.0_real64)
        call m%forward(x, y, stat, msg)
        err = maxval(abs(y - yref)) / maxval(abs(yref))
        call check('strided_tanh: forward real(8) x(10,10,2,4) -> y(4,2,2,4) equals the NumPy reference (1e-5)', &
                   stat == INLOOP_OK .and. err < 1e-5_real64, 'stat ' // itoa(stat) // ' ' // trim(msg) // ', error ' // rtoa(err))
        y4 = huge(1.0_real32)
        call m%forward(real(x, real32), y4, stat, msg)
        err = maxval(abs(real(y4, real64) - yref)) / maxval(abs(yref))
        call check('strided_tanh: forward real(4) equals the NumPy reference (1e-5)', &
                   stat == INLOOP_OK .and. err < 1e-5_real64, 'stat ' // itoa(stat) // ' ' // trim(msg) // ', error ' // rtoa(err))
        ! tangent-linear vs central differences, h = 1e-5 (samples flattened: the derivative API is rank 2)
        allocate (xs(200, 4), dx(200, 4), tl(16, 4), yp(16, 4), ym(16, 4), tmp(16, 4))
        xs = reshape(xf, [200, 4])
        do k = 1, 4
            dx(:, k) = sin(0.7_real64 * [(real(k * 200 + i, real64), i = 1, 200)])
        end do
        call m%jvp(xs, dx, tl, stat=stat, errmsg=msg)
        call require('strided_tanh: jvp', stat == INLOOP_OK, trim(msg))
        call m%jvp(xs + 1e-5_real64 * dx, dx, tmp, y=yp, stat=stat, errmsg=msg)
        call m%jvp(xs - 1e-5_real64 * dx, dx, tmp, y=ym, stat=k, errmsg=msg)
        call require('strided_tanh: jvp at x +- h dx', stat == INLOOP_OK .and. k == INLOOP_OK, trim(msg))
        err = maxval(abs(tl - (yp - ym) / 2e-5_real64)) / maxval(abs(tl))
        call check('strided_tanh: tangent-linear equals real(8) central finite differences', err < 1e-7_real64, &
                   'max |jvp - central difference| / max |jvp| = ' // rtoa(err))
        call m%free()
    end subroutine

    ! ======================================================================== files and strings
    !> io.bin as flat samples: x(n_in * batch), y(n_out * batch).
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
        if (ios /= 0 .or. n_in < 1 .or. n_out < 1 .or. batch < 2 .or. n_in * batch > 10**8 .or. n_out * batch > 10**8) then
            close (u)
            return
        end if
        allocate (x(n_in * batch), y(n_out * batch))
        read (u, iostat=ios) x, y
        close (u)
        ok = ios == 0
    end subroutine

    !> io.bin as x(n_in, batch), y(n_out, batch).
    subroutine read_io2(path, x, y, ok)
        character(len=*), intent(in) :: path
        real(real64), allocatable, intent(out) :: x(:,:), y(:,:)
        logical, intent(out) :: ok
        real(real64), allocatable :: xf(:), yf(:)
        integer(int64) :: n_in, n_out, batch
        call read_io(path, xf, yf, n_in, n_out, batch, ok)
        if (.not. ok) return
        x = reshape(xf, [n_in, batch])
        y = reshape(yf, [n_out, batch])
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

    logical function exists(path)
        character(len=*), intent(in) :: path
        inquire (file=path, exist=exists)
    end function

    function itoa(i) result(s)
        class(*), intent(in) :: i
        character(len=:), allocatable :: s
        character(len=24) :: buf
        select type (i)
        type is (integer)
            write (buf, '(i0)') i
        type is (integer(int64))
            write (buf, '(i0)') i
        class default
            buf = '?'
        end select
        s = trim(buf)
    end function

    function rtoa(r) result(s)
        real(real64), intent(in) :: r
        character(len=:), allocatable :: s
        character(len=32) :: buf
        write (buf, '(es11.4)') r
        s = trim(adjustl(buf))
    end function

end program test_onnx
