!> Training from Fortran: a small network learns u(a, b) = sin(pi a) * b on [-1, 1]^2 (a known,
!> smooth answer) to a validation MSE below 1.2e-3; checkpoint + reload + continue equals the
!> uninterrupted run bitwise; the adjoint dot-product test holds in real(8), and the tangent-linear
!> equals real(8) central finite differences of the model (an independent check of the derivatives);
!> Adam equals its formulas written out here (linear model); an ONNX graph fine-tuned, saved and
!> reloaded gives bitwise the outputs of the in-memory model; errors come back in stat/errmsg. Prints PASS/FAIL lines and "N passed, M failed" (set-up steps
!> are not counted as checks, their failure is).
program test_training
    use inloop
    use inloop_c, only: c_inloop_trainer_sizes, c_inloop_trainer_rank
    use, intrinsic :: iso_c_binding, only: c_int32_t, c_int64_t
    use, intrinsic :: iso_fortran_env, only: real32, real64, int32, int64
    implicit none
    integer, parameter :: ntrain = 2048, nval = 512, nb = 128
    character(len=*), parameter :: nl = new_line('a')
    character(len=:), allocatable :: config
    type(inloop_trainer) :: tr, tr2
    type(inloop_model) :: net, net2
    real(real64) :: xt(2, ntrain), yt(1, ntrain), xv(2, nval), yv(1, nval), yp(1, nval), yp2(1, nval)
    real(real32) :: x4(2, nb), y4(1, nb)
    real(real64) :: loss, first, val, lhs, rhs, nrm
    real(real64), allocatable :: dx(:,:), dy(:,:), jdx(:,:), jtdy(:,:), jac(:,:,:), hist(:), yph(:,:), ymh(:,:), tmp(:,:)
    real(real64) :: fd_err
    integer(int64) :: n_in, n_out
    integer(c_int64_t) :: c_in, c_out
    integer(c_int32_t) :: c_rank, c_size, c_code
    integer :: r, nr
    integer :: passed = 0, failed = 0, ierr, step, b, i
    character(len=300) :: msg
    character(len=*), parameter :: ckpt = 'build/test_training_fortran.ckpt'

    config = 'model:' // nl // &
             '  inputs: 2' // nl // &
             '  layers:' // nl // &
             '    - {type: dense, out: 32, activation: tanh}' // nl // &
             '    - {type: dense, out: 32, activation: tanh}' // nl // &
             '    - {type: dense, out: 1}' // nl // &
             'optimizer: {type: adam, lr: 0.01}' // nl // &
             'schedule: {type: cosine, period: 800, min_lr: 0.0005}' // nl // &
             'seed: 3' // nl // &
             'precision: float64' // nl
    call make_data(xt, yt, 1)
    call make_data(xv, yv, 2)
    call adam_reference()

    call tr%create(config, stat=ierr, errmsg=msg)
    call require('create a trainer from YAML text', ierr == INLOOP_OK, msg)
    call tr2%create(config, stat=ierr)
    first = -1
    do step = 1, 800
        b = mod(step - 1, ntrain / nb)
        call tr%step(xt(:, b * nb + 1:(b + 1) * nb), yt(:, b * nb + 1:(b + 1) * nb), loss, stat=ierr, errmsg=msg)
        if (ierr /= INLOOP_OK) exit
        if (step == 1) first = loss
        if (step <= 300) call tr2%step(xt(:, b * nb + 1:(b + 1) * nb), yt(:, b * nb + 1:(b + 1) * nb))
    end do
    call require('800 training steps', ierr == INLOOP_OK, msg)
    call tr%evaluate(xv, yv, val)
    write (msg, '(a,es10.3,a,es10.3)') 'validation MSE ', val, ', first batch loss ', first
    print '(a)', 'INFO ' // trim(msg)
    ! 9.6e-4 here; the Adam update itself is checked against its formulas in the MPI training test
    call check('learns sin(pi a) b to validation MSE < 1.2e-3', val < 1.2e-3_real64 .and. val < first / 50, msg)
    call check('step count is 800', tr%step_count() == 800, 'wrong step count')
    ! the methods of the trainer's C functions give the C functions' results
    call tr%sizes(n_in, n_out)
    c_code = c_inloop_trainer_sizes(tr%c_handle(), c_in, c_out)
    call check('sizes(n_in, n_out) equals inloop_trainer_sizes (2, 1)', c_code == INLOOP_OK .and. n_in == c_in .and. &
               n_out == c_out .and. n_in == 2 .and. n_out == 1, '')
    call tr%rank(r, nr)
    c_code = c_inloop_trainer_rank(tr%c_handle(), c_rank, c_size)
    call check('rank(rank, size) of a serial trainer equals inloop_trainer_rank (0, 1)', c_code == INLOOP_OK .and. &
               r == c_rank .and. nr == c_size .and. r == 0 .and. nr == 1, '')
    allocate (hist(0))   ! (gfortran -O2 warns about an unallocated left-hand side otherwise)
    hist = tr%loss_history(10)
    call check('loss history holds the last losses', size(hist) == 10 .and. same_bits([hist(10)], [loss]), 'history mismatch')
    nrm = tr%gradient_norm()
    call check('gradient norm is finite and positive', nrm > 0 .and. nrm < huge(1.0_real64), '')
    lhs = tr%get_learning_rate()
    call check('cosine schedule at its minimum', abs(lhs - 0.0005_real64) < 1e-12_real64, '')

    ! the trained model for inference: same predictions as the trainer's loss says
    call tr%copy_model(net)
    call net%forward(xv, yp)
    write (msg, '(a,es12.5,a,es12.5)') 'model MSE ', sum((yp - yv)**2) / nval, ' vs trainer ', val
    call check('copy_model gives a model with the trained predictions', abs(sum((yp - yv)**2) / nval - val) < 1e-6 * val, msg)

    ! exact restart: tr2 stopped after 300 steps; checkpoint, reload, continue to 800
    call tr2%save_checkpoint(ckpt, stat=ierr, errmsg=msg)
    call require('save checkpoint', ierr == INLOOP_OK, msg)
    call tr2%free()
    call tr2%load_checkpoint(ckpt, stat=ierr, errmsg=msg)
    if (ierr == INLOOP_OK) then
        call check('load checkpoint at step 300', tr2%step_count() == 300, 'wrong step count')
    else
        call check('load checkpoint', .false., msg)
    end if
    do step = 301, 800
        b = mod(step - 1, ntrain / nb)
        call tr2%step(xt(:, b * nb + 1:(b + 1) * nb), yt(:, b * nb + 1:(b + 1) * nb))
    end do
    call tr2%copy_model(net2)
    call net2%forward(xv, yp2)
    call check('checkpoint + reload + continue equals the uninterrupted run bitwise', same_bits(yp2(1, :), yp(1, :)), 'outputs differ')

    ! real(4) data into a float64 trainer
    x4 = real(xt(:, 1:nb), real32)
    y4 = real(yt(:, 1:nb), real32)
    call tr2%evaluate(real(x4, real64), real(y4, real64), lhs)
    call tr2%step(x4, y4, loss, stat=ierr, errmsg=msg)
    if (ierr == INLOOP_OK) write (msg, '(a,es23.16,a,es23.16)') 'step loss ', loss, ', evaluate before it ', lhs
    call check('real(4) training step reports the loss of real(8) evaluate on the same data', &
               ierr == INLOOP_OK .and. abs(loss - lhs) <= 1e-12_real64 * lhs, msg)

    ! adjoint dot-product test and Jacobian of the trained model, real(8)
    allocate (dx(2, 64), dy(1, 64), jdx(1, 64), jtdy(2, 64), jac(1, 2, 64))
    call random_number(dx)
    call random_number(dy)
    dx = dx - 0.5_real64
    call net%jvp(xv(:, 1:64), dx, jdx, stat=ierr, errmsg=msg)
    call require('jvp', ierr == INLOOP_OK, msg)
    call net%vjp(xv(:, 1:64), dy, jtdy, stat=ierr, errmsg=msg)
    call require('vjp', ierr == INLOOP_OK, msg)
    lhs = sum(jdx * dy)
    rhs = sum(dx * jtdy)
    nrm = sqrt(sum(jdx**2) * sum(dy**2))
    write (msg, '(a,es23.16,a,es23.16)') '<J dx, dy> = ', lhs, ', <dx, J^T dy> = ', rhs
    call check('adjoint dot-product test to round-off', abs(lhs - rhs) <= 1e-14_real64 * nrm, msg)
    ! tangent-linear vs central differences of the real(8) forward (the y of jvp), h = 1e-5: truncation
    ! ~1e-10, round-off ~1e-11 relative; a wrong tanh derivative is off by O(1)
    allocate (yph(1, 64), ymh(1, 64), tmp(1, 64))
    call net%jvp(xv(:, 1:64) + 1e-5_real64 * dx, dx, tmp, y=yph, stat=ierr, errmsg=msg)
    call require('jvp at x + h dx', ierr == INLOOP_OK, msg)
    call net%jvp(xv(:, 1:64) - 1e-5_real64 * dx, dx, tmp, y=ymh, stat=ierr, errmsg=msg)
    call require('jvp at x - h dx', ierr == INLOOP_OK, msg)
    fd_err = maxval(abs(jdx - (yph - ymh) / 2e-5_real64)) / maxval(abs(jdx))
    write (msg, '(a,es10.3)') 'max |jvp - central difference| / max |jvp| = ', fd_err
    call check('tangent-linear equals real(8) central finite differences (tanh MLP)', fd_err < 1e-7_real64, msg)
    call net%jacobian(xv(:, 1:64), jac, stat=ierr, errmsg=msg)
    call require('jacobian', ierr == INLOOP_OK, msg)
    do i = 1, 64
        jdx(:, i) = matmul(jac(:, :, i), dx(:, i)) - jdx(:, i)
    end do
    call check('J(:,:,c) dx(:,c) equals the tangent-linear', maxval(abs(jdx)) < 1e-12_real64, '')

    call onnx_round_trip()

    ! errors come back in stat/errmsg
    msg = ''
    call tr%step(xt(:, 1:10), yt(:, 1:9), loss, stat=ierr, errmsg=msg)
    call check('step with mismatched columns -> INLOOP_ERR_SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH .and. len_trim(msg) > 0, msg)
    msg = ''
    call tr%create('model: {inputs: 2, layers: [{type: dense, out: 1, activation: sigmoidish}]}', stat=ierr, errmsg=msg)
    call check('unknown activation in a config -> error naming it', ierr /= INLOOP_OK .and. index(msg, 'sigmoidish') > 0, msg)
    call check('a failed create keeps the previous trainer', tr%step_count() == 800, '')
    msg = ''
    call net%jvp(xv(:, 1:4), dx(:, 1:3), jdx(:, 1:4), stat=ierr, errmsg=msg)
    call check('jvp with a wrong dx shape -> INLOOP_ERR_SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, msg)
    ! this program never calls MPI_Init: communicators give a clear status, not a crash
    msg = ''
    call tr%set_communicator(0, stat=ierr, errmsg=msg)
    call check('set_communicator without MPI_Init -> INLOOP_ERR_MPI', ierr == INLOOP_ERR_MPI .and. index(msg, 'MPI_Init') > 0, msg)
    msg = ''
    call net2%load('Tests/fixtures/mlp_medium.safetensors', stat=ierr, errmsg=msg, comm=0)
    call check('load with comm= without MPI_Init -> INLOOP_ERR_MPI', ierr == INLOOP_ERR_MPI, msg)
    call tr%free()
    msg = ''
    call tr%step(xt(:, 1:4), yt(:, 1:4), loss, stat=ierr, errmsg=msg)
    call check('step on a freed trainer -> error, no crash', ierr /= INLOOP_OK .and. len_trim(msg) > 0, msg)
    msg = ''
    call tr%sizes(n_in, n_out, stat=ierr, errmsg=msg)
    call check('sizes on a freed trainer -> error, -1 and -1', ierr /= INLOOP_OK .and. n_in == -1 .and. n_out == -1 &
               .and. len_trim(msg) > 0, msg)
    call tr%rank(r, nr, stat=ierr)
    call check('rank on a freed trainer -> error, -1 and -1', ierr /= INLOOP_OK .and. r == -1 .and. nr == -1, '')
    call check('is_created() is false after free', .not. tr%is_created(), '')

    open (newunit=i, file=ckpt, status='old', iostat=ierr)
    if (ierr == 0) close (i, status='delete')
    print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) error stop 1
contains
    !> An ONNX graph (two strided convolutions around a tanh) fine-tuned 10 steps from Fortran, saved
    !> (native version 2) and loaded again: the reloaded model's outputs equal the in-memory fine-tuned
    !> model's bitwise, in real(4) and real(8), and differ from the model before fine-tuning.
    subroutine onnx_round_trip()
        character(len=*), parameter :: src = 'Tests/fixtures/onnx/strided_tanh.onnx', out = 'build/test_training_fortran_tuned.safetensors'
        type(inloop_model) :: m0, m1, m2
        type(inloop_trainer) :: ft
        ! x(10,10,2,N) -> y(4,2,2,N) in Fortran order; the trainer takes each sample flattened
        real(real32) :: x(200, 16), y(16, 16), x4(10, 10, 2, 16), y0(4, 2, 2, 16), y1(4, 2, 2, 16), y2(4, 2, 2, 16)
        real(real64) :: x8(10, 10, 2, 16), z1(4, 2, 2, 16), z2(4, 2, 2, 16)
        integer :: k, u
        integer(int64) :: n
        msg = ''
        call m0%load(src, stat=ierr, errmsg=msg)
        call require('load ' // src, ierr == INLOOP_OK, msg)
        n = m0%input_size()
        call require('strided_tanh takes 200 values per sample', n == 200, '')
        n = m0%output_size()
        call require('strided_tanh gives 16 values per sample', n == 16, '')
        call random_number(x)
        call random_number(y)
        x = 2 * x - 1
        x4 = reshape(x, shape(x4))
        x8 = real(x4, real64)
        call m0%forward(x4, y0)
        call ft%create_from_model(m0, 'optimizer: {type: adam, lr: 0.01}', stat=ierr, errmsg=msg)
        call require('create_from_model (ONNX graph)', ierr == INLOOP_OK, msg)
        do k = 1, 10
            call ft%step(x, y, loss, stat=ierr, errmsg=msg)
            if (ierr /= INLOOP_OK) exit
        end do
        call require('10 fine-tuning steps of an ONNX graph', ierr == INLOOP_OK, msg)
        call ft%copy_model(m1, stat=ierr, errmsg=msg)
        call require('copy_model (fine-tuned graph)', ierr == INLOOP_OK, msg)
        call ft%save_model(out, stat=ierr, errmsg=msg)
        call require('save_model (fine-tuned graph, native version 2)', ierr == INLOOP_OK, msg)
        call m2%load(out, stat=ierr, errmsg=msg)
        call require('load the saved fine-tuned graph', ierr == INLOOP_OK, msg)
        call m1%forward(x4, y1)
        call m2%forward(x4, y2)
        call check('ONNX graph: fine-tuned, saved, reloaded: outputs bitwise equal (real(4))', &
                   all(transfer(y1, 0_int32, size(y1)) == transfer(y2, 0_int32, size(y2))), 'outputs differ')
        call m1%forward(x8, z1)
        call m2%forward(x8, z2)
        call check('ONNX graph: fine-tuned, saved, reloaded: outputs bitwise equal (real(8))', &
                   same_bits(reshape(z1, [size(z1)]), reshape(z2, [size(z2)])), 'outputs differ')
        call check('fine-tuning changed the ONNX graph''s outputs', maxval(abs(y1 - y0)) > 0, 'unchanged')
        call ft%free()
        call m0%free()
        call m1%free()
        call m2%free()
        open (newunit=u, file=out, status='old', iostat=ierr)
        if (ierr == 0) close (u, status='delete')
    end subroutine

    !> Adam on a linear 2 -> 1 model (float64 trainer, batch of 64) against PyTorch's Adam formulas on
    !> the MSE written out here; weights read back by forwarding 0 and the unit vectors (the model
    !> holds float32 weights: agreement to 1e-6).
    subroutine adam_reference()
        type(inloop_trainer) :: a
        type(inloop_model) :: m
        real(real64) :: w(2), b, mw(2), vw(2), mb, vb, gw(2), gb, r, e(2, 3), ye(1, 3), worst, scale, l, ref_loss
        integer :: s, k, st
        character(len=300) :: detail
        call a%create('model: {inputs: 2, layers: [{type: dense, out: 1}]}' // nl // &
                      'optimizer: {type: adam, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1.0e-8}' // nl // &
                      'seed: 9' // nl // 'precision: float64' // nl, stat=st, errmsg=detail)
        call require('Adam reference: create a linear trainer', st == INLOOP_OK, detail)
        if (st /= INLOOP_OK) return
        e = 0
        e(1, 2) = 1; e(2, 3) = 1
        call a%copy_model(m)
        call m%forward(e, ye)
        call m%free()
        b = ye(1, 1)
        w = ye(1, 2:3) - b
        mw = 0; vw = 0; mb = 0; vb = 0
        l = 0; ref_loss = 0
        do s = 1, 15
            gw = 0; gb = 0; ref_loss = 0
            do k = 1, 64
                r = dot_product(w, xt(:, k)) + b - yt(1, k)
                ref_loss = ref_loss + r**2 / 64
                gb = gb + 2 * r / 64
                gw = gw + 2 * r * xt(:, k) / 64
            end do
            mw = 0.9_real64 * mw + 0.1_real64 * gw
            vw = 0.999_real64 * vw + 0.001_real64 * gw**2
            mb = 0.9_real64 * mb + 0.1_real64 * gb
            vb = 0.999_real64 * vb + 0.001_real64 * gb**2
            w = w - 0.01_real64 * (mw / (1 - 0.9_real64**s)) / (sqrt(vw / (1 - 0.999_real64**s)) + 1e-8_real64)
            b = b - 0.01_real64 * (mb / (1 - 0.9_real64**s)) / (sqrt(vb / (1 - 0.999_real64**s)) + 1e-8_real64)
            call a%step(xt(:, 1:64), yt(:, 1:64), l)
        end do
        call a%copy_model(m)
        call m%forward(e, ye)
        call m%free()
        worst = max(abs(ye(1, 1) - b), maxval(abs(ye(1, 2:3) - ye(1, 1) - w)))
        scale = max(maxval(abs(w)), abs(b))
        write (detail, '(a,es10.3,a,es10.3,a,es23.16,a,es23.16)') 'max weight difference ', worst, ' (max |weight| ', scale, &
            '); last loss ', l, ', reference ', ref_loss
        call check('Adam: 15 steps equal the Adam formulas written out in Fortran (weights, loss)', &
                   worst <= 1e-6_real64 * scale .and. abs(l - ref_loss) <= 1e-6_real64 * ref_loss, detail)
        call a%free()
    end subroutine

    logical function same_bits(a, b)
        real(real64), intent(in) :: a(:), b(:)
        same_bits = size(a) == size(b)
        if (same_bits) same_bits = all(transfer(a, 1_int64, size(a)) == transfer(b, 1_int64, size(b)))
    end function

    subroutine make_data(x, y, seed)
        real(real64), intent(out) :: x(:,:), y(:,:)
        integer, intent(in) :: seed
        integer :: k
        integer(int64) :: s
        s = 1234567_int64 * seed
        do k = 1, size(x, 2)
            x(1, k) = lcg(s)
            x(2, k) = lcg(s)
            y(1, k) = sin(3.141592653589793_real64 * x(1, k)) * x(2, k)
        end do
    end subroutine

    real(real64) function lcg(s)
        integer(int64), intent(inout) :: s
        s = modulo(s * 48271_int64, 2147483647_int64)
        lcg = 2 * real(s, real64) / 2147483647.0_real64 - 1
    end function

    !> A set-up step: not counted when it works (a later check depends on it), a failure when not.
    subroutine require(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        if (.not. ok) call check(name, ok, detail)
    end subroutine

    subroutine check(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        if (ok) then
            passed = passed + 1
            print '(a)', 'PASS ' // name
        else
            failed = failed + 1
            print '(a)', 'FAIL ' // name // ': ' // trim(detail)
        end if
    end subroutine
end program test_training
