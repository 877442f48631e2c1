!> The Lorenz '96 models, decomposed over MPI ranks along k.
!>
!> Two-scale ("truth") model, K slow variables X_k and J fast variables Y_{j,k} per X_k (Lorenz 1996;
!> the form of Wilks 2005), all indices periodic:
!>
!>     dX_k/dt     = -X_{k-1} (X_{k-2} - X_{k+1}) - X_k + F - (h c / b) sum_j Y_{j,k}
!>     dY_{j,k}/dt = -c b Y_{j+1,k} (Y_{j+2,k} - Y_{j-1,k}) - c Y_{j,k} + (h c / b) X_k
!>
!> The Y form one ring of J*K values (Y_{J,k} is followed by Y_{1,k+1}), stored as y(i) with
!> i = (k-1)*J + j. Single-scale model (what a coarse climate model is): the same X equation with the
!> sub-grid term replaced by a parameterization U(X):
!>
!>     dX_k/dt = -X_{k-1} (X_{k-2} - X_{k+1}) - X_k + F + U_k
!>
!> Decomposition: rank r owns the slow variables k = k0+1 .. k0+nk (nk = K / ranks) and their fast
!> variables. Local arrays carry halos: x(-1:nk+1) (the X equation reads k-2 .. k+1) and
!> y(0:nj+2) (the Y equation reads j-1 .. j+2; nj = nk*J). Every point is computed with the same
!> operations in the same order whatever the decomposition, so the trajectory is bitwise the same
!> on 1, 2 or more ranks.
!>
!> Time stepping: classical fourth-order Runge-Kutta. Halos are refreshed after every stage and at the
!> end of each step, so between steps the state (halos included) is always valid.
module l96_model
    use mpi_f08
    use, intrinsic :: iso_fortran_env, only: real64
    implicit none
    private

    integer, parameter, public :: wp = real64

    !> Parameters of the system (defaults: Wilks 2005 / Gagne et al. 2020 with F = 20).
    type, public :: l96_params
        integer :: k = 8           !< slow variables X
        integer :: j = 32          !< fast variables Y per X
        real(wp) :: h = 1, b = 10, c = 10, f = 20
    end type

    !> This rank's part of the ring of slow variables, and its neighbours.
    type, public :: l96_grid
        type(MPI_Comm) :: comm
        integer :: rank = 0, nranks = 1
        integer :: left = 0, right = 0   !< ranks owning the preceding / following block of k
        integer :: nk = 0                !< slow variables on this rank
        integer :: k0 = 0                !< global index of the first one is k0 + 1
        integer :: nj = 0                !< fast variables on this rank, nk * J
    end type

    !> The two-scale model: state with halos, and Runge-Kutta workspace.
    type, public :: two_scale_model
        type(l96_params) :: p
        type(l96_grid) :: g
        real(wp), allocatable :: x(:), y(:)                 !< x(-1:nk+1), y(0:nj+2)
        real(wp), allocatable, private :: xs(:), ys(:)      !< stage state (same shapes)
        real(wp), allocatable, private :: dx(:, :), dy(:, :) !< stage tendencies dx(nk, 4), dy(nj, 4)
    contains
        procedure :: init => two_scale_init
        procedure :: step => two_scale_step
        procedure :: subgrid_tendency              !< U_k = -(h c / b) sum_j Y_{j,k}, local k
    end type

    !> The single-scale model for `nens` independent states at once (an ensemble of forecasts, or one
    !> climate run): x(-1:nk+1, nens). The caller sets u(nk, nens), the parameterized tendency, once per
    !> step (like the physics of a climate model); it is held fixed over the Runge-Kutta stages.
    type, public :: one_scale_model
        type(l96_params) :: p
        type(l96_grid) :: g
        integer :: nens = 1
        real(wp), allocatable :: x(:, :)                    !< x(-1:nk+1, nens)
        real(wp), allocatable :: u(:, :)                    !< u(nk, nens), set by the caller
        real(wp), allocatable, private :: xs(:, :), dx(:, :, :)
    contains
        procedure :: init => one_scale_init
        procedure :: step => one_scale_step
        procedure :: exchange => one_scale_exchange
    end type

    public :: make_grid

