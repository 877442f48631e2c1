! An error without `stat` must stop the program: this program loads a missing file without stat.
! Expected: exit status non-zero (gfortran: 1), stderr contains "inloop: " followed by the library's
! message (which names the missing path), then "ERROR STOP 1"; stdout stays empty (the line after the
! load is never reached).
program test_error_stop
    use inloop
    implicit none
    type(inloop_model) :: m
    call m%load('/nonexistent-inloop-dir/missing-model.safetensors')
    print '(a)', 'FAIL: load of a missing file without stat returned instead of stopping'
end program test_error_stop
