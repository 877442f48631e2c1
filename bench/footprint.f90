!> make footprint: the peak resident memory (VmHWM) of a Fortran process that loads a model
!> (default column_mlp.onnx) and runs it on ncol columns: ./footprint model.onnx [ncol]
program footprint
    use inloop
    use, intrinsic :: iso_fortran_env, only: real64, int64
    implicit none
    type(inloop_model) :: net
    real(real64), allocatable :: x(:,:), y(:,:)
    character(len=1024) :: path, arg
    integer :: ncol, j
    ncol = 256
    call get_command_argument(1, path)
    if (command_argument_count() > 1) then
        call get_command_argument(2, arg)
        read (arg, *) ncol
    end if
    print '(a, i0)', 'VmHWM_kB before load: ', peak_kb()
    call net%load(trim(path))
    allocate (x(net%input_size(), ncol), y(net%output_size(), ncol))
    do j = 1, ncol
        x(:, j) = 0.01_real64 * j
    end do
    call net%forward(x, y)
    print '(a, i0, a, i0)', 'VmHWM_kB after forward of ', ncol, ' columns: ', peak_kb()
    print '(a, es12.4)', 'checksum ', sum(y)
contains
    integer function peak_kb()   ! VmHWM of /proc/self/status, in kB
        character(len=256) :: line
        integer :: u, ios
        peak_kb = -1
        open (newunit=u, file='/proc/self/status', action='read', iostat=ios)
        if (ios /= 0) return
        do
            read (u, '(a)', iostat=ios) line
            if (ios /= 0) exit
            if (line(1:6) == 'VmHWM:') read (line(7:), *) peak_kb
        end do
        close (u)
    end function
end program footprint
