!> Interpretability from Fortran (issue 15, item 5): saliency and backwards optimisation on a linear
!> model y = W x + b (a seeded trainer's initial weights, float64), against the analytic answers: the
!> saliency of output k is row k of W at every column (W read column by column from the tangent-linear
!> model), and projected ascent on [-1, 1] moves x by steps * step_size * W(k, :), stopped at the bounds;
!> descent the other way; y is W x + b at the final x. LRP of the linear model is W(k, i) x_i times
!> y_k / (y_k + eps sign y_k); Grad-CAM of its output is max(y_k, 0); on a zero-bias ReLU network Grad-CAM
!> of the hidden layer is max(y_k, 0) and LRP (eps 0) sums to y_k. Errors come back in stat.
!> Prints PASS/FAIL lines and "N passed, M failed".
program test_explain
    use inloop
    use, intrinsic :: iso_fortran_env, only: real32, real64
    implicit none
    integer, parameter :: n_in = 5, n_out = 3, ncol = 4, k = 2
    character(len=*), parameter :: nl = new_line('a')
    type(inloop_trainer) :: tr
    type(inloop_model) :: net
    real(real64) :: x(n_in, ncol), s(n_in, ncol), w(n_out, n_in), e(n_in, 1), z(n_in, 1), y1(n_out, 1), dy(n_out, 1)
    real(real64) :: y(n_out, ncol), lo(n_in), hi(n_in), x0(n_in, ncol), want(n_in, ncol), cam(1, ncol), dyc(n_out, ncol)
    real(real32) :: x4(n_in, ncol), s4(n_in, ncol)
    integer :: passed = 0, failed = 0, ierr, i, c
    character(len=300) :: msg = ''

    call tr%create('model:' // nl // '  inputs: 5' // nl // '  layers:' // nl // '    - {type: dense, out: 3}' // nl // &
                   'seed: 4' // nl // 'precision: float64' // nl, stat=ierr, errmsg=msg)
    if (ierr == INLOOP_OK) call tr%copy_model(net, stat=ierr, errmsg=msg)
    call check('a linear float64 model', ierr == INLOOP_OK, msg)
    ! W column by column: the tangent-linear model of a linear model at any point
    z = 0
    do i = 1, n_in
        e = 0
        e(i, 1) = 1
        call net%jvp(z, e, dy, y1, stat=ierr)
        w(:, i) = dy(:, 1)
    end do
    do c = 1, ncol
        do i = 1, n_in
            x(i, c) = 0.3d0 * sin(1.7d0 * i + c)
        end do
    end do
    call net%saliency(x, k, s, stat=ierr, errmsg=msg)
    call check('saliency', ierr == INLOOP_OK, msg)
    call check('saliency of output k is row k of W at every column (1e-14)', &
               maxval(abs(s - spread(w(k, :), 2, ncol))) <= 1d-14, '')
    x4 = real(x, real32)
    call net%saliency(x4, k, s4, stat=ierr)
    call check('real32 saliency is row k of W (1e-6)', ierr == INLOOP_OK .and. maxval(abs(s4 - spread(w(k, :), 2, ncol))) <= 1d-6, '')
    lo = -1
    hi = 1
    x0 = x
    call net%optimize_input(x, k, 30, 0.1d0, lo, hi, y, stat=ierr, errmsg=msg)
    call check('optimize_input (ascent)', ierr == INLOOP_OK, msg)
    ! a constant gradient: 30 steps move each feature by 3 W(k, i), stopped at the bounds (1e-12)
    want = max(-1d0, min(1d0, x0 + 3 * spread(w(k, :), 2, ncol)))
    call check('ascent moves x along W(k, :) and stops at the bounds (1e-12)', maxval(abs(x - want)) <= 1d-12, '')
    call check('y is W x + b at the final x (b: the output at x = 0; 1e-12)', &
               maxval(abs(y - (matmul(w, x) + spread(y1(:, 1), 2, ncol)))) <= 1d-12, '')
    x0 = x
    call net%optimize_input(x, k, 30, -0.1d0, lo, hi, stat=ierr, errmsg=msg)
    want = max(-1d0, min(1d0, x0 - 3 * spread(w(k, :), 2, ncol)))
    call check('descent moves x against W(k, :) (1e-12)', ierr == INLOOP_OK .and. maxval(abs(x - want)) <= 1d-12, msg)
    call net%saliency(x, n_out + 1, s, stat=ierr)
    call check('saliency of an output past n_out: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%saliency(x, k, s(1:n_in - 1, :), stat=ierr)
    call check('saliency with s of the wrong shape: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, '')
    call net%optimize_input(x, k, 1, 0.1d0, lo(1:2), stat=ierr)
    call check('optimize_input with 2 bounds for 5 features: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, '')
    call net%optimize_input(x, k, -3, 0.1d0, stat=ierr)
    call check('optimize_input with steps < 0: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    ! LRP of a linear model, epsilon rule: r(i, c) = W(k, i) x(i, c) y_k / (y_k + eps sign y_k)
    x4 = real(x0, real32)
    x = real(x4, real64)
    call net%jvp(x, 0 * x, dyc, y, stat=ierr)
    call net%lrp(x, k, s, epsilon=0d0, stat=ierr, errmsg=msg)
    call check('lrp (epsilon 0)', ierr == INLOOP_OK, msg)
    call check('lrp of a linear model with epsilon 0 is W(k, i) x(i, c) (1e-14)', &
               maxval(abs(s - spread(w(k, :), 2, ncol) * x)) <= 1d-14, '')
    call net%lrp(x, k, s, epsilon=0.5d0, stat=ierr)
    do c = 1, ncol
        want(:, c) = w(k, :) * x(:, c) * y(k, c) / (y(k, c) + sign(0.5d0, y(k, c)))
    end do
    call check('lrp with epsilon 0.5 scales by y_k / (y_k + eps sign y_k) (1e-14)', &
               ierr == INLOOP_OK .and. maxval(abs(s - want)) <= 1d-14, '')
    call net%lrp(x4, k, s4, stat=ierr)
    call check('real32 lrp (default epsilon 1e-6) is W(k, i) x(i, c) (1e-5)', &
               ierr == INLOOP_OK .and. maxval(abs(s4 - spread(w(k, :), 2, ncol) * x4)) <= 1d-5, '')
    ! Grad-CAM of the output tensor: relu(y_k), one value per column
    call check('gradcam_size of the output is 1', net%gradcam_size('y', stat=ierr) == 1 .and. ierr == INLOOP_OK, '')
    call net%gradcam(x, 'y', k, cam, stat=ierr, errmsg=msg)
    call check('gradcam of the output is max(y_k, 0) (1e-14)', ierr == INLOOP_OK .and. &
               maxval(abs(cam(1, :) - max(y(k, :), 0d0))) <= 1d-14, msg)
    call net%gradcam(x, 'no_such_tensor', k, cam, stat=ierr)
    call check('gradcam of an unknown tensor: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%gradcam(x, 'y', k, s(1:2, :), stat=ierr)
    call check('gradcam with a map of 2 values per column: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, '')
    call net%gradcam(x, 'y', k, cam, upsample=.true., stat=ierr)
    call check('gradcam upsampling a dense tensor: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%lrp(x, k, s, epsilon=-1d0, stat=ierr)
    call check('lrp with epsilon < 0: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%free()
    call tr%free()
    ! a zero-bias ReLU network (5 -> 8 relu -> 3): Grad-CAM of the hidden layer is max(y_k, 0), LRP
    ! with epsilon 0 sums to y_k (positive homogeneity)
    call tr%create('model:' // nl // '  inputs: 5' // nl // '  layers:' // nl // '    - {type: dense, out: 8, activation: relu}' // nl &
                   // '    - {type: dense, out: 3}' // nl // 'seed: 9' // nl // 'precision: float64' // nl, stat=ierr, errmsg=msg)
    if (ierr == INLOOP_OK) call tr%copy_model(net, stat=ierr, errmsg=msg)
    call check('a float64 relu model', ierr == INLOOP_OK, msg)
    call net%jvp(x, 0 * x, dyc, y, stat=ierr)
    call net%gradcam(x, 'dense_3', k, cam, stat=ierr, errmsg=msg)
    call check('gradcam of the hidden layer is max(y_k, 0) (1e-13)', ierr == INLOOP_OK .and. &
               maxval(abs(cam(1, :) - max(y(k, :), 0d0))) <= 1d-13, msg)
    call net%lrp(x, k, s, epsilon=0d0, stat=ierr, errmsg=msg)
    call check('lrp conserves y_k: sum(r(:, c)) = y(k, c) (1e-13)', ierr == INLOOP_OK .and. &
               maxval(abs(sum(s, 1) - y(k, :))) <= 1d-13, msg)
    call net%free()
    call tr%free()
    print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) error stop 1

contains

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
end program
