! Hard physical constraints from Fortran (net%add_constraint, issue 15 item 1), checked with plain loops:
! conservation with a run-time target s(1, ncol) (real64 weights) and with a feature of x as target
! (real32 weights), the mass fixer, softplus and clamp bounds, and bad arguments as a stat and a message
! with the model unchanged. Fixture mlp_medium (20 -> 10).
!   build/test_fortran_constraints Tests/fixtures/mlp_medium.safetensors
program test_constraints
    use inloop
    use, intrinsic :: iso_fortran_env, only: real32, real64, int64
    implicit none
    integer, parameter :: nin = 20, nout = 10, ncol = 7
    character(len=512) :: path, msg
    type(inloop_model) :: plain, net
    real(real64) :: w(nout), x(nin, ncol), y0(nout, ncol), s(1, ncol), zero(nout), neg(nout)
    real(real64), target :: xt(nin, ncol), st(1, ncol), yt(nout, ncol)
    real(real32) :: w32(nout), x32(nin, ncol), y32(nout, ncol)
    real(real64) :: y(nout, ncol), err, want, p, total
    integer :: i, j, ierr, passed, failed
    integer(int64) :: nins                     ! read before a check: no impure call inside .and.
    character(len=:), allocatable :: name2
    passed = 0
    failed = 0
    path = 'Tests/fixtures/mlp_medium.safetensors'
    if (command_argument_count() > 0) call get_command_argument(1, path)
    do j = 1, ncol
        do i = 1, nin
            x(i, j) = 0.5_real64 + 0.4_real64 * sin(0.37_real64 * real(i + nin * j, real64))
        end do
        s(1, j) = 1 + 0.25_real64 * j
    end do
    do i = 1, nout
        w(i) = 0.5_real64 + 0.1_real64 * mod(i * 7, 11)        ! layer masses dp/g
    end do
    w32 = real(w, real32)
    call plain%load(trim(path))
    call plain%forward(x, y0)

    ! conservation, target s a new input: net%run with x and s
    call net%load(trim(path))
    call net%add_constraint('conservation', w, stat=ierr, errmsg=msg)
    nins = net%num_inputs()
    name2 = net%input_name(2)
    call check('conservation: attached', ierr == INLOOP_OK .and. nins == 2 .and. index(name2, '_target') > 0)
    xt = x
    st = s
    call net%run([inloop_arg(xt), inloop_arg(st)], [inloop_arg(yt)], stat=ierr)
    err = 0
    do j = 1, ncol
        err = max(err, abs(sum(real(w32, real64) * yt(:, j)) - s(1, j)) / abs(s(1, j)))
    end do
    call check('conservation: |w.y - s|/|s| < 1e-6 (float32 model)', ierr == INLOOP_OK .and. err < 1e-6_real64)
    err = 0
    do j = 1, ncol          ! the projection of the plain output, here
        p = (s(1, j) - sum(real(w32, real64) * y0(:, j))) / sum(real(w32, real64)**2)
        do i = 1, nout
            want = y0(i, j) + real(w32(i), real64) * p
            err = max(err, abs(yt(i, j) - want) / max(1.0_real64, abs(want)))
        end do
    end do
    call check('conservation: y is the projection of the plain output', err < 1e-5_real64)
    call net%forward(x, y, stat=ierr, errmsg=msg)
    call check('conservation: forward refuses two inputs with a message', ierr == INLOOP_ERR_INVALID_ARGUMENT .and. &
               index(msg, 'run') > 0)
    call net%free()

    ! conservation, target = feature 20 of x (real32 weights): one input, forward
    call net%load(trim(path))
    call net%add_constraint('conservation', w32, target_feature=nin, stat=ierr)
    x32 = real(x, real32)
    call net%forward(x32, y32)
    err = 0
    do j = 1, ncol
        err = max(err, abs(sum(real(w32, real64) * real(y32(:, j), real64)) - real(x32(nin, j), real64)) / &
                  abs(real(x32(nin, j), real64)))
    end do
    nins = net%num_inputs()
    call check('conservation, target feature: one input, error < 1e-6', ierr == INLOOP_OK .and. nins == 1 &
               .and. err < 1e-6_real64)
    ! then the mass fixer on the same output: no negative value, integrals still x(20, :)
    call net%add_constraint('mass_fixer', w, stat=ierr)
    call net%forward(x32, y32)
    err = 0
    do j = 1, ncol
        err = max(err, abs(sum(real(w32, real64) * real(y32(:, j), real64)) - real(x32(nin, j), real64)) / &
                  abs(real(x32(nin, j), real64)))
    end do
    call check('mass fixer after conservation: y >= 0, integrals kept', ierr == INLOOP_OK .and. all(y32 >= 0) .and. &
               err < 1e-5_real64)
    call net%free()

    ! mass fixer alone: the rule, here
    call net%load(trim(path))
    call net%add_constraint('mass_fixer', w)
    call net%forward(x, y)
    err = 0
    do j = 1, ncol
        total = sum(real(w32, real64) * y0(:, j))
        p = sum(real(w32, real64) * max(y0(:, j), 0.0_real64))
        do i = 1, nout
            want = 0
            if (total > 0) want = max(y0(i, j), 0.0_real64) * total / p
            err = max(err, abs(y(i, j) - want) / max(1e-3_real64, abs(want)))
        end do
    end do
    call check('mass fixer: the rule', err < 1e-5_real64 .and. any(y0 < 0))
    call net%free()

    ! bounds
    call net%load(trim(path))
    call net%add_constraint('softplus', lo=0.0_real64)
    call net%forward(x, y)
    err = maxval(abs(y - log(1 + exp(y0))))
    call check('softplus positivity', all(y >= 0) .and. err < 1e-6_real64)
    call net%free()
    call net%load(trim(path))
    call net%add_constraint('clamp', lo=-0.05_real64, hi=0.05_real64)
    call net%forward(x, y)
    call check('clamp', all(abs(y - min(max(y0, -0.05_real64), 0.05_real64)) < 1e-7_real64))

    ! bad arguments: stat and message, the model unchanged
    zero = 0
    neg = 1
    neg(4) = -1
    call expect_error('unknown constraint', 'tanh')
    call net%add_constraint('conservation', zero, stat=ierr, errmsg=msg)
    call check('w.w = 0: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT .and. len_trim(msg) > 0)
    call net%add_constraint('conservation', w(1:nout - 1), stat=ierr, errmsg=msg)
    call check('K not the output size: SIZE_MISMATCH', ierr == INLOOP_ERR_SIZE_MISMATCH)
    call net%add_constraint('mass_fixer', neg, stat=ierr, errmsg=msg)
    call check('negative mass-fixer weight: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT)
    call net%add_constraint('conservation', w, target_feature=nin + 1, stat=ierr, errmsg=msg)
    call check('target_feature out of range: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT)
    call net%add_constraint('conservation', w, target_feature=0, stat=ierr, errmsg=msg)
    call check('target_feature 0: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT)
    call net%add_constraint('clamp', lo=1.0_real64, hi=0.0_real64, stat=ierr, errmsg=msg)
    call check('lo >= hi: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT)
    call net%add_constraint('softplus', stat=ierr, errmsg=msg)
    call check('no bound: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT)
    call net%add_constraint('clamp', lo=0.0_real64, output=2, stat=ierr, errmsg=msg)
    call check('output 2 of 1: INVALID_ARGUMENT', ierr == INLOOP_ERR_INVALID_ARGUMENT)
    call net%forward(x, y, stat=ierr)
    nins = net%num_inputs()
    call check('model unchanged after the errors', ierr == INLOOP_OK .and. nins == 1 .and. &
               all(abs(y - min(max(y0, -0.05_real64), 0.05_real64)) < 1e-7_real64))
    print '(i0, a, i0, a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) error stop 1
contains
    subroutine check(name, ok)
        character(len=*), intent(in) :: name
        logical, intent(in) :: ok
        if (ok) then
            print '(2a)', 'PASS ', name
            passed = passed + 1
        else
            print '(4a)', 'FAIL ', name, ': ', trim(msg)
            failed = failed + 1
        end if
    end subroutine

    subroutine expect_error(name, constraint)
        character(len=*), intent(in) :: name, constraint
        msg = ''
        call net%add_constraint(constraint, w, stat=ierr, errmsg=msg)
        call check(name // ': INVALID_ARGUMENT and a message', ierr == INLOOP_ERR_INVALID_ARGUMENT .and. len_trim(msg) > 0)
    end subroutine
end program test_constraints
