!> Noise inputs and the CRPS trainer from Fortran (issue 15, item 4): a trainer with `noise:` and
!> `loss: {type: crps, members: 4, fair: true}` learns y = x + 0.5 z from samples whose noise it never sees (its
!> CRPS falls); the saved model with set_noise_input / set_noise_step gives, bitwise, the outputs of
!> the same model on inputs filled here with inloop_noise_normal, for a whole batch and for the batch
!> split in two calls with their first columns, and with blocks/stride; the spread of its outputs over
!> the noise is near the data's 0.5; bad arguments come back in stat. Usage: test_noise BUILD_DIR.
!> Prints PASS/FAIL lines and "N passed, M failed".
program test_noise
    use inloop
    use, intrinsic :: iso_fortran_env, only: real64, int64
    implicit none
    integer, parameter :: nb = 16, ncol = 40, nsteps = 1500
    character(len=*), parameter :: nl = new_line('a')
    integer(int64), parameter :: seed = 777_int64, step = 12_int64
    character(len=:), allocatable :: config, dir
    character(len=512) :: arg
    type(inloop_trainer) :: tr
    type(inloop_model) :: net, plain
    real(real64) :: xb(2, nb), yb(1, nb), x(2, ncol), xf(2, ncol), y(1, ncol), yr(1, ncol), loss, first, last
    real(real64) :: mean, sd
    integer :: passed = 0, failed = 0, ierr, k, j, s
    integer(int64) :: state = 12345
    character(len=300) :: msg

    msg = ''
    call get_command_argument(1, arg)
    dir = trim(arg)
    if (len(dir) == 0) dir = 'build'
    config = 'model:' // nl // '  inputs: 2' // nl // '  layers:' // nl // &
             '    - {type: dense, out: 16, activation: tanh}' // nl // '    - {type: dense, out: 1}' // nl // &
             'loss: {type: crps, members: 4, fair: true}' // nl // 'noise: {first: 1, count: 1, seed: 31}' // nl // &
             'optimizer: {type: adam, lr: 0.01}' // nl // 'seed: 5' // nl // 'precision: float64' // nl

    ! --- training: y = x + 0.5 z, z ~ N(0, 1) unseen; feature 2 (the noise feature) is filled by the trainer
    call tr%create(config, stat=ierr, errmsg=msg)
    call require('create a CRPS trainer with a noise feature', ierr == INLOOP_OK, msg)
    first = 0
    last = 0
    do k = 1, nsteps
        do s = 1, nb
            xb(1, s) = 2 * uniform() - 1
            xb(2, s) = 0
            yb(1, s) = xb(1, s) + 0.5_real64 * gauss()
        end do
        call tr%step(xb, yb, loss, stat=ierr, errmsg=msg)
        if (ierr /= INLOOP_OK) exit
        if (k == 1) first = loss
        if (k > nsteps - 100) last = last + loss
    end do
    call check('CRPS training steps', ierr == INLOOP_OK, msg)
    ! the fair CRPS of the true N(x, 0.5**2) is 0.5 / sqrt(pi) = 0.28
    call check('the CRPS falls to near that of the truth (last 100 steps: < 0.36, below the first step''s)', &
               last / 100 < 0.36_real64 .and. last / 100 < first, 'first ' // real_text(first) // ', last ' // real_text(last / 100))
    call tr%save_model(dir // '/test_noise.safetensors', stat=ierr, errmsg=msg)
    call require('save the stochastic model', ierr == INLOOP_OK, msg)
    call tr%free()

    call net%load(dir // '/test_noise.safetensors', stat=ierr, errmsg=msg)
    call require('load it', ierr == INLOOP_OK, msg)
    call plain%load(dir // '/test_noise.safetensors', stat=ierr, errmsg=msg)
    call require('load it again (plain)', ierr == INLOOP_OK, msg)
    call net%set_reproducible(.true.)     ! outputs independent of the batch (the split below)
    call plain%set_reproducible(.true.)
    call net%set_noise_input(2, 1, seed, stat=ierr, errmsg=msg)
    call check('set_noise_input', ierr == INLOOP_OK, msg)

    ! --- the noise forward against inputs filled with inloop_noise_normal: columns 100.., step 12
    do j = 1, ncol
        x(1, j) = 0.2_real64
        x(2, j) = -99
    end do
    xf = x
    do j = 1, ncol
        xf(2, j) = inloop_noise_normal(seed, step, 99_int64 + j, 0_int64)
    end do
    call plain%forward(xf, yr)
    call net%set_noise_step(step, 100_int64, stat=ierr, errmsg=msg)
    call net%forward(x, y, stat=ierr, errmsg=msg)
    call check('noise forward equals the inputs filled with inloop_noise_normal, bitwise', ierr == INLOOP_OK .and. same(y, yr), msg)
    call check('x is unchanged', all(abs(x(2, :) + 99) < 0.5_real64), 'x changed')
    ! two calls of 15 and 25 columns
    call net%set_noise_step(step, 100_int64)
    call net%forward(x(:, 1:15), y(:, 1:15))
    call net%set_noise_step(step, 115_int64)
    call net%forward(x(:, 16:ncol), y(:, 16:ncol))
    call check('split in two calls with their first columns: the same bits', same(y, yr), 'outputs differ')
    ! blocks: 4 members of 10 columns of a 1000-column grid from column 500
    do j = 1, ncol
        xf(2, j) = inloop_noise_normal(seed, step, 500_int64 + ((j - 1) / 10) * 1000 + mod(j - 1, 10), 0_int64)
    end do
    call plain%forward(xf, yr)
    call net%set_noise_step(step, 500_int64, block=10, stride=1000)
    call net%forward(x, y)
    call check('blocks of 10, stride 1000: the same bits as the filled inputs', same(y, yr), 'outputs differ')
    ! the learned spread: the outputs over 40 noise draws at x = 0.2
    mean = sum(y) / ncol
    sd = sqrt(sum((y - mean)**2) / ncol)
    call check('the stochastic model has a spread near the data''s 0.5 (0.25 .. 0.9)', sd > 0.25_real64 .and. sd < 0.9_real64, &
               'sd ' // real_text(sd))
    call check('its mean is near x = 0.2 (within 0.3)', abs(mean - 0.2_real64) < 0.3_real64, 'mean ' // real_text(mean))

    ! --- bad arguments
    call net%set_noise_input(2, 2, seed, stat=ierr)
    call check('features beyond the input: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%set_noise_input(1, 1, seed, input=2, stat=ierr)
    call check('input 2 of a one-input model: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%set_noise_step(-1_int64, 0_int64, stat=ierr)
    call check('negative step: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%set_noise_step(0_int64, 0_int64, block=8, stride=4, stat=ierr)
    call check('stride < block: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call plain%set_noise_step(0_int64, 0_int64, stat=ierr)
    call check('no noise input: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT, '')
    call net%free()
    call plain%free()

    print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) stop 1

contains

    real(real64) function uniform()
        state = modulo(16807_int64 * state, 2147483647_int64)
        uniform = real(state, real64) / 2147483647.0_real64
    end function

    real(real64) function gauss()
        real(real64) :: u1, u2
        u1 = max(uniform(), 1e-12_real64)
        u2 = uniform()
        gauss = sqrt(-2 * log(u1)) * cos(8 * atan(1.0_real64) * u2)
    end function

    logical function same(a, b)
        real(real64), intent(in) :: a(:, :), b(:, :)
        same = all(transfer(a, 1_int64, size(a)) == transfer(b, 1_int64, size(b)))
    end function

    function real_text(v) result(s)
        real(real64), intent(in) :: v
        character(len=24) :: s
        write (s, '(es12.4)') v
    end function

    subroutine require(what, ok, detail)
        character(len=*), intent(in) :: what, detail
        logical, intent(in) :: ok
        call check(what, ok, detail)
        if (.not. ok) then
            print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
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

end program test_noise
