! Serial tests of the Fortran bindings (fortran-bindings/inloop.f90) against libInLoop.
!
!   test_serial [FIXTURES_DIR [MODELS_DIR [LIST_FILE]]]
!
! FIXTURES_DIR (default Tests/fixtures) holds <name>.safetensors and <name>.io.bin for each name in
! LIST_FILE (default FIXTURES_DIR/list.txt; one base name per line, blank lines and '#' lines ignored).
! MODELS_DIR (default build/models) holds the converted shared models column_mlp, column_mlp_small, l96
! (<name>.safetensors + <name>.io.bin); missing ones are reported as SKIP and not counted.
! <name>.io.bin: little-endian stream: int64 n_in, n_out, batch; float64 x(n_in, batch); float64 y(n_out, batch).
!
! Numerics: rank-2 and rank-1 forward against the reference within 1e-5 relative to max |ref|; with
! set_reproducible(.true.), rank-1 (one column) and a strided sub-batch must equal the rank-2 columns bitwise.
!
! Prints PASS/FAIL/SKIP lines, then "N passed, M failed"; exits non-zero if M > 0.
program test_serial
    use, intrinsic :: iso_fortran_env, only: int8, int64, real32, real64, output_unit
    use, intrinsic :: iso_c_binding, only: c_int32_t
    use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan, ieee_is_finite
    use inloop
    use inloop_c, only: c_inloop_model_set_reproducible
    implicit none

    integer :: npass = 0, nfail = 0, i
    character(len=:), allocatable :: fixdir, modeldir, listfile, errmodel
    character(len=512), allocatable :: names(:)
    character(len=*), parameter :: shared(3) = [character(len=16) :: 'column_mlp', 'column_mlp_small', 'l96']
    character(len=512) :: last_msg = ''   ! errmsg of the last errcall_* (read by expect)
    logical :: ok

    fixdir = arg_or(1, 'Tests/fixtures')
    modeldir = arg_or(2, 'build/models')
    listfile = arg_or(3, fixdir // '/list.txt')

    call check('version string non-empty', len(inloop_version()) > 0, 'got ""')
    call check('status name of INLOOP_ERR_IO non-empty', len(inloop_status_string(INLOOP_ERR_IO)) > 0, 'got ""')

    ! --------------------------------------------------------------- every fixture: load + numerics
    call read_list(listfile, names, ok)
    if (ok) then
        call check('fixture list ' // listfile, size(names) > 0, 'has no fixture names')
    else
        call check('fixture list ' // listfile, .false., 'cannot open it (expected one fixture base name per line)')
    end if
    errmodel = ''
    do i = 1, size(names)
        call model_checks(trim(names(i)), fixdir // '/' // trim(names(i)) // '.safetensors', &
                          fixdir // '/' // trim(names(i)) // '.io.bin')
        if (trim(names(i)) == 'mlp_medium' .or. len(errmodel) == 0) errmodel = fixdir // '/' // trim(names(i)) // '.safetensors'
    end do

    if (len(errmodel) == 0) then
        if (exists(fixdir // '/mlp_medium.safetensors')) errmodel = fixdir // '/mlp_medium.safetensors'
    end if

    ! --------------------------------------------------------------- converted shared models
    do i = 1, size(shared)
        if (.not. exists(modeldir // '/' // trim(shared(i)) // '.safetensors')) then
            write (output_unit, '(a)') 'SKIP ' // trim(shared(i)) // ': ' // modeldir // '/' // trim(shared(i)) // &
                '.safetensors not found'
            cycle
        end if
        call model_checks(trim(shared(i)), modeldir // '/' // trim(shared(i)) // '.safetensors', &
                          modeldir // '/' // trim(shared(i)) // '.io.bin')
    end do

    ! --------------------------------------------------------------- errors and lifetime
    call file_errors(fixdir)
    call thread_checks()
    if (len(errmodel) > 0) then
        call model_errors(errmodel)
    else
        call check('model error checks', .false., 'no fixture model to run them with')
    end if

    write (output_unit, '(i0, a, i0, a)') npass, ' passed, ', nfail, ' failed'
    if (nfail > 0) error stop 1

contains

    ! ======================================================================== numerics of one model
    subroutine model_checks(label, path, iopath)
        character(len=*), intent(in) :: label, path, iopath
        type(inloop_model) :: m
        real(real64), allocatable :: x(:,:), yref(:,:), y(:,:), y1(:), xbig(:,:), ys(:,:), yr(:,:)
        character(len=:), allocatable :: in_name, out_name
        integer(int64) :: model_in, model_out
        real(real32), allocatable :: y32(:,:), y32_1(:), yr32(:,:)
        integer :: stat, n_in, n_out, batch, j, cols(3), k
        character(len=512) :: msg
        real(real64) :: tol
        logical :: ok

        msg = ''
        call m%load(path, stat=stat, errmsg=msg)
        call require('load ' // label, stat == INLOOP_OK, trim(msg))
        if (stat /= INLOOP_OK) return
        call read_io(iopath, x, yref, ok)
        call check('read ' // iopath, ok, 'cannot read')
        if (.not. ok) return
        n_in = size(x, 1)
        n_out = size(yref, 1)
        batch = size(x, 2)
        model_in = m%input_size()
        model_out = m%output_size()
        call check('sizes ' // label, model_in == n_in .and. model_out == n_out, &
                   'model says ' // itoa(int(model_in)) // ' -> ' // itoa(int(model_out)) // &
                   ', io.bin says ' // itoa(n_in) // ' -> ' // itoa(n_out))
        in_name = m%input_name()
        out_name = m%output_name()
        call check('names ' // label // ' (' // in_name // ' -> ' // out_name // ')', &
                   len(in_name) > 0 .and. len(out_name) > 0, 'empty name')
        tol = 1e-5_real64 * maxval(abs(yref)) + 1e-6_real64

        ! rank 2, real64 and real32
        allocate (y(n_out, batch), y32(n_out, batch))
        y = huge(1.0_real64)
        call m%forward(x, y, stat, msg)
        call check_close('forward real64 rank-2 ' // label, stat, msg, y, yref, tol)
        y32 = huge(1.0_real32)
        call m%forward(real(x, real32), y32, stat, msg)
        call check_close('forward real32 rank-2 ' // label, stat, msg, real(y32, real64), yref, tol)
        if (index(label, 'wide_') == 1) then
            call check_elementwise('forward real64 element-wise ' // label, INLOOP_OK, msg, y, yref, 1e-6_real64, 1e-5_real64)
            call check_elementwise('forward real32 element-wise ' // label, INLOOP_OK, msg, real(y32, real64), yref, &
                                   1e-6_real64, 1e-5_real64)
        end if

        ! rank 1 (one column), default mode: its bits may differ from the column of the rank-2 call (GEMV
        ! vs GEMM sum in another order), so it is held to the reference at the reference tolerance.
        cols = [1, (batch + 1) / 2, batch]
        allocate (y1(n_out), y32_1(n_out))
        do k = 1, size(cols)
            j = cols(k)
            y1 = huge(1.0_real64)
            call m%forward(x(:, j), y1, stat, msg)
            call check_close('forward real64 rank-1 column ' // itoa(j) // ' ' // label // ' vs reference', stat, msg, &
                             reshape(y1, [n_out, 1]), yref(:, j:j), tol)
            y32_1 = huge(1.0_real32)
            call m%forward(real(x(:, j), real32), y32_1, stat, msg)
            call check_close('forward real32 rank-1 column ' // itoa(j) // ' ' // label // ' vs reference', stat, msg, &
                             real(reshape(y32_1, [n_out, 1]), real64), yref(:, j:j), tol)
        end do

        ! reproducible mode: still within the reference tolerance, and a column's bits do not depend on
        ! the batch it is computed in (one column vs the rank-2 call, a strided sub-batch vs the full batch)
        msg = ''
        call m%set_reproducible(.true., stat, msg)
        call check('set_reproducible(.true.) ' // label, stat == INLOOP_OK, trim(msg))
        allocate (yr(n_out, batch), yr32(n_out, batch))
        yr = huge(1.0_real64)
        call m%forward(x, yr, stat, msg)
        call check_close('reproducible forward real64 rank-2 ' // label, stat, msg, yr, yref, tol)
        yr32 = huge(1.0_real32)
        call m%forward(real(x, real32), yr32, stat, msg)
        call check_close('reproducible forward real32 rank-2 ' // label, stat, msg, real(yr32, real64), yref, tol)
        do k = 1, size(cols)
            j = cols(k)
            y1 = huge(1.0_real64)
            call m%forward(x(:, j), y1, stat, msg)
            call check_bitwise('reproducible real64 rank-1 column ' // itoa(j) // ' equals rank-2 column bitwise ' // &
                               label, stat, msg, reshape(y1, [n_out, 1]), yr(:, j:j))
            y32_1 = huge(1.0_real32)
            call m%forward(real(x(:, j), real32), y32_1, stat, msg)
            call check_bitwise('reproducible real32 rank-1 column ' // itoa(j) // ' equals rank-2 column bitwise ' // &
                               label, stat, msg, real(reshape(y32_1, [n_out, 1]), real64), real(yr32(:, j:j), real64))
        end do
        allocate (ys(n_out, (batch + 1) / 2))
        ys = huge(1.0_real64)
        call m%forward(x(:, 1:batch:2), ys, stat, msg)
        call check_bitwise('reproducible x(:, 1:n:2) equals those rank-2 columns bitwise ' // label, stat, msg, &
                           ys, yr(:, 1:batch:2))
        call m%set_reproducible(.false., stat, msg)
        call check('set_reproducible(.false.) ' // label, stat == INLOOP_OK, trim(msg))
        deallocate (ys)

        ! non-contiguous actual arguments (copy-in/copy-out by the compiler)
        allocate (ys(n_out, (batch + 1) / 2))
        call m%forward(x(:, 1:batch:2), ys, stat, msg)
        call check_close('forward x(:, 1:n:2) ' // label, stat, msg, ys, yref(:, 1:batch:2), tol)
        y = -7.0_real64
        call m%forward(x(:, 1:batch:2), y(:, 1:batch:2), stat, msg)
        call check_close('forward into y(:, 1:n:2) ' // label, stat, msg, y(:, 1:batch:2), yref(:, 1:batch:2), tol)
        call check('forward into y(:, 1:n:2) leaves other columns ' // label, same_bits(y(:, 2:batch:2), -7.0_real64), &
                   'columns not in the section were changed')
        allocate (xbig(n_in + 3, batch))
        xbig = 1e30_real64
        xbig(3:n_in + 2, :) = x
        call m%forward(xbig(3:n_in + 2, :), y, stat, msg)
        call check_close('forward x row section ' // label, stat, msg, y, yref, tol)

        ! load_buffer of the same file gives the same model
        call load_buffer_check(label, path, x, y)

        ! zero columns: a successful no-op
        call m%forward(x(:, 1:0), y(:, 1:0), stat, msg)
        call check('forward zero columns ' // label, stat == INLOOP_OK, trim(msg))

        call m%free(stat, msg)
        call check('free ' // label, stat == INLOOP_OK .and. .not. m%is_loaded(), trim(msg))
    end subroutine

    subroutine load_buffer_check(label, path, x, yexpect)
        character(len=*), intent(in) :: label, path
        real(real64), intent(in) :: x(:,:), yexpect(:,:)
        type(inloop_model) :: m
        integer(int8), allocatable :: bytes(:)
        real(real64), allocatable :: y(:,:)
        integer :: u, n, stat
        character(len=512) :: msg
        open (newunit=u, file=path, access='stream', form='unformatted', status='old', action='read')
        inquire (unit=u, size=n)
        allocate (bytes(n))
        read (u) bytes
        close (u)
        msg = ''
        call m%load_buffer(bytes, stat, msg)
        call require('load_buffer ' // label, stat == INLOOP_OK, trim(msg))
        if (stat /= INLOOP_OK) return
        bytes = 0_int8   ! the model must not depend on the caller's buffer after the call
        allocate (y, mold=yexpect)
        call m%forward(x, y, stat, msg)
        call check('load_buffer model forward equals load ' // label, stat == INLOOP_OK .and. same_bits(y, yexpect), &
                   'stat ' // itoa(stat) // ' ' // trim(msg) // '; max diff ' // rtoa(maxval(abs(y - yexpect))))
    end subroutine

    ! ======================================================================== errors through a model
    subroutine model_errors(path)
        character(len=*), intent(in) :: path
        type(inloop_model) :: m, copy, never
        real(real64), allocatable :: x(:,:), y(:,:), xw(:,:), yw(:,:), x1(:), y1(:)
        integer :: stat, n_in, n_out
        integer(int64) :: n_unloaded
        integer(c_int32_t) :: raw_on, raw_off
        character(len=512) :: msg
        character(len=:), allocatable :: lib_msg

        call m%load(path, stat=stat, errmsg=msg)
        call require('load ' // path // ' for error checks', stat == INLOOP_OK, trim(msg))
        if (stat /= INLOOP_OK) return
        n_in = int(m%input_size())
        n_out = int(m%output_size())
        allocate (x(n_in, 3), y(n_out, 3))
        call random_number(x)

        allocate (xw(n_in + 1, 3))
        xw = 0
        y = 42
        call expect('forward wrong size(x,1)', INLOOP_ERR_SIZE_MISMATCH, errcall_x(m, xw, y))
        call check('forward wrong size(x,1) leaves y untouched', same_bits(y, 42.0_real64), 'y was written')
        lib_msg = inloop_last_error()
        call check('inloop_last_error() after failure non-empty', len(lib_msg) > 0, 'got ""')
        allocate (yw(n_out + 2, 3))
        call expect('forward wrong size(y,1)', INLOOP_ERR_SIZE_MISMATCH, errcall_x(m, x, yw))
        deallocate (yw)
        allocate (yw(n_out, 4))
        call expect('forward mismatched column counts', INLOOP_ERR_SIZE_MISMATCH, errcall_x(m, x, yw))
        allocate (x1(n_in - 1), y1(n_out))
        call expect('forward rank-1 wrong size(x)', INLOOP_ERR_SIZE_MISMATCH, errcall_1(m, x1, y1))
        deallocate (x1)
        allocate (x1(n_in))
        x1 = 0
        call expect('forward zero columns with wrong size(x,1)', INLOOP_ERR_SIZE_MISMATCH, &
                    errcall_x(m, xw(:, 1:0), y(:, 1:0)))

        ! errmsg untouched on success; stat without errmsg
        msg = 'untouched'
        call m%forward(x, y, stat, msg)
        call check('errmsg untouched on success', stat == INLOOP_OK .and. msg == 'untouched', &
                   'stat ' // itoa(stat) // ', errmsg "' // trim(msg) // '"')
        call m%forward(xw, y, stat)
        call check('stat without errmsg', stat == INLOOP_ERR_SIZE_MISMATCH, 'stat ' // itoa(stat))
        call m%forward(x, y, stat, msg)
        call check('model still usable after failed calls', stat == INLOOP_OK, trim(msg))

        ! check_finite
        call m%set_check_finite(.true., stat, msg)
        call check('set_check_finite(.true.)', stat == INLOOP_OK, trim(msg))
        deallocate (xw)
        allocate (xw, source=x)
        xw(1, 2) = ieee_value(1.0_real64, ieee_quiet_nan)
        y = 42
        call expect('forward NaN input with check_finite', INLOOP_ERR_NONFINITE, errcall_x(m, xw, y))
        call m%set_check_finite(.false., stat, msg)
        call m%forward(x, y, stat, msg)
        call check('set_check_finite(.false.) then forward', stat == INLOOP_OK, trim(msg))

        ! set_reproducible: the raw binding, and the type-bound call on an unloaded object
        raw_on = c_inloop_model_set_reproducible(m%c_handle(), 1_c_int32_t)
        raw_off = c_inloop_model_set_reproducible(m%c_handle(), 0_c_int32_t)
        call check('c_inloop_model_set_reproducible on a loaded model', raw_on == INLOOP_OK .and. raw_off == INLOOP_OK, &
                   'statuses ' // itoa(int(raw_on)) // ', ' // itoa(int(raw_off)) // ': ' // inloop_last_error())
        last_msg = ''
        call never%set_reproducible(.true., stat, last_msg)
        call expect('set_reproducible on an unloaded model', -1, stat)

        ! unloaded object
        call expect('forward on an unloaded model', -1, errcall_x(never, x, y))
        call check('unloaded model is_loaded() false', .not. never%is_loaded(), 'is_loaded() true')
        n_unloaded = never%input_size(stat, msg)
        call check('input_size of unloaded model is -1', n_unloaded == -1 .and. stat /= INLOOP_OK, &
                   'stat ' // itoa(stat))
        call never%free(stat, msg)
        call check('free of an unloaded model is a no-op', stat == INLOOP_OK, trim(msg))
        call expect('forward zero columns on an unloaded model', -1, errcall_x(never, x(:, 1:0), y(:, 1:0)))

        ! copies share the handle: free through one, the other reports INVALID_HANDLE, no crash
        copy = m
        call check('copy is_loaded()', copy%is_loaded(), 'copy holds no handle')
        call m%free(stat, msg)
        call check('free original', stat == INLOOP_OK .and. .not. m%is_loaded(), trim(msg))
        call expect('forward after free', -1, errcall_x(m, x, y))
        call expect('forward through a copy after free', INLOOP_ERR_INVALID_HANDLE, errcall_x(copy, x, y))
        msg = ''
        call copy%free(stat, msg)
        call check('double free through a copy gives INVALID_HANDLE', stat == INLOOP_ERR_INVALID_HANDLE .and. &
                   len_trim(msg) > 0, 'stat ' // itoa(stat) // ' "' // trim(msg) // '"')
        call copy%free(stat, msg)
        call check('free again is a no-op', stat == INLOOP_OK, 'stat ' // itoa(stat))
        call m%free(stat, msg)
        call check('free twice is a no-op', stat == INLOOP_OK, 'stat ' // itoa(stat))

        ! the finalizer frees: a copy that goes out of scope frees the shared model
        call m%load(path, stat=stat, errmsg=msg)
        call finalize_a_copy(m)
        call expect('finalized copy freed the shared model', INLOOP_ERR_INVALID_HANDLE, errcall_x(m, x, y))
        call m%free(stat, msg)

        ! loading into a loaded object replaces its model; a failed load leaves it unchanged
        call m%load(path, stat=stat, errmsg=msg)
        call m%load(path, stat=stat, errmsg=msg)
        call check('load over a loaded model', stat == INLOOP_OK, trim(msg))
        call m%load(path // '.does-not-exist', stat=stat, errmsg=msg)
        call m%forward(x, y, stat, msg)
        call check('failed load keeps the previous model', stat == INLOOP_OK, trim(msg))
    end subroutine

    subroutine finalize_a_copy(m)
        type(inloop_model), intent(in) :: m
        type(inloop_model) :: local
        local = m
    end subroutine

    ! Run forward with stat and errmsg; return stat and keep the message for `expect`.
    integer function errcall_x(m, x, y) result(stat)
        type(inloop_model), intent(in) :: m
        real(real64), intent(in) :: x(:,:)
        real(real64), intent(inout) :: y(:,:)
        last_msg = ''
        call m%forward(x, y, stat, last_msg)
    end function

    integer function errcall_1(m, x, y) result(stat)
        type(inloop_model), intent(in) :: m
        real(real64), intent(in) :: x(:)
        real(real64), intent(inout) :: y(:)
        last_msg = ''
        call m%forward(x, y, stat, last_msg)
    end function

    ! ======================================================================== errors from files
    subroutine file_errors(dir)
        character(len=*), intent(in) :: dir
        type(inloop_model) :: m
        integer :: stat, u, clock
        character(len=512) :: msg
        character(len=:), allocatable :: tmp
        integer(int8), allocatable :: bytes(:)

        msg = ''
        call m%load(dir // '/no-such-model.safetensors', stat=stat, errmsg=msg)
        call expect_msg('load missing file', INLOOP_ERR_IO, stat, msg)
        call check('load missing file leaves object empty', .not. m%is_loaded(), 'is_loaded() true')
        call check('errmsg equals inloop_last_error()', trim(msg) == inloop_last_error(), &
                   '"' // trim(msg) // '" vs "' // inloop_last_error() // '"')
        msg = ''
        call m%load(dir, stat=stat, errmsg=msg)
        call expect_msg('load a directory', INLOOP_ERR_IO, stat, msg)

        call system_clock(clock)
        tmp = tmp_dir() // '/inloop_test_' // itoa(clock)
        open (newunit=u, file=tmp // '.empty', access='stream', form='unformatted', status='replace')
        close (u)
        msg = ''
        call m%load(tmp // '.empty', stat=stat, errmsg=msg)
        call expect_msg('load an empty file', INLOOP_ERR_FORMAT, stat, msg)
        open (newunit=u, file=tmp // '.empty', status='old')
        close (u, status='delete')

        open (newunit=u, file=tmp // '.garbage', access='stream', form='unformatted', status='replace')
        write (u) repeat('this is not a model file. ', 40)
        close (u)
        msg = ''
        call m%load(tmp // '.garbage', stat=stat, errmsg=msg)
        call expect_msg('load a garbage file', INLOOP_ERR_FORMAT, stat, msg)
        open (newunit=u, file=tmp // '.garbage', status='old')
        close (u, status='delete')

        ! a header length that points past the end of a 16-byte file
        open (newunit=u, file=tmp // '.trunc', access='stream', form='unformatted', status='replace')
        write (u) 100_int64, 123456789_int64
        close (u)
        msg = ''
        call m%load(tmp // '.trunc', stat=stat, errmsg=msg)
        call expect_msg('load a truncated file', INLOOP_ERR_FORMAT, stat, msg)
        open (newunit=u, file=tmp // '.trunc', status='old')
        close (u, status='delete')

        allocate (bytes(0))
        msg = ''
        call m%load_buffer(bytes, stat, msg)
        call expect_msg('load_buffer of zero bytes', INLOOP_ERR_FORMAT, stat, msg)
        bytes = [(int(mod(7 * u, 127), int8), u = 1, 300)]
        msg = ''
        call m%load_buffer(bytes, stat, msg)
        call expect_msg('load_buffer of garbage', INLOOP_ERR_FORMAT, stat, msg)
        call check('failed loads leave object empty', .not. m%is_loaded(), 'is_loaded() true')
    end subroutine

    subroutine thread_checks()
        integer :: stat, before, now
        character(len=512) :: msg
        before = inloop_get_num_threads()
        call check('inloop_get_num_threads() >= 1', before >= 1, 'got ' // itoa(before))
        msg = ''
        call inloop_set_num_threads(0, stat, msg)
        call expect_msg('set_num_threads(0)', INLOOP_ERR_INVALID_ARGUMENT, stat, msg)
        call inloop_set_num_threads(1, stat, msg)
        now = inloop_get_num_threads()
        call check('set_num_threads(1)', stat == INLOOP_OK .and. now == 1, &
                   'stat ' // itoa(stat) // ', get_num_threads() = ' // itoa(now))
        call inloop_set_num_threads(before, stat, msg)
    end subroutine

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

    !> want = -1: any error status.
    subroutine expect(name, want, stat)
        character(len=*), intent(in) :: name
        integer, intent(in) :: want, stat
        call expect_msg(name, want, stat, last_msg)
    end subroutine

    subroutine expect_msg(name, want, stat, msg)
        character(len=*), intent(in) :: name, msg
        integer, intent(in) :: want, stat
        logical :: code_ok
        character(len=:), allocatable :: wanted
        if (want == -1) then
            code_ok = stat /= INLOOP_OK
            wanted = 'any error'
        else
            code_ok = stat == want
            wanted = itoa(want)
        end if
        if (code_ok .and. len_trim(msg) > 0) then
            call check(name // ' [' // trim(inloop_status_string(stat)) // ' | ' // trim(msg) // ']', .true., '')
        else
            call check(name, .false., 'stat ' // itoa(stat) // ' (want ' // wanted // '), errmsg "' // trim(msg) // '"')
        end if
    end subroutine

    !> y equals yref bitwise (NaN payloads included).
    subroutine check_bitwise(name, stat, msg, y, yref)
        character(len=*), intent(in) :: name, msg
        integer, intent(in) :: stat
        real(real64), intent(in) :: y(:,:), yref(:,:)
        integer :: nbad
        if (stat /= INLOOP_OK) then
            call check(name, .false., 'stat ' // itoa(stat) // ': ' // trim(msg))
            return
        end if
        if (same_bits(y, yref)) then
            call check(name, .true., '')
        else
            nbad = count(transfer(y, 0_int64, size(y)) /= transfer(yref, 0_int64, size(yref)))
            call check(name, .false., itoa(nbad) // ' of ' // itoa(size(y)) // ' values differ, max |diff| = ' // &
                       rtoa(maxval(abs(y - yref))) // ', max |ref| = ' // rtoa(maxval(abs(yref))))
        end if
    end subroutine

    subroutine check_close(name, stat, msg, y, yref, tol)
        character(len=*), intent(in) :: name, msg
        integer, intent(in) :: stat
        real(real64), intent(in) :: y(:,:), yref(:,:), tol
        real(real64) :: err
        if (stat /= INLOOP_OK) then
            call check(name, .false., 'stat ' // itoa(stat) // ': ' // trim(msg))
            return
        end if
        err = maxval(abs(y - yref))
        ! all(... <= ...) is false for NaN, which maxval would skip
        call check(name, all(abs(y - yref) <= tol), 'max |y - ref| = ' // rtoa(err) // ' > tol ' // rtoa(tol) // &
                   ', non-finite values: ' // itoa(count(.not. ieee_is_finite(y))))
    end subroutine

    !> Element-wise |y - ref| <= atol + rtol |ref| (for the wide-range activation fixtures).
    subroutine check_elementwise(name, stat, msg, y, yref, atol, rtol)
        character(len=*), intent(in) :: name, msg
        integer, intent(in) :: stat
        real(real64), intent(in) :: y(:,:), yref(:,:), atol, rtol
        integer :: bad(2)
        if (stat /= INLOOP_OK) then
            call check(name, .false., 'stat ' // itoa(stat) // ': ' // trim(msg))
            return
        end if
        if (all(abs(y - yref) <= atol + rtol * abs(yref))) then
            call check(name, .true., '')
        else
            bad = maxloc(abs(y - yref) / (atol + rtol * abs(yref)))
            if (any(.not. ieee_is_finite(y))) bad = findloc(ieee_is_finite(y), .false.)
            call check(name, .false., 'y(' // itoa(bad(1)) // ',' // itoa(bad(2)) // ') = ' // rtoa(y(bad(1), bad(2))) // &
                       ', ref ' // rtoa(yref(bad(1), bad(2))) // ', x column ' // itoa(bad(2)))
        end if
    end subroutine

    !> Bitwise equality of an array with an array of the same shape or with a scalar.
    pure logical function same_bits(a, b)
        real(real64), intent(in) :: a(:,:)
        class(*), intent(in) :: b(..)
        same_bits = .false.
        select rank (b)
        rank (0)
            select type (b)
            type is (real(real64))
                same_bits = all(transfer(a, 0_int64, size(a)) == transfer(b, 0_int64))
            end select
        rank (2)
            select type (b)
            type is (real(real64))
                same_bits = all(shape(a) == shape(b))
                if (same_bits) same_bits = all(transfer(a, 0_int64, size(a)) == transfer(b, 0_int64, size(b)))
            end select
        end select
    end function

    ! ======================================================================== files and strings
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

    subroutine read_list(path, list, ok)
        character(len=*), intent(in) :: path
        character(len=512), allocatable, intent(out) :: list(:)
        logical, intent(out) :: ok
        character(len=512) :: line
        integer :: u, ios
        allocate (list(0))
        open (newunit=u, file=path, status='old', action='read', iostat=ios)
        ok = ios == 0
        if (.not. ok) return
        do
            read (u, '(a)', iostat=ios) line
            if (ios /= 0) exit
            line = adjustl(line)
            if (len_trim(line) == 0 .or. line(1:1) == '#') cycle
            list = [character(len=512) :: list, line]
        end do
        close (u)
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

    function tmp_dir() result(s)
        character(len=:), allocatable :: s
        integer :: n, st
        call get_environment_variable('TMPDIR', length=n, status=st)
        if (st /= 0 .or. n == 0) then
            s = '/tmp'
        else
            allocate (character(len=n) :: s)
            call get_environment_variable('TMPDIR', s)
        end if
    end function

    logical function exists(path)
        character(len=*), intent(in) :: path
        inquire (file=path, exist=exists)
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

end program test_serial
