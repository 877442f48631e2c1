!> Per-call cost of the Fortran -> C -> Swift path: the l96 model at batch 1 (one grid point), called
!> through the idiomatic module (`net%forward`) and through the raw bind(C) interface, plus column_mlp
!> through the module at the benchmark batches. bench/run_bench.py sets these against the engine core
!> timed from Swift in the same run. Usage: bench_fortran MODELS_DIR
program bench_fortran
    use inloop
    use inloop_c, only: c_inloop_model_forward_f32
    use, intrinsic :: iso_c_binding, only: c_loc, c_int64_t, c_int32_t
    use, intrinsic :: iso_fortran_env, only: real32, real64, int64
    implicit none
    type(inloop_model) :: l96, mlp
    character(len=512) :: dir
    real(real32), allocatable, target :: x(:,:), y(:,:)
    real(real32), target :: x1(1,1), y1(1,1)
    real(real64) :: t, best(3)
    integer :: i, k, r, calls, b
    integer(c_int32_t) :: st
    integer, parameter :: batches(4) = [1, 16, 256, 4096]

    dir = 'build/models'
    if (command_argument_count() > 0) call get_command_argument(1, dir)
    call l96%load(trim(dir) // '/l96.safetensors')
    call mlp%load(trim(dir) // '/column_mlp.safetensors')

    x1 = 0.7
    calls = 200000
    best = huge(1.0_real64)
    do r = 1, 15                       ! median-free: best of rounds, interleaved, for both paths
        t = wtime()
        do i = 1, calls
            call l96%forward(x1, y1)
        end do
        best(1) = min(best(1), (wtime() - t) / calls)
        t = wtime()
        do i = 1, calls
            st = c_inloop_model_forward_f32(l96%c_handle(), c_loc(x1), 1_c_int64_t, c_loc(y1))
        end do
        best(2) = min(best(2), (wtime() - t) / calls)
        if (st /= INLOOP_OK) error stop 'raw forward failed'
    end do
    print '(a, f8.1, a)', 'l96 batch 1 via Fortran module (net%forward):   ', best(1) * 1e9, ' ns per call'
    print '(a, f8.1, a)', 'l96 batch 1 via raw bind(C) interface:          ', best(2) * 1e9, ' ns per call'
    print '(a, es14.6)', 'RESULT l96_b1_fortran_s ', best(1)
    print '(a, es14.6)', 'RESULT l96_b1_rawc_s ', best(2)

    do k = 1, size(batches)
        b = batches(k)
        allocate (x(mlp%input_size(), b), y(mlp%output_size(), b))
        call random_number(x)
        call mlp%forward(x, y)
        calls = max(3, int(2e8 / (1e6 * b)))
        best(3) = huge(1.0_real64)
        do r = 1, 7
            t = wtime()
            do i = 1, calls
                call mlp%forward(x, y)
            end do
            best(3) = min(best(3), (wtime() - t) / calls)
        end do
        print '(a, i5, a, f10.1, a, f7.1, a)', 'column_mlp batch ', b, ' via Fortran module: ', best(3) * 1e6, ' us, ', &
            998912.0_real64 * b / best(3) / 1e9, ' GFLOP/s'
        print '(a, i0, a, es14.6)', 'RESULT column_mlp_b', b, '_fortran_s ', best(3)
        deallocate (x, y)
    end do
contains
    real(real64) function wtime()
        integer(int64) :: c, rate
        call system_clock(c, rate)
        wtime = real(c, real64) / real(rate, real64)
    end function
end program bench_fortran