contains

    ! ======================================================================= decomposition

    !> Splits the K slow variables into equal blocks over the ranks of `comm`. Fails (ok = .false., with a
    !> message in `why`) when K is not divisible by the number of ranks.
    subroutine make_grid(p, comm, g, ok, why)
        type(l96_params), intent(in) :: p
        type(MPI_Comm), intent(in) :: comm
        type(l96_grid), intent(out) :: g
        logical, intent(out) :: ok
        character(len=*), intent(out) :: why
        g%comm = comm
        call MPI_Comm_rank(comm, g%rank)
        call MPI_Comm_size(comm, g%nranks)
        ok = mod(p%k, g%nranks) == 0 .and. p%j >= 2
        why = ''
        if (.not. ok) then
            write (why, '(a,i0,a,i0,a)') 'K = ', p%k, ' slow variables cannot be split evenly over ', g%nranks, &
                ' ranks: K must be divisible by the number of ranks (and J >= 2)'
            return
        end if
        g%nk = p%k / g%nranks
        g%k0 = g%rank * g%nk
        g%nj = g%nk * p%j
        g%left = modulo(g%rank - 1, g%nranks)
        g%right = modulo(g%rank + 1, g%nranks)
    end subroutine

    !> Sends `send` to the right neighbour and receives `recv` from the left one.
    subroutine shift_right(g, send, recv)
        type(l96_grid), intent(in) :: g
        real(wp), intent(in) :: send(:)
        real(wp), intent(out) :: recv(:)
        call MPI_Sendrecv(send, size(send), MPI_DOUBLE_PRECISION, g%right, 1, &
                          recv, size(recv), MPI_DOUBLE_PRECISION, g%left, 1, g%comm, MPI_STATUS_IGNORE)
    end subroutine

    !> Sends `send` to the left neighbour and receives `recv` from the right one.
    subroutine shift_left(g, send, recv)
        type(l96_grid), intent(in) :: g
        real(wp), intent(in) :: send(:)
        real(wp), intent(out) :: recv(:)
        call MPI_Sendrecv(send, size(send), MPI_DOUBLE_PRECISION, g%left, 2, &
                          recv, size(recv), MPI_DOUBLE_PRECISION, g%right, 2, g%comm, MPI_STATUS_IGNORE)
    end subroutine

    ! ======================================================================= two-scale model

    !> Allocates the state and sets the initial condition: a smooth, decomposition-independent function
    !> of the global indices (the spin-up makes it chaotic).
    subroutine two_scale_init(self, p, g)
        class(two_scale_model), intent(inout) :: self
        type(l96_params), intent(in) :: p
        type(l96_grid), intent(in) :: g
        integer :: k, i, kg, ig
        real(wp), parameter :: two_pi = 8 * atan(1.0_wp)
        self%p = p
        self%g = g
        allocate (self%x(-1:g%nk + 1), self%xs(-1:g%nk + 1), self%y(0:g%nj + 2), self%ys(0:g%nj + 2))
        allocate (self%dx(g%nk, 4), self%dy(g%nj, 4))
        do k = 1, g%nk
            kg = g%k0 + k
            self%x(k) = 0.5_wp * p%f + 0.25_wp * p%f * sin(two_pi * kg / p%k) + 0.01_wp * kg
        end do
        do i = 1, g%nj
            ig = g%k0 * p%j + i
            self%y(i) = 0.1_wp * sin(0.37_wp * ig) * cos(0.051_wp * ig)
        end do
        call exchange_two_scale(self%g, self%x, self%y)
    end subroutine

    !> Fills the halos x(-1), x(0), x(nk+1) and y(0), y(nj+1), y(nj+2) from the neighbours.
    subroutine exchange_two_scale(g, x, y)
        type(l96_grid), intent(in) :: g
        real(wp), intent(inout) :: x(-1:), y(0:)
        real(wp) :: r3(3), r2(2), r1(1)
        associate (nk => g%nk, nj => g%nj)
            if (nk >= 2) then
                call shift_right(g, [x(nk - 1), x(nk), y(nj)], r3)           ! X_{k-2}, X_{k-1}, Y_{j-1}
                x(-1) = r3(1); x(0) = r3(2); y(0) = r3(3)
            else   ! one X per rank: X_{k-2} lives two ranks to the left, so pass it on in two shifts
                call shift_right(g, [x(nk), y(nj)], r2)
                x(0) = r2(1); y(0) = r2(2)
                call shift_right(g, [x(0)], r1)
                x(-1) = r1(1)
            end if
            call shift_left(g, [x(1), y(1), y(2)], r3)                      ! X_{k+1}, Y_{j+1}, Y_{j+2}
            x(nk + 1) = r3(1); y(nj + 1) = r3(2); y(nj + 2) = r3(3)
        end associate
    end subroutine

    !> Tendencies of the two-scale model at the local points (x and y with valid halos).
    pure subroutine two_scale_tendency(p, nk, x, y, dx, dy)
        type(l96_params), intent(in) :: p
        integer, intent(in) :: nk
        real(wp), intent(in) :: x(-1:), y(0:)
        real(wp), intent(out) :: dx(:), dy(:)
        real(wp) :: hcb, cb
        integer :: k, i
        hcb = p%h * p%c / p%b
        cb = p%c * p%b
        do k = 1, nk
            dx(k) = -x(k - 1) * (x(k - 2) - x(k + 1)) - x(k) + p%f - hcb * sum(y((k - 1) * p%j + 1:k * p%j))
        end do
        do i = 1, nk * p%j
            dy(i) = -cb * y(i + 1) * (y(i + 2) - y(i - 1)) - p%c * y(i) + hcb * x((i - 1) / p%j + 1)
        end do
    end subroutine

    !> One RK4 step of length dt (collective: halo exchanges with the neighbours).
    subroutine two_scale_step(self, dt)
        class(two_scale_model), intent(inout) :: self
        real(wp), intent(in) :: dt
        real(wp), parameter :: stage(3) = [0.5_wp, 0.5_wp, 1.0_wp]
        integer :: s, nk, nj
        nk = self%g%nk
        nj = self%g%nj
        call two_scale_tendency(self%p, nk, self%x, self%y, self%dx(:, 1), self%dy(:, 1))
        do s = 1, 3
            self%xs(1:nk) = self%x(1:nk) + stage(s) * dt * self%dx(:, s)
            self%ys(1:nj) = self%y(1:nj) + stage(s) * dt * self%dy(:, s)
            call exchange_two_scale(self%g, self%xs, self%ys)
            call two_scale_tendency(self%p, nk, self%xs, self%ys, self%dx(:, s + 1), self%dy(:, s + 1))
        end do
        self%x(1:nk) = self%x(1:nk) + dt / 6 * (self%dx(:, 1) + 2 * self%dx(:, 2) + 2 * self%dx(:, 3) + self%dx(:, 4))
        self%y(1:nj) = self%y(1:nj) + dt / 6 * (self%dy(:, 1) + 2 * self%dy(:, 2) + 2 * self%dy(:, 3) + self%dy(:, 4))
        call exchange_two_scale(self%g, self%x, self%y)
    end subroutine

    !> The sub-grid tendency the fast variables exert on each local X_k: U_k = -(h c / b) sum_j Y_{j,k}.
    subroutine subgrid_tendency(self, u)
        class(two_scale_model), intent(in) :: self
        real(wp), intent(out) :: u(:)
        integer :: k
        do k = 1, self%g%nk
            u(k) = -(self%p%h * self%p%c / self%p%b) * sum(self%y((k - 1) * self%p%j + 1:k * self%p%j))
        end do
    end subroutine

    ! ======================================================================= single-scale model

    subroutine one_scale_init(self, p, g, nens)
        class(one_scale_model), intent(inout) :: self
        type(l96_params), intent(in) :: p
        type(l96_grid), intent(in) :: g
        integer, intent(in) :: nens
        self%p = p
        self%g = g
        self%nens = nens
        if (allocated(self%x)) deallocate (self%x, self%u, self%xs, self%dx)
        allocate (self%x(-1:g%nk + 1, nens), self%xs(-1:g%nk + 1, nens), self%u(g%nk, nens), self%dx(g%nk, nens, 4))
        self%x = 0
        self%u = 0
    end subroutine

    !> Fills the halos of all members (call it after setting x(1:nk, :) directly).
    subroutine one_scale_exchange(self)
        class(one_scale_model), intent(inout) :: self
        call exchange_one_scale(self%g, self%x)
    end subroutine

    subroutine exchange_one_scale(g, x)
        type(l96_grid), intent(in) :: g
        real(wp), intent(inout) :: x(-1:, :)
        real(wp) :: r(2 * size(x, 2))
        integer :: m
        m = size(x, 2)
        associate (nk => g%nk)
            if (nk >= 2) then
                call shift_right(g, [x(nk - 1, :), x(nk, :)], r)
                x(-1, :) = r(1:m); x(0, :) = r(m + 1:2 * m)
            else
                call shift_right(g, x(nk, :), r(1:m))
                x(0, :) = r(1:m)
                call shift_right(g, x(0, :), r(1:m))
                x(-1, :) = r(1:m)
            end if
            call shift_left(g, x(1, :), r(1:m))
            x(nk + 1, :) = r(1:m)
        end associate
    end subroutine

    pure subroutine one_scale_tendency(p, nk, x, u, dx)
        type(l96_params), intent(in) :: p
        integer, intent(in) :: nk
        real(wp), intent(in) :: x(-1:, :), u(:, :)
        real(wp), intent(out) :: dx(:, :)
        integer :: k, m
        do m = 1, size(x, 2)
            do k = 1, nk
                dx(k, m) = -x(k - 1, m) * (x(k - 2, m) - x(k + 1, m)) - x(k, m) + p%f + u(k, m)
            end do
        end do
    end subroutine

    !> One RK4 step of length dt for every member, with self%u held fixed (collective).
    subroutine one_scale_step(self, dt)
        class(one_scale_model), intent(inout) :: self
        real(wp), intent(in) :: dt
        real(wp), parameter :: stage(3) = [0.5_wp, 0.5_wp, 1.0_wp]
        integer :: s, nk
        nk = self%g%nk
        call one_scale_tendency(self%p, nk, self%x, self%u, self%dx(:, :, 1))
        do s = 1, 3
            self%xs(1:nk, :) = self%x(1:nk, :) + stage(s) * dt * self%dx(:, :, s)
            call exchange_one_scale(self%g, self%xs)
            call one_scale_tendency(self%p, nk, self%xs, self%u, self%dx(:, :, s + 1))
        end do
        self%x(1:nk, :) = self%x(1:nk, :) + dt / 6 * (self%dx(:, :, 1) + 2 * self%dx(:, :, 2) + 2 * self%dx(:, :, 3) &
                                                      + self%dx(:, :, 4))
        call exchange_one_scale(self%g, self%x)
    end subroutine

end module l96_model
