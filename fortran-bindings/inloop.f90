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
!>    (statuses are `integer(c_int32_t)`, handles `type(c_ptr)`, strings `type(c_ptr)` to C strings;
!>    indices are 0-based there, as in C);
!>  * `type(inloop_model)`, `type(inloop_arg)` and the `inloop_*` module procedures: the idiomatic layer
!>    (indices of inputs and outputs are 1-based).
!>
!> Shapes: a Fortran array is the ONNX tensor with its dimensions reversed, the batch last, with no copy:
!>     ONNX input (N, C, H, W)  <->  real(real32 or real64) :: x(W, H, C, N)
!>     ONNX input (N, C, L)     <->  x(L, C, N)
!>     ONNX input (N, F)        <->  x(F, N)              (the native format's x(n_in, ncol))
!> `forward(x, y)` takes one input and one output, real(real32) or real(real64) arrays of any rank: the
!> model's per-sample shape in Fortran order (`input_shape(1)`) followed by the batch, or the per-sample
!> shape alone for one sample. Other shapes are INLOOP_ERR_SIZE_MISMATCH with both shapes in the message:
!>     real(real64) :: x(64, 64, 2, ncol), y(1, ncol)    ! cnn2d: (N, 2, 64, 64) -> (N, 1)
!>     call net%forward(x, y)
!> Models with several inputs or outputs run with `run` and arrays of `inloop_arg`, in model order:
!>     real(real64), target :: x1(4, 3, ncol), x2(4, ncol), y1(5, 3, ncol), y2(4, 4, ncol)
!>     call net%run([inloop_arg(x1), inloop_arg(x2)], [inloop_arg(y1), inloop_arg(y2)])
!> `inloop_arg` stores the address of its array: the array must be contiguous (else `run` fails with
!> INLOOP_ERR_INVALID_ARGUMENT) and have the TARGET or POINTER attribute, and all arrays of one call must
!> be of one kind.
!>
!> Errors, as in `allocate`: every idiomatic call has optional `stat` and `errmsg` arguments.
!>  * `stat` present: the call never stops the program; `stat` is the status (`INLOOP_OK` = 0 or one of the
!>    `INLOOP_ERR_*` constants) and, on error, `errmsg` (if present) receives the message, truncated or
!>    blank-padded to its length. On success `errmsg` is left unchanged.
!>  * `stat` absent: an error writes "inloop: <message>" to `error_unit` and executes `error stop`.
!>
!> Copies: `type(inloop_model)` holds a C handle (and, read at load, its inputs' and outputs' shapes, so
!> that `forward` and `run` check shapes without a library call). Intrinsic assignment (`b = a`) copies the handle, so
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
    public :: c_inloop_set_max_workspace_bytes, c_inloop_get_max_workspace_bytes
    public :: c_inloop_model_load, c_inloop_model_load_buffer, c_inloop_model_free
    public :: c_inloop_model_num_inputs, c_inloop_model_num_outputs
    public :: c_inloop_model_input_size, c_inloop_model_output_size
    public :: c_inloop_model_input_name, c_inloop_model_output_name
    public :: c_inloop_model_forward_f32, c_inloop_model_forward_f64
    public :: c_inloop_model_forward_sized_f32, c_inloop_model_forward_sized_f64
    public :: c_inloop_model_set_check_finite, c_inloop_model_set_reproducible
    public :: c_inloop_model_input_rank, c_inloop_model_output_rank
    public :: c_inloop_model_input_shape, c_inloop_model_output_shape
    public :: c_inloop_model_input_index, c_inloop_model_output_index
    public :: c_inloop_model_run_f32, c_inloop_model_run_f64
    public :: c_inloop_model_run_shaped_f32, c_inloop_model_run_shaped_f64, c_inloop_model_output_shapes
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
        function c_inloop_set_max_workspace_bytes(per_sample, total) bind(C, name="inloop_set_max_workspace_bytes") &
                result(status)
            import :: c_int64_t, c_int32_t
            integer(c_int64_t), value :: per_sample, total
            integer(c_int32_t) :: status
        end function
        function c_inloop_get_max_workspace_bytes(per_sample, total) bind(C, name="inloop_get_max_workspace_bytes") &
                result(status)
            import :: c_int64_t, c_int32_t
            integer(c_int64_t), intent(out) :: per_sample, total
            integer(c_int32_t) :: status
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
        !> Per-sample rank of input `index` (0-based): the number of dimensions without the batch one.
        function c_inloop_model_input_rank(model, index, rank) bind(C, name="inloop_model_input_rank") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: index
            integer(c_int64_t), intent(out) :: rank
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_output_rank(model, index, rank) bind(C, name="inloop_model_output_rank") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: index
            integer(c_int64_t), intent(out) :: rank
            integer(c_int32_t) :: status
        end function
        !> Per-sample shape of input `index` in ONNX (C, row-major) order, e.g. (C, H, W): the REVERSE of
        !> the Fortran shape x(W, H, C, batch). dims has room for max_dims values.
        function c_inloop_model_input_shape(model, index, dims, max_dims) bind(C, name="inloop_model_input_shape") &
                result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: index, max_dims
            integer(c_int64_t), intent(out) :: dims(*)
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_output_shape(model, index, dims, max_dims) bind(C, name="inloop_model_output_shape") &
                result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: index, max_dims
            integer(c_int64_t), intent(out) :: dims(*)
            integer(c_int32_t) :: status
        end function
        !> 0-based index of the input named `name` (NUL-terminated: pass trim(name)//c_null_char).
        function c_inloop_model_input_index(model, name, index) bind(C, name="inloop_model_input_index") result(status)
            import :: c_ptr, c_char, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            character(kind=c_char), intent(in) :: name(*)
            integer(c_int64_t), intent(out) :: index
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_output_index(model, name, index) bind(C, name="inloop_model_output_index") result(status)
            import :: c_ptr, c_char, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            character(kind=c_char), intent(in) :: name(*)
            integer(c_int64_t), intent(out) :: index
            integer(c_int32_t) :: status
        end function
        !> Runs the model on `batch` samples. inputs(1:n_inputs) and outputs(1:n_outputs) are the c_loc of
        !> contiguous arrays in model order, each of batch x prod(per-sample dims) values. No size check
        !> beyond the counts: the idiomatic `run` checks the Fortran shapes first.
        function c_inloop_model_run_f32(model, batch, n_inputs, inputs, n_outputs, outputs) &
                bind(C, name="inloop_model_run_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: batch, n_inputs, n_outputs
            type(c_ptr), intent(in) :: inputs(*), outputs(*)
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_run_f64(model, batch, n_inputs, inputs, n_outputs, outputs) &
                bind(C, name="inloop_model_run_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: batch, n_inputs, n_outputs
            type(c_ptr), intent(in) :: inputs(*), outputs(*)
            integer(c_int32_t) :: status
        end function
        !> Full shapes (ONNX order): in_ranks(n_inputs), in_dims (all inputs' dimensions, one input after
        !> another), out_capacity(n_outputs) values of room per output; the output shapes go to
        !> out_ranks/out_dims (c_null_ptr for both: not reported). See Include/inloop.h.
        function c_inloop_model_run_shaped_f32(model, n_inputs, in_ranks, in_dims, inputs, n_outputs, out_capacity, &
                outputs, out_ranks, out_dims, max_out_dims) bind(C, name="inloop_model_run_shaped_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: n_inputs, n_outputs, max_out_dims
            integer(c_int64_t), intent(in) :: in_ranks(*), in_dims(*), out_capacity(*)
            type(c_ptr), intent(in) :: inputs(*), outputs(*)
            type(c_ptr), value :: out_ranks, out_dims
            integer(c_int32_t) :: status
        end function
        function c_inloop_model_run_shaped_f64(model, n_inputs, in_ranks, in_dims, inputs, n_outputs, out_capacity, &
                outputs, out_ranks, out_dims, max_out_dims) bind(C, name="inloop_model_run_shaped_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: n_inputs, n_outputs, max_out_dims
            integer(c_int64_t), intent(in) :: in_ranks(*), in_dims(*), out_capacity(*)
            type(c_ptr), intent(in) :: inputs(*), outputs(*)
            type(c_ptr), value :: out_ranks, out_dims
            integer(c_int32_t) :: status
        end function
        !> The output shapes for given input shapes, without running.
        function c_inloop_model_output_shapes(model, n_inputs, in_ranks, in_dims, n_outputs, out_ranks, out_dims, &
                max_out_dims) bind(C, name="inloop_model_output_shapes") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: model
            integer(c_int64_t), value :: n_inputs, n_outputs, max_out_dims
            integer(c_int64_t), intent(in) :: in_ranks(*), in_dims(*)
            integer(c_int64_t), intent(out) :: out_ranks(*), out_dims(*)
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
        function c_inloop_trainer_create_from_model(model, config, trainer) &
            bind(C, name="inloop_trainer_create_from_model") result(status)
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
        function c_inloop_trainer_step_sized_f32(trainer, x, n_in, batch_x, y, n_out, batch_y, loss) &
                bind(C, name="inloop_trainer_step_sized_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, x, y, loss
            integer(c_int64_t), value :: n_in, batch_x, n_out, batch_y
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_step_sized_f64(trainer, x, n_in, batch_x, y, n_out, batch_y, loss) &
                bind(C, name="inloop_trainer_step_sized_f64") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, x, y, loss
            integer(c_int64_t), value :: n_in, batch_x, n_out, batch_y
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_evaluate_f32(trainer, x, y, batch, loss) &
            bind(C, name="inloop_trainer_evaluate_f32") result(status)
            import :: c_ptr, c_int64_t, c_int32_t
            type(c_ptr), value :: trainer, x, y, loss
            integer(c_int64_t), value :: batch
            integer(c_int32_t) :: status
        end function
        function c_inloop_trainer_evaluate_f64(trainer, x, y, batch, loss) &
            bind(C, name="inloop_trainer_evaluate_f64") result(status)
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
        function c_inloop_trainer_loss_history(trainer, losses, capacity, count) &
            bind(C, name="inloop_trainer_loss_history") result(status)
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
        function c_inloop_trainer_load_checkpoint_mpi(path, comm, trainer) &
            bind(C, name="inloop_trainer_load_checkpoint_mpi") result(status)
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
    public :: inloop_set_max_workspace_bytes, inloop_get_max_workspace_bytes
    public :: inloop_arg

    integer, parameter :: max_rank = 15   ! the largest rank of a Fortran array

    ! Per-sample shapes of a model's inputs (or outputs) in Fortran order, read from the library once at
    ! load so that `forward` and `run` check array shapes without a library call.
    type :: io_shapes
        integer, allocatable :: rank(:)            ! rank(i): per-sample rank of input (output) i
        integer(int64), allocatable :: dims(:,:)   ! dims(1:rank(i), i): its per-sample shape, Fortran order
    end type io_shapes

    !> A loaded model. Default-initialized objects hold no model (`is_loaded()` is false).
    type, public :: inloop_model
        private
        type(c_ptr) :: handle = c_null_ptr
        type(io_shapes) :: ins, outs   ! allocated exactly when handle is set
    contains
        procedure :: load => model_load                  !< load(path [, stat, errmsg, comm])
        procedure :: load_buffer => model_load_buffer    !< load_buffer(bytes [, stat, errmsg])
        procedure :: free => model_free                  !< free([stat, errmsg]); no-op if nothing loaded
        procedure :: is_loaded => model_is_loaded        !< .true. if this object holds a handle
        procedure :: input_size => model_input_size      !< values per sample in x (first input)
        procedure :: output_size => model_output_size    !< values per sample in y (first output)
        procedure :: input_name => model_input_name      !< input_name([i] [, stat, errmsg]): name of input i (1)
        procedure :: output_name => model_output_name    !< output_name([i] [, stat, errmsg])
        procedure :: num_inputs => model_num_inputs      !< num_inputs([stat, errmsg])
        procedure :: num_outputs => model_num_outputs    !< num_outputs([stat, errmsg])
        procedure :: input_shape => model_input_shape    !< input_shape(i [, stat, errmsg]): per-sample, Fortran order
        procedure :: output_shape => model_output_shape  !< output_shape(i [, stat, errmsg])
        procedure :: input_index => model_input_index    !< input_index(name [, stat, errmsg]): 1-based
        procedure :: output_index => model_output_index  !< output_index(name [, stat, errmsg])
        procedure :: set_check_finite => model_set_check_finite  !< set_check_finite(enabled [, stat, errmsg])
        procedure :: set_reproducible => model_set_reproducible  !< set_reproducible(enabled [, stat, errmsg])
        procedure :: c_handle => model_c_handle          !< the raw handle, for the c_inloop_* interfaces
        procedure, private :: forward_r32, forward_r64
        !> forward(x, y [, stat, errmsg]): one input, one output; x and y real(real32) or real(real64)
        !> arrays of any rank: per-sample shape (Fortran order) followed by the batch dimension, or the
        !> per-sample shape alone for one sample.
        generic :: forward => forward_r32, forward_r64
        procedure :: run => model_run                    !< run(inputs, outputs [, stat, errmsg]): inloop_arg arrays
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

    !> One input or output array of `run`, made by `inloop_arg(array)`: it holds the array's address,
    !> kind and shape, not a copy. The array must be contiguous and have the TARGET (or POINTER)
    !> attribute, and must still exist, unmoved, when `run` is called.
    type :: inloop_arg
        private
        type(c_ptr) :: address = c_null_ptr
        integer :: kind = 0                          ! real32 or real64; 0: not made by inloop_arg()
        integer :: rank = 0
        integer(int64) :: shape(max_rank) = 0
        logical :: contiguous = .true.
    end type inloop_arg

    !> inloop_arg(array): describes a real(real32) or real(real64) array of any rank for `run`.
    interface inloop_arg
        module procedure arg_r32, arg_r64
    end interface inloop_arg

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

    !> Work-space limits in bytes (process-wide): per sample (default 1 GiB) and per batch / largest
    !> allocation (default 16 GiB); a model or batch over a limit fails with INLOOP_ERR_OUT_OF_MEMORY.
    !> 0 restores a default; a negative value is INLOOP_ERR_INVALID_ARGUMENT.
    subroutine inloop_set_max_workspace_bytes(per_sample, total, stat, errmsg)
        integer(int64), intent(in) :: per_sample, total
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        call report(c_inloop_set_max_workspace_bytes(int(per_sample, c_int64_t), int(total, c_int64_t)), stat, errmsg)
    end subroutine

    !> The current work-space limits in bytes.
    subroutine inloop_get_max_workspace_bytes(per_sample, total)
        integer(int64), intent(out) :: per_sample, total
        integer(c_int64_t) :: p, t
        integer(c_int32_t) :: status
        status = c_inloop_get_max_workspace_bytes(p, t)
        per_sample = int(p, int64)
        total = int(t, int64)
    end subroutine

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
        if (code == INLOOP_OK) then
            call take_handle(self, new, stat, errmsg)
        else
            call report(code, stat, errmsg)
        end if
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
        if (code == INLOOP_OK) then
            call take_handle(self, new, stat, errmsg)
        else
            call report(code, stat, errmsg)
        end if
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
        if (code == INLOOP_OK .or. code == INLOOP_ERR_INVALID_HANDLE) call forget_handle(self)
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

    !> Name of input i (default 1, the first), e.g. "x". "" on error (with stat present).
    function model_input_name(self, i, stat, errmsg) result(s)
        class(inloop_model), intent(in) :: self
        integer, intent(in), optional :: i
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        character(len=:), allocatable :: s
        s = io_name(self, .true., i, stat, errmsg)
    end function

    !> Name of output i (default 1, the first), e.g. "y". "" on error (with stat present).
    function model_output_name(self, i, stat, errmsg) result(s)
        class(inloop_model), intent(in) :: self
        integer, intent(in), optional :: i
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        character(len=:), allocatable :: s
        s = io_name(self, .false., i, stat, errmsg)
    end function

    !> Number of inputs of the model (arrays `run` takes as `inputs`). -1 on error (with stat present).
    integer function model_num_inputs(self, stat, errmsg) result(n)
        class(inloop_model), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        n = io_count(self, .true., stat, errmsg)
    end function

    !> Number of outputs of the model. -1 on error (with stat present).
    integer function model_num_outputs(self, stat, errmsg) result(n)
        class(inloop_model), intent(in) :: self
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        n = io_count(self, .false., stat, errmsg)
    end function

    !> Per-sample shape of input i (1-based) in Fortran order: the ONNX input (N, C, H, W) gives
    !> [W, H, C], to be completed with the batch as x(W, H, C, N). A zero-sized array on error.
    function model_input_shape(self, i, stat, errmsg) result(dims)
        class(inloop_model), intent(in) :: self
        integer, intent(in) :: i
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64), allocatable :: dims(:)
        dims = io_shape(self, .true., i, stat, errmsg)
    end function

    !> Per-sample shape of output i (1-based) in Fortran order (see input_shape).
    function model_output_shape(self, i, stat, errmsg) result(dims)
        class(inloop_model), intent(in) :: self
        integer, intent(in) :: i
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64), allocatable :: dims(:)
        dims = io_shape(self, .false., i, stat, errmsg)
    end function

    !> Position (1-based) of the input named `name` (trailing blanks ignored) in the model's input order,
    !> the order of `run`'s inputs. 0 on error, e.g. no such input (with stat present).
    integer function model_input_index(self, name, stat, errmsg) result(i)
        class(inloop_model), intent(in) :: self
        character(len=*), intent(in) :: name
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int64_t) :: index
        integer(c_int32_t) :: code
        code = c_inloop_model_input_index(self%handle, trim(name) // c_null_char, index)
        i = 0
        if (code == INLOOP_OK) i = int(index) + 1
        call report(code, stat, errmsg)
    end function

    !> Position (1-based) of the output named `name` in the model's output order. 0 on error.
    integer function model_output_index(self, name, stat, errmsg) result(i)
        class(inloop_model), intent(in) :: self
        character(len=*), intent(in) :: name
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int64_t) :: index
        integer(c_int32_t) :: code
        code = c_inloop_model_output_index(self%handle, trim(name) // c_null_char, index)
        i = 0
        if (code == INLOOP_OK) i = int(index) + 1
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
    ! Layout: the library takes one contiguous buffer per input and output holding the batch's samples one
    ! after the other, each sample row-major in ONNX order, e.g. (C, H, W). That is exactly the memory of
    ! the Fortran array x(W, H, C, batch): the Fortran shape is the ONNX shape reversed, with the batch
    ! last. So forward and run pass the arrays' addresses (zero copy), after checking their shapes against
    ! the model's per-sample shapes (the library's run entry points take no sizes: the check is the
    ! Fortran layer's job, and it needs no library call):
    !   rank(x) = per-sample rank + 1:  the last dimension is the batch, the others the per-sample shape;
    !   rank(x) = per-sample rank:      one sample (batch 1), e.g. x(n_in) -> y(n_out).
    !
    ! The dummies of forward are `contiguous, target`: contiguous actual arguments are passed without a
    ! copy; for a non-contiguous actual argument (e.g. x(:, 1:n:2)) the compiler passes a contiguous
    ! temporary and copies y back afterwards. y is intent(inout) so that a failed call leaves y unchanged
    ! even when it is such a temporary (the library writes nothing on error).
    !
    ! Zero samples: a no-op that succeeds (y is untouched), so that a rank or block with no columns needs
    ! no special case; the shapes and the handle are still checked, giving the errors a call with samples
    ! would give.
    !
    ! gfortran 12: for a zero-sized section that it packs into a temporary (e.g. x(2:4, 1:0)), size(x, k)
    ! of the `contiguous` assumed-rank dummy is -1 instead of 0; extents are therefore read as max(0, .).

    subroutine forward_r32(self, x, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real32), intent(in), contiguous, target :: x(..)
        real(real32), intent(inout), contiguous, target :: y(..)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64) :: sx(max_rank), sy(max_rank), batch
        type(c_ptr) :: px(1), py(1)
        integer :: k
        logical :: go
        do k = 1, rank(x)
            sx(k) = max(0_int64, size(x, k, int64))   ! max: see "gfortran 12" above
        end do
        do k = 1, rank(y)
            sy(k) = max(0_int64, size(y, k, int64))   ! max: see "gfortran 12" above
        end do
        call forward_prepare(self, sx(1:rank(x)), sy(1:rank(y)), batch, go, stat, errmsg)
        if (.not. go) return
        px(1) = c_loc(empty_r32)
        py(1) = c_loc(empty_r32)
        if (size(x) > 0) px(1) = c_loc(x)
        if (size(y) > 0) py(1) = c_loc(y)
        call report(c_inloop_model_run_f32(self%handle, batch, 1_c_int64_t, px, 1_c_int64_t, py), stat, errmsg)
    end subroutine

    subroutine forward_r64(self, x, y, stat, errmsg)
        class(inloop_model), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(..)
        real(real64), intent(inout), contiguous, target :: y(..)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64) :: sx(max_rank), sy(max_rank), batch
        type(c_ptr) :: px(1), py(1)
        integer :: k
        logical :: go
        do k = 1, rank(x)
            sx(k) = max(0_int64, size(x, k, int64))   ! max: see "gfortran 12" above
        end do
        do k = 1, rank(y)
            sy(k) = max(0_int64, size(y, k, int64))   ! max: see "gfortran 12" above
        end do
        call forward_prepare(self, sx(1:rank(x)), sy(1:rank(y)), batch, go, stat, errmsg)
        if (.not. go) return
        px(1) = c_loc(empty_r64)
        py(1) = c_loc(empty_r64)
        if (size(x) > 0) px(1) = c_loc(x)
        if (size(y) > 0) py(1) = c_loc(y)
        call report(c_inloop_model_run_f64(self%handle, batch, 1_c_int64_t, px, 1_c_int64_t, py), stat, errmsg)
    end subroutine

    !> Checks forward's arguments (shapes sx of x and sy of y). go: call the library with `batch` samples;
    !> otherwise the outcome (an error, or success for zero samples) has been reported.
    subroutine forward_prepare(self, sx, sy, batch, go, stat, errmsg)
        class(inloop_model), intent(in) :: self
        integer(int64), intent(in) :: sx(:), sy(:)
        integer(int64), intent(out) :: batch
        logical, intent(out) :: go
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64) :: by
        go = .false.
        batch = -1
        if (.not. allocated(self%ins%rank)) then
            call report_handle(self, .false., stat, errmsg)
            return
        end if
        if (size(self%ins%rank) /= 1 .or. size(self%outs%rank) /= 1) then
            call report(INLOOP_ERR_INVALID_ARGUMENT, stat, errmsg, 'forward: the model has ' // &
                        counted(size(self%ins%rank), 'input') // ' and ' // counted(size(self%outs%rank), 'output') // &
                        ' but forward takes one of each: use run(inputs, outputs) with inloop_arg(array)')
            return
        end if
        batch = samples(sx, self%ins, 1)
        if (batch < 0) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, shape_mismatch(self, 'forward', 'x', sx, .true., 1))
            return
        end if
        by = samples(sy, self%outs, 1)
        if (by < 0) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, shape_mismatch(self, 'forward', 'y', sy, .false., 1))
            return
        end if
        if (by /= batch) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'forward: ' // holds('x', sx, self%ins%rank(1)) // &
                        ' but ' // holds('y', sy, self%outs%rank(1)))
            return
        end if
        if (batch == 0) then
            call report_handle(self, .true., stat, errmsg)
            return
        end if
        go = .true.
    end subroutine

    ! ----------------------------------------------------------------------------- run

    !> inloop_arg(array) for real(real32) arrays (see the type inloop_arg).
    function arg_r32(array) result(arg)
        real(real32), intent(in), target :: array(..)
        type(inloop_arg) :: arg
        integer :: k
        arg%kind = real32
        arg%rank = rank(array)
        do k = 1, rank(array)
            arg%shape(k) = size(array, k, int64)
        end do
        arg%contiguous = is_contiguous(array)
        arg%address = c_loc(empty_r32)
        if (arg%contiguous .and. size(array) > 0) arg%address = c_loc(array)
    end function

    !> inloop_arg(array) for real(real64) arrays (see the type inloop_arg).
    function arg_r64(array) result(arg)
        real(real64), intent(in), target :: array(..)
        type(inloop_arg) :: arg
        integer :: k
        arg%kind = real64
        arg%rank = rank(array)
        do k = 1, rank(array)
            arg%shape(k) = size(array, k, int64)
        end do
        arg%contiguous = is_contiguous(array)
        arg%address = c_loc(empty_r64)
        if (arg%contiguous .and. size(array) > 0) arg%address = c_loc(array)
    end function

    !> Runs a model with any number of inputs and outputs:
    !>     call net%run([inloop_arg(x1), inloop_arg(x2)], [inloop_arg(y1), inloop_arg(y2)])
    !> inputs(i) is the model's input i and outputs(j) its output j (see input_index/output_index). Each
    !> array's shape is the per-sample shape in Fortran order (input_shape(i)) followed by the batch, the
    !> same batch for all arrays, or the per-sample shape alone for one sample. All arrays must be of one
    !> kind: real(real32) (read and written in place) or real(real64) (converted on the way in and out).
    !> Mixed kinds, arrays not made by inloop_arg, non-contiguous arrays: INLOOP_ERR_INVALID_ARGUMENT;
    !> wrong counts or shapes: INLOOP_ERR_SIZE_MISMATCH. On error no output is written.
    subroutine model_run(self, inputs, outputs, stat, errmsg)
        class(inloop_model), intent(in) :: self
        type(inloop_arg), intent(in) :: inputs(:), outputs(:)
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(c_ptr) :: pin(size(inputs)), pout(size(outputs))
        integer(int64) :: batch, b
        character(len=:), allocatable :: first, label
        type(inloop_arg) :: a
        integer :: i, j, kind, r
        logical :: is_input
        integer(c_int32_t) :: code

        ! kinds and addresses first: they need no model
        kind = 0
        first = ''
        do i = 1, size(inputs) + size(outputs)
            a = arg_at(inputs, outputs, i)
            label = arg_label(size(inputs), i)
            if (a%kind == 0) then
                call report(INLOOP_ERR_INVALID_ARGUMENT, stat, errmsg, 'run: ' // label // &
                            ' was not made by inloop_arg(array)')
                return
            end if
            if (.not. a%contiguous) then
                call report(INLOOP_ERR_INVALID_ARGUMENT, stat, errmsg, 'run: ' // label // ' is not contiguous ' // &
                            '(an array section?): inloop_arg keeps the address of its array, so pass a contiguous ' // &
                            'array (copy the section into one)')
                return
            end if
            if (kind == 0) then
                kind = a%kind
                first = label
            else if (a%kind /= kind) then
                call report(INLOOP_ERR_INVALID_ARGUMENT, stat, errmsg, 'run: all arrays must be of one kind, but ' // &
                            first // ' is ' // kind_name(kind) // ' and ' // label // ' is ' // kind_name(a%kind))
                return
            end if
        end do

        if (.not. allocated(self%ins%rank)) then
            call report_handle(self, .false., stat, errmsg)
            return
        end if
        if (size(inputs) /= size(self%ins%rank) .or. size(outputs) /= size(self%outs%rank)) then
            call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'run: got ' // counted(size(inputs), 'input') // &
                        ' and ' // counted(size(outputs), 'output') // ' but the model has ' // &
                        counted(size(self%ins%rank), 'input') // ' (' // io_names(self, .true.) // ') and ' // &
                        counted(size(self%outs%rank), 'output') // ' (' // io_names(self, .false.) // ')')
            return
        end if

        ! shapes, and one batch for all
        batch = -1
        do i = 1, size(inputs) + size(outputs)
            is_input = i <= size(inputs)
            j = i
            if (.not. is_input) j = i - size(inputs)
            a = arg_at(inputs, outputs, i)
            label = arg_label(size(inputs), i)
            if (is_input) then
                b = samples(a%shape(1:a%rank), self%ins, j)
                r = self%ins%rank(j)
            else
                b = samples(a%shape(1:a%rank), self%outs, j)
                r = self%outs%rank(j)
            end if
            if (b < 0) then
                call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, &
                            shape_mismatch(self, 'run', label, a%shape(1:a%rank), is_input, j))
                return
            end if
            if (batch < 0) then
                batch = b
                first = holds(label, a%shape(1:a%rank), r)
            else if (b /= batch) then
                call report(INLOOP_ERR_SIZE_MISMATCH, stat, errmsg, 'run: ' // first // ' but ' // &
                            holds(label, a%shape(1:a%rank), r))
                return
            end if
        end do
        if (batch == 0) then
            call report_handle(self, .true., stat, errmsg)
            return
        end if

        pin = inputs%address
        pout = outputs%address
        if (kind == real32) then
            code = c_inloop_model_run_f32(self%handle, batch, size(inputs, kind=c_int64_t), pin, &
                                          size(outputs, kind=c_int64_t), pout)
        else
            code = c_inloop_model_run_f64(self%handle, batch, size(inputs, kind=c_int64_t), pin, &
                                          size(outputs, kind=c_int64_t), pout)
        end if
        call report(code, stat, errmsg)
    end subroutine

    ! ===================================================================== private helpers

    !> Takes the freshly loaded handle `new`: reads its input/output shapes, then frees the model the
    !> object held (if any; errors ignored, e.g. one freed through a copy) and keeps `new`. If the shapes
    !> cannot be read, `new` is freed, the object is left unchanged and the failure is reported.
    subroutine take_handle(self, new, stat, errmsg)
        class(inloop_model), intent(inout) :: self
        type(c_ptr), intent(in) :: new
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        type(io_shapes) :: ins, outs
        character(len=:), allocatable :: msg
        integer(c_int32_t) :: code, ignored
        call read_shapes(new, .true., ins, code, msg)
        if (code == INLOOP_OK) call read_shapes(new, .false., outs, code, msg)
        if (code /= INLOOP_OK) then
            if (len(msg) == 0) msg = c_string(c_inloop_last_error())   ! before the free below
            ignored = c_inloop_model_free(new)
            call report(code, stat, errmsg, msg)
            return
        end if
        if (c_associated(self%handle)) ignored = c_inloop_model_free(self%handle)
        self%handle = new
        call move_alloc(ins%rank, self%ins%rank)
        call move_alloc(ins%dims, self%ins%dims)
        call move_alloc(outs%rank, self%outs%rank)
        call move_alloc(outs%dims, self%outs%dims)
        call report(INLOOP_OK, stat, errmsg)
    end subroutine

    !> Per-sample shapes of all inputs (is_input) or outputs of a model, reversed into Fortran order.
    !> msg: "" (the library's message applies) or the Fortran layer's own.
    subroutine read_shapes(handle, is_input, io, code, msg)
        type(c_ptr), intent(in) :: handle
        logical, intent(in) :: is_input
        type(io_shapes), intent(out) :: io
        integer(c_int32_t), intent(out) :: code
        character(len=:), allocatable, intent(out) :: msg
        integer(c_int64_t) :: n, r, dims(max_rank)
        integer :: i
        msg = ''
        if (is_input) then
            code = c_inloop_model_num_inputs(handle, n)
        else
            code = c_inloop_model_num_outputs(handle, n)
        end if
        if (code /= INLOOP_OK) return
        allocate (io%rank(n), io%dims(max_rank, n))
        io%dims = 0
        do i = 1, int(n)
            if (is_input) then
                code = c_inloop_model_input_rank(handle, int(i - 1, c_int64_t), r)
            else
                code = c_inloop_model_output_rank(handle, int(i - 1, c_int64_t), r)
            end if
            if (code /= INLOOP_OK) return
            if (r < 0 .or. r >= max_rank) then
                code = INLOOP_ERR_UNSUPPORTED
                msg = 'model ' // trim(merge('input ', 'output', is_input)) // ' ' // itoa(int(i, int64)) // ' has ' // &
                      itoa(int(r, int64)) // ' dimensions per sample: too many for a Fortran array (at most ' // &
                      itoa(int(max_rank - 1, int64)) // ' besides the batch)'
                return
            end if
            if (is_input) then
                code = c_inloop_model_input_shape(handle, int(i - 1, c_int64_t), dims, int(max_rank, c_int64_t))
            else
                code = c_inloop_model_output_shape(handle, int(i - 1, c_int64_t), dims, int(max_rank, c_int64_t))
            end if
            if (code /= INLOOP_OK) return
            io%rank(i) = int(r)
            io%dims(1:r, i) = int(dims(r:1:-1), int64)
        end do
    end subroutine

    !> The object holds no model any more.
    subroutine forget_handle(self)
        class(inloop_model), intent(inout) :: self
        self%handle = c_null_ptr
        if (allocated(self%ins%rank)) deallocate (self%ins%rank)
        if (allocated(self%ins%dims)) deallocate (self%ins%dims)
        if (allocated(self%outs%rank)) deallocate (self%outs%rank)
        if (allocated(self%outs%dims)) deallocate (self%outs%dims)
    end subroutine

    !> Frees the model when the object goes out of scope or is deallocated. Never stops the program:
    !> errors (e.g. a handle already freed through a copy) are ignored.
    impure elemental subroutine model_finalize(self)
        type(inloop_model), intent(inout) :: self
        integer(c_int32_t) :: ignored
        if (c_associated(self%handle)) ignored = c_inloop_model_free(self%handle)
        call forget_handle(self)
    end subroutine

    !> Asks the library whether the object's handle is usable and reports its answer: its error (nothing
    !> loaded, freed through a copy), or, for a usable handle, success if zero_samples (a call with no
    !> samples is a no-op), else an internal error (an object with a live handle always has its shapes).
    subroutine report_handle(self, zero_samples, stat, errmsg)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: zero_samples
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int64_t) :: n
        integer(c_int32_t) :: code
        code = c_inloop_model_num_inputs(self%handle, n)
        if (code == INLOOP_OK .and. .not. zero_samples) then
            call report(INLOOP_ERR_INTERNAL, stat, errmsg, 'inloop module: the model''s shapes were not read at load')
        else
            call report(code, stat, errmsg)
        end if
    end subroutine

    !> Number of samples in an array of shape s for input (output) i of `io`: the last extent if the other
    !> extents are the per-sample shape, 1 if s is the per-sample shape itself, -1 if neither.
    pure integer(int64) function samples(s, io, i)
        integer(int64), intent(in) :: s(:)
        type(io_shapes), intent(in) :: io
        integer, intent(in) :: i
        integer :: r
        r = io%rank(i)
        samples = -1
        if (size(s) == r + 1) then
            if (all(s(1:r) == io%dims(1:r, i))) samples = s(r + 1)
        else if (size(s) == r) then
            if (all(s == io%dims(1:r, i))) samples = 1
        end if
    end function

    !> "run: inputs(2) has shape (64,64,3,8) but model input 2 'x2' is (64,64,2,N) in Fortran order
    !> = (N,2,64,64) in ONNX order (N: the batch, the last Fortran dimension; without it, one sample)"
    function shape_mismatch(self, where, label, s, is_input, i) result(msg)
        class(inloop_model), intent(in) :: self
        character(len=*), intent(in) :: where, label
        integer(int64), intent(in) :: s(:)
        logical, intent(in) :: is_input
        integer, intent(in) :: i
        character(len=:), allocatable :: msg, what, name, fortran, onnx
        integer(int64), allocatable :: d(:)
        integer :: n, ignored
        if (is_input) then
            d = self%ins%dims(1:self%ins%rank(i), i)
            n = size(self%ins%rank)
            what = 'input'
        else
            d = self%outs%dims(1:self%outs%rank(i), i)
            n = size(self%outs%rank)
            what = 'output'
        end if
        name = io_name(self, is_input, i, ignored)
        if (len(name) > 0) name = ' ''' // name // ''''
        if (n > 1) name = ' ' // itoa(int(i, int64)) // name
        if (size(d) > 0) then
            fortran = '(' // dims_list(d) // ',N)'
            onnx = '(N,' // dims_list(d(size(d):1:-1)) // ')'
        else
            fortran = '(N)'
            onnx = '(N)'
        end if
        if (size(s) == 0) then
            msg = where // ': ' // label // ' is a scalar'
        else
            msg = where // ': ' // label // ' has shape (' // dims_list(s) // ')'
        end if
        msg = msg // ' but model ' // what // name // ' is ' // fortran // ' in Fortran order = ' // onnx // &
              ' in ONNX order (N: the batch, the last Fortran dimension; without it, one sample)'
    end function

    !> "x holds 8 samples (size(x, 4))" or "x holds 1 sample (rank 3: one sample, no batch dimension)".
    function holds(label, s, r) result(msg)
        character(len=*), intent(in) :: label
        integer(int64), intent(in) :: s(:)
        integer, intent(in) :: r
        character(len=:), allocatable :: msg
        if (size(s) == r + 1) then
            msg = label // ' holds ' // counted(s(r + 1), 'sample') // ' (size(' // label // ', ' // itoa(int(r + 1, int64)) // '))'
        else
            msg = label // ' holds 1 sample (rank ' // itoa(int(r, int64)) // ': one sample, no batch dimension)'
        end if
    end function

    !> The i-th array of run's arguments: inputs first, then outputs.
    type(inloop_arg) function arg_at(inputs, outputs, i) result(a)
        type(inloop_arg), intent(in) :: inputs(:), outputs(:)
        integer, intent(in) :: i
        if (i <= size(inputs)) then
            a = inputs(i)
        else
            a = outputs(i - size(inputs))
        end if
    end function

    !> "inputs(2)" or "outputs(1)" for the i-th array of run's arguments.
    function arg_label(n_inputs, i) result(s)
        integer, intent(in) :: n_inputs, i
        character(len=:), allocatable :: s
        if (i <= n_inputs) then
            s = 'inputs(' // itoa(int(i, int64)) // ')'
        else
            s = 'outputs(' // itoa(int(i - n_inputs, int64)) // ')'
        end if
    end function

    !> "1 input", "2 inputs"
    function counted(n, noun) result(s)
        class(*), intent(in) :: n
        character(len=*), intent(in) :: noun
        character(len=:), allocatable :: s
        integer(int64) :: k
        select type (n)
        type is (integer)
            k = n
        type is (integer(int64))
            k = n
        class default
            k = -1
        end select
        s = itoa(k) // ' ' // noun
        if (k /= 1) s = s // 's'
    end function

    function kind_name(kind) result(s)
        integer, intent(in) :: kind
        character(len=:), allocatable :: s
        if (kind == real32) then
            s = 'real(real32)'
        else
            s = 'real(real64)'
        end if
    end function

    !> "64,64,2"
    function dims_list(d) result(s)
        integer(int64), intent(in) :: d(:)
        character(len=:), allocatable :: s
        integer :: k
        s = ''
        do k = 1, size(d)
            if (k > 1) s = s // ','
            s = s // itoa(d(k))
        end do
    end function

    !> Number of inputs (outputs), from the library; -1 on error.
    integer function io_count(self, is_input, stat, errmsg) result(n)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: is_input
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(c_int64_t) :: v
        integer(c_int32_t) :: code
        if (is_input) then
            code = c_inloop_model_num_inputs(self%handle, v)
        else
            code = c_inloop_model_num_outputs(self%handle, v)
        end if
        n = -1
        if (code == INLOOP_OK) n = int(v)
        call report(code, stat, errmsg)
    end function

    !> Checks a 1-based input (output) index against the library's count. If the handle is unusable or
    !> the index out of range, reports it and returns .false.
    logical function index_ok(self, is_input, i, what, stat, errmsg)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: is_input
        integer, intent(in) :: i
        character(len=*), intent(in) :: what
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer :: n, code
        n = io_count(self, is_input, code)
        index_ok = .false.
        if (code /= INLOOP_OK) then
            call report(int(code, c_int32_t), stat, errmsg)
        else if (i < 1 .or. i > n) then
            call report(INLOOP_ERR_INVALID_ARGUMENT, stat, errmsg, what // ': index ' // itoa(int(i, int64)) // &
                        ' is out of range: the model has ' // counted(n, trim(merge('input ', 'output', is_input))) // &
                        ' (1 to ' // itoa(int(n, int64)) // ')')
        else
            index_ok = .true.
        end if
    end function

    !> Name of input (output) i (1-based, default 1); "" on error.
    function io_name(self, is_input, i, stat, errmsg) result(s)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: is_input
        integer, intent(in), optional :: i
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        character(len=:), allocatable :: s
        type(c_ptr) :: p
        integer :: k
        integer(c_int32_t) :: code
        k = 1
        if (present(i)) k = i
        s = ''
        if (.not. index_ok(self, is_input, k, trim(merge('input_name ', 'output_name', is_input)), stat, errmsg)) return
        if (is_input) then
            code = c_inloop_model_input_name(self%handle, int(k - 1, c_int64_t), p)
        else
            code = c_inloop_model_output_name(self%handle, int(k - 1, c_int64_t), p)
        end if
        if (code == INLOOP_OK) s = c_string(p)
        call report(code, stat, errmsg)
    end function

    !> Per-sample shape of input (output) i in Fortran order, from the library; zero-sized on error.
    function io_shape(self, is_input, i, stat, errmsg) result(dims)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: is_input
        integer, intent(in) :: i
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        integer(int64), allocatable :: dims(:)
        integer(c_int64_t) :: r, d(max_rank)
        integer(c_int32_t) :: code
        allocate (dims(0))
        if (.not. index_ok(self, is_input, i, trim(merge('input_shape ', 'output_shape', is_input)), stat, errmsg)) return
        if (is_input) then
            code = c_inloop_model_input_rank(self%handle, int(i - 1, c_int64_t), r)
        else
            code = c_inloop_model_output_rank(self%handle, int(i - 1, c_int64_t), r)
        end if
        if (code == INLOOP_OK .and. (r < 0 .or. r > max_rank)) then
            call report(INLOOP_ERR_UNSUPPORTED, stat, errmsg, trim(merge('input_shape ', 'output_shape', is_input)) // &
                        ': the library reports ' // itoa(int(r, int64)) // ' dimensions per sample')
            return
        end if
        if (code == INLOOP_OK) then
            if (is_input) then
                code = c_inloop_model_input_shape(self%handle, int(i - 1, c_int64_t), d, int(max_rank, c_int64_t))
            else
                code = c_inloop_model_output_shape(self%handle, int(i - 1, c_int64_t), d, int(max_rank, c_int64_t))
            end if
        end if
        if (code == INLOOP_OK) dims = int(d(r:1:-1), int64)
        call report(code, stat, errmsg)
    end function

    !> "x1, x2": the names of all inputs (outputs), for messages.
    function io_names(self, is_input) result(s)
        class(inloop_model), intent(in) :: self
        logical, intent(in) :: is_input
        character(len=:), allocatable :: s
        integer :: i, n, code
        n = io_count(self, is_input, code)
        s = ''
        do i = 1, n
            if (i > 1) s = s // ', '
            s = s // io_name(self, is_input, i, code)
        end do
    end function

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
        if (code == INLOOP_OK) then
            call take_handle(model, h, stat, errmsg)   ! frees the model it held, reads the shapes
        else
            call report(code, stat, errmsg)
        end if
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
        type(c_ptr) :: px, py
        ! The shapes are checked inside the C call: on a data-parallel trainer a wrong shape on one rank
        ! must fail the step on every rank, not leave the others waiting in the collective.
        px = c_null_ptr
        py = c_null_ptr
        if (size(x) > 0) px = c_loc(x)
        if (size(y) > 0) py = c_loc(y)
        l = 0
        call report(c_inloop_trainer_step_sized_f32(self%handle, px, size(x, 1, c_int64_t), size(x, 2, c_int64_t), &
                                                    py, size(y, 1, c_int64_t), size(y, 2, c_int64_t), c_loc(l)), stat, errmsg)
        if (present(loss)) loss = l
    end subroutine

    subroutine step_r64(self, x, y, loss, stat, errmsg)
        class(inloop_trainer), intent(in) :: self
        real(real64), intent(in), contiguous, target :: x(:,:), y(:,:)
        real(real64), intent(out), optional :: loss
        integer, intent(out), optional :: stat
        character(len=*), intent(inout), optional :: errmsg
        real(c_double), target :: l
        type(c_ptr) :: px, py
        ! The shapes are checked inside the C call: on a data-parallel trainer a wrong shape on one rank
        ! must fail the step on every rank, not leave the others waiting in the collective.
        px = c_null_ptr
        py = c_null_ptr
        if (size(x) > 0) px = c_loc(x)
        if (size(y) > 0) py = c_loc(y)
        l = 0
        call report(c_inloop_trainer_step_sized_f64(self%handle, px, size(x, 1, c_int64_t), size(x, 2, c_int64_t), &
                                                    py, size(y, 1, c_int64_t), size(y, 2, c_int64_t), c_loc(l)), stat, errmsg)
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

    !> Delivers a status the `allocate` way (see the module header). The message is `message` if given,
    !> else the library's last error (else the status description).
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
