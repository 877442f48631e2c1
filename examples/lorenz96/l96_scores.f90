!> Verification of the Lorenz '96 runs: climate statistics of X (mean, standard deviation, histogram,
!> Hellinger distance between distributions) and forecast errors by lead time, each accumulated locally
!> on every rank and summed over the ranks at the end.
module l96_scores
    use mpi_f08
    use l96_model, only: wp
    implicit none
    private

    !> Distribution of X: moments and a histogram on fixed bins (values beyond go to the end bins).
    type, public :: climate_stats
        real(wp) :: lo = -30, width = 0.5_wp
        integer :: nbins = 140
        real(wp), allocatable :: counts(:)
        real(wp) :: n = 0, s1 = 0, s2 = 0
    contains
        procedure :: init => stats_init
        procedure :: add => stats_add
        procedure :: reduce => stats_reduce
        procedure :: mean => stats_mean
        procedure :: std => stats_std
        procedure :: density => stats_density
        procedure :: bin_centre
    end type

    !> Squared forecast errors at lead steps 0, 1, .., nleads (in units of the output interval).
    type, public :: forecast_errors
        real(wp), allocatable :: sq(:), n(:)
    contains
        procedure :: init => errors_init
        procedure :: add => errors_add
        procedure :: reduce => errors_reduce
        procedure :: rmse => errors_rmse
    end type

    !> Ensemble forecast scores at lead steps 0, 1, .., nleads against the truth, with a deterministic
    !> forecast from the same start dates next to them: squared error of the ensemble mean, unbiased
    !> ensemble variance, CRPS of the members' empirical distribution
    !> (mean_m |x_m - y| - 1/(2 M^2) sum_m sum_m' |x_m - x_m'|), and the deterministic forecast's absolute
    !> error (its CRPS: a single member's distribution is a point).
    type, public :: ensemble_scores
        integer :: members = 1
        real(wp), allocatable :: sq_mean(:), var(:), crps(:), det_abs(:), n(:)
    contains
        procedure :: init => ensemble_init
        procedure :: add => ensemble_add
        procedure :: reduce => ensemble_reduce
        procedure :: rmse_mean => ensemble_rmse_mean
        procedure :: spread => ensemble_spread
        procedure :: spread_skill => ensemble_spread_skill
        procedure :: crps_mean => ensemble_crps
        procedure :: det_mae => ensemble_det_mae
    end type

    !> Wall time per step as the best over blocks of `block` consecutive steps: the machine's cost of a
    !> step, robust against other jobs sharing the cores (the mean is what a busy machine made of it).
    type, public :: step_timer
        integer :: block = 1000
        integer :: n = 0
        real(wp) :: in_block = 0, total = 0, best = huge(1.0_wp)
    contains
        procedure :: add => timer_add
        procedure :: per_step => timer_per_step
        procedure :: mean => timer_mean
    end type

    public :: hellinger

contains

    subroutine stats_init(self)
        class(climate_stats), intent(inout) :: self
        if (allocated(self%counts)) deallocate (self%counts)
        allocate (self%counts(self%nbins))
        self%counts = 0
        self%n = 0; self%s1 = 0; self%s2 = 0
    end subroutine

    subroutine stats_add(self, x)
        class(climate_stats), intent(inout) :: self
        real(wp), intent(in) :: x(:)
        integer :: i, b
        do i = 1, size(x)
            b = min(self%nbins, max(1, 1 + floor((x(i) - self%lo) / self%width)))
            self%counts(b) = self%counts(b) + 1
        end do
        self%n = self%n + size(x)
        self%s1 = self%s1 + sum(x)
        self%s2 = self%s2 + sum(x * x)
    end subroutine

    !> Sums the statistics over the ranks of `comm` (collective).
    subroutine stats_reduce(self, comm)
        class(climate_stats), intent(inout) :: self
        type(MPI_Comm), intent(in) :: comm
        real(wp) :: m(3)
        call MPI_Allreduce(MPI_IN_PLACE, self%counts, self%nbins, MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        m = [self%n, self%s1, self%s2]
        call MPI_Allreduce(MPI_IN_PLACE, m, 3, MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        self%n = m(1); self%s1 = m(2); self%s2 = m(3)
    end subroutine

    real(wp) function stats_mean(self)
        class(climate_stats), intent(in) :: self
        stats_mean = self%s1 / self%n
    end function

    real(wp) function stats_std(self)
        class(climate_stats), intent(in) :: self
        stats_std = sqrt(max(0.0_wp, self%s2 / self%n - (self%s1 / self%n)**2))
    end function

    !> Probability density per bin (integrates to 1).
    function stats_density(self) result(d)
        class(climate_stats), intent(in) :: self
        real(wp) :: d(self%nbins)
        d = self%counts / (sum(self%counts) * self%width)
    end function

    real(wp) function bin_centre(self, b)
        class(climate_stats), intent(in) :: self
        integer, intent(in) :: b
        bin_centre = self%lo + (b - 0.5_wp) * self%width
    end function

    !> Hellinger distance between two histograms on the same bins: sqrt(1 - sum_i sqrt(p_i q_i)),
    !> 0 for identical distributions, 1 for disjoint ones.
    real(wp) function hellinger(a, b)
        type(climate_stats), intent(in) :: a, b
        real(wp) :: p(a%nbins), q(b%nbins)
        p = a%counts / sum(a%counts)
        q = b%counts / sum(b%counts)
        hellinger = sqrt(max(0.0_wp, 1 - sum(sqrt(p * q))))
    end function

    subroutine errors_init(self, nleads)
        class(forecast_errors), intent(inout) :: self
        integer, intent(in) :: nleads
        if (allocated(self%sq)) deallocate (self%sq, self%n)
        allocate (self%sq(0:nleads), self%n(0:nleads))
        self%sq = 0
        self%n = 0
    end subroutine

    !> Adds the errors of forecasts against the truth at lead index `lead`.
    subroutine errors_add(self, lead, forecast, truth)
        class(forecast_errors), intent(inout) :: self
        integer, intent(in) :: lead
        real(wp), intent(in) :: forecast(:, :), truth(:, :)
        self%sq(lead) = self%sq(lead) + sum((forecast - truth)**2)
        self%n(lead) = self%n(lead) + size(forecast)
    end subroutine

    subroutine errors_reduce(self, comm)
        class(forecast_errors), intent(inout) :: self
        type(MPI_Comm), intent(in) :: comm
        call MPI_Allreduce(MPI_IN_PLACE, self%sq, size(self%sq), MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        call MPI_Allreduce(MPI_IN_PLACE, self%n, size(self%n), MPI_DOUBLE_PRECISION, MPI_SUM, comm)
    end subroutine

    real(wp) function errors_rmse(self, lead)
        class(forecast_errors), intent(in) :: self
        integer, intent(in) :: lead
        errors_rmse = sqrt(self%sq(lead) / max(1.0_wp, self%n(lead)))
    end function

    subroutine ensemble_init(self, nleads, members)
        class(ensemble_scores), intent(inout) :: self
        integer, intent(in) :: nleads, members
        if (allocated(self%sq_mean)) deallocate (self%sq_mean, self%var, self%crps, self%det_abs, self%n)
        allocate (self%sq_mean(0:nleads), self%var(0:nleads), self%crps(0:nleads), self%det_abs(0:nleads), self%n(0:nleads))
        self%members = members
        self%sq_mean = 0; self%var = 0; self%crps = 0; self%det_abs = 0; self%n = 0
    end subroutine

    !> Adds lead `lead`: ens(nk, nstarts, members), det(nk, nstarts), truth(nk, nstarts).
    subroutine ensemble_add(self, lead, ens, det, truth)
        class(ensemble_scores), intent(inout) :: self
        integer, intent(in) :: lead
        real(wp), intent(in) :: ens(:, :, :), det(:, :), truth(:, :)
        real(wp) :: mean, v, a, b
        integer :: i, s, m, mm, nm
        nm = size(ens, 3)
        do s = 1, size(truth, 2)
            do i = 1, size(truth, 1)
                mean = sum(ens(i, s, :)) / nm
                v = sum((ens(i, s, :) - mean)**2) / max(1, nm - 1)
                a = 0
                b = 0
                do m = 1, nm
                    a = a + abs(ens(i, s, m) - truth(i, s))
                    do mm = 1, nm
                        b = b + abs(ens(i, s, m) - ens(i, s, mm))
                    end do
                end do
                self%sq_mean(lead) = self%sq_mean(lead) + (mean - truth(i, s))**2
                self%var(lead) = self%var(lead) + v
                self%crps(lead) = self%crps(lead) + a / nm - b / (2 * real(nm, wp)**2)
                self%det_abs(lead) = self%det_abs(lead) + abs(det(i, s) - truth(i, s))
            end do
        end do
        self%n(lead) = self%n(lead) + size(truth)
    end subroutine

    subroutine ensemble_reduce(self, comm)
        class(ensemble_scores), intent(inout) :: self
        type(MPI_Comm), intent(in) :: comm
        integer :: n
        n = size(self%n)
        call MPI_Allreduce(MPI_IN_PLACE, self%sq_mean, n, MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        call MPI_Allreduce(MPI_IN_PLACE, self%var, n, MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        call MPI_Allreduce(MPI_IN_PLACE, self%crps, n, MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        call MPI_Allreduce(MPI_IN_PLACE, self%det_abs, n, MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        call MPI_Allreduce(MPI_IN_PLACE, self%n, n, MPI_DOUBLE_PRECISION, MPI_SUM, comm)
    end subroutine

    real(wp) function ensemble_rmse_mean(self, lead)
        class(ensemble_scores), intent(in) :: self
        integer, intent(in) :: lead
        ensemble_rmse_mean = sqrt(self%sq_mean(lead) / max(1.0_wp, self%n(lead)))
    end function

    !> Square root of the mean ensemble variance.
    real(wp) function ensemble_spread(self, lead)
        class(ensemble_scores), intent(in) :: self
        integer, intent(in) :: lead
        ensemble_spread = sqrt(self%var(lead) / max(1.0_wp, self%n(lead)))
    end function

    !> Spread-skill ratio sqrt((M + 1)/M) spread / RMSE of the ensemble mean (Fortin et al. 2014): 1 for
    !> an ensemble as uncertain as its errors, below 1 for an over-confident one.
    real(wp) function ensemble_spread_skill(self, lead)
        class(ensemble_scores), intent(in) :: self
        integer, intent(in) :: lead
        ensemble_spread_skill = sqrt((self%members + 1.0_wp) / self%members) * self%spread(lead) / &
                                max(tiny(1.0_wp), self%rmse_mean(lead))
    end function

    real(wp) function ensemble_crps(self, lead)
        class(ensemble_scores), intent(in) :: self
        integer, intent(in) :: lead
        ensemble_crps = self%crps(lead) / max(1.0_wp, self%n(lead))
    end function

    real(wp) function ensemble_det_mae(self, lead)
        class(ensemble_scores), intent(in) :: self
        integer, intent(in) :: lead
        ensemble_det_mae = self%det_abs(lead) / max(1.0_wp, self%n(lead))
    end function

    !> Adds the wall time of one step.
    subroutine timer_add(self, seconds)
        class(step_timer), intent(inout) :: self
        real(wp), intent(in) :: seconds
        self%n = self%n + 1
        self%in_block = self%in_block + seconds
        self%total = self%total + seconds
        if (mod(self%n, self%block) == 0) then
            self%best = min(self%best, self%in_block / self%block)
            self%in_block = 0
        end if
    end subroutine

    !> Seconds per step: the best block (the mean when there was no complete block).
    real(wp) function timer_per_step(self)
        class(step_timer), intent(in) :: self
        timer_per_step = self%best
        if (self%n < self%block) timer_per_step = self%mean()
    end function

    real(wp) function timer_mean(self)
        class(step_timer), intent(in) :: self
        timer_mean = self%total / max(1, self%n)
    end function

end module l96_scores
