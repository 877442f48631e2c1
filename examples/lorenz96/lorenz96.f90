!> Lorenz '96 with a sub-grid parameterization learned online by InLoop, over MPI.
!>
!>     mpirun -np 2 build/lorenz96/lorenz96 [--quick] [--config examples/lorenz96/training.yaml] [--out build/lorenz96]
!>     mpirun -np 2 build/lorenz96/lorenz96 --truth-dump FILE [--steps N]
!>
!> 1. Truth: the two-scale model (l96_model) spins up, then runs while every rank hands its pairs
!>    (X_{k-1}, X_k, X_{k+1}) -> U_k = -(hc/b) sum_j Y_{j,k} to a data-parallel InLoop trainer
!>    (configured in training.yaml), and accumulates the normal equations of the cubic polynomial fit.
!>    A second trainer (training_stoch.yaml) learns a stochastic network from the same pairs: two more
!>    inputs are noise features, and the loss is the ensemble CRPS of 4 members per sample.
!>    The trained networks are saved (rank 0 writes).
!> 2. The truth continues over an independent period: the verification data.
!> 3. The single-scale model runs with U from (a) the saved network, loaded through the Fortran module
!>    and called once per step for all local k in one batched forward, (b) the cubic polynomial,
!>    (c) nothing: forecasts from the same start dates, and a long climate run each.
!> 3b. Ensemble forecasts with the stochastic network from the same start dates: members differ only in
!>    their noise (keyed by seed, step and global column: the same numbers on any number of ranks), next
!>    to the deterministic network: CRPS and spread-skill ratio at each lead (Gagne et al. 2020).
!> 4. Rank 0 prints the scorecard and a verdict, and writes the data for plot.py. The exit status is
!>    non-zero when the network does not beat "no parameterization" on forecast RMSE.
!>
!> --quick: a short version of the same (for the tests). --truth-dump: runs N steps of the truth model
!> from its initial condition and writes X and Y (global order, raw float64) to FILE: the same bytes on
!> any number of ranks.
program lorenz96
    use mpi_f08
    use inloop
    use l96_model
    use l96_subgrid
    use l96_scores
    use, intrinsic :: iso_fortran_env, only: int64, output_unit, error_unit
    implicit none

    !> Lengths are in model time units (MTU); 1 MTU is about 5 "atmospheric days" (Lorenz 1996).
    type :: run_settings
        real(wp) :: dt_truth = 0.001_wp      !< two-scale model time step
        real(wp) :: dt_model = 0.005_wp      !< single-scale (parameterized) model time step
        real(wp) :: t_spinup = 10            !< truth spin-up, discarded
        real(wp) :: t_train = 100            !< truth run feeding the trainer
        real(wp) :: t_verify = 300           !< independent truth run: forecast start dates and truth climate
        real(wp) :: sample_dt = 0.01_wp      !< pairs are taken (and one training step made) this often
        real(wp) :: out_dt = 0.05_wp         !< truth kept for verification this often
        real(wp) :: start_dt = 0.2_wp        !< forecast start dates this far apart
        real(wp) :: max_lead = 2             !< forecasts this long
        real(wp) :: hist_dt = 0.01_wp        !< climate statistics sampled this often
        real(wp) :: t_discard = 2            !< climate runs: initial adjustment, not counted
        integer :: batch = 128               !< samples per rank in a training step
        integer :: buffer = 65536            !< samples per rank kept in the replay buffer (all, here)
        integer :: progress_every = 1000     !< training steps between progress lines
        integer :: stoch_batch = 128         !< samples per rank in a step of the stochastic network (x 4 members)
        integer :: stoch_every = 8           !< a step of the stochastic network every n-th training step
        integer :: ens_members = 8           !< members of the stochastic ensemble forecasts
        integer :: ens_start_every = 16      !< ensemble forecasts from every n-th start date (3.2 MTU apart)
        integer(int64) :: ens_seed = 2020    !< the ensemble's noise seed
    end type

    real(wp), parameter :: report_leads(4) = [0.2_wp, 0.5_wp, 1.0_wp, 2.0_wp]

    type(run_settings) :: rs
    type(l96_params) :: p
    type(l96_grid) :: g
    type(two_scale_model) :: truth
    type(subgrid_scheme) :: schemes(3)          ! NN, cubic, none
    type(cubic_fit) :: fit
    type(climate_stats) :: truth_clim, clim(3)
    type(forecast_errors) :: errors(3)
    type(subgrid_scheme) :: stoch               ! the stochastic network
    type(ensemble_scores) :: ens
    real(wp), allocatable :: xt(:, :)           ! truth X(nk, 0:n_out) over the verification period
    real(wp) :: step_time(3), param_time(3), truth_step_time, nn_mse, t_start
    character(len=512) :: config_path = 'examples/lorenz96/training.yaml', out_dir = 'build/lorenz96', dump_path = ''
    character(len=512) :: stoch_config = 'examples/lorenz96/training_stoch.yaml'
    character(len=512) :: model_path, stoch_path
    real(wp) :: ens_time
    character(len=300) :: why
    integer :: dump_steps = 1000, ierr, s, rank
    logical :: ok, quick = .false., diverged(3), nn_wins
    integer :: verdict_failed

    call MPI_Init()
    t_start = MPI_Wtime()
    call parse_arguments()
    call make_grid(p, MPI_COMM_WORLD, g, ok, why)
    rank = g%rank
    if (.not. ok) then
        if (rank == 0) write (error_unit, '(a)') 'lorenz96: ' // trim(why)
        call MPI_Finalize()
        stop 2, quiet=.true.
    end if

    if (len_trim(dump_path) > 0) then
        call truth_dump()
        call MPI_Finalize()
        stop
    end if

    if (quick) then   ! the same experiment, shorter: for `make test`
        rs%t_spinup = 5; rs%t_train = 30; rs%t_verify = 30; rs%buffer = 16384; rs%progress_every = 500
        rs%ens_start_every = 4   ! 36 start dates for the ensembles
    end if
    model_path = trim(out_dir) // '/l96_nn.safetensors'
    stoch_path = trim(out_dir) // '/l96_stoch.safetensors'
    if (rank == 0) then
        call execute_command_line('mkdir -p ' // trim(out_dir), exitstat=ierr)
        print '(a)', "Lorenz '96: K = " // num(p%k) // ', J = ' // num(p%j) // ', F = ' // num(p%f) // ', on ' // &
            ranks_text()
    end if

    call truth%init(p, g)
    call train_online()
    call verification_truth()

    ! The three parameterized models, from the same initial conditions
    schemes(1)%kind = SCHEME_NN
    call schemes(1)%net%load(model_path, comm=MPI_COMM_WORLD%MPI_VAL)   ! rank 0 reads, broadcasts
    schemes(2)%kind = SCHEME_CUBIC
    schemes(2)%coef = fit%coef
    schemes(3)%kind = SCHEME_NONE
    do s = 1, 3
        call run_forecasts(schemes(s), errors(s))
    end do
    call run_climates()
    ! The stochastic network: its last two inputs are noise features the engine fills at each forward
    stoch%kind = SCHEME_STOCH
    call stoch%net%load(stoch_path, comm=MPI_COMM_WORLD%MPI_VAL)
    call stoch%net%set_noise_input(n_features + 1, n_noise, rs%ens_seed)
    call run_ensemble(stoch, schemes(1), ens)

    verdict_failed = 0
    if (rank == 0) then
        call scorecard(output_unit)
        open (newunit=ierr, file=trim(out_dir) // '/scorecard.txt', status='replace', action='write')
        call scorecard(ierr)
        close (ierr)
        call write_plot_data()
        if (.not. nn_wins) verdict_failed = 1
    end if
    call MPI_Bcast(verdict_failed, 1, MPI_INTEGER, 0, MPI_COMM_WORLD)
    call schemes(1)%net%free()
    call stoch%net%free()
    call MPI_Finalize()
    if (verdict_failed /= 0) stop 1, quiet=.true.

contains

    subroutine parse_arguments()
        character(len=512) :: arg
        integer :: i, n
        i = 1
        n = command_argument_count()
        do while (i <= n)
            call get_command_argument(i, arg)
            select case (arg)
            case ('--quick'); quick = .true.
            case ('--config'); i = i + 1; call get_command_argument(i, config_path)
            case ('--stoch-config'); i = i + 1; call get_command_argument(i, stoch_config)
            case ('--out'); i = i + 1; call get_command_argument(i, out_dir)
            case ('--truth-dump'); i = i + 1; call get_command_argument(i, dump_path)
            case ('--steps'); i = i + 1; call get_command_argument(i, arg); read (arg, *) dump_steps
            case default
                write (error_unit, '(a)') 'lorenz96: unknown argument ' // trim(arg) // &
                    '; usage: lorenz96 [--quick] [--config FILE] [--stoch-config FILE] [--out DIR] | --truth-dump FILE [--steps N]'
                stop 2, quiet=.true.
            end select
            i = i + 1
        end do
    end subroutine

    integer function steps(t, dt)
        real(wp), intent(in) :: t, dt
        steps = nint(t / dt)
    end function

    !> Spin-up, then the truth run that trains the network online and accumulates the cubic fit.
    subroutine train_online()
        type(inloop_trainer) :: tr, tr_s
        type(sample_buffer) :: buf
        real(wp) :: u(g%nk), f(n_features, g%nk), loss, loss_sum, x_mean, x_std, u_mean, u_std, t0
        real(wp) :: part(2), xs(n_features + n_noise, rs%stoch_batch), loss_s, crps_sum
        integer :: step, n_steps, every, n_train, n_sum, n_sum_s
        do step = 1, steps(rs%t_spinup, rs%dt_truth)
            call truth%step(rs%dt_truth)
        end do
        call tr%create(config_path)                        ! layers, optimizer, schedule, seed
        call tr%set_communicator(MPI_COMM_WORLD%MPI_VAL)   ! data-parallel over the ranks
        call tr_s%create(stoch_config)                     ! the stochastic network: noise features, CRPS
        call tr_s%set_communicator(MPI_COMM_WORLD%MPI_VAL)
        xs = 0                                             ! rows 4:5 are the noise features: the trainer fills them
        crps_sum = 0
        n_sum_s = 0
        call buf%init(rs%buffer, rs%batch, 12345_int64 + 7919_int64 * rank)
        n_steps = steps(rs%t_train, rs%dt_truth)
        every = steps(rs%sample_dt, rs%dt_truth)
        n_train = 0; n_sum = 0; loss_sum = 0
        t0 = MPI_Wtime()
        if (rank == 0) print '(a)', 'training online over ' // num(rs%t_train) // ' MTU of truth: a step every ' // &
            num(rs%sample_dt) // ' MTU, ' // num(rs%batch) // ' pairs per rank drawn from its last ' // num(rs%buffer) // &
            ' (replay buffer)'
        do step = 1, n_steps
            call truth%step(rs%dt_truth)
            if (mod(step, every) /= 0) cycle
            call truth%subgrid_tendency(u)                 ! the target, U_k, for local k
            call stencil_features(truth%x, f)              ! the inputs, (X_{k-1}, X_k, X_{k+1})
            call buf%add(f, u)
            call fit%add(truth%x(1:g%nk), u)
            if (buf%count < rs%batch) cycle                ! the same on every rank: nk is
            call buf%draw()
            call tr%step(buf%xb, buf%ub, loss)             ! collective: gradients averaged over ranks
            n_train = n_train + 1
            loss_sum = loss_sum + loss; n_sum = n_sum + 1
            if (mod(n_train, rs%stoch_every) == 0) then
                xs(1:n_features, :) = buf%xb(:, 1:rs%stoch_batch)
                call tr_s%step(xs, buf%ub(:, 1:rs%stoch_batch), loss_s)   ! 4 members per sample, CRPS
                crps_sum = crps_sum + loss_s; n_sum_s = n_sum_s + 1
            end if
            if (rank == 0 .and. mod(n_train, rs%progress_every) == 0) then
                print '(a,i6,a,f7.2,a,es10.3,a,es10.3,a,es9.2,a,f5.1,a)', '  train step ', n_train, '   t =', &
                    step * rs%dt_truth, '   loss', loss_sum / n_sum, '   stochastic CRPS', crps_sum / max(1, n_sum_s), &
                    '   lr', tr%get_learning_rate(), '   (', MPI_Wtime() - t0, ' s)'
                flush (output_unit)
                loss_sum = 0; n_sum = 0; crps_sum = 0; n_sum_s = 0
            end if
        end do
        call tr%save_model(model_path)                     ! collective; rank 0 writes
        call tr_s%save_model(stoch_path)
        call tr_s%free()
        call fit%solve(MPI_COMM_WORLD)
        ! Mean squared error of the network on the whole buffer, over all ranks (evaluate is local)
        call tr%evaluate(buf%x(:, 1:buf%count), buf%u(:, 1:buf%count), loss)
        part = [loss * buf%count, real(buf%count, wp)]
        call MPI_Allreduce(MPI_IN_PLACE, part, 2, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD)
        nn_mse = part(1) / part(2)
        call fit%moments(x_mean, x_std, u_mean, u_std)
        if (rank == 0) then
            print '(a)', 'trained: ' // num(n_train) // ' steps in ' // num(MPI_Wtime() - t0, 1) // ' s; saved ' // trim(model_path)
            print '(a,f6.2,a,f5.2,a,f6.2,a,f5.2)', '  training data: X mean ', x_mean, ', std ', x_std, &
                ';  U mean ', u_mean, ', std ', u_std
            print '(a,es10.3,a,es10.3,a,es10.3)', '  mean squared error of U on the training data: network ', nn_mse, &
                ', cubic ', fit%residual(), '; variance of U ', u_std**2
            print '(a,4es12.4)', '  cubic fit U = a0 + a1 X + a2 X^2 + a3 X^3: ', fit%coef
        end if
        call tr%free()
    end subroutine

    !> The truth continues over a period independent of the training: keeps X every out_dt for the
    !> forecast verification, and its climate statistics.
    subroutine verification_truth()
        integer :: step, n_out, every_out, every_hist
        type(step_timer) :: clock
        real(wp) :: t0
        n_out = steps(rs%t_verify, rs%out_dt)
        every_out = steps(rs%out_dt, rs%dt_truth)
        every_hist = steps(rs%hist_dt, rs%dt_truth)
        allocate (xt(g%nk, 0:n_out))
        xt(:, 0) = truth%x(1:g%nk)
        call truth_clim%init()
        do step = 1, n_out * every_out
            t0 = MPI_Wtime()
            call truth%step(rs%dt_truth)
            call clock%add(MPI_Wtime() - t0)
            if (mod(step, every_out) == 0) xt(:, step / every_out) = truth%x(1:g%nk)
            if (mod(step, every_hist) == 0) call truth_clim%add(truth%x(1:g%nk))
        end do
        truth_step_time = max_over_ranks(clock%per_step())
        call truth_clim%reduce(g%comm)
        if (rank == 0) print '(a)', 'truth: ' // num(rs%t_verify) // ' MTU of verification data (' // &
            num(1e6_wp * truth_step_time, 2) // ' us per two-scale step)'
    end subroutine

    !> Forecasts from every start date at once (members of one single-scale model: one forward call per
    !> step covers all local k of all start dates).
    subroutine run_forecasts(scheme, err)
        type(subgrid_scheme), intent(inout) :: scheme
        type(forecast_errors), intent(inout) :: err
        type(one_scale_model) :: fc
        integer, allocatable :: starts(:)
        integer :: n_starts, stride, n_leads, every, step, lead, i
        stride = steps(rs%start_dt, rs%out_dt)
        n_leads = steps(rs%max_lead, rs%out_dt)
        n_starts = (size(xt, 2) - 1 - n_leads) / stride + 1
        allocate (starts(n_starts))
        do i = 1, n_starts
            starts(i) = (i - 1) * stride
        end do
        call fc%init(p, g, n_starts)
        fc%x(1:g%nk, :) = xt(:, starts)
        call fc%exchange()
        call err%init(n_leads)
        call err%add(0, fc%x(1:g%nk, :), xt(:, starts))
        every = steps(rs%out_dt, rs%dt_model)
        do step = 1, n_leads * every
            call scheme%tendency(fc%x, fc%u)     ! the "physics", once per step
            call fc%step(rs%dt_model)
            if (mod(step, every) == 0) then
                lead = step / every
                call err%add(lead, fc%x(1:g%nk, :), xt(:, starts + lead))
            end if
        end do
        call err%reduce(g%comm)
    end subroutine

    !> Ensemble forecasts with the stochastic network from every ens_start_every-th start date:
    !> ens_members members per date, all starting from the truth and differing only in their noise
    !> (state e = (m - 1) n_starts + i holds member m of date i; its local k is global column
    !> (e - 1) K + k0 + k - 1 of the noise key, the step is the forecast step), one forward per step for
    !> all of them; the deterministic network from the same dates alongside (its CRPS is its MAE).
    subroutine run_ensemble(sch, det, sc)
        type(subgrid_scheme), intent(inout) :: sch, det
        type(ensemble_scores), intent(inout) :: sc
        type(one_scale_model) :: fe, fd
        integer, allocatable :: starts(:)
        real(wp), allocatable :: members(:, :, :)
        integer :: n_starts, stride, n_leads, every, step, i, m
        real(wp) :: t0
        t0 = MPI_Wtime()
        stride = steps(rs%start_dt, rs%out_dt) * rs%ens_start_every
        n_leads = steps(rs%max_lead, rs%out_dt)
        n_starts = (size(xt, 2) - 1 - n_leads) / stride + 1
        allocate (starts(n_starts), members(g%nk, n_starts, rs%ens_members))
        do i = 1, n_starts
            starts(i) = (i - 1) * stride
        end do
        call fe%init(p, g, n_starts * rs%ens_members)
        call fd%init(p, g, n_starts)
        do m = 1, rs%ens_members
            fe%x(1:g%nk, (m - 1) * n_starts + 1:m * n_starts) = xt(:, starts)
        end do
        fd%x(1:g%nk, :) = xt(:, starts)
        call fe%exchange()
        call fd%exchange()
        sch%k0 = g%k0
        sch%k_global = p%k
        call sc%init(n_leads, rs%ens_members)
        every = steps(rs%out_dt, rs%dt_model)
        do step = 0, n_leads * every
            if (step > 0) then
                sch%step = step                      ! the noise key's step
                call sch%tendency(fe%x, fe%u)        ! every member of every date: one forward
                call fe%step(rs%dt_model)
                call det%tendency(fd%x, fd%u)
                call fd%step(rs%dt_model)
            end if
            if (mod(step, every) == 0) then
                members = reshape(fe%x(1:g%nk, :), shape(members))
                call sc%add(step / every, members, fd%x(1:g%nk, :), xt(:, starts + step / every))
            end if
        end do
        call sc%reduce(g%comm)
        ens_time = max_over_ranks(MPI_Wtime() - t0)
    end subroutine

    !> Long runs of the three models from the start of the verification period, advanced in lockstep
    !> (NN step, cubic step, no-parameterization step, repeat) so that their wall times are measured under
    !> the same conditions. Statistics after an initial adjustment.
    subroutine run_climates()
        type(one_scale_model) :: cl(3)
        type(step_timer) :: step_clock(3), param_clock(3)
        integer :: step, n_steps, n_discard, every, s
        real(wp) :: t1, t2, t3
        logical :: bad(3)
        n_steps = steps(rs%t_verify + rs%t_discard, rs%dt_model)
        n_discard = steps(rs%t_discard, rs%dt_model)
        every = steps(rs%hist_dt, rs%dt_model)
        do s = 1, 3
            call cl(s)%init(p, g, 1)
            cl(s)%x(1:g%nk, 1) = xt(:, 0)
            call cl(s)%exchange()
            call clim(s)%init()
        end do
        bad = .false.
        call MPI_Barrier(g%comm)
        do step = 1, n_steps
            do s = 1, 3
                t1 = MPI_Wtime()
                call schemes(s)%tendency(cl(s)%x, cl(s)%u)   ! U for all local k: one forward call for the network
                t2 = MPI_Wtime()
                call cl(s)%step(rs%dt_model)
                t3 = MPI_Wtime()
                call step_clock(s)%add(t3 - t1)
                call param_clock(s)%add(t2 - t1)
                if (step > n_discard .and. mod(step, every) == 0) then
                    ! a run that blows up keeps running (NaN is harmless to the arithmetic), is not counted
                    ! and is reported: no rank leaves the lockstep of the halo exchanges
                    if (.not. all(abs(cl(s)%x(1:g%nk, 1)) < 1e3_wp)) bad(s) = .true.
                    if (.not. bad(s)) call clim(s)%add(cl(s)%x(1:g%nk, 1))
                end if
            end do
        end do
        do s = 1, 3
            step_time(s) = max_over_ranks(step_clock(s)%per_step())
            param_time(s) = max_over_ranks(param_clock(s)%per_step())
            call clim(s)%reduce(g%comm)
        end do
        call MPI_Allreduce(bad, diverged, 3, MPI_LOGICAL, MPI_LOR, g%comm)
    end subroutine

    real(wp) function max_over_ranks(v)
        real(wp), intent(in) :: v
        call MPI_Allreduce(v, max_over_ranks, 1, MPI_DOUBLE_PRECISION, MPI_MAX, g%comm)
    end function

    !> The scorecard (rank 0). Sets nn_wins: the network beats "none" at every lead time > 0.
    subroutine scorecard(u)
        integer, intent(in) :: u
        integer :: i, s, lead, n_lead_better_cubic
        real(wp) :: r(3), h(3)
        character(len=40) :: cell(3)
        character(len=:), allocatable :: climate_note
        write (u, '(a)') ''
        write (u, '(a)') repeat('=', 20) // " Lorenz '96 scorecard: learned vs classic sub-grid parameterization " // &
            repeat('=', 20)
        write (u, '(a)') '  K = ' // num(p%k) // ', J = ' // num(p%j) // ', F = ' // num(p%f) // ', h = ' // num(p%h) // &
            ', b = ' // num(p%b) // ', c = ' // num(p%c) // '; ' // ranks_text() // '; model time step ' // num(rs%dt_model) // &
            ' (truth ' // num(rs%dt_truth) // ')'
        write (u, '(a)') '  forecasts: ' // num(nint(errors(1)%n(0))) // ' values of X (start dates x K), start dates every ' // &
            num(rs%start_dt) // ' MTU; climate: ' // num(rs%t_verify) // ' MTU per model'
        write (u, '(a34,a12,3a22)') pad('', 34), 'truth', (schemes(s)%name(), s = 1, 3)
        nn_wins = .true.
        n_lead_better_cubic = 0
        do i = 1, size(report_leads)
            lead = nint(report_leads(i) / rs%out_dt)
            r = [(errors(s)%rmse(lead), s = 1, 3)]
            if (.not. r(1) < r(3)) nn_wins = .false.
            if (r(1) <= r(2)) n_lead_better_cubic = n_lead_better_cubic + 1
            write (u, '(a34,a12,3f22.3)') pad('  forecast RMSE of X, lead ' // num(report_leads(i), 1) // ' MTU', 34), '-', r
        end do
        do s = 1, 3
            if (diverged(s)) then
                cell(s) = 'diverged'
            else
                write (cell(s), '(f8.3,a,sp,f7.3,a)') clim(s)%mean(), ' (', clim(s)%mean() - truth_clim%mean(), ')'
            end if
        end do
        write (u, '(a34,f12.3,3a22)') pad('  climate: mean of X (error)', 34), truth_clim%mean(), (adjustr(cell(s)(1:22)), s = 1, 3)
        do s = 1, 3
            if (.not. diverged(s)) write (cell(s), '(f8.3,a,sp,f7.3,a)') clim(s)%std(), ' (', clim(s)%std() - truth_clim%std(), ')'
        end do
        write (u, '(a34,f12.3,3a22)') pad('  climate: std of X (error)', 34), truth_clim%std(), (adjustr(cell(s)(1:22)), s = 1, 3)
        h = [(hellinger(clim(s), truth_clim), s = 1, 3)]
        write (u, '(a34,a12,3f22.4)') pad('  Hellinger distance to truth', 34), '-', h
        write (u, '(a34,f12.2,3f22.2)') pad('  wall time per step (us)', 34), 1e6_wp * truth_step_time, 1e6_wp * step_time
        write (u, '(a34,a12,3f22.2)') pad('    of which U(X) (us)', 34), '-', 1e6_wp * param_time
        write (u, '(a34,f12.1,3f22.1)') pad('  wall time per MTU (ms)', 34), 1e3_wp * truth_step_time / rs%dt_truth, &
            1e3_wp * step_time / rs%dt_model
        write (u, '(a)') '  (RMSE over all start dates and k; climate errors: model minus truth; ' // &
            'times: best 1000-step block, slowest rank)'
        ! The stochastic row: ensemble forecasts against the deterministic network from the same dates
        write (u, '(a)') '  stochastic NN (CRPS-trained, 2 noise inputs): ' // num(ens%members) // &
            '-member ensembles from ' // num(nint(ens%n(0)) / p%k) // ' start dates, members differing only in their noise; ' // &
            num(ens_time, 1) // ' s'
        write (u, '(a34,4a12)') pad('  lead (MTU)', 34), ('     ' // num(report_leads(i), 1), i = 1, size(report_leads))
        write (u, '(a34,4f12.3)') pad('  CRPS of X: stochastic NN', 34), &
            (ens%crps_mean(nint(report_leads(i) / rs%out_dt)), i = 1, size(report_leads))
        write (u, '(a34,4f12.3)') pad('  CRPS of X: deterministic NN', 34), &
            (ens%det_mae(nint(report_leads(i) / rs%out_dt)), i = 1, size(report_leads))
        write (u, '(a34,4f12.3)') pad('  spread-skill ratio (stochastic)', 34), &
            (ens%spread_skill(nint(report_leads(i) / rs%out_dt)), i = 1, size(report_leads))
        write (u, '(a34,4f12.3)') pad('  RMSE of the ensemble mean', 34), &
            (ens%rmse_mean(nint(report_leads(i) / rs%out_dt)), i = 1, size(report_leads))
        write (u, '(a)') '  (CRPS of the members'' empirical distribution; a deterministic forecast''s CRPS is its ' // &
            'mean absolute error; spread-skill: sqrt((M+1)/M) spread / RMSE of the mean, 1 = calibrated)'
        ! The verdict: forecast skill decides (exit status); the climate lines and the cubic are reported.
        climate_note = 'on every climate line'
        if (diverged(1)) then
            nn_wins = .false.
            climate_note = 'its climate run diverged'
        else if (.not. (abs(clim(1)%mean() - truth_clim%mean()) < abs(clim(3)%mean() - truth_clim%mean()) .and. &
                        abs(clim(1)%std() - truth_clim%std()) < abs(clim(3)%std() - truth_clim%std()) .and. h(1) < h(3))) then
            climate_note = 'but NOT on every climate line'
        end if
        if (nn_wins) then
            write (u, '(a)') 'VERDICT: PASS - the learned parameterization beats no parameterization at every lead time and ' // &
                climate_note // '; it is at least as good as the cubic at ' // num(n_lead_better_cubic) // ' of ' // &
                num(size(report_leads)) // ' lead times (run: ' // num(MPI_Wtime() - t_start, 1) // ' s)'
        else
            write (u, '(a)') 'VERDICT: FAIL - the learned parameterization does not beat no parameterization on forecast RMSE'
        end if
        flush (u)
    end subroutine

    !> Data for plot.py: distributions of X and RMSE by lead time.
    subroutine write_plot_data()
        integer :: u, b, lead
        real(wp) :: d(truth_clim%nbins, 0:3)
        d(:, 0) = truth_clim%density()
        do b = 1, 3
            d(:, b) = clim(b)%density()
        end do
        open (newunit=u, file=trim(out_dir) // '/distributions.dat', status='replace', action='write')
        write (u, '(a)') '# X  density: truth  InLoop_NN  cubic  none'
        do b = 1, truth_clim%nbins
            write (u, '(f8.3,4es14.6)') truth_clim%bin_centre(b), d(b, :)
        end do
        close (u)
        open (newunit=u, file=trim(out_dir) // '/rmse.dat', status='replace', action='write')
        write (u, '(a)') '# lead(MTU)  RMSE of X: InLoop_NN  cubic  none'
        do lead = 0, size(errors(1)%sq) - 1
            write (u, '(f8.3,3es14.6)') lead * rs%out_dt, errors(1)%rmse(lead), errors(2)%rmse(lead), errors(3)%rmse(lead)
        end do
        close (u)
    end subroutine

    !> A number as short text: 20 -> "20", 0.01 -> "0.01"; reals with `digits` decimals if given.
    function num(x, digits) result(s)
        class(*), intent(in) :: x
        integer, intent(in), optional :: digits
        character(len=:), allocatable :: s
        character(len=40) :: buf
        integer :: n
        select type (x)
        type is (integer)
            write (buf, '(i0)') x
        type is (real(wp))
            if (present(digits)) then
                write (buf, '(f0.' // achar(iachar('0') + digits) // ')') x
            else if (abs(x - nint(x)) < 1e-9_wp * max(1.0_wp, abs(x))) then
                write (buf, '(i0)') nint(x)
            else
                write (buf, '(f0.6)') x
                n = len_trim(buf)
                do while (buf(n:n) == '0')
                    n = n - 1
                end do
                buf = buf(1:n)
            end if
        class default
            buf = '?'
        end select
        s = trim(adjustl(buf))
        if (s(1:1) == '.') s = '0' // s            ! f0.d writes .01 and -.5
        if (len(s) > 1) then
            if (s(1:2) == '-.') s = '-0' // s(2:)
        end if
    end function

    !> text, blank-padded (left-aligned) to n characters.
    function pad(text, n) result(s)
        character(len=*), intent(in) :: text
        integer, intent(in) :: n
        character(len=n) :: s
        s = text
    end function

    function ranks_text() result(s)
        character(len=:), allocatable :: s
        s = num(g%nranks) // merge(' MPI rank ', ' MPI ranks', g%nranks == 1)
        s = trim(s)
    end function

    !> Test mode: n steps of the truth from its initial condition; rank 0 writes X then Y, global order.
    subroutine truth_dump()
        real(wp), allocatable :: xall(:), yall(:)
        integer :: step, u
        call truth%init(p, g)
        do step = 1, dump_steps
            call truth%step(rs%dt_truth)
        end do
        allocate (xall(p%k), yall(p%k * p%j))
        call MPI_Gather(truth%x(1:g%nk), g%nk, MPI_DOUBLE_PRECISION, xall, g%nk, MPI_DOUBLE_PRECISION, 0, g%comm)
        call MPI_Gather(truth%y(1:g%nj), g%nj, MPI_DOUBLE_PRECISION, yall, g%nj, MPI_DOUBLE_PRECISION, 0, g%comm)
        if (rank == 0) then
            open (newunit=u, file=trim(dump_path), access='stream', form='unformatted', status='replace', action='write')
            write (u) xall, yall
            close (u)
            print '(a)', 'truth after ' // num(dump_steps) // ' steps on ' // ranks_text() // ' written to ' // trim(dump_path)
        end if
    end subroutine

end program lorenz96
