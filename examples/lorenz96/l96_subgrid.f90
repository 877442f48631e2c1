!> Sub-grid parameterizations U(X) of the single-scale Lorenz '96 model, and how they are learned.
!>
!>  * `subgrid_scheme`: U for every local k of every member in one call: none (U = 0), the classic
!>    cubic polynomial U = a0 + a1 X_k + a2 X_k^2 + a3 X_k^3 (Wilks 2005), or a neural network run by
!>    InLoop on the stencil (X_{k-1}, X_k, X_{k+1}) — one batched `forward` for all columns — or a
!>    stochastic network with two more inputs, noise features the engine fills at each forward from
!>    (seed, step, global column): the same numbers on any number of ranks.
!>  * `stencil_features`: the network's input columns, the same for training and for inference.
!>  * `cubic_fit`: least squares for the polynomial through the normal equations, accumulated on each
!>    rank and summed over the ranks with one MPI_Allreduce.
!>  * `sample_buffer`: the (stencil, U) pairs the truth run produced, from which the online trainer
!>    draws random mini-batches (a replay buffer: consecutive samples are strongly correlated).
module l96_subgrid
    use mpi_f08
    use inloop
    use l96_model, only: wp
    use, intrinsic :: iso_fortran_env, only: int64
    implicit none
    private

    integer, parameter, public :: n_features = 3                  !< X_{k-1}, X_k, X_{k+1}
    integer, parameter, public :: n_noise = 2                     !< the stochastic network's noise features
    integer, parameter, public :: SCHEME_NONE = 0, SCHEME_CUBIC = 1, SCHEME_NN = 2, SCHEME_STOCH = 3

    type, public :: subgrid_scheme
        integer :: kind = SCHEME_NONE
        real(wp) :: coef(0:3) = 0                     !< cubic: U = coef(0) + coef(1) X + coef(2) X^2 + coef(3) X^3
        type(inloop_model) :: net                     !< network: (X_{k-1}, X_k, X_{k+1}) -> U_k
        real(wp), allocatable :: features(:, :), out(:, :)   !< features(n_features [+ n_noise], ncol), out(1, ncol)
        !> stochastic network: the noise key of the next call (the caller sets the step) and the global
        !> numbering of the columns: member m's local k is global column (m - 1) K + k0 + k - 1
        integer(int64) :: step = 0
        integer :: k0 = 0, k_global = 0
    contains
        procedure :: tendency
        procedure :: name => scheme_name
    end type

    type, public :: cubic_fit
        real(wp) :: ata(4, 4) = 0     !< sum of phi phi^T, phi = (1, s, s^2, s^3), s = X / scale
        real(wp) :: atb(4) = 0        !< sum of phi U
        real(wp) :: utu = 0           !< sum of U^2 (for the residual)
        real(wp) :: coef(0:3) = 0     !< the fitted coefficients, in powers of X
    contains
        procedure :: add => cubic_add
        procedure :: solve => cubic_solve
        procedure :: count => cubic_count
        procedure :: residual => cubic_residual
        procedure :: moments => cubic_moments
    end type

    type, public :: sample_buffer
        real(wp), allocatable :: x(:, :), u(:, :)     !< x(n_features, capacity), u(1, capacity): a ring
        real(wp), allocatable :: xb(:, :), ub(:, :)   !< the mini-batch drawn last: xb(n_features, batch), ub(1, batch)
        integer :: count = 0, next = 1
        integer(int64) :: state = 1                   !< random generator (Park-Miller), seeded per rank
    contains
        procedure :: init => buffer_init
        procedure :: add => buffer_add
        procedure :: draw => buffer_draw
    end type

    real(wp), parameter :: poly_scale = 10        ! the fit works in s = X / 10: better-conditioned equations

    public :: stencil_features

