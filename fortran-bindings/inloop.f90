!> InLoop: neural-network inference from Fortran.
!>
!>     use inloop
!>     type(inloop_model) :: net
!>     real(real64), allocatable :: x(:,:), y(:,:)     ! x(n_in, ncol), y(n_out, ncol)
!>     call net%load('column_mlp.safetensors')
!>     allocate(x(net%input_size(), ncol), y(net%output_size(), ncol))
!>     call net%forward(x, y)
!>
!> Two layers:
!>  * `c_inloop_*`: the raw `bind(C)` interfaces, one per function of `Include/inloop.h`
!>    (statuses are `integer(c_int32_t)`, handles `type(c_ptr)`, strings `type(c_ptr)` to C strings);
!>  * `type(inloop_model)` and the `inloop_*` module procedures: the idiomatic layer.
!>
!> Errors, as in `allocate`: every idiomatic call has optional `stat` and `errmsg` arguments.
!>  * `stat` present: the call never stops the program; `stat` is the status (`INLOOP_OK` = 0 or one of the
!>    `INLOOP_ERR_*` constants) and, on error, `errmsg` (if present) receives the message, truncated or
!>    blank-padded to its length. On success `errmsg` is left unchanged.
!>  * `stat` absent: an error writes "inloop: <message>" to `error_unit` and executes `error stop`.
!>
!> Copies: `type(inloop_model)` holds only a C handle. Intrinsic assignment (`b = a`) copies the handle, so
!> both objects share one model; whichever is freed (or finalized) first frees it, and later use of the
!> other gives `INLOOP_ERR_INVALID_HANDLE` (the library detects freed handles), not a crash. Prefer one
!> owner per model; pass it to procedures by reference (as an argument), which makes no copy. For the same
!> reason do not return a loaded `inloop_model` as a function result: the result is finalized (freeing the
!> model) after it has been copied to the variable; call `load` on the variable instead.
!> A model is freed by `free`, or by the final procedure when the object goes out of scope or is
!> deallocated (variables of the main program are not finalized; their models live until the program ends).
!>
!> Threads: a model must not be used from two threads at the same time (the library returns
!> `INLOOP_ERR_BUSY`); use one model per thread. Error messages are per thread.
!>
!> Reproducibility: by default `forward` uses the optimised GEMM of the BLAS. Results are then bitwise
!> the same from run to run for the same batching (same columns in the same calls), but the last bits of
!> a column (~1e-7 relative) may depend on the batch it is in: its position, the batch size, hence the
!> number of MPI ranks the columns are split over. `call net%set_reproducible(.true.)` makes every
!> column's output bitwise independent of batching (a block of columns on one rank equals the same
!> columns of a serial run), at a cost: dense layers then run one matrix-vector product per column,
!> which is slower for large batches. The setting belongs to the model (per handle), off by default.
module inloop
    use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_char, c_null_char, c_int32_t, c_int64_t, &
                                           c_float, c_double, c_size_t, c_associated, c_loc, c_f_pointer
    use, intrinsic :: iso_fortran_env, only: int8, int64, real32, real64, error_unit
    implicit none
    private

    ! ---------------------------------------------------------------------------------------- statuses
    integer(c_int32_t), parameter, public :: INLOOP_OK = 0
    integer(c_int32_t), parameter, public :: INLOOP_ERR_NULL_POINTER = 1      !< a required pointer is NULL
    integer(c_int32_t), parameter, public :: INLOOP_ERR_INVALID_ARGUMENT = 2  !< a size/value out of range
    integer(c_int32_t), parameter, public :: INLOOP_ERR_SIZE_MISMATCH = 3     !< a size disagrees with the model
    integer(c_int32_t), parameter, public :: INLOOP_ERR_INVALID_HANDLE = 4    !< handle freed or never loaded
    integer(c_int32_t), parameter, public :: INLOOP_ERR_IO = 5                !< missing/unreadable file, directory
    integer(c_int32_t), parameter, public :: INLOOP_ERR_FORMAT = 6            !< not a valid model file
    integer(c_int32_t), parameter, public :: INLOOP_ERR_UNSUPPORTED = 7       !< valid file, unsupported feature
    integer(c_int32_t), parameter, public :: INLOOP_ERR_NONFINITE = 8         !< NaN/Inf found (check_finite)
    integer(c_int32_t), parameter, public :: INLOOP_ERR_OUT_OF_MEMORY = 9
    integer(c_int32_t), parameter, public :: INLOOP_ERR_BUSY = 10             !< model in use by another thread
    integer(c_int32_t), parameter, public :: INLOOP_ERR_INTERNAL = 11         !< a bug in InLoop: please report
    integer(c_int32_t), parameter, public :: INLOOP_ERR_MPI = 12              !< MPI call failed / MPI not initialized

    ! ------------------------------------------------------------------------- raw C interfaces
    public :: c_inloop_version, c_inloop_last_error, c_inloop_status_string
    public :: c_inloop_set_num_threads, c_inloop_get_num_threads
    public :: c_inloop_model_load, c_inloop_model_load_buffer, c_inloop_model_free
    public :: c_inloop_model_num_inputs, c_inloop_model_num_outputs
    public :: c_inloop_model_input_size, c_inloop_model_output_size
    public :: c_inloop_model_input_name, c_inloop_model_output_name
    public :: c_inloop_model_forward_f32, c_inloop_model_forward_f64
    public :: c_inloop_model_forward_sized_f32, c_inloop_model_forward_sized_f64
    public :: c_inloop_model_set_check_finite, c_inloop_model_set_reproducible
    public :: c_inloop_trainer_create, c_inloop_trainer_create_from_model, c_inloop_trainer_load_checkpoint
    public :: c_inloop_trainer_save_checkpoint, c_inloop_trainer_save_model, c_inloop_trainer_get_model
    public :: c_inloop_trainer_free, c_inloop_trainer_step_f32, c_inloop_trainer_step_f64
    public :: c_inloop_trainer_evaluate_f32, c_inloop_trainer_evaluate_f64
    public :: c_inloop_trainer_set_learning_rate, c_inloop_trainer_get_learning_rate, c_inloop_trainer_step_count
    public :: c_inloop_trainer_gradient_norm, c_inloop_trainer_loss_history, c_inloop_trainer_sizes
    public :: c_inloop_model_jvp_f32, c_inloop_model_jvp_f64, c_inloop_model_vjp_f32, c_inloop_model_vjp_f64
    public :: c_inloop_model_jacobian_f32, c_inloop_model_jacobian_f64
    public :: c_inloop_model_load_mpi, c_inloop_trainer_set_communicator, c_inloop_trainer_load_checkpoint_mpi
    public :: c_inloop_trainer_rank

    interface
        !> "0.1.0"; static storage.
        function c_inloop_version() bind(C, name="inloop_version") result(s)
            import :: c_ptr
            type(c_ptr) :: s
        end function
        !> This thread's last error message ("" if none); valid until the next failing call.
        function c_inloop_last_error() bind(C, name="inloop_last_error") result(s)
            import :: c_ptr
            type(c_ptr) :: s
        end function
        !> Short description of a status: "INLOOP_ERR_IO: ...".
        function c_inloop_status_string(status) bind(C, name="inloop_status_string") result(s)
            import :: c_ptr, c_int32_t
            integer(c_int32_t), value :: status
            type(c_ptr) :: s
        end function
        function c_inloop_set_num_threads(n) bind(C, name="inloop_set_num_threads") result(status)
            import :: c_int32_t
            integer(c_int32_t), value :: n
            integer(c_int32_t) :: status
        end function
        function c_inloop_get_num_threads() bind(C, name="inloop_get_num_threads") result(n)
            import :: c_int32_t
            integer(c_int32_t) :: n
        end function
        !> path: NUL-terminated (pass trim(path)//c_null_char).
        function c_inloop_model_load(path, model) bind(C, name="inloop_model_load") result(status)
            import :: c_char, c_ptr, c_int32_t
            character(kind=c_char), intent(in) :: path(*)
            type(c_ptr), intent(out) :: model
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_load_buffer(data, size, model) bind(C, name="inloop_model_load_buffer") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: data
            integer(c_int64_t), value :: size
            type(c_ptr), intent(out) :: model
            integer(c_int32_t) :: status
        end function
        !> NULL: no-op, OK. Already freed: INLOOP_ERR_INVALID_HANDLE.
        function c_inloop_model_free(model) bind(C, name="inloop_model_free") result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: model
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_num_inputs(model, n) bind(C, name="inloop_model_num_inputs") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), intent(out) :: n
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_num_outputs(model, n) bind(C, name="inloop_model_num_outputs") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), intent(out) :: n
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_input_size(model, n_in) bind(C, name="inloop_model_input_size") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), intent(out) :: n_in
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_output_size(model, n_out) bind(C, name="inloop_model_output_size") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), intent(out) :: n_out
            integer(c_int32_t) :: status
        end function
        !> name: a C string owned by the model, valid until inloop_model_free.
        function c_inloop_model_input_name(model, index, name) bind(C, name="inloop_model_input_name") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: index
            type(c_ptr), intent(out) :: name
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_output_name(model, index, name) bind(C, name="inloop_model_output_name") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: index
            type(c_ptr), intent(out) :: name
            integer(c_int32_t) :: status
        end function
        !> x: c_loc of x(n_in, batch); y: c_loc of y(n_out, batch). No size check beyond batch.
        function c_inloop_model_forward_f32(model, x, batch, y) bind(C, name="inloop_model_forward_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, y
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_forward_f64(model, x, batch, y) bind(C, name="inloop_model_forward_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, y
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        !> Same, with n_in and n_out checked against the model (INLOOP_ERR_SIZE_MISMATCH).
        function c_inloop_model_forward_sized_f32(model, x, n_in, batch, y, n_out) &
                bind(C, name="inloop_model_forward_sized_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, y
            integer(c_int64_t), value :: n_in, batch, n_out
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_forward_sized_f64(model, x, n_in, batch, y, n_out) &
                bind(C, name="inloop_model_forward_sized_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, y
            integer(c_int64_t), value :: n_in, batch, n_out
            integer(c_int32_t) :: status
        end function
        !> enabled /= 0: forward checks x and y for NaN/Inf (INLOOP_ERR_NONFINITE).
        function c_inloop_model_set_check_finite(model, enabled) bind(C, name="inloop_model_set_check_finite") &
                result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: model
            integer(c_int32_t), value :: enabled
            integer(c_int32_t) :: status
        end function
        !> enabled /= 0: each column's output is bitwise independent of batching (GEMV per column).
        function c_inloop_model_set_reproducible(model, enabled) bind(C, name="inloop_model_set_reproducible") &
                result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: model
            integer(c_int32_t), value :: enabled
            integer(c_int32_t) :: status
        end function
        ! C library helper used to convert C strings.
        function c_strlen(s) bind(C, name="strlen") result(n)
            import :: c_ptr, c_size_t
            type(c_ptr), value :: s
            integer(c_size_t) :: n
        end function
        ! ------------------------------------------------------------------ training and derivatives
        function c_inloop_trainer_create(config, trainer) bind(C, name="inloop_trainer_create") result(status)
            import :: c_ptr, c_char, c_int32_t
            character(kind=c_char), intent(in) :: config(*)
            type(c_ptr), intent(out) :: trainer
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_create_from_model(model, config, trainer) bind(C, name="inloop_trainer_create_from_model") result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: model, config
            type(c_ptr), intent(out) :: trainer
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_load_checkpoint(path, trainer) bind(C, name="inloop_trainer_load_checkpoint") result(status)
            import :: c_ptr, c_char, c_int32_t
            character(kind=c_char), intent(in) :: path(*)
            type(c_ptr), intent(out) :: trainer
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_save_checkpoint(trainer, path) bind(C, name="inloop_trainer_save_checkpoint") result(status)
            import :: c_ptr, c_char, c_int32_t
            type(c_ptr), value :: trainer
            character(kind=c_char), intent(in) :: path(*)
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_save_model(trainer, path) bind(C, name="inloop_trainer_save_model") result(status)
            import :: c_ptr, c_char, c_int32_t
            type(c_ptr), value :: trainer
            character(kind=c_char), intent(in) :: path(*)
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_get_model(trainer, model) bind(C, name="inloop_trainer_get_model") result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: trainer
            type(c_ptr), intent(out) :: model
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_free(trainer) bind(C, name="inloop_trainer_free") result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: trainer
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_step_f32(trainer, x, y, batch, loss) bind(C, name="inloop_trainer_step_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, x, y, loss
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_step_f64(trainer, x, y, batch, loss) bind(C, name="inloop_trainer_step_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, x, y, loss
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_evaluate_f32(trainer, x, y, batch, loss) bind(C, name="inloop_trainer_evaluate_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, x, y, loss
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_evaluate_f64(trainer, x, y, batch, loss) bind(C, name="inloop_trainer_evaluate_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, x, y, loss
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_set_learning_rate(trainer, lr) bind(C, name="inloop_trainer_set_learning_rate") result(status)
            import :: c_ptr, c_double, c_int32_t
            type(c_ptr), value :: trainer
            real(c_double), value :: lr
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_get_learning_rate(trainer, lr) bind(C, name="inloop_trainer_get_learning_rate") result(status)
            import :: c_ptr, c_double, c_int32_t
            type(c_ptr), value :: trainer
            real(c_double), intent(out) :: lr
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_step_count(trainer, steps) bind(C, name="inloop_trainer_step_count") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer
            integer(c_int64_t), intent(out) :: steps
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_gradient_norm(trainer, norm) bind(C, name="inloop_trainer_gradient_norm") result(status)
            import :: c_ptr, c_double, c_int32_t
            type(c_ptr), value :: trainer
            real(c_double), intent(out) :: norm
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_loss_history(trainer, losses, capacity, count) bind(C, name="inloop_trainer_loss_history") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, losses
            integer(c_int64_t), value :: capacity
            integer(c_int64_t), intent(out) :: count
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_sizes(trainer, n_in, n_out) bind(C, name="inloop_trainer_sizes") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer
            integer(c_int64_t), intent(out) :: n_in, n_out
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_jvp_f32(model, x, dx, batch, y, dy) bind(C, name="inloop_model_jvp_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, dx, y, dy
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_jvp_f64(model, x, dx, batch, y, dy) bind(C, name="inloop_model_jvp_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, dx, y, dy
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_vjp_f32(model, x, dy, batch, dx) bind(C, name="inloop_model_vjp_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, dy, dx
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_vjp_f64(model, x, dy, batch, dx) bind(C, name="inloop_model_vjp_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, dy, dx
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_jacobian_f32(model, x, batch, j) bind(C, name="inloop_model_jacobian_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, j
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_jacobian_f64(model, x, batch, j) bind(C, name="inloop_model_jacobian_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model, x, j
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        ! ------------------------------------------------------------------ MPI (communicators as MPI_Fint)
        function c_inloop_model_load_mpi(path, comm, model) bind(C, name="inloop_model_load_mpi") result(status)
            import :: c_char, c_ptr, c_int32_t
            character(kind=c_char), intent(in) :: path(*)
            integer(c_int32_t), value :: comm
            type(c_ptr), intent(out) :: model
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_set_communicator(trainer, comm) bind(C, name="inloop_trainer_set_communicator") result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: trainer
            integer(c_int32_t), value :: comm
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_load_checkpoint_mpi(path, comm, trainer) bind(C, name="inloop_trainer_load_checkpoint_mpi") result(status)
            import :: c_char, c_ptr, c_int32_t
            character(kind=c_char), intent(in) :: path(*)
            integer(c_int32_t), value :: comm
            type(c_ptr), intent(out) :: trainer
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_rank(trainer, rank, size) bind(C, name="inloop_trainer_rank") result(status)
            import :: c_ptr, c_int32_t
            type(c_ptr), value :: trainer
            integer(c_int32_t), intent(out) :: rank, size
            integer(c_int32_t) :: status
        end function
    end interface

    ! ------------------------------------------------------------------------- idiomatic layer
    public :: inloop_version_string, inloop_error_message, inloop_status_name
    public :: inloop_set_threads, inloop_get_threads

    !> A loaded model. Default-initialized objects hold no model (`is_loaded()` is false).
    type, public :: inloop_model
        private
        type(c_ptr) :: handle = c_null_ptr
    contains
        procedure :: load => model_load                  !< load(path [, stat, errmsg, comm])
        procedure :: load_buffer => model_load_buffer    !< load_buffer(bytes [, stat, errmsg])
        procedure :: free => model_free                  !< free([stat, errmsg]); no-op if nothing loaded
        procedure :: is_loaded => model_is_loaded        !< .true. if this object holds a handle
        procedure :: input_size => model_input_size      !< values per sample (column) in x
        procedure :: output_size => model_output_size    !< values per sample (column) in y
        procedure :: input_name => model_input_name
        procedure :: output_name => model_output_name
        procedure :: set_check_finite => model_set_check_finite  !< set_check_finite(enabled [, stat, errmsg])
        procedure :: set_reproducible => model_set_reproducible  !< set_reproducible(enabled [, stat, errmsg])
        procedure :: c_handle => model_c_handle          !< the raw handle, for the c_inloop_* interfaces
        procedure, private :: forward_r32_1, forward_r32_2, forward_r64_1, forward_r64_2
        !> forward(x, y [, stat, errmsg]): x(n_in) -> y(n_out), or x(n_in, ncol) -> y(n_out, ncol),
        !> real(real32) or real(real64).
        generic :: forward => forward_r32_1, forward_r32_2, forward_r64_1, forward_r64_2
        procedure, private :: jvp_r32, jvp_r64, vjp_r32, vjp_r64, jacobian_r32, jacobian_r64
        generic :: jvp => jvp_r32, jvp_r64             !< tangent-linear: jvp(x, dx, dy [, y, stat, errmsg])
        generic :: vjp => vjp_r32, vjp_r64             !< adjoint: vjp(x, dy, dx [, stat, errmsg])
        generic :: jacobian => jacobian_r32, jacobian_r64   !< jacobian(x, J(n_out, n_in, ncol) [, stat, errmsg])
        final :: model_finalize
    end type inloop_model

    !> A training run: a model, its loss, optimizer, schedule and state. Create it from a YAML/JSON
    !> configuration (text or file path) or from a loaded model (fine-tuning), or restore a checkpoint.
    !>
    !>     type(inloop_trainer) :: tr
    !>     call tr%create('training.yaml')
    !>     do step = 1, nsteps
    !>         call tr%step(x, y, loss)          ! x(n_in, ncol), y(n_out, ncol), real(4) or real(8)
    !>     end do
    !>     call tr%save_model('learned.safetensors')
    type, public :: inloop_trainer
        type(c_ptr), private :: handle = c_null_ptr
    contains
        procedure :: create => trainer_create                      !< create(config [, stat, errmsg])
        procedure :: create_from_model => trainer_create_from_model !< create_from_model(model [, config, stat, errmsg])
        procedure :: load_checkpoint => trainer_load_checkpoint    !< load_checkpoint(path [, comm, stat, errmsg])
        procedure :: set_communicator => trainer_set_communicator  !< set_communicator(comm [, stat, errmsg]): data-parallel
        procedure :: save_checkpoint => trainer_save_checkpoint    !< save_checkpoint(path [, stat, errmsg])
        procedure :: save_model => trainer_save_model              !< save_model(path [, stat, errmsg])
        procedure :: get_model => trainer_get_model                !< get_model(model [, stat, errmsg])
        procedure :: free => trainer_free
        procedure :: is_created => trainer_is_created
        procedure :: set_learning_rate => trainer_set_learning_rate
        procedure :: learning_rate => trainer_learning_rate       !< function: the rate of the next step
        procedure :: step_count => trainer_step_count             !< function: steps taken
        procedure :: gradient_norm => trainer_gradient_norm       !< function: last global gradient norm
        procedure :: loss_history => trainer_loss_history         !< function: recent losses, oldest first
        procedure, private :: step_r32, step_r64, evaluate_r32, evaluate_r64
        generic :: step => step_r32, step_r64                     !< step(x, y [, loss, stat, errmsg])
        generic :: evaluate => evaluate_r32, evaluate_r64         !< evaluate(x, y, loss [, stat, errmsg])
        final :: trainer_finalize
    end type inloop_trainer

    ! Stand-in addresses for zero-sized arrays (c_loc of a zero-sized array is not allowed). The library
    ! reports the size mismatch before it would read or write through them.
    integer(int8), target, save :: empty_bytes(1) = 0_int8
    real(real32), target, save :: empty_r32(1) = 0.0_real32
    real(real64), target, save :: empty_r64(1) = 0.0_real64

contains

    ! ===================================================================== module procedures

    !> The library version, e.g. "0.1.0".
    function inloop_version_string() result(s)
        character(len=:), allocatable :: s
        s = c_string(c_inloop_version())
    end function

    !> This thread's last error message from the library ("" if none).
    function inloop_error_message() result(s)
        character(len=:), allocatable :: s
        s = c_string(c_inloop_last_error())
    end function

    !> Short description of a status code, e.g. inloop_status_name(stat).
    function inloop_status_name(code) result(s)
        integer, intent(in) :: code
        character(len=:), allocatable :: s
        s = c_string(c_inloop_status_string(int(code, c_int32_t)))
    end function

    !> Threads used by OpenBLAS and the engine (n >= 1; else INLOOP_ERR_INVALID_ARGUMENT).
    subroutine inloop_set_threads(n, stat, errmsg)
        integer, intent(in) :: n
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        if (n < -huge(0_c_int32_t) .or. n > huge(0_c_int32_t)) then
            call report(INLOOP_ERR_INVALID_ARGUMENT, stat, errmsg, 'inloop_set_threads: n out of range')
        else
            call report(c_inloop_set_num_threads(int(n, c_int32_t)), stat, errmsg)
        end if
    end subroutine

    function inloop_get_threads() result(n)
        integer :: n
        n = int(c_inloop_get_num_threads())
    end function

    ! ===================================================================== type-bound procedures

    !> Loads a model file (trailing blanks of `path` are ignored). If the object already held a model,
    !> that model is freed once the new one has loaded; on failure the object is unchanged.
    !> With `comm` (collective): rank 0 reads the file and broadcasts it; every rank gets the same
    !> model, or the same error. `comm`: an integer communicator (`use mpi`) or comm%MPI_VAL (`use mpi_f08`).
    subroutine model_load(self, path, stat, errmsg, comm)
        class(inloop_model), intent(inout) :: self
        character(len=*), intent(in) :: path
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer, intent(in), optional :: comm
        type(c_ptr) :: new
        integer(c_int32_t) :: code
        if (present(comm)) then
            code = c_inloop_model_load_mpi(trim(path) // c_null_char, int(comm, c_int32_t), new)
        else
            code = c_inloop_model_load(trim(path) // c_null_char, new)
        end if
        if (code == INLOOP_OK) call replace_handle(self, new)
        call report(code, stat, errmsg)
    end subroutine

    !> Loads a model from the bytes of a model file held in memory, e.g. read with
    !>     open(newunit=u, file=path, access='stream', form='unformatted'); inquire(u, size=n)
    !>     allocate(bytes(n)); read(u) bytes
    !> `bytes` is an integer(int8) array (one element per byte). Replaces a held model as `load` does.
    subroutine model_load_buffer(self, bytes, stat, errmsg)
        class(inloop_model), intent(inout) :: self
        integer(int8), intent(in), contiguous, target :: bytes(:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: new, data
        integer(c_int32_t) :: code
        if (size(bytes) > 0) then
            data = c_loc(bytes)
        else
            data = c_loc(empty_bytes)
        end if
        code = c_inloop_model_load_buffer(data, size(bytes, kind=c_int64_t), new)
        if (code == INLOOP_OK) call replace_handle(self, new)
        call report(code, stat, errmsg)
    end subroutine

    !> Frees the model. Calling it on an object that holds no model (never loaded, or already freed
    !> through this object) is a no-op. Freeing through a copy whose model was freed through another copy
    !> gives INLOOP_ERR_INVALID_HANDLE. Afterwards the object holds no model.
    subroutine model_free(self, stat, errmsg)
        class(inloop_model), intent(inout) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int32_t) :: code
        code = c_inloop_model_free(self%handle)
        ! A stale handle is useless, so forget it too; any other failure (e.g. BUSY) leaves it valid.
        if (code == INLOOP_OK .or. code == INLOOP_ERR_INVALID_HANDLE) self%handle = c_null_ptr
        call report(code, stat, errmsg)
    end subroutine

    !> .true. if this object holds a handle (it may have been freed through a copy).
    logical function model_is_loaded(self)
        class(inloop_model), intent(in) :: self
        model_is_loaded = c_associated(self%handle)
    end function

    !> The raw handle (c_null_ptr if none), for the c_inloop_* interfaces. The object keeps ownership.
    type(c_ptr) function model_c_handle(self)
        class(inloop_model), intent(in) :: self
        model_c_handle = self%handle
    end function

    !> Number of input values per sample: size(x, 1). -1 on error (with stat present).
    function model_input_size(self, stat, errmsg) result(n)
        class(inloop_model), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64) :: n
        integer(c_int64_t) :: v
        integer(c_int32_t) :: code
        code = c_inloop_model_input_size(self%handle, v)
        n = -1_int64
        if (code == INLOOP_OK) n = int(v, int64)
        call report(code, stat, errmsg)
    end function

    !> Number of output values per sample: size(y, 1). -1 on error (with stat present).
    function model_output_size(self, stat, errmsg) result(n)
        class(inloop_model), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64) :: n
        integer(c_int64_t) :: v
        integer(c_int32_t) :: code
        code = c_inloop_model_output_size(self%handle, v)
        n = -1_int64
        if (code == INLOOP_OK) n = int(v, int64)
        call report(code, stat, errmsg)
    end function

    !> Name of the (first) input, e.g. "x". "" on error (with stat present).
    function model_input_name(self, stat, errmsg) result(s)
        class(inloop_model), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        character(len=:), allocatable :: s
        type(c_ptr) :: p
        integer(c_int32_t) :: code
        code = c_inloop_model_input_name(self%handle, 0_c_int64_t, p)
        s = ''
        if (code == INLOOP_OK) s = c_string(p)
        call report(code, stat, errmsg)
    end function

    !> Name of the (first) output, e.g. "y". "" on error (with stat present).
    function model_output_name(self, stat, errmsg) result(s)
        class(inloop_model), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        character(len=:), allocatable :: s
        type(c_ptr) :: p
        integer(c_int32_t) :: code
        code = c_inloop_model_output_name(self%handle, 0_c_int64_t, p)
        s = ''
        if (code == INLOOP_OK) s = c_string(p)
        call report(code, stat, errmsg)
    end function

    !> enabled: forward checks x and y for NaN/Inf and fails with INLOOP_ERR_NONFINITE.
    subroutine model_set_check_finite(self, enabled, stat, errmsg)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: enabled
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int32_t) :: flag
        flag = 0
        if (enabled) flag = 1
        call report(c_inloop_model_set_check_finite(self%handle, flag), stat, errmsg)
    end subroutine

    !> enabled: each column's output is bitwise independent of batching (batch size, position in the
    !> batch, MPI decomposition); slower for large batches. Off by default (see the module header).
    subroutine model_set_reproducible(self, enabled, stat, errmsg)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: enabled
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int32_t) :: flag
        flag = 0
        if (enabled) flag = 1
        call report(c_inloop_model_set_reproducible(self%handle, flag), stat, errmsg)
    end subroutine

    ! ----------------------------------------------------------------------------- forward
    !
    ! The dummies are `contiguous, target`: contiguous actual arguments are passed without a copy and the
    ! library works on them in place; for a non-contiguous actual argument (e.g. x(:, 1:n:2)) the compiler
    ! passes a contiguous temporary and copies y back afterwards. y is intent(inout) so that a failed call
    ! leaves y unchanged even when it is such a temporary (the library writes nothing on error).
    ! Sizes (size(x,1) vs the model's input size, size(y,1) vs its output size) are checked by the library;
    ! the Fortran layer only checks what the C call cannot see: that x and y have the same number of columns.
    !
    ! Zero columns: a no-op that succeeds (y is untouched), so that a rank or block with no columns needs
    ! no special case. The C API refuses batch = 0, so the Fortran layer still checks the handle and the
    ! row counts through the library's size queries, giving the same errors as a call with columns would.

    subroutine forward_r32_2(self, x, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(:,:)
        real(real32), intent(inout), contiguous, target :: y(:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: px, py
        if (.not. columns_agree(size(x, 2, int64), size(y, 2, int64), stat, errmsg)) return
        if (size(x, 2) == 0) then
            call check_no_columns(self, size(x, 1, int64), size(y, 1, int64), stat, errmsg)
            return
        end if
        px = c_loc(empty_r32)
        py = c_loc(empty_r32)
        if (size(x) > 0) px = c_loc(x)
        if (size(y) > 0) py = c_loc(y)
        call report(c_inloop_model_forward_sized_f32(self%handle, px, size(x, 1, c_int64_t), size(x, 2, c_int64_t), &
                                                     py, size(y, 1, c_int64_t)), stat, errmsg)
    end subroutine

    subroutine forward_r64_2(self, x, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:,:)
        real(real64), intent(inout), contiguous, target :: y(:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: px, py
        if (.not. columns_agree(size(x, 2, int64), size(y, 2, int64), stat, errmsg)) return
        if (size(x, 2) == 0) then
            call check_no_columns(self, size(x, 1, int64), size(y, 1, int64), stat, errmsg)
            return
        end if
        px = c_loc(empty_r64)
        py = c_loc(empty_r64)
        if (size(x) > 0) px = c_loc(x)
        if (size(y) > 0) py = c_loc(y)
        call report(c_inloop_model_forward_sized_f64(self%handle, px, size(x, 1, c_int64_t), size(x, 2, c_int64_t), &
                                                     py, size(y, 1, c_int64_t)), stat, errmsg)
    end subroutine

    !> One sample: x(n_in) -> y(n_out).
    subroutine forward_r32_1(self, x, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(:)
        real(real32), intent(inout), contiguous, target :: y(:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: px, py
        px = c_loc(empty_r32)
        py = c_loc(empty_r32)
        if (size(x) > 0) px = c_loc(x)
        if (size(y) > 0) py = c_loc(y)
        call report(c_inloop_model_forward_sized_f32(self%handle, px, size(x, kind=c_int64_t), 1_c_int64_t, &
                                                     py, size(y, kind=c_int64_t)), stat, errmsg)
    end subroutine

    subroutine forward_r64_1(self, x, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:)
        real(real64), intent(inout), contiguous, target :: y(:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: px, py
        px = c_loc(empty_r64)
        py = c_loc(empty_r64)
        if (size(x) > 0) px = c_loc(x)
        if (size(y) > 0) py = c_loc(y)
        call report(c_inloop_model_forward_sized_f64(self%handle, px, size(x, kind=c_int64_t), 1_c_int64_t, &
                                                     py, size(y, kind=c_int64_t)), stat, errmsg)
    end subroutine

    ! ===================================================================== private helpers

    !> Frees the handle the object held (if any; errors ignored, e.g. one freed through a copy) and
    !> takes `new` instead.
    subroutine replace_handle(self, new)
        class(inloop_model), intent(inout) :: self
        type(c_ptr), intent(in) :: new
        integer(c_int32_t) :: ignored
        if (c_associated(self%handle)) ignored = c_inloop_model_free(self%handle)
        self%handle = new
    end subroutine

    !> Frees the model when the object goes out of scope or is deallocated. Never stops the program:
    !> errors (e.g. a handle already freed through a copy) are ignored.
    impure elemental subroutine model_finalize(self)
        type(inloop_model), intent(inout) :: self
        integer(c_int32_t) :: ignored
        if (c_associated(self%handle)) ignored = c_inloop_model_free(self%handle)
        self%handle = c_null_ptr
    end subroutine

    logical function columns_agree(ncol_x, ncol_y, stat, errmsg)
        integer(int64), intent(in) :: ncol_x, ncol_y
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        columns_agree = ncol_x == ncol_y
        if (.not. columns_agree) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'forward: x has ' // itoa(ncol_x) // &
                        ' columns (size(x, 2)) but y has ' // itoa(ncol_y) // ' (size(y, 2))')
        end if
    end function

    !> forward with zero columns: succeed if a call with columns would pass its argument checks.
    subroutine check_no_columns(model, n_in, n_out, stat, errmsg)
        type(inloop_model), intent(in) :: model
        integer(int64), intent(in) :: n_in, n_out
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int64_t) :: model_in, model_out
        integer(c_int32_t) :: code
        code = c_inloop_model_input_size(model%handle, model_in)
        if (code == INLOOP_OK) code = c_inloop_model_output_size(model%handle, model_out)
        if (code /= INLOOP_OK) then
            call report(code, stat, errmsg)
        else if (n_in /= model_in) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'forward: size(x, 1) is ' // itoa(n_in) // &
                        ' but the model input size is ' // itoa(int(model_in, int64)))
        else if (n_out /= model_out) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'forward: size(y, 1) is ' // itoa(n_out) // &
                        ' but the model output size is ' // itoa(int(model_out, int64)))
        else
            call report(INLOOP_OK, stat, errmsg)
        end if
    end subroutine

    !> Delivers a status the `allocate` way (see the module header). The message is `message` if given,
    !> else the library's last error (else the status description).
    ! ===================================================================== training
    subroutine trainer_create(self, config, stat, errmsg)
        class(inloop_trainer), intent(inout) :: self
        character(len=*), intent(in) :: config   !< YAML/JSON text, or the path of a file holding it
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: h
        integer(c_int32_t) :: code
        code = c_inloop_trainer_create(trim(config) // c_null_char, h)
        if (code == INLOOP_OK) call self%free()
        if (code == INLOOP_OK) self%handle = h
        call report(code, stat, errmsg)
    end subroutine

    subroutine trainer_create_from_model(self, model, config, stat, errmsg)
        class(inloop_trainer), intent(inout) :: self
        class(inloop_model), intent(in) :: model
        character(len=*), intent(in), optional :: config   !< loss/optimizer/schedule/precision; default Adam, MSE
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        character(kind=c_char, len=:), allocatable, target :: text
        type(c_ptr) :: h, pc
        integer(c_int32_t) :: code
        pc = c_null_ptr
        if (present(config)) then
            text = trim(config) // c_null_char
            pc = c_loc(text)
        end if
        code = c_inloop_trainer_create_from_model(model%handle, pc, h)
        if (code == INLOOP_OK) call self%free()
        if (code == INLOOP_OK) self%handle = h
        call report(code, stat, errmsg)
    end subroutine

    !> With `comm` (collective): rank 0 reads the file and broadcasts it, and the trainer becomes
    !> data-parallel over `comm` (an integer communicator of `use mpi`, or comm%MPI_VAL of `use mpi_f08`).
    subroutine trainer_load_checkpoint(self, path, comm, stat, errmsg)
        class(inloop_trainer), intent(inout) :: self
        character(len=*), intent(in) :: path
        integer, intent(in), optional :: comm
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: h
        integer(c_int32_t) :: code
        if (present(comm)) then
            code = c_inloop_trainer_load_checkpoint_mpi(trim(path) // c_null_char, int(comm, c_int32_t), h)
        else
            code = c_inloop_trainer_load_checkpoint(trim(path) // c_null_char, h)
        end if
        if (code == INLOOP_OK) call self%free()
        if (code == INLOOP_OK) self%handle = h
        call report(code, stat, errmsg)
    end subroutine

    !> Data-parallel training over `comm` (collective): every rank then steps with its own columns,
    !> gradients are averaged over all ranks (deterministically), all ranks keep identical weights.
    !> `comm`: an integer communicator (`use mpi`) or comm%MPI_VAL (`use mpi_f08`).
    subroutine trainer_set_communicator(self, comm, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        integer, intent(in) :: comm
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        call report(c_inloop_trainer_set_communicator(self%handle, int(comm, c_int32_t)), stat, errmsg)
    end subroutine

    subroutine trainer_save_checkpoint(self, path, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        character(len=*), intent(in) :: path
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        call report(c_inloop_trainer_save_checkpoint(self%handle, trim(path) // c_null_char), stat, errmsg)
    end subroutine

    subroutine trainer_save_model(self, path, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        character(len=*), intent(in) :: path
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        call report(c_inloop_trainer_save_model(self%handle, trim(path) // c_null_char), stat, errmsg)
    end subroutine

    !> Replaces `model` with a new model holding the trainer's current weights.
    subroutine trainer_get_model(self, model, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        class(inloop_model), intent(inout) :: model
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: h
        integer(c_int32_t) :: code
        code = c_inloop_trainer_get_model(self%handle, h)
        if (code == INLOOP_OK) call model%free()
        if (code == INLOOP_OK) model%handle = h
        call report(code, stat, errmsg)
    end subroutine

    subroutine trainer_free(self, stat, errmsg)
        class(inloop_trainer), intent(inout) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int32_t) :: code
        code = INLOOP_OK
        if (c_associated(self%handle)) code = c_inloop_trainer_free(self%handle)
        if (code == INLOOP_OK .or. code == INLOOP_ERR_INVALID_HANDLE) self%handle = c_null_ptr
        call report(code, stat, errmsg)
    end subroutine

    logical function trainer_is_created(self)
        class(inloop_trainer), intent(in) :: self
        trainer_is_created = c_associated(self%handle)
    end function

    impure elemental subroutine trainer_finalize(self)
        type(inloop_trainer), intent(inout) :: self
        integer(c_int32_t) :: code
        if (c_associated(self%handle)) code = c_inloop_trainer_free(self%handle)
        self%handle = c_null_ptr
    end subroutine

    subroutine trainer_set_learning_rate(self, lr, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        real(real64), intent(in) :: lr
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        call report(c_inloop_trainer_set_learning_rate(self%handle, real(lr, c_double)), stat, errmsg)
    end subroutine

    function trainer_learning_rate(self, stat, errmsg) result(lr)
        class(inloop_trainer), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(real64) :: lr
        real(c_double) :: v
        v = -1
        call report(c_inloop_trainer_get_learning_rate(self%handle, v), stat, errmsg)
        lr = v
    end function

    function trainer_step_count(self, stat, errmsg) result(n)
        class(inloop_trainer), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64) :: n
        integer(c_int64_t) :: v
        v = -1
        call report(c_inloop_trainer_step_count(self%handle, v), stat, errmsg)
        n = v
    end function

    function trainer_gradient_norm(self, stat, errmsg) result(norm)
        class(inloop_trainer), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(real64) :: norm
        real(c_double) :: v
        v = -1
        call report(c_inloop_trainer_gradient_norm(self%handle, v), stat, errmsg)
        norm = v
    end function

    !> The most recent losses (at most `max_count`, default 100000), oldest first.
    function trainer_loss_history(self, max_count, stat, errmsg) result(losses)
        class(inloop_trainer), intent(in) :: self
        integer, intent(in), optional :: max_count
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(real64), allocatable :: losses(:)
        real(c_double), allocatable, target :: buffer(:)
        integer(c_int64_t) :: n
        integer(c_int32_t) :: code
        allocate (buffer(100000))
        if (present(max_count)) then
            deallocate (buffer)
            allocate (buffer(max(1, max_count)))
        end if
        n = 0
        code = c_inloop_trainer_loss_history(self%handle, c_loc(buffer), size(buffer, kind=c_int64_t), n)
        losses = buffer(1:n)
        call report(code, stat, errmsg)
    end function

    !> Checks x(n_in, ncol) and y(n_out, ncol) against the trainer; false (and reports) on mismatch.
    logical function trainer_sizes_ok(self, x_shape, y_shape, stat, errmsg) result(ok)
        class(inloop_trainer), intent(in) :: self
        integer(int64), intent(in) :: x_shape(2), y_shape(2)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int64_t) :: n_in, n_out
        integer(c_int32_t) :: code
        character(len=200) :: text
        ok = .false.
        code = c_inloop_trainer_sizes(self%handle, n_in, n_out)
        if (code /= INLOOP_OK) then
            call report(code, stat, errmsg)
            return
        end if
        if (x_shape(1) /= n_in .or. y_shape(1) /= n_out .or. x_shape(2) /= y_shape(2)) then
            write (text, '(a,i0,a,i0,a,i0,a,i0,a,i0,a,i0,a)') 'trainer: x is (', x_shape(1), ',', x_shape(2), ') and y is (', &
                y_shape(1), ',', y_shape(2), '); the model needs x(', n_in, ', ncol) and y(', n_out, ', ncol)'
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, trim(text))
            return
        end if
        ok = .true.
    end function

    subroutine step_r32(self, x, y, loss, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(:,:), y(:,:)
        real(real64), intent(out), optional :: loss
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(c_double), target :: l
        if (.not. trainer_sizes_ok(self, shape(x, int64), shape(y, int64), stat, errmsg)) return
        call report(c_inloop_trainer_step_f32(self%handle, c_loc(x), c_loc(y), size(x, 2, c_int64_t), c_loc(l)), stat, errmsg)
        if (present(loss)) loss = l
    end subroutine

    subroutine step_r64(self, x, y, loss, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:,:), y(:,:)
        real(real64), intent(out), optional :: loss
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(c_double), target :: l
        if (.not. trainer_sizes_ok(self, shape(x, int64), shape(y, int64), stat, errmsg)) return
        call report(c_inloop_trainer_step_f64(self%handle, c_loc(x), c_loc(y), size(x, 2, c_int64_t), c_loc(l)), stat, errmsg)
        if (present(loss)) loss = l
    end subroutine

    subroutine evaluate_r32(self, x, y, loss, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(:,:), y(:,:)
        real(real64), intent(out) :: loss
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(c_double), target :: l
        loss = -1
        if (.not. trainer_sizes_ok(self, shape(x, int64), shape(y, int64), stat, errmsg)) return
        call report(c_inloop_trainer_evaluate_f32(self%handle, c_loc(x), c_loc(y), size(x, 2, c_int64_t), c_loc(l)), stat, errmsg)
        loss = l
    end subroutine

    subroutine evaluate_r64(self, x, y, loss, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:,:), y(:,:)
        real(real64), intent(out) :: loss
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(c_double), target :: l
        loss = -1
        if (.not. trainer_sizes_ok(self, shape(x, int64), shape(y, int64), stat, errmsg)) return
        call report(c_inloop_trainer_evaluate_f64(self%handle, c_loc(x), c_loc(y), size(x, 2, c_int64_t), c_loc(l)), stat, errmsg)
        loss = l
    end subroutine

    ! ===================================================================== model derivatives
    !> Checks the leading sizes of derivative arguments against the model: a(n_a, ncol), b(n_b, ncol).
    logical function derivative_sizes_ok(model, na, nb, ncol_a, ncol_b, a_is_input, b_is_input, stat, errmsg) result(ok)
        class(inloop_model), intent(in) :: model
        integer(int64), intent(in) :: na, nb, ncol_a, ncol_b
        logical, intent(in) :: a_is_input, b_is_input
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int64_t) :: n_in, n_out, want_a, want_b
        integer(c_int32_t) :: code
        character(len=200) :: text
        ok = .false.
        code = c_inloop_model_input_size(model%handle, n_in)
        if (code == INLOOP_OK) code = c_inloop_model_output_size(model%handle, n_out)
        if (code /= INLOOP_OK) then
            call report(code, stat, errmsg)
            return
        end if
        want_a = merge(n_in, n_out, a_is_input)
        want_b = merge(n_in, n_out, b_is_input)
        if (na /= want_a .or. nb /= want_b .or. ncol_a /= ncol_b .or. ncol_a < 1) then
            write (text, '(a,i0,a,i0,a,i0,a,i0,a,i0,a,i0,a)') 'derivative arguments have shapes (', na, ',', ncol_a, ') and (', &
                nb, ',', ncol_b, '); the model needs (', want_a, ', ncol) and (', want_b, ', ncol), ncol >= 1'
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, trim(text))
            return
        end if
        ok = .true.
    end function

    subroutine jvp_r32(self, x, dx, dy, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(:,:), dx(:,:)
        real(real32), intent(inout), contiguous, target :: dy(:,:)
        real(real32), intent(inout), contiguous, target, optional :: y(:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: py
        if (.not. derivative_sizes_ok(self, size(x, 1, int64), size(dy, 1, int64), size(x, 2, int64), size(dy, 2, int64), &
                                      .true., .false., stat, errmsg)) return
        if (any(shape(dx) /= shape(x))) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'jvp: dx must have the shape of x')
            return
        end if
        py = c_null_ptr
        if (present(y)) then
            if (any(shape(y) /= shape(dy))) then
                call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'jvp: y must have the shape of dy')
                return
            end if
            py = c_loc(y)
        end if
        call report(c_inloop_model_jvp_f32(self%handle, c_loc(x), c_loc(dx), size(x, 2, c_int64_t), py, c_loc(dy)), stat, errmsg)
    end subroutine

    subroutine jvp_r64(self, x, dx, dy, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:,:), dx(:,:)
        real(real64), intent(inout), contiguous, target :: dy(:,:)
        real(real64), intent(inout), contiguous, target, optional :: y(:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: py
        if (.not. derivative_sizes_ok(self, size(x, 1, int64), size(dy, 1, int64), size(x, 2, int64), size(dy, 2, int64), &
                                      .true., .false., stat, errmsg)) return
        if (any(shape(dx) /= shape(x))) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'jvp: dx must have the shape of x')
            return
        end if
        py = c_null_ptr
        if (present(y)) then
            if (any(shape(y) /= shape(dy))) then
                call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'jvp: y must have the shape of dy')
                return
            end if
            py = c_loc(y)
        end if
        call report(c_inloop_model_jvp_f64(self%handle, c_loc(x), c_loc(dx), size(x, 2, c_int64_t), py, c_loc(dy)), stat, errmsg)
    end subroutine

    subroutine vjp_r32(self, x, dy, dx, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(:,:), dy(:,:)
        real(real32), intent(inout), contiguous, target :: dx(:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        if (.not. derivative_sizes_ok(self, size(x, 1, int64), size(dy, 1, int64), size(x, 2, int64), size(dy, 2, int64), &
                                      .true., .false., stat, errmsg)) return
        if (any(shape(dx) /= shape(x))) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'vjp: dx must have the shape of x')
            return
        end if
        call report(c_inloop_model_vjp_f32(self%handle, c_loc(x), c_loc(dy), size(x, 2, c_int64_t), c_loc(dx)), stat, errmsg)
    end subroutine

    subroutine vjp_r64(self, x, dy, dx, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:,:), dy(:,:)
        real(real64), intent(inout), contiguous, target :: dx(:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        if (.not. derivative_sizes_ok(self, size(x, 1, int64), size(dy, 1, int64), size(x, 2, int64), size(dy, 2, int64), &
                                      .true., .false., stat, errmsg)) return
        if (any(shape(dx) /= shape(x))) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'vjp: dx must have the shape of x')
            return
        end if
        call report(c_inloop_model_vjp_f64(self%handle, c_loc(x), c_loc(dy), size(x, 2, c_int64_t), c_loc(dx)), stat, errmsg)
    end subroutine

    !> J(n_out, n_in, ncol): J(o, i, c) = d y_o / d x_i at column c.
    subroutine jacobian_r32(self, x, j, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(:,:)
        real(real32), intent(inout), contiguous, target :: j(:,:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        if (.not. derivative_sizes_ok(self, size(x, 1, int64), size(j, 1, int64), size(x, 2, int64), size(j, 3, int64), &
                                      .true., .false., stat, errmsg)) return
        if (size(j, 2) /= size(x, 1)) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'jacobian: J must be J(n_out, n_in, ncol)')
            return
        end if
        call report(c_inloop_model_jacobian_f32(self%handle, c_loc(x), size(x, 2, c_int64_t), c_loc(j)), stat, errmsg)
    end subroutine

    subroutine jacobian_r64(self, x, j, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:,:)
        real(real64), intent(inout), contiguous, target :: j(:,:,:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        if (.not. derivative_sizes_ok(self, size(x, 1, int64), size(j, 1, int64), size(x, 2, int64), size(j, 3, int64), &
                                      .true., .false., stat, errmsg)) return
        if (size(j, 2) /= size(x, 1)) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'jacobian: J must be J(n_out, n_in, ncol)')
            return
        end if
        call report(c_inloop_model_jacobian_f64(self%handle, c_loc(x), size(x, 2, c_int64_t), c_loc(j)), stat, errmsg)
    end subroutine

    subroutine report(code, stat, errmsg, message)
        integer(c_int32_t), intent(in) :: code
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        character(len=*), intent(in), optional :: message
        character(len=:), allocatable :: text
        if (present(stat)) stat = int(code)
        if (code == INLOOP_OK) return
        if (present(message)) then
            text = message
        else
            text = c_string(c_inloop_last_error())
            if (len(text) == 0) text = c_string(c_inloop_status_string(code))
        end if
        if (present(stat)) then
            if (present(errmsg)) errmsg = text
        else
            write (error_unit, '(a)') 'inloop: ' // text
            flush (error_unit)   ! before error stop's own output (stderr may be buffered when redirected)
            error stop 1
        end if
    end subroutine

    !> Copies a NUL-terminated C string into a Fortran string ("" for a NULL pointer).
    function c_string(p) result(s)
        type(c_ptr), intent(in) :: p
        character(len=:), allocatable :: s
        character(kind=c_char), pointer :: chars(:)
        integer :: i, n
        if (.not. c_associated(p)) then
            s = ''
            return
        end if
        n = int(c_strlen(p))
        call c_f_pointer(p, chars, [n])
        allocate (character(len=n) :: s)
        do i = 1, n
            s(i:i) = chars(i)
        end do
    end function

    function itoa(i) result(s)
        integer(int64), intent(in) :: i
        character(len=:), allocatable :: s
        character(len=24) :: buf
        write (buf, '(i0)') i
        s = trim(buf)
    end function

end module inloop
