!> Input-range guards from Fortran (issue 15, item 3), against references computed here with plain
!> loops: a trainer records the range and moments of the inputs it trained on (minval/maxval, mean and
!> standard deviation of the training data); the saved model carries them and keeps them through a
!> checkpoint restart; REPORT, CLAMP and FLAG_ONLY give the per-column and per-feature counts of a
!> direct loop; CLAMP's outputs are those of the same model on the clamped inputs with the check off;
!> ranges set from lo/hi, from samples and from a file; errors come back in stat. Usage:
!> test_ranges BUILD_DIR. Prints PASS/FAIL lines and "N passed, M failed".
program test_ranges
    use inloop
    use, intrinsic :: iso_fortran_env, only: real32, real64, int32, int64
    use, intrinsic :: ieee_arithmetic, only: ieee_is_nan
    implicit none
    integer, parameter :: ntrain = 600, nb = 100, ncol = 257
    character(len=*), parameter :: nl = new_line('a')
    character(len=:), allocatable :: config, dir
    character(len=512) :: arg
    type(inloop_trainer) :: tr, tr2
    type(inloop_model) :: net, net2
    real(real64) :: xt(3, ntrain), yt(2, ntrain), x(3, ncol), xc(3, ncol), y(2, ncol), yc(2, ncol)
    real(real64) :: lo(3), hi(3), mean(3), std(3), rlo(3), rhi(3), rmean(3), rstd(3)
    real(real32) :: x4(3, ncol), y4(2, ncol)
    integer(int32) :: counts(ncol), want(ncol), small(ncol - 1)
    integer(int64) :: fcounts(3), fwant(3), samples
    integer :: passed = 0, failed = 0, ierr, b, j, c, k
    character(len=300) :: msg

    call get_command_argument(1, arg)
    dir = trim(arg)
    if (len(dir) == 0) dir = 'build'
    config = 'model:' // nl // '  inputs: 3' // nl // '  layers:' // nl // &
             '    - {type: dense, out: 8, activation: tanh}' // nl // '    - {type: dense, out: 2}' // nl // &
             'optimizer: {type: adam, lr: 0.01}' // nl // 'seed: 5' // nl // 'precision: float64' // nl
    ! training data: feature 1 in [-1, 1], feature 2 in [0, 3], feature 3 in [-10, -2] (pseudo-random)
    do c = 1, ntrain
        xt(1, c) = 2 * frac(0.6180339887d0 * c) - 1
        xt(2, c) = 3 * frac(0.7548776662d0 * c + 0.1d0)
        xt(3, c) = -10 + 8 * frac(0.5698402910d0 * c + 0.3d0)
        yt(1, c) = xt(1, c) * xt(2, c)
        yt(2, c) = xt(3, c) / 10
    end do
    rlo = minval(xt, dim=2)
    rhi = maxval(xt, dim=2)
    rmean = sum(xt, dim=2) / ntrain
    do j = 1, 3
        rstd(j) = sqrt(sum((xt(j, :) - rmean(j))**2) / ntrain)
    end do

    ! --- a trainer records its inputs' ranges; the saved model carries them
    call tr%create(config, stat=ierr, errmsg=msg)
    call require('create a trainer', ierr == INLOOP_OK, msg)
    do b = 0, ntrain / nb - 1
        if (b == 3) call tr%save_checkpoint(dir // '/test_ranges.ckpt', stat=ierr)
        call tr%step(xt(:, b * nb + 1:(b + 1) * nb), yt(:, b * nb + 1:(b + 1) * nb), stat=ierr, errmsg=msg)
        if (ierr /= INLOOP_OK) exit
    end do
    call require('train on 6 batches', ierr == INLOOP_OK, msg)
    call tr%save_model(dir // '/test_ranges.safetensors', stat=ierr, errmsg=msg)
    call require('save the model', ierr == INLOOP_OK, msg)
    call net%load(dir // '/test_ranges.safetensors', stat=ierr, errmsg=msg)
    call require('load the saved model', ierr == INLOOP_OK, msg)
    call net%input_range(lo, hi, mean, std, samples, stat=ierr, errmsg=msg)
    call check('the saved model has input ranges', ierr == INLOOP_OK, msg)
    call check('lo and hi are the training data''s minval and maxval', same1(lo, rlo) .and. same1(hi, rhi), '')
    call check('mean and std are the training data''s (1e-12)', &
               all(abs(mean - rmean) <= 1d-12 * (1 + abs(rmean))) .and. all(abs(std - rstd) <= 1d-12 * (1 + rstd)), '')
    call check('samples is the number of training columns', samples == ntrain, '')

    ! --- a restart from the checkpoint (after 3 batches) and the same 3 batches give the same ranges
    call tr2%load_checkpoint(dir // '/test_ranges.ckpt', stat=ierr, errmsg=msg)
    call require('load the checkpoint', ierr == INLOOP_OK, msg)
    do b = 3, ntrain / nb - 1
        call tr2%step(xt(:, b * nb + 1:(b + 1) * nb), yt(:, b * nb + 1:(b + 1) * nb), stat=ierr)
    end do
    call tr2%save_model(dir // '/test_ranges_restart.safetensors', stat=ierr, errmsg=msg)
    call net2%load(dir // '/test_ranges_restart.safetensors', stat=ierr, errmsg=msg)
    call net2%input_range(rlo, rhi, rmean, rstd, samples, stat=ierr, errmsg=msg)
    call check('a restarted trainer saves bitwise the same ranges and moments', ierr == INLOOP_OK .and. &
               same1(rlo, lo) .and. same1(rhi, hi) .and. same1(rmean, mean) .and. same1(rstd, std) .and. samples == ntrain, msg)
    call net2%free()

    ! --- REPORT: per-column and per-feature counts against a loop; outputs unchanged
    do c = 1, ncol
        x(1, c) = -1.3d0 + 2.6d0 * frac(0.41d0 * c)
        x(2, c) = -0.5d0 + 4.0d0 * frac(0.29d0 * c + 0.2d0)
        x(3, c) = -11d0 + 10d0 * frac(0.13d0 * c + 0.7d0)
    end do
    x(2, 7) = ieee_nan()
    x(:, 9) = lo
    x(:, 10) = hi
    call reference(x, want, fwant)
    call net%forward(x, yc, stat=ierr)     ! check off: the plain outputs
    call net%set_range_check(INLOOP_RANGE_REPORT, stat=ierr, errmsg=msg)
    call check('set_range_check(REPORT)', ierr == INLOOP_OK, msg)
    call net%range_flags(counts, stat=ierr)
    call check('range_flags before any checked call: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%forward(x, y, stat=ierr, errmsg=msg)
    call net%range_flags(counts, stat=ierr, errmsg=msg)
    call check('REPORT per-column counts equal a loop''s', ierr == INLOOP_OK .and. all(counts == want), msg)
    call check('some columns inside, some outside, NaN counted', any(want == 0) .and. any(want > 0) .and. want(7) >= 1, '')
    call check('the bounds themselves are inside', want(9) == 0 .and. want(10) == 0 .and. counts(9) == 0, '')
    call net%range_feature_counts(fcounts, stat=ierr, errmsg=msg)
    call check('REPORT per-feature counts equal a loop''s', ierr == INLOOP_OK .and. all(fcounts == fwant), msg)
    call check('REPORT leaves the outputs unchanged', same2(y(:, 1:6), yc(:, 1:6)) .and. same2(y(:, 8:), yc(:, 8:)), '')
    call net%range_flags(small, stat=ierr)
    call check('range_flags with another batch: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, '')

    ! --- FLAG_ONLY and real32 inputs
    x4 = real(x, real32)
    call net%set_range_check(INLOOP_RANGE_FLAG_ONLY, stat=ierr)
    call net%forward(x4, y4, stat=ierr, errmsg=msg)
    call net%range_flags(counts, stat=ierr, errmsg=msg)
    call reference(real(x4, real64), want, fwant)
    call check('FLAG_ONLY flags (real32 inputs) equal a loop''s', ierr == INLOOP_OK .and. all(counts == min(want, 1)), msg)
    call net%range_feature_counts(fcounts, stat=ierr)
    call check('feature counts outside REPORT: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')

    ! --- CLAMP: the outputs of the clamped inputs, the caller's x unchanged
    call net%set_range_check(INLOOP_RANGE_CLAMP, stat=ierr)
    xc = x
    call net%forward(x, y, stat=ierr, errmsg=msg)
    call check('CLAMP forward', ierr == INLOOP_OK, msg)
    call check('CLAMP leaves x unchanged', same2(x(:, 1:6), xc(:, 1:6)) .and. same2(x(:, 8:), xc(:, 8:)), '')
    call net%range_flags(counts, stat=ierr)
    call reference(x, want, fwant)
    call check('CLAMP per-column counts equal a loop''s', all(counts == want), '')
    do c = 1, ncol
        do j = 1, 3
            if (.not. ieee_is_nan(x(j, c))) xc(j, c) = min(max(x(j, c), lo(j)), hi(j))
        end do
    end do
    call net%set_range_check(INLOOP_RANGE_OFF, stat=ierr)
    call net%forward(xc, yc, stat=ierr)
    call check('CLAMP outputs equal the outputs of the clamped inputs', same2(y(:, 1:6), yc(:, 1:6)) .and. same2(y(:, 8:), yc(:, 8:)), '')

    ! --- ranges given, from samples, from a file; errors
    call net2%load(dir // '/test_ranges.safetensors', stat=ierr)
    call net2%set_input_range([0d0, 0d0, 0d0], [1d0, 1d0, 1d0], stat=ierr, errmsg=msg)
    call check('set_input_range', ierr == INLOOP_OK, msg)
    call net2%set_range_check(INLOOP_RANGE_REPORT, stat=ierr)
    call net2%forward(x, y, stat=ierr)
    call net2%range_flags(counts, stat=ierr)
    k = 0
    do c = 1, ncol
        if (count(.not. (x(:, c) >= 0 .and. x(:, c) <= 1)) /= counts(c)) k = k + 1
    end do
    call check('given ranges: counts equal a loop''s', k == 0, '')
    call net2%set_input_range([1d0, 0d0, 0d0], [0d0, 1d0, 1d0], stat=ierr)
    call check('lo > hi: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net2%set_input_range([0d0, 0d0], [1d0, 1d0], stat=ierr)
    call check('2 bounds for 3 features: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, '')
    call net2%set_input_range_from_samples(xt(:, 1:300), stat=ierr, errmsg=msg)
    call net2%input_range(rlo, rhi, stat=ierr)
    call check('ranges from samples are their minval and maxval', &
               same1(rlo, minval(xt(:, 1:300), dim=2)) .and. same1(rhi, maxval(xt(:, 1:300), dim=2)), msg)
    call net2%set_input_range_from_samples(x, stat=ierr)
    call check('samples with a NaN: NONFINITE', ierr == INLOOP_ERR_NONFINITE, '')
    call net2%set_input_range_from_file(dir // '/test_ranges.safetensors', stat=ierr, errmsg=msg)
    call net2%input_range(rlo, rhi, stat=ierr)
    call check('ranges from a model file', same1(rlo, lo) .and. same1(rhi, hi), msg)
    call net2%set_input_range_from_file(dir // '/no_such_file.safetensors', stat=ierr)
    call check('a missing file: IO', ierr == INLOOP_ERR_IO, '')
    call net2%set_range_check(7, stat=ierr)
    call check('an unknown mode: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net2%free()
    call net2%load(dir // '/test_ranges.safetensors', stat=ierr)
    call net2%set_input_range_from_file(dir // '/test_ranges.ckpt', stat=ierr)
    call check('a file with neither ranges nor one sample tensor: FORMAT', ierr == INLOOP_ERR_FORMAT, '')
    call net2%free()

    call net%free()
    call tr%free()
    call tr2%free()
    print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) error stop 1

contains

    logical function same1(a, b)
        real(real64), intent(in) :: a(:), b(:)
        same1 = size(a) == size(b)
        if (same1) same1 = all(transfer(a, 1_int64, size(a)) == transfer(b, 1_int64, size(b)))
    end function

    logical function same2(a, b)
        real(real64), intent(in) :: a(:, :), b(:, :)
        same2 = same1(reshape(a, [size(a)]), reshape(b, [size(b)]))
    end function

    real(real64) function frac(v)
        real(real64), intent(in) :: v
        frac = v - floor(v)
    end function

    real(real64) function ieee_nan()
        use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan
        ieee_nan = ieee_value(1d0, ieee_quiet_nan)
    end function

    !> Per column the features outside [lo, hi] (NaN counts), per feature the columns.
    subroutine reference(xs, per_col, per_feat)
        real(real64), intent(in) :: xs(:, :)
        integer(int32), intent(out) :: per_col(:)
        integer(int64), intent(out) :: per_feat(:)
        integer :: cc, jj
        per_col = 0
        per_feat = 0
        do cc = 1, size(xs, 2)
            do jj = 1, size(xs, 1)
                if (.not. (xs(jj, cc) >= lo(jj) .and. xs(jj, cc) <= hi(jj))) then
                    per_col(cc) = per_col(cc) + 1
                    per_feat(jj) = per_feat(jj) + 1
                end if
            end do
        end do
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

    subroutine require(what, ok, detail)
        character(len=*), intent(in) :: what, detail
        logical, intent(in) :: ok
        if (.not. ok) then
            print '(a)', 'FAIL ' // what // ': ' // trim(detail)
            print '(i0,a,i0,a)', passed, ' passed, ', failed + 1, ' failed'
            error stop 1
        end if
    end subroutine
end program
