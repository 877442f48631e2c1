! inloop_get_num_threads() reads the same before the first load as after it (the default is resolved on
! the first call of any kind, not lazily at the first load), alone and under a launcher. Run without
! OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (tools/run_tests.py, suite fortran). ./test_threads_default model
program test_threads_default
    use inloop
    implicit none
    type(inloop_model) :: net
    character(len=512) :: path
    integer :: before, after_load, after_forward, passed = 0, failed = 0
    real :: x(20, 3), y(10, 3)
    call get_command_argument(1, path)
    before = inloop_get_num_threads()
    call net%load(path)
    after_load = inloop_get_num_threads()
    x = 0.5
    call net%forward(x, y)
    after_forward = inloop_get_num_threads()
    print '(a, 3(1x, i0))', 'threads before load, after load, after forward:', before, after_load, after_forward
    call check('at least one thread', before >= 1)
    call check('the same before and after the first load', before == after_load)
    call check('the same after the first forward', before == after_forward)
    call inloop_set_num_threads(1)
    call check('inloop_set_num_threads(1) reads back 1', inloop_get_num_threads() == 1)
    print '(i0, a, i0, a)', passed, ' passed, ', failed, ' failed'
    if (failed > 0) error stop 1
contains
    subroutine check(what, ok)
        character(len=*), intent(in) :: what
        logical, intent(in) :: ok
        if (ok) then
            passed = passed + 1
        else
            failed = failed + 1
            print '(2a)', 'FAIL threads-default/', what
        end if
    end subroutine
end program test_threads_default
