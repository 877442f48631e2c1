!> Data-parallel training over MPI (run with mpirun -np 2, and -np 3 --oversubscribe):
!>  - a global batch split unevenly over the ranks (one rank empty in one step) trains to the same
!>    weights as one trainer on the whole batch, within 1e-6 relative (float64), same losses; the
!>    model has 4,546 parameters, so each rank updates its own shard of several 1024-blocks;
!>  - a model smaller than one block (ranks whose shard is empty) trains the same way;
!>  - float32: identical weights on all ranks, close to whole-batch training;
!>  run with INLOOP_MPI_SHARED_MEMORY=1 (node-shared memory) and =0 (MPI reduce-scatter of fixed point);
!>  - all ranks hold bitwise identical weights; the same run twice gives bitwise the same weights;
!>  - NaN on one rank: every rank gets INLOOP_ERR_NONFINITE and keeps its weights; ranks holding
!>    different models get INLOOP_ERR_SIZE_MISMATCH on every rank;
!>  - rank-0 load + broadcast of models and checkpoints, the same error on every rank for a missing
!>    file, checkpoint -> reload over the communicator -> continue equals the uninterrupted run;
!>  - an independent reference: data-parallel Adam on a linear model equals the Adam formulas written
!>    out below (the comparisons above would pass with a wrong optimizer, the same on every path).
program test_mpi_training
    use mpi
    use inloop
    use inloop_c, only: c_inloop_trainer_rank
    use, intrinsic :: iso_c_binding, only: c_int32_t
    use, intrinsic :: iso_fortran_env, only: real64, int64
    implicit none
    integer, parameter :: g = 96, nprobe = 32, nsteps = 6
    character(len=*), parameter :: nl = new_line('a')
    character(len=*), parameter :: model_path = 'build/test_mpi_training.safetensors', ckpt = 'build/test_mpi_training.ckpt'
    character(len=:), allocatable :: config, small, config32
    type(inloop_trainer) :: td, td2, ts, tr3, tsd
    type(inloop_model) :: md, ms, m3, loaded
    real(real64) :: x(3, g), y(2, g), probe(3, nprobe), yd(2, nprobe), ys(2, nprobe), y2(2, nprobe), yb(2, nprobe)
    real(real64) :: lossd, losss, reldiff
    integer :: ierr, rank, nranks, step, lo, hi, stat, passed = 0, failed = 0, counts(2), worst_loss_ok
    character(len=300) :: msg

    call MPI_Init(ierr)
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
    call MPI_Comm_size(MPI_COMM_WORLD, nranks, ierr)
    config = 'model: {inputs: 3, layers: [{type: dense, out: 64, activation: tanh}, {type: dense, out: 64, activation: silu}, {type: dense, out: 2}]}' // nl // &
             'optimizer: {type: adam, lr: 0.01, clip_norm: 5}' // nl // 'seed: 11' // nl // 'precision: float64' // nl
    small = 'model: {inputs: 3, layers: [{type: dense, out: 16, activation: tanh}, {type: dense, out: 16, activation: silu}, {type: dense, out: 2}]}' // nl // &
            'optimizer: {type: adam, lr: 0.01, clip_norm: 5}' // nl // 'seed: 11' // nl // 'precision: float64' // nl
    config32 = 'model: {inputs: 3, layers: [{type: dense, out: 64, activation: tanh}, {type: dense, out: 64, activation: silu}, {type: dense, out: 2}]}' // nl // &
               'optimizer: {type: adamw, lr: 0.01, weight_decay: 0.01, clip_norm: 5}' // nl // 'seed: 5' // nl // 'precision: float32' // nl
    call make_data()

    call td%create(config)
    call td%set_communicator(MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call require('set_communicator(MPI_COMM_WORLD)', stat == INLOOP_OK, msg)
    block
        integer :: r, n
        integer(c_int32_t) :: cr, cn, code
        call td%rank(r, n)
        code = c_inloop_trainer_rank(td%c_handle(), cr, cn)
        call check('rank(rank, size) of the data-parallel trainer: MPI_Comm_rank/size, as inloop_trainer_rank', &
                   code == INLOOP_OK .and. r == rank .and. n == nranks .and. r == cr .and. n == cn, '')
    end block
    call td2%create(config)
    call td2%set_communicator(MPI_COMM_WORLD)
    call ts%create(config)      ! serial reference: the whole batch on every rank
    worst_loss_ok = 1
    do step = 1, nsteps
        call block(step, lo, hi)
        call td%step(x(:, lo:hi), y(:, lo:hi), lossd, stat=stat, errmsg=msg)
        if (stat /= INLOOP_OK) call check('distributed step', .false., msg)
        call td2%step(x(:, lo:hi), y(:, lo:hi))
        call ts%step(x, y, losss)
        if (abs(lossd - losss) > 1e-12_real64 * abs(losss)) worst_loss_ok = 0
    end do
    call check('reported loss is the global mean (equals the whole-batch loss)', worst_loss_ok == 1, 'losses differ')
    call td%copy_model(md)
    call ts%copy_model(ms)
    call md%forward(probe, yd)
    call ms%forward(probe, ys)
    reldiff = maxval(abs(yd - ys)) / maxval(abs(ys))
    write (msg, '(a,es10.3)') 'max relative difference ', reldiff
    call check('distributed training equals whole-batch training within 1e-6 (float64)', reldiff < 1e-6_real64, msg)
    if (rank == 0) print '(a)', 'INFO distributed vs serial: ' // trim(msg)
    call check('identical weights on all ranks (bitwise)', same_on_all_ranks(yd), 'ranks differ')
    call td2%copy_model(m3)
    call m3%forward(probe, y2)
    call check('the same run twice gives bitwise the same weights', all(transfer(y2, 1_int64, size(y2)) == transfer(yd, 1_int64, size(yd))), 'runs differ')

    call adam_reference()

    ! a model smaller than one block: some ranks own no parameters and update nothing
    call parallel_vs_whole(small, 1e-6_real64, 'model smaller than one block (empty shards)')
    ! float32 (32-bit fixed-point integers through MPI, float64 sums through shared memory)
    call parallel_vs_whole(config32, 1e-4_real64, 'float32')

    ! ranks holding different models: the same clear error everywhere, before anything is shared
    if (rank == 0) then
        call tsd%create(small)
    else
        call tsd%create(config)
    end if
    msg = ''
    call tsd%set_communicator(MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call check('different models on different ranks: INLOOP_ERR_SIZE_MISMATCH on every rank', &
               all_equal(stat) .and. stat == INLOOP_ERR_SIZE_MISMATCH .and. index(msg, 'different sizes') > 0, msg)
    call tsd%free()

    ! NaN on the last rank: every rank fails, no rank changes its weights
    call block(1, lo, hi)
    if (rank == nranks - 1) x(1, hi) = transfer(-1_int64, 1.0_real64)   ! a NaN bit pattern
    msg = ''
    call td%step(x(:, lo:hi), y(:, lo:hi), lossd, stat=stat, errmsg=msg)
    call make_data()
    call check('NaN on one rank: INLOOP_ERR_NONFINITE on every rank', all_equal(stat) .and. stat == INLOOP_ERR_NONFINITE .and. len_trim(msg) > 0, msg)
    call td%copy_model(md)
    call md%forward(probe, yb)
    call check('after the refused step the weights are unchanged', all(transfer(yb, 1_int64, size(yb)) == transfer(yd, 1_int64, size(yd))), 'weights changed')

    ! rank 0 writes, everyone loads through a rank-0 read + broadcast
    call td%save_model(model_path, stat=stat, errmsg=msg)
    call check('save_model (rank 0 writes)', all_equal(stat) .and. stat == INLOOP_OK, msg)
    call loaded%load(model_path, stat=stat, errmsg=msg, comm=MPI_COMM_WORLD)
    call require('load with comm= (rank-0 read + broadcast)', stat == INLOOP_OK, msg)
    if (stat == INLOOP_OK) then
        call loaded%forward(probe, yb)
        call check('the broadcast model equals the trained one', maxval(abs(yb - yd)) <= 1e-6_real64 * maxval(abs(yd)), 'outputs differ')
    end if
    msg = ''
    call loaded%load('build/does-not-exist.safetensors', stat=stat, errmsg=msg, comm=MPI_COMM_WORLD)
    call check('missing file: the same INLOOP_ERR_IO on every rank, no rank left hanging', all_equal(stat) .and. stat == INLOOP_ERR_IO .and. len_trim(msg) > 0, msg)

    ! checkpoint over the communicator: continue two steps on both, compare
    call td%save_checkpoint(ckpt, stat=stat, errmsg=msg)
    call check('save_checkpoint (rank 0 writes)', all_equal(stat) .and. stat == INLOOP_OK, msg)
    call tr3%load_checkpoint(ckpt, comm=MPI_COMM_WORLD, stat=stat, errmsg=msg)
    call require('load_checkpoint with comm=', stat == INLOOP_OK, msg)
    do step = 1, 2
        call block(step + 2, lo, hi)
        call td%step(x(:, lo:hi), y(:, lo:hi))
        call tr3%step(x(:, lo:hi), y(:, lo:hi))
    end do
    call td%copy_model(md)
    call tr3%copy_model(m3)
    call md%forward(probe, yd)
    call m3%forward(probe, y2)
    call check('checkpoint + reload over the communicator + continue equals the uninterrupted run', &
               all(transfer(y2, 1_int64, size(y2)) == transfer(yd, 1_int64, size(yd))), 'weights differ')

    counts = [passed, failed]
    call MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INTEGER, MPI_MAX, MPI_COMM_WORLD, ierr)
    if (rank == 0) then
        open (newunit=lo, file=model_path, status='old', iostat=ierr)
        if (ierr == 0) close (lo, status='delete')
        open (newunit=lo, file=ckpt, status='old', iostat=ierr)
        if (ierr == 0) close (lo, status='delete')
        print '(i0,a,i0,a)', counts(1), ' passed, ', counts(2), ' failed'
    end if
    call td%free(); call td2%free(); call ts%free(); call tr3%free()
    call MPI_Finalize(ierr)
    if (counts(2) > 0) error stop 1
contains
    !> Data-parallel Adam (uneven splits) on a linear 3 -> 2 model, float64, against PyTorch's Adam
    !> formulas on the whole-batch MSE (mean over samples and outputs) written out here. The weights
    !> are read back by forwarding 0 and the unit vectors (the model holds float32 weights: 1e-6).
    subroutine adam_reference()
        type(inloop_trainer) :: a
        type(inloop_model) :: m
        real(real64) :: w(2, 3), b(2), mw(2, 3), vw(2, 3), mb(2), vb(2), gw(2, 3), gb(2), r(2), e(3, 4), ye(2, 4)
        real(real64) :: worst, scale, loss, ref_loss, bc1, bc2
        integer :: s, l, h, k, st
        character(len=200) :: detail
        call a%create('model: {inputs: 3, layers: [{type: dense, out: 2}]}' // nl // &
                      'optimizer: {type: adam, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1.0e-8}' // nl // &
                      'seed: 4' // nl // 'precision: float64' // nl, stat=st, errmsg=detail)
        if (st == INLOOP_OK) call a%set_communicator(MPI_COMM_WORLD, stat=st, errmsg=detail)
        call require('Adam reference: data-parallel linear trainer', st == INLOOP_OK, detail)
        e = 0
        e(1, 2) = 1; e(2, 3) = 1; e(3, 4) = 1
        call a%copy_model(m)
        call m%forward(e, ye)
        call m%free()
        b = ye(:, 1)
        do k = 1, 3
            w(:, k) = ye(:, k + 1) - b
        end do
        mw = 0; vw = 0; mb = 0; vb = 0
        do s = 1, nsteps
            gw = 0; gb = 0; ref_loss = 0
            do k = 1, g
                r = matmul(w, x(:, k)) + b - y(:, k)
                ref_loss = ref_loss + sum(r**2) / (2 * g)
                gb = gb + 2 * r / (2 * g)
                gw = gw + 2 * spread(r, 2, 3) * spread(x(:, k), 1, 2) / (2 * g)
            end do
            bc1 = 1 - 0.9_real64**s
            bc2 = 1 - 0.999_real64**s
            mw = 0.9_real64 * mw + 0.1_real64 * gw
            vw = 0.999_real64 * vw + 0.001_real64 * gw**2
            mb = 0.9_real64 * mb + 0.1_real64 * gb
            vb = 0.999_real64 * vb + 0.001_real64 * gb**2
            w = w - 0.01_real64 * (mw / bc1) / (sqrt(vw / bc2) + 1e-8_real64)
            b = b - 0.01_real64 * (mb / bc1) / (sqrt(vb / bc2) + 1e-8_real64)
            call block(s, l, h)
            call a%step(x(:, l:h), y(:, l:h), loss)
        end do
        call a%copy_model(m)
        call m%forward(e, ye)
        call m%free()
        worst = maxval(abs(ye(:, 1) - b))
        do k = 1, 3
            worst = max(worst, maxval(abs(ye(:, k + 1) - ye(:, 1) - w(:, k))))
        end do
        scale = max(maxval(abs(w)), maxval(abs(b)))
        write (detail, '(a,es10.3,a,es10.3,a,es23.16,a,es23.16)') 'max weight difference ', worst, ' (max |weight| ', scale, &
            '); last loss ', loss, ', reference ', ref_loss
        call check('data-parallel Adam equals the Adam formulas written out in Fortran (weights, loss)', &
                   worst <= 1e-6_real64 * scale .and. abs(loss - ref_loss) <= 1e-6_real64 * ref_loss, detail)
        call a%free()
    end subroutine

    !> Trains cfg data-parallel (uneven splits) and on the whole batch; checks that the two agree
    !> within rel and that all ranks hold the same weights.
    subroutine parallel_vs_whole(cfg, rel, name)
        character(len=*), intent(in) :: cfg, name
        real(real64), intent(in) :: rel
        type(inloop_trainer) :: a, b
        type(inloop_model) :: m
        real(real64) :: out(2, nprobe)
        character(len=20) :: tol
        integer :: s, l, h
        call a%create(cfg)
        call a%set_communicator(MPI_COMM_WORLD)
        call b%create(cfg)
        do s = 1, nsteps
            call block(s, l, h)
            call a%step(x(:, l:h), y(:, l:h))
            call b%step(x, y)
        end do
        write (tol, '(es8.1)') rel
        call compare(a, b, rel, name // ': equals whole-batch training within ' // trim(adjustl(tol)))
        call a%copy_model(m)
        call m%forward(probe, out)
        call check(name // ': identical weights on all ranks (bitwise)', same_on_all_ranks(out), 'ranks differ')
        call m%free(); call a%free(); call b%free()
    end subroutine

    !> Outputs of the data-parallel trainer a and the whole-batch trainer b on the probe points
    !> agree within rel (relative to the largest output).
    subroutine compare(a, b, rel, name)
        type(inloop_trainer), intent(inout) :: a, b
        real(real64), intent(in) :: rel
        character(len=*), intent(in) :: name
        type(inloop_model) :: ma, mb
        real(real64) :: ya(2, nprobe), yb2(2, nprobe), d
        character(len=100) :: detail
        call a%copy_model(ma)
        call b%copy_model(mb)
        call ma%forward(probe, ya)
        call mb%forward(probe, yb2)
        d = maxval(abs(ya - yb2)) / maxval(abs(yb2))
        write (detail, '(a,es10.3)') 'max relative difference ', d
        call check(name, d < rel, detail)
        if (rank == 0) print '(a)', 'INFO ' // name // ': ' // trim(detail)
        call ma%free(); call mb%free()
    end subroutine

    subroutine make_data()
        integer :: k
        do k = 1, g
            x(:, k) = [sin(0.37_real64 * k), cos(0.11_real64 * k), real(mod(k, 7), real64) / 7 - 0.5_real64]
            y(:, k) = [x(1, k) * x(2, k) + x(3, k), tanh(x(1, k) - x(3, k))]
        end do
        do k = 1, nprobe
            probe(:, k) = [cos(0.5_real64 * k), sin(0.3_real64 * k), 0.1_real64 * mod(k, 5)]
        end do
    end subroutine

    !> This rank's columns lo:hi in a step: uneven shares; in step 2 the last rank has none.
    subroutine block(step, lo, hi)
        integer, intent(in) :: step
        integer, intent(out) :: lo, hi
        integer :: r, share(0:63), total
        total = 0
        do r = 0, nranks - 1
            share(r) = r + 1
            if (step == 2 .and. r == nranks - 1 .and. nranks > 1) share(r) = 0
            total = total + share(r)
        end do
        lo = 1
        do r = 0, rank - 1
            lo = lo + (g * share(r)) / total
        end do
        hi = lo + (g * share(rank)) / total - 1
        if (rank == nranks - 1) hi = g
        if (share(rank) == 0) hi = lo - 1
    end subroutine

    logical function same_on_all_ranks(a)
        real(real64), intent(in) :: a(:,:)
        real(real64) :: mx(size(a, 1), size(a, 2)), mn(size(a, 1), size(a, 2))
        integer :: e
        mx = a; mn = a
        call MPI_Allreduce(MPI_IN_PLACE, mx, size(a), MPI_DOUBLE_PRECISION, MPI_MAX, MPI_COMM_WORLD, e)
        call MPI_Allreduce(MPI_IN_PLACE, mn, size(a), MPI_DOUBLE_PRECISION, MPI_MIN, MPI_COMM_WORLD, e)
        same_on_all_ranks = all(transfer(mx, 1_int64, size(mx)) == transfer(mn, 1_int64, size(mn)))
    end function

    logical function all_equal(v)
        integer, intent(in) :: v
        integer :: mx, mn, e
        call MPI_Allreduce(v, mx, 1, MPI_INTEGER, MPI_MAX, MPI_COMM_WORLD, e)
        call MPI_Allreduce(v, mn, 1, MPI_INTEGER, MPI_MIN, MPI_COMM_WORLD, e)
        all_equal = mx == mn
    end function

    !> A set-up step: not counted when it works on every rank, a failure when not (collective).
    subroutine require(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        logical :: all_ok
        integer :: e
        call MPI_Allreduce(ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD, e)
        if (.not. all_ok) then
            failed = failed + 1
            if (.not. ok) print '(a,i0,a)', 'FAIL ' // name // ' (rank ', rank, '): ' // trim(detail)
        end if
    end subroutine

    subroutine check(name, ok, detail)
        character(len=*), intent(in) :: name, detail
        logical, intent(in) :: ok
        logical :: all_ok
        integer :: e
        call MPI_Allreduce(ok, all_ok, 1, MPI_LOGICAL, MPI_LAND, MPI_COMM_WORLD, e)
        if (all_ok) then
            passed = passed + 1
            if (rank == 0) print '(a)', 'PASS ' // name
        else
            failed = failed + 1
            if (.not. ok) print '(a,i0,a)', 'FAIL ' // name // ' (rank ', rank, '): ' // trim(detail)
        end if
    end subroutine
end program test_mpi_training
