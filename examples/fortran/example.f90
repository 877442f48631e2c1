program example  ! ./example [model.safetensors]: runs the model on the inputs stored next to it in <model>.io.bin
    use inloop
    use, intrinsic :: iso_fortran_env, only: int64, real64
    implicit none
    type(inloop_model) :: net
    real(real64), allocatable :: x(:,:), y(:,:)           ! x(n_in, ncol) -> y(n_out, ncol)
    character(len=256) :: path = 'Tests/fixtures/mlp_medium.safetensors'
    integer(int64) :: n(3), u                             ! n = [n_in, n_out, ncol]
    if (command_argument_count() > 0) call get_command_argument(1, path)
    call net%load(path)                                   ! without stat=, an error stops with the message
    open (newunit=u, file=path(:len_trim(path) - 12) // '.io.bin', access='stream', status='old')
    read (u) n;  allocate (x(n(1), n(3)), y(n(2), n(3)));  read (u) x
    call net%forward(x, y)
    print '(5es16.8)', y
end program example
