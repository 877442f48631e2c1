!> Input ranges of data-parallel training (issue 15, item 3): every rank trains on its own columns;
!> the model saved (rank 0 writes) carries the range of ALL ranks' inputs — lo/hi equal the global
!> minimum/maximum computed here with MPI_Allreduce(MPI_MIN/MPI_MAX), mean and standard deviation equal
!> the global ones (1e-12), samples the total — on every rank after loading it; a checkpoint restart
!> (load_checkpoint with comm) and more training count each sample once. Run with 2 or 3 ranks.
!> Prints PASS/FAIL lines and "N passed, M failed" on rank 0 (every rank's checks are combined).
program test_mpi_ranges
    use mpi
    use inloop
    use, intrinsic :: iso_fortran_env, only: real64, int64
    implicit none
    integer, parameter :: nb = 50, nsteps = 4
    character(len=*), parameter :: nl = new_line('a')
    character(len=:), allocatable :: config
    type(inloop_trainer) :: tr, tr2
    type(inloop_model) :: net
    real(real64), allocatable :: x(:, :, :), y(:, :, :)
    real(real64) :: lo(3), hi(3), mean(3), sd(3), glo(3), ghi(3), gsum(3), gsq(3), gmean(3), gsd(3), part(3)
    integer(int64) :: samples
    integer :: ierr, rank, nranks, s, c, j, stat, passed = 0, failed = 0, total
    character(len=300) :: msg

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
    config = 'model:' // nl // '  inputs: 3' // nl // '  layers:' // nl // &
             '    - {type: dense, out: 4, activation: tanh}' // nl // '    - {type: dense, out: 1}' // nl // &
             'optimizer: {type: sgd, lr: 0.01}' // nl // 'seed: 2' // nl // 'precision: float64' // nl
    ! each rank's columns: feature j shifted by the rank, so that the ranges differ per rank
    allocate (x(3, nb, 2 * nsteps), y(1, nb, 2 * nsteps))
    do s = 1, 2 * nsteps
        do c = 1, nb
            do j = 1, 3
                x(j, c, s) = (rank + 1) * j * sin(0.37d0 * (c + nb * s) + j) - rank
            end do
            y(1, c, s) = sum(x(:, c, s))
        end do
    end do

    call tr%create(config, stat=stat, errmsg=msg)
    call tr%set_communicator(MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call require('a data-parallel trainer', stat == INLOOP_OK, msg)
    do s = 1, nsteps
        call tr%step(x(:, :, s), y(:, :, s), stat=stat, errmsg=msg)
    end do
    call require('train', stat == INLOOP_OK, msg)
    call tr%save_checkpoint('build/test_mpi_ranges.ckpt', stat=stat, errmsg=msg)
    call require('save_checkpoint', stat == INLOOP_OK, msg)
    call tr%save_model('build/test_mpi_ranges.safetensors', stat=stat, errmsg=msg)
    call require('save_model', stat == INLOOP_OK, msg)
    call compare('after training', 1, nsteps)

    ! restart from the checkpoint on every rank, train on more columns: each sample counted once
    call tr2%load_checkpoint('build/test_mpi_ranges.ckpt', comm=MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call require('load_checkpoint with comm', stat == INLOOP_OK, msg)
    do s = nsteps + 1, 2 * nsteps
        call tr2%step(x(:, :, s), y(:, :, s), stat=stat, errmsg=msg)
    end do
    call require('train after the restart', stat == INLOOP_OK, msg)
    call tr2%save_model('build/test_mpi_ranges.safetensors', stat=stat, errmsg=msg)
    call require('save_model after the restart', stat == INLOOP_OK, msg)
    call compare('after a restart', 1, 2 * nsteps)

    call tr%free()
    call tr2%free()
    call MPI_Allreduce(MPI_IN_PLACE, failed, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD, ierr)
    if (rank == 0) print '(i0,a,i0,a)', passed, ' passed, ', failed, ' failed'
    call MPI_Finalize(ierr)
    if (failed > 0) error stop 1

contains

    !> The saved model's ranges against the global statistics of steps s1..s2 of every rank.
    subroutine compare(what, s1, s2)
        character(len=*), intent(in) :: what
        integer, intent(in) :: s1, s2
        integer :: k
        call MPI_Barrier(MPI_COMM_WORLD, ierr)
        call net%load('build/test_mpi_ranges.safetensors', stat=stat, errmsg=msg)
        call require('load the saved model ' // what, stat == INLOOP_OK, msg)
        call net%input_range(lo, hi, mean, sd, samples, stat=stat, errmsg=msg)
        call check('the saved model has input ranges ' // what, stat == INLOOP_OK, msg)
        do k = 1, 3
            glo(k) = minval(x(k, :, s1:s2))
            ghi(k) = maxval(x(k, :, s1:s2))
            part(k) = sum(x(k, :, s1:s2))
        end do
        call MPI_Allreduce(MPI_IN_PLACE, glo, 3, MPI_DOUBLE_PRECISION, MPI_MIN, MPI_COMM_WORLD, ierr)
        call MPI_Allreduce(MPI_IN_PLACE, ghi, 3, MPI_DOUBLE_PRECISION, MPI_MAX, MPI_COMM_WORLD, ierr)
        call MPI_Allreduce(part, gsum, 3, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD, ierr)
        total = nb * (s2 - s1 + 1) * nranks
        gmean = gsum / total
        do k = 1, 3
            part(k) = sum((x(k, :, s1:s2) - gmean(k))**2)
        end do
        call MPI_Allreduce(part, gsq, 3, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD, ierr)
        gsd = sqrt(gsq / total)
        call check('lo, hi are every rank''s min and max ' // what, &
                   all(abs(lo - glo) <= 0) .and. all(abs(hi - ghi) <= 0), msg)
        call check('mean, std are every rank''s (1e-12) ' // what, &
                   all(abs(mean - gmean) <= 1d-12 * (1 + abs(gmean))) .and. all(abs(sd - gsd) <= 1d-12 * (1 + gsd)), '')
        call check('samples count every rank''s columns once ' // what, samples == total, '')
        call net%free()
    end subroutine

    subroutine check(what, ok, detail)
        character(len=*), intent(in) :: what, detail
        logical, intent(in) :: ok
        if (ok) then
            passed = passed + 1
            if (rank == 0) print '(a)', 'PASS ' // what
        else
            failed = failed + 1
            print '(a,i0,a)', 'FAIL (rank ', rank, ') ' // what // ': ' // trim(detail)
        end if
    end subroutine

    subroutine require(what, ok, detail)
        character(len=*), intent(in) :: what, detail
        logical, intent(in) :: ok
        if (.not. ok) then
            print '(a,i0,a)', 'FAIL (rank ', rank, ') ' // what // ': ' // trim(detail)
            call MPI_Abort(MPI_COMM_WORLD, 1, ierr)
        end if
    end subroutine
end program