contains

    !> Network inputs of one state x(-1:nk+1) (valid halos): f(:, k) = (X_{k-1}, X_k, X_{k+1}), k = 1..nk.
    pure subroutine stencil_features(x, f)
        real(wp), intent(in) :: x(-1:)
        real(wp), intent(out) :: f(:, :)
        integer :: k
        do k = 1, size(f, 2)
            f(:, k) = x(k - 1:k + 1)
        end do
    end subroutine

    !> u(k, m) = U(X) at every local k of every member m; x(-1:nk+1, nens) with valid halos.
    subroutine tendency(self, x, u)
        class(subgrid_scheme), intent(inout) :: self
        real(wp), intent(in) :: x(-1:, :)
        real(wp), intent(out) :: u(:, :)
        integer :: nk, m, nf
        nk = size(u, 1)
        select case (self%kind)
        case (SCHEME_NONE)
            u = 0
        case (SCHEME_CUBIC)
            associate (a => self%coef, xl => x(1:nk, :))
                u = a(0) + xl * (a(1) + xl * (a(2) + xl * a(3)))
            end associate
        case (SCHEME_NN, SCHEME_STOCH)
            nf = n_features
            if (self%kind == SCHEME_STOCH) nf = n_features + n_noise
            if (.not. allocated(self%features)) allocate (self%features(nf, size(u)), self%out(1, size(u)))
            if (size(self%features, 2) /= size(u)) then
                deallocate (self%features, self%out)
                allocate (self%features(nf, size(u)), self%out(1, size(u)))
            end if
            do m = 1, size(u, 2)
                call stencil_features(x(:, m), self%features(1:n_features, (m - 1) * nk + 1:m * nk))
            end do
            if (self%kind == SCHEME_STOCH) then
                self%features(n_features + 1:, :) = 0      ! ignored: the engine fills the noise features
                ! blocks of nk local columns (one per member), K apart in the global numbering
                call self%net%set_noise_step(self%step, int(self%k0, int64), block=nk, stride=self%k_global)
            end if
            call self%net%forward(self%features, self%out)       ! all columns of this rank in one call
            u = reshape(self%out, shape(u))
        end select
    end subroutine

    function scheme_name(self) result(s)
        class(subgrid_scheme), intent(in) :: self
        character(len=:), allocatable :: s
        select case (self%kind)
        case (SCHEME_CUBIC); s = 'cubic'
        case (SCHEME_NN); s = 'InLoop NN'
        case (SCHEME_STOCH); s = 'stochastic NN'
        case default; s = 'none'
        end select
    end function

    ! ======================================================================= cubic least squares

    !> Adds the pairs (x(i), u(i)) to the normal equations.
    subroutine cubic_add(self, x, u)
        class(cubic_fit), intent(inout) :: self
        real(wp), intent(in) :: x(:), u(:)
        real(wp) :: phi(4), s
        integer :: i, r
        do i = 1, size(x)
            s = x(i) / poly_scale
            phi = [1.0_wp, s, s * s, s * s * s]
            do r = 1, 4
                self%ata(:, r) = self%ata(:, r) + phi * phi(r)
            end do
            self%atb = self%atb + phi * u(i)
            self%utu = self%utu + u(i) * u(i)
        end do
    end subroutine

    !> Sums the normal equations over the ranks of `comm` and solves them (collective): every rank gets
    !> the same coefficients.
    subroutine cubic_solve(self, comm)
        class(cubic_fit), intent(inout) :: self
        type(MPI_Comm), intent(in) :: comm
        real(wp) :: packed(21), a(4, 4), rhs(4), c(4)
        integer :: i
        packed = [reshape(self%ata, [16]), self%atb, self%utu]
        call MPI_Allreduce(MPI_IN_PLACE, packed, size(packed), MPI_DOUBLE_PRECISION, MPI_SUM, comm)
        self%ata = reshape(packed(1:16), [4, 4])
        self%atb = packed(17:20)
        self%utu = packed(21)
        a = self%ata
        rhs = self%atb
        call gauss_solve(a, rhs, c)
        do i = 0, 3
            self%coef(i) = c(i + 1) / poly_scale**i
        end do
    end subroutine

    !> Number of pairs in the (reduced) normal equations.
    real(wp) function cubic_count(self)
        class(cubic_fit), intent(in) :: self
        cubic_count = self%ata(1, 1)
    end function

    !> Mean squared residual of the fitted polynomial on the data it was fitted to (after solve).
    real(wp) function cubic_residual(self)
        class(cubic_fit), intent(in) :: self
        real(wp) :: c(4)
        integer :: i
        c = [(self%coef(i) * poly_scale**i, i = 0, 3)]
        cubic_residual = (self%utu - 2 * dot_product(c, self%atb) + dot_product(c, matmul(self%ata, c))) / self%ata(1, 1)
    end function

    !> Mean and standard deviation of X and of U over the data (after solve).
    subroutine cubic_moments(self, x_mean, x_std, u_mean, u_std)
        class(cubic_fit), intent(in) :: self
        real(wp), intent(out) :: x_mean, x_std, u_mean, u_std
        real(wp) :: n
        n = self%ata(1, 1)
        x_mean = poly_scale * self%ata(2, 1) / n
        x_std = sqrt(max(0.0_wp, poly_scale**2 * self%ata(3, 1) / n - x_mean**2))
        u_mean = self%atb(1) / n
        u_std = sqrt(max(0.0_wp, self%utu / n - u_mean**2))
    end subroutine

    !> Solves a c = b (4x4) by Gaussian elimination with partial pivoting.
    pure subroutine gauss_solve(a, b, c)
        real(wp), intent(inout) :: a(4, 4), b(4)
        real(wp), intent(out) :: c(4)
        real(wp) :: row(4), t
        integer :: i, p, r
        do i = 1, 4
            p = i - 1 + maxloc(abs(a(i:4, i)), 1)
            if (p /= i) then
                row = a(i, :); a(i, :) = a(p, :); a(p, :) = row
                t = b(i); b(i) = b(p); b(p) = t
            end if
            do r = i + 1, 4
                t = a(r, i) / a(i, i)
                a(r, i:4) = a(r, i:4) - t * a(i, i:4)
                b(r) = b(r) - t * b(i)
            end do
        end do
        do i = 4, 1, -1
            c(i) = (b(i) - dot_product(a(i, i + 1:4), c(i + 1:4))) / a(i, i)
        end do
    end subroutine

    ! ======================================================================= replay buffer

    subroutine buffer_init(self, capacity, batch, seed)
        class(sample_buffer), intent(inout) :: self
        integer, intent(in) :: capacity, batch
        integer(int64), intent(in) :: seed
        allocate (self%x(n_features, capacity), self%u(1, capacity), self%xb(n_features, batch), self%ub(1, batch))
        self%count = 0
        self%next = 1
        self%state = 1 + modulo(seed, 2147483646_int64)
    end subroutine

    !> Adds columns f(:, i) -> u(i); the oldest samples are overwritten when the buffer is full.
    subroutine buffer_add(self, f, u)
        class(sample_buffer), intent(inout) :: self
        real(wp), intent(in) :: f(:, :), u(:)
        integer :: i
        do i = 1, size(u)
            self%x(:, self%next) = f(:, i)
            self%u(1, self%next) = u(i)
            self%next = 1 + modulo(self%next, size(self%u, 2))
            self%count = min(self%count + 1, size(self%u, 2))
        end do
    end subroutine

    !> Fills xb, ub with samples drawn uniformly (with replacement) from the buffer.
    subroutine buffer_draw(self)
        class(sample_buffer), intent(inout) :: self
        integer :: i, pick
        do i = 1, size(self%ub, 2)
            self%state = modulo(16807_int64 * self%state, 2147483647_int64)   ! Park-Miller "minimal standard"
            pick = 1 + int(modulo(self%state, int(self%count, int64)))
            self%xb(:, i) = self%x(:, pick)
            self%ub(1, i) = self%u(1, pick)
        end do
    end subroutine

end module l96_subgrid
