!> Ensembles and MC-dropout from Fortran (issue 15, item 2): `load_ensemble` of the members of
!> Tests/fixtures/make_ensemble.py; `forward(x, mean, spread)` against NumPy's mean and population
!> standard deviation over the members (ens_ref.bin), in real64 and real32, and against the members
!> loaded alone; `forward(x, y)` gives the mean; MC-dropout on y = w . dropout(x) (p = 0.3) against
!> E = w.x and Var = sum w_i^2 x_i^2 p/(1-p) within 5 standard errors (as Tests/c/test_ensemble.c);
!> the same seed gives the same bits; errors come back in stat; inloop_trainer_save_ensemble of three
!> trainers (seeds 1-3) loads as an ensemble whose mean and spread are those of the trainers' own models
!> (copy_model). Usage: test_ensemble FIXTURES_DIR [TMP_DIR].
!> Prints PASS/FAIL lines and "N passed, M failed".
program test_ensemble
    use inloop
    use, intrinsic :: iso_fortran_env, only: real32, real64, int64
    implicit none
    integer, parameter :: nin = 5, nout = 3, ns = 1000, nb = 48
    character(len=:), allocatable :: dir
    character(len=512) :: arg
    character(len=600) :: paths(3), mixed(2)
    type(inloop_model) :: ens, one, mc, mc2
    real(real64) :: x(nin, 64), ref(12, 64), mean(nout, 64), spread(nout, 64), y(nout, 64)
    real(real64) :: ys(nout, 64, 3), rm(nout, 64), rs(nout, 64), w(6), x0(6), xm(6, nb)
    real(real64) :: mm(1, nb), sm(1, nb), mm2(1, nb), sm2(1, nb), bad(nout + 1, 64)
    real(real32) :: x4(nin, 64), mean4(nout, 64), spread4(nout, 64)
    integer(int64) :: h(3)
    integer :: passed = 0, failed = 0, ierr, u, b, k
    character(len=300) :: msg

    call get_command_argument(1, arg)
    dir = trim(arg)
    if (len(dir) == 0) dir = 'Tests/fixtures'
    open(newunit=u, file=dir // '/ens_ref.bin', access='stream', form='unformatted', status='old', iostat=ierr)
    call require('read ens_ref.bin', ierr == 0, dir // '/ens_ref.bin')
    read(u) h
    b = int(h(3))
    read(u) x(:, 1:b), ref(:, 1:b)
    close(u)
    do k = 1, 3
        write(paths(k), '(a,i0,a)') dir // '/ens_member_', k - 1, '.safetensors'
    end do

    ! --- an ensemble of three members against NumPy
    call ens%load_ensemble(paths, stat=ierr, errmsg=msg)
    call require('load_ensemble', ierr == INLOOP_OK, msg)
    call check('num_outputs is 2 (mean, spread)', ens%num_outputs() == 2, '')
    call ens%forward(x(:, 1:b), mean(:, 1:b), spread(:, 1:b), stat=ierr, errmsg=msg)
    call check('forward(x, mean, spread) real64', ierr == INLOOP_OK, msg)
    ! float32 members compute in float32 from either kind: NumPy's float64 numbers to float32 rounding
    call check('real64 mean against NumPy', &
               maxval(abs(mean(:, 1:b) - ref(1:3, 1:b))) <= 2d-6 * max(1d0, maxval(abs(ref(1:3, 1:b)))), '')
    call check('real64 spread against NumPy', &
               maxval(abs(spread(:, 1:b) - ref(4:6, 1:b))) <= 2d-6 * max(1d0, maxval(abs(ref(1:3, 1:b)))), '')
    x4 = real(x, real32)
    call ens%forward(x4(:, 1:b), mean4(:, 1:b), spread4(:, 1:b), stat=ierr, errmsg=msg)
    call check('forward(x, mean, spread) real32', ierr == INLOOP_OK, msg)
    call check('real32 mean and spread against NumPy', &
               maxval(abs(mean4(:, 1:b) - ref(1:3, 1:b))) <= 2d-6 * max(1d0, maxval(abs(ref(1:3, 1:b)))) .and. &
               maxval(abs(spread4(:, 1:b) - ref(4:6, 1:b))) <= 2d-6 * max(1d0, maxval(abs(ref(1:3, 1:b)))), '')
    ! against each member loaded alone
    do k = 1, 3
        call one%load(paths(k))
        call one%forward(x(:, 1:b), ys(:, 1:b, k))
        call one%free()
    end do
    rm(:, 1:b) = sum(ys(:, 1:b, :), dim=3) / 3
    rs(:, 1:b) = sqrt(((ys(:, 1:b, 1) - rm(:, 1:b))**2 + (ys(:, 1:b, 2) - rm(:, 1:b))**2 + (ys(:, 1:b, 3) - rm(:, 1:b))**2) / 3)
    call check('mean and spread against the members loaded alone', &
               maxval(abs(mean(:, 1:b) - rm(:, 1:b))) <= 2d-6 * max(1d0, maxval(abs(rm(:, 1:b)))) .and. &
               maxval(abs(spread(:, 1:b) - rs(:, 1:b))) <= 2d-6 * max(1d0, maxval(abs(rm(:, 1:b)))), '')
    call ens%forward(x(:, 1:b), y(:, 1:b), stat=ierr, errmsg=msg)
    call check('forward(x, y) on an ensemble gives the mean bitwise', ierr == INLOOP_OK .and. &
               all(transfer(y(:, 1:b), 1_int64, nout * b) == transfer(mean(:, 1:b), 1_int64, nout * b)), msg)
    ! errors in stat
    call ens%forward(x(:, 1:b), bad(:, 1:b), spread(:, 1:b), stat=ierr)
    call check('mean of the wrong shape: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, '')
    mixed(1) = paths(1)
    mixed(2) = dir // '/ens_member_bad.safetensors'
    call one%load_ensemble(mixed, stat=ierr)
    call check('a member with another output size: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH, '')
    call one%load_ensemble(paths(1:0), stat=ierr)
    call check('no members: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call ens%set_mc_dropout(8, 1_int64, stat=ierr)
    call check('MC-dropout on an ensemble: UNSUPPORTED', ierr == INLOOP_ERR_UNSUPPORTED, '')
    call ens%free()

    ! --- MC-dropout on y = w . dropout(x), ratio 0.3
    open(newunit=u, file=dir // '/mc_linear.w.bin', access='stream', form='unformatted', status='old', iostat=ierr)
    call require('read mc_linear.w.bin', ierr == 0, '')
    read(u) w
    close(u)
    x0 = [1d0, 0.5d0, -0.25d0, 2d0, -1.5d0, 0.75d0]
    do k = 1, nb
        xm(:, k) = x0
    end do
    call mc%load(dir // '/mc_linear.onnx', stat=ierr, errmsg=msg)
    call require('load mc_linear.onnx', ierr == INLOOP_OK, msg)
    call mc%forward(xm, mm, sm, stat=ierr)
    call check('MC-dropout off: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call mc%set_mc_dropout(ns, 2026_int64, stat=ierr, errmsg=msg)
    call check('set_mc_dropout', ierr == INLOOP_OK, msg)
    call mc%forward(xm, mm, sm, stat=ierr, errmsg=msg)
    call check('MC forward(x, mean, spread)', ierr == INLOOP_OK, msg)
    call mc_moments(mm(1, :), sm(1, :))
    call mc2%load(dir // '/mc_linear.onnx')
    call mc%set_mc_dropout(32, 7_int64)
    call mc2%set_mc_dropout(32, 7_int64)
    call mc%forward(xm, mm, sm)
    call mc2%forward(xm, mm2, sm2)
    call check('MC-dropout: the same seed gives the same bits', &
               all(transfer(mm, 1_int64, nb) == transfer(mm2, 1_int64, nb)) .and. &
               all(transfer(sm, 1_int64, nb) == transfer(sm2, 1_int64, nb)), '')
    call mc2%set_mc_dropout(32, 8_int64)
    call mc2%forward(xm, mm2, sm2)
    call check('MC-dropout: another seed gives other bits', any(transfer(mm, 1_int64, nb) /= transfer(mm2, 1_int64, nb)), '')
    call mc%free()
    call mc2%free()

    call trainer_ensemble()
    print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) error stop 1

contains

    !> Three trainers of one configuration (seeds 1, 2, 3), five steps on the same data, written as one
    !> ensemble file by inloop_trainer_save_ensemble: loaded, its mean and population spread against
    !> those computed here over the trainers' own models.
    subroutine trainer_ensemble()
        integer, parameter :: tn = 3, tb = 16
        type(inloop_trainer) :: tr(tn)
        type(inloop_model) :: e, m(tn)
        real(real32) :: tx(4, tb), ty(2, tb)
        real(real64) :: dx(4, tb), em(2, tb), es(2, tb), yk(2, tb, tn), mu(2, tb), sd(2, tb)
        character(len=300) :: cfg, tmp
        character(len=:), allocatable :: file
        integer :: i, j, st
        call get_command_argument(2, tmp)
        if (len_trim(tmp) == 0) tmp = 'build'
        file = trim(tmp) // '/trainer_ensemble_f.safetensors'
        do j = 1, tb
            do i = 1, 4
                tx(i, j) = real(sin(0.7d0 * (i + 4 * j)), real32)
            end do
            ty(:, j) = [real(cos(0.3d0 * j), real32), real(sin(0.2d0 * j), real32)]
        end do
        dx = real(tx, real64)
        do i = 1, tn
            write(cfg, '(a,i0,a)') 'model: {inputs: 4, layers: [{type: dense, out: 8, activation: tanh}, ' // &
                '{type: dense, out: 2}]}' // new_line('a') // 'loss: mse' // new_line('a') // &
                'optimizer: {type: adam, lr: 0.01}' // new_line('a') // 'seed: ', i, new_line('a')
            call tr(i)%create(trim(cfg))
            do j = 1, 5
                call tr(i)%step(tx, ty)
            end do
        end do
        call inloop_trainer_save_ensemble(tr, file, stat=st, errmsg=msg)
        call check('inloop_trainer_save_ensemble writes one file', st == INLOOP_OK, msg)
        call e%load(file, stat=st, errmsg=msg)
        call check('the trainers'' ensemble file loads', st == INLOOP_OK, msg)
        call e%forward(dx, em, es, stat=st, errmsg=msg)
        call check('the trainers'' ensemble: forward(x, mean, spread)', st == INLOOP_OK, msg)
        do i = 1, tn
            call tr(i)%copy_model(m(i))
            call m(i)%forward(dx, yk(:, :, i))
        end do
        mu = sum(yk, dim=3) / tn
        sd = 0
        do i = 1, tn
            sd = sd + (yk(:, :, i) - mu) ** 2
        end do
        sd = sqrt(sd / tn)
        call check('the trainers'' ensemble: mean of the trainers'' models', &
                   maxval(abs(em - mu)) <= 2d-6 * max(1d0, maxval(abs(mu))), '')
        call check('the trainers'' ensemble: spread of the trainers'' models (and they differ)', &
                   maxval(abs(es - sd)) <= 2d-6 * max(1d0, maxval(abs(mu))) .and. maxval(sd) > 1d-3, '')
        call inloop_trainer_save_ensemble(tr(1:0), file, stat=st)
        call check('inloop_trainer_save_ensemble: no trainers is INVALID_ARGUMENT', st == INLOOP_ERR_INVALID_ARGUMENT, '')
        call e%free()
        do i = 1, tn
            call m(i)%free()
            call tr(i)%free()
        end do
        open(newunit=i, file=file, status='old', iostat=st)
        if (st == 0) close(i, status='delete')
    end subroutine

    !> The analytic moments of y = sum a_i B_i, a_i = w_i x_i/(1-p), B_i ~ Bernoulli(1-p): the mean of
    !> the column means within 5 standard errors sqrt(Var/(S B)) of w.x, the mean of the column
    !> (population) variances within 5 of sqrt((mu4 - Var^2)/S/B) of Var (S-1)/S.
    subroutine mc_moments(cm, cs)
        real(real64), intent(in) :: cm(:), cs(:)
        real(real64), parameter :: p = 0.3d0, q = 1 - p
        real(real64) :: a(6), mu, var, k4, mu4, gm, gv, want
        character(len=200) :: d
        a = w * x0 / q
        mu = sum(w * x0)
        var = sum(a**2) * q * p
        k4 = sum(a**4) * q * p * (1 - 6 * q * p)
        mu4 = k4 + 3 * var**2
        gm = sum(cm) / nb
        gv = sum(cs**2) / nb
        want = var * (ns - 1) / ns
        write(d, '(4(a,es12.5))') 'mean ', gm, ' vs ', mu, '; variance ', gv, ' vs ', want
        call check('MC-dropout mean against w.x', abs(gm - mu) <= 5 * sqrt(var / ns / nb), d)
        call check('MC-dropout variance against sum w^2 x^2 p/(1-p)', abs(gv - want) <= 5 * sqrt((mu4 - var**2) / ns / nb), d)
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
