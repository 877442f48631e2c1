#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import InLoopCore
import InLoopFormats
import InLoopMPI

// The C ABI of libInLoop.so. Each function validates its arguments, calls the core, and maps
// errors to a status code; the compiler writes these declarations (with these comments) into a
// C header that tools/gen_header.py turns into Include/inloop.h.
//
// Conventions: sizes are int64_t; x holds `batch` contiguous samples of n_in values (the memory
// of a Fortran array x(n_in, batch)); handles are opaque; nothing here ever aborts the process.

private nonisolated(unsafe) let versionCString: UnsafeMutablePointer<CChar> = strdup(InLoopVersion.string)
private nonisolated(unsafe) let statusCStrings: [UnsafeMutablePointer<CChar>] =
    (0...12).map { strdup((inloop_status(rawValue: Int32($0)) ?? .INLOOP_ERR_INTERNAL).text) }
private nonisolated(unsafe) let unknownStatusCString: UnsafeMutablePointer<CChar> = strdup("unknown InLoop status code")

// MARK: - Library

/// The InLoop version as "MAJOR.MINOR.PATCH". The string is static: do not free it.
/// Statuses: none (never fails).
/// Section: library.
@c public func inloop_version() -> UnsafePointer<CChar> {
    UnsafePointer(versionCString)
}

/// The message of the last failed InLoop call on the calling thread ("" if none failed yet).
/// It says what went wrong and where; it stays valid until the next failing call on this thread.
/// Statuses: none (never fails).
/// Section: library.
@c public func inloop_last_error() -> UnsafePointer<CChar> {
    lastErrorPointer()
}

/// A short static description of a status code, e.g. "INLOOP_ERR_IO: file cannot be read or written".
/// Unknown codes give "unknown InLoop status code". Never NULL; do not free.
/// Statuses: none (never fails).
/// Section: library.
@c public func inloop_status_string(_ status: Int32) -> UnsafePointer<CChar> {
    guard status >= 0, Int(status) < statusCStrings.count else { return UnsafePointer(unknownStatusCString) }
    return UnsafePointer(statusCStrings[Int(status)])
}

/// Sets the number of threads InLoop computes with, n >= 1. A forward of a batch-separable model (MLPs,
/// convolutions, pooling: every node per sample) with enough work splits the batch into n contiguous
/// slices, one per thread (the calling thread and n - 1 threads InLoop makes at the first such call and
/// parks while idle), with OpenBLAS at 1 thread inside them; other models and training steps run on the
/// calling thread with OpenBLAS at n threads. The two never stack.
/// Threads are the caller's to choose: under MPI, ranks per node x threads should not exceed the cores.
/// Statuses: INVALID_ARGUMENT (n < 1).
/// Section: library.
@c public func inloop_set_num_threads(_ n: Int32) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard n >= 1 else { throw InLoopError(.invalidArgument, "number of threads must be at least 1, got \(n)") }
        Engine.Threads.set(Int(n))
        ThreadPolicy.userChose()
    }
}

/// The number of threads the next InLoop call computes with: the caller's choice, else the default
/// (the cores this process may use divided by the MPI ranks on its node, from the launcher's
/// environment or a communicator), which every handle uses from its creation.
/// Statuses: none (never fails).
/// Section: library.
@c public func inloop_get_num_threads() -> Int32 {
    ThreadPolicy.applyDefault()
    return Int32(clamping: Engine.Threads.count)
}

// MARK: - Models

/// Loads a model file and stores a new handle in *model. The format is recognised by content, not by
/// name: a native InLoop .safetensors file, or an ONNX model (.onnx, default-domain operators). An
/// ONNX model's external data (weights in a file beside it, e.g. model.onnx.data as
/// torch.onnx.export(dynamo=True) writes them) is read from the model file's directory only (IO when
/// the data file is missing; FORMAT for a location outside that directory or a range past its end).
/// Free it with inloop_model_free. On error *model is set to NULL and the message names the file
/// and the problem.
/// Statuses: NULL_POINTER, IO, FORMAT, UNSUPPORTED, SIZE_MISMATCH (operands of a layer or node that do not
/// fit, e.g. a Gemm weight of the wrong shape), INVALID_ARGUMENT (a size out of range), OUT_OF_MEMORY.
/// Section: model.
@c public func inloop_model_load(_ path: UnsafePointer<CChar>?, _ model: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let model else { throw InLoopError(.nullPointer, "model_load: the output handle pointer is NULL") }
        model.pointee = nil
        guard let path else { throw InLoopError(.nullPointer, "model_load: path is NULL") }
        ThreadPolicy.applyDefault()
        let m = try ModelFile.load(path: String(cString: path))
        model.pointee = models.register(try ModelBox(m))
    }
}

/// Loads a model from `size` bytes of a model file in memory (e.g. read once and broadcast with MPI)
/// and stores a new handle in *model; either format, as inloop_model_load. The bytes are copied; the
/// caller keeps ownership of data. An ONNX model with external data is refused (UNSUPPORTED): load it
/// from its path.
/// Statuses: NULL_POINTER, INVALID_ARGUMENT (size < 0, a size out of range), FORMAT, UNSUPPORTED (also:
/// external data), SIZE_MISMATCH, OUT_OF_MEMORY.
/// Section: model.
@c public func inloop_model_load_buffer(_ data: UnsafeRawPointer?, _ size: Int64,
                                        _ model: UnsafeMutablePointer<OpaquePointer?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let model else { throw InLoopError(.nullPointer, "model_load_buffer: the output handle pointer is NULL") }
        model.pointee = nil
        guard let data else { throw InLoopError(.nullPointer, "model_load_buffer: data is NULL") }
        guard size >= 0 else { throw InLoopError(.invalidArgument, "model_load_buffer: size must be >= 0, got \(size)") }
        ThreadPolicy.applyDefault()
        let bytes = [UInt8](UnsafeRawBufferPointer(start: data, count: Int(size)))
        do throws(InLoopError) {
            model.pointee = models.register(try ModelBox(try ModelFile.load(bytes: bytes)))
        } catch {
            throw error.prefixed("model buffer")
        }
    }
}

/// Frees a model handle. NULL is a no-op (INLOOP_OK). Freeing a handle twice, or a handle that is
/// not InLoop's, returns INLOOP_ERR_INVALID_HANDLE and changes nothing.
/// Statuses: INVALID_HANDLE.
/// Section: model.
@c public func inloop_model_free(_ model: OpaquePointer?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let model else { return }
        try models.remove(model, "model_free")
    }
}

/// Stores the number of model inputs in *n (1 for a native version-1 model).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE.
/// Section: model.
@c public func inloop_model_num_inputs(_ model: OpaquePointer?, _ n: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let n else { throw InLoopError(.nullPointer, "num_inputs: n is NULL") }
        n.pointee = Int64(box.inputs.count)
    }
}

/// Stores the number of model outputs in *n (1 for a native version-1 model).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE.
/// Section: model.
@c public func inloop_model_num_outputs(_ model: OpaquePointer?, _ n: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let n else { throw InLoopError(.nullPointer, "num_outputs: n is NULL") }
        n.pointee = Int64(box.outputs.count)
    }
}

/// Stores the number of input values per sample (column) in *n_in: the product of the per-sample
/// dimensions of input 0 (for a model with several inputs, see inloop_model_input_shape); -1 when it
/// is not fixed (a symbolic dimension other than the batch: use inloop_model_run_shaped_f32).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE.
/// Section: model.
@c public func inloop_model_input_size(_ model: OpaquePointer?, _ n_in: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let m = try models.lookup(model).model
        guard let n_in else { throw InLoopError(.nullPointer, "input_size: n_in is NULL") }
        n_in.pointee = Int64(m.inputSize)
    }
}

/// Stores the number of output values per sample (column) in *n_out (of output 0); -1 when it is
/// not fixed (see inloop_model_output_shapes).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE.
/// Section: model.
@c public func inloop_model_output_size(_ model: OpaquePointer?, _ n_out: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let m = try models.lookup(model).model
        guard let n_out else { throw InLoopError(.nullPointer, "output_size: n_out is NULL") }
        n_out.pointee = Int64(m.outputSize)
    }
}

/// Stores in *name the name of input `index` (0-based). The string belongs to the model and stays
/// valid until inloop_model_free. INLOOP_ERR_INVALID_ARGUMENT for an index out of range.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (index out of
/// range).
/// Section: model.
@c public func inloop_model_input_name(_ model: OpaquePointer?, _ index: Int64,
                                       _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let name else { throw InLoopError(.nullPointer, "input_name: name is NULL") }
        let k = try box.index(index, input: true, "input_name")
        name.pointee = UnsafePointer(box.inputNames[k])
    }
}

/// Stores in *name the name of output `index` (0-based); see inloop_model_input_name.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (index out of
/// range).
/// Section: model.
@c public func inloop_model_output_name(_ model: OpaquePointer?, _ index: Int64,
                                        _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let name else { throw InLoopError(.nullPointer, "output_name: name is NULL") }
        let k = try box.index(index, input: false, "output_name")
        name.pointee = UnsafePointer(box.outputNames[k])
    }
}

/// Runs the model on `batch` samples: x holds batch x n_in floats (sample after sample, the memory of
/// a Fortran x(n_in, batch)), y receives batch x n_out floats. Zero-copy: x is read in place and the
/// last layer writes straight into y. y is untouched when an argument is wrong.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large, x and y overlap, a
/// model with more than one input or output: use inloop_model_run_f32), SIZE_MISMATCH (a batch other
/// than a fixed batch size, batch > 1 for a model without a batch axis), NONFINITE, BUSY, OUT_OF_MEMORY
/// (a batch over the work-space limit).
/// Section: running.
@c public func inloop_model_forward_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64,
                                        _ y: UnsafeMutablePointer<Float>?) -> inloop_status {
    forward(model, x, nil, batch, y, nil, runModel)
}

/// As inloop_model_forward_f32 for double arrays. A float32 model computes in float32, converting on the
/// way in and out; a float64 model computes in float64.
/// x is read completely before y is written, so x and y may be the same array.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large, x and y overlap, a
/// model with more than one input or output: use inloop_model_run_f32), SIZE_MISMATCH (a batch other
/// than a fixed batch size, batch > 1 for a model without a batch axis), NONFINITE, BUSY, OUT_OF_MEMORY
/// (a batch over the work-space limit).
/// Section: running.
@c public func inloop_model_forward_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ batch: Int64,
                                        _ y: UnsafeMutablePointer<Double>?) -> inloop_status {
    forward(model, x, nil, batch, y, nil, runModel)
}

/// As inloop_model_forward_f32, with the caller's sizes: n_in values per input sample and room for
/// n_out values per output sample, checked against the model (INLOOP_ERR_SIZE_MISMATCH).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large, x and y overlap),
/// SIZE_MISMATCH (n_in or n_out not the model's), NONFINITE, BUSY, OUT_OF_MEMORY (a batch over the work-
/// space limit).
/// Section: running.
@c public func inloop_model_forward_sized_f32(_ model: OpaquePointer?, _ x: UnsafePointer<Float>?, _ n_in: Int64,
                                              _ batch: Int64, _ y: UnsafeMutablePointer<Float>?, _ n_out: Int64) -> inloop_status {
    forward(model, x, n_in, batch, y, n_out, runModel)
}

/// As inloop_model_forward_f64, with the caller's sizes checked (see inloop_model_forward_sized_f32).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large, x and y overlap),
/// SIZE_MISMATCH (n_in or n_out not the model's), NONFINITE, BUSY, OUT_OF_MEMORY (a batch over the work-
/// space limit).
/// Section: running.
@c public func inloop_model_forward_sized_f64(_ model: OpaquePointer?, _ x: UnsafePointer<Double>?, _ n_in: Int64,
                                              _ batch: Int64, _ y: UnsafeMutablePointer<Double>?, _ n_out: Int64) -> inloop_status {
    forward(model, x, n_in, batch, y, n_out, runModel)
}

/// Stores in *rank the number of per-sample dimensions of input `index` (0-based), without the batch
/// axis: 3 for an ONNX input (N, C, H, W), 1 for a native version-1 model.
/// INLOOP_ERR_INVALID_ARGUMENT for an index out of range.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (index out of
/// range).
/// Section: model.
@c public func inloop_model_input_rank(_ model: OpaquePointer?, _ index: Int64, _ rank: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in try tensorRank(model, index, rank, input: true) }
}

/// Stores in *rank the number of per-sample dimensions of output `index`; see inloop_model_input_rank.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (index out of
/// range).
/// Section: model.
@c public func inloop_model_output_rank(_ model: OpaquePointer?, _ index: Int64, _ rank: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in try tensorRank(model, index, rank, input: false) }
}

/// Stores the per-sample dimensions of input `index` in dims[0 .. rank-1], in ONNX (row-major) order
/// without the batch axis: (C, H, W) for an (N, C, H, W) input, which is the Fortran array
/// x(W, H, C, batch). An input that does not lead with the batch (a mask [K], a scalar, weights given
/// as an input) reports its whole shape, which it takes whatever the batch; a symbolic dimension other
/// than the batch is -1 (run such a model with inloop_model_run_shaped_f32/_f64).
/// dims has room for max_dims values; INLOOP_ERR_SIZE_MISMATCH if fewer than the
/// rank (nothing is written then), INLOOP_ERR_INVALID_ARGUMENT for an index out of range.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (index out of
/// range), SIZE_MISMATCH (max_dims < rank).
/// Section: model.
@c public func inloop_model_input_shape(_ model: OpaquePointer?, _ index: Int64, _ dims: UnsafeMutablePointer<Int64>?,
                                        _ max_dims: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in try tensorShape(model, index, dims, max_dims, input: true) }
}

/// Stores the per-sample dimensions of output `index`; see inloop_model_input_shape.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (index out of
/// range), SIZE_MISMATCH (max_dims < rank).
/// Section: model.
@c public func inloop_model_output_shape(_ model: OpaquePointer?, _ index: Int64, _ dims: UnsafeMutablePointer<Int64>?,
                                         _ max_dims: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in try tensorShape(model, index, dims, max_dims, input: false) }
}

/// Stores in *index the 0-based index of the input called `name` (a NUL-terminated string).
/// INLOOP_ERR_INVALID_ARGUMENT if the model has no input of that name (the message lists them).
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (no such
/// name).
/// Section: model.
@c public func inloop_model_input_index(_ model: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                        _ index: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in try tensorIndex(model, name, index, input: true) }
}

/// Stores in *index the 0-based index of the output called `name`; see inloop_model_input_index.
/// Statuses: NULL_POINTER (a NULL handle or output pointer), INVALID_HANDLE, INVALID_ARGUMENT (no such
/// name).
/// Section: model.
@c public func inloop_model_output_index(_ model: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                         _ index: UnsafeMutablePointer<Int64>?) -> inloop_status {
    guarded { () throws(InLoopError) in try tensorIndex(model, name, index, input: false) }
}

/// Runs the model on `batch` samples with all its inputs and outputs, by index: inputs[k] holds
/// batch x (product of input k's per-sample dimensions) floats, sample after sample (zero-copy: a
/// Fortran x(W, H, C, batch) is the ONNX input (batch, C, H, W)); outputs[k] receives the same for
/// output k. n_inputs and n_outputs must equal the model's counts (INLOOP_ERR_SIZE_MISMATCH).
/// Inputs are read in place; no output may overlap an input or another output (INVALID_ARGUMENT).
/// Outputs are untouched when an argument is wrong.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large, overlapping arrays),
/// SIZE_MISMATCH (n_inputs or n_outputs not the model's), NONFINITE, BUSY, OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_run_f32(_ model: OpaquePointer?, _ batch: Int64, _ n_inputs: Int64,
                                    _ inputs: UnsafePointer<UnsafePointer<Float>?>?, _ n_outputs: Int64,
                                    _ outputs: UnsafePointer<UnsafeMutablePointer<Float>?>?) -> inloop_status {
    runAll(model, batch, n_inputs, inputs, n_outputs, outputs) { (m, n, i, o) throws(InLoopError) in
        try m.run(batch: n, inputs: i, outputs: o)
    }
}

/// As inloop_model_run_f32 for double arrays; a float32 model computes in float32, converting on the way
/// in and out; a float64 model computes in float64.
/// Every input is read completely before any output is written, so outputs may overlap inputs.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (batch < 1 or too large, overlapping arrays),
/// SIZE_MISMATCH (n_inputs or n_outputs not the model's), NONFINITE, BUSY, OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_run_f64(_ model: OpaquePointer?, _ batch: Int64, _ n_inputs: Int64,
                                    _ inputs: UnsafePointer<UnsafePointer<Double>?>?, _ n_outputs: Int64,
                                    _ outputs: UnsafePointer<UnsafeMutablePointer<Double>?>?) -> inloop_status {
    runAll(model, batch, n_inputs, inputs, n_outputs, outputs) { (m, n, i, o) throws(InLoopError) in
        try m.run(batch: n, inputs: i, outputs: o)
    }
}

/// Runs the model with the full shape of every input, as ONNX Runtime does: no batch convenience.
/// Input k has in_ranks[k] dimensions (ONNX, row-major order), given one input after another in
/// in_dims (the sum of in_ranks values), and holds their product of values. The shapes bind the
/// model's symbolic dimensions (a symbol shared by two inputs must get one value); output k is written
/// to outputs[k], which has room for out_capacity[k] values, and its shape to out_ranks[k] and
/// out_dims (one output after another; out_dims has room for max_out_dims values). out_ranks and
/// out_dims may both be NULL (shapes not reported); see inloop_model_output_shapes to size the outputs
/// first. A plan for sizes seen before is reused (nothing is compiled or allocated then). Inputs whose
/// values set shapes (Resize scales, float Range bounds given as inputs) specialise the plan on their
/// values too. A model without inputs takes n_inputs = 0 and NULL in_ranks, in_dims and inputs; an
/// input the model declares with a 0 dimension takes 0 there.
/// Outputs are untouched when an argument is wrong.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (a dimension < 1 or too large, overlapping
/// arrays, bad values of a shape-setting input), SIZE_MISMATCH (n_inputs/n_outputs, a rank or a dimension the model does not take, a symbol
/// bound to two values, an output larger than its capacity, out_dims too small), UNSUPPORTED (a shape
/// the graph cannot be compiled for), NONFINITE, BUSY, OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_run_shaped_f32(_ model: OpaquePointer?, _ n_inputs: Int64, _ in_ranks: UnsafePointer<Int64>?,
                                           _ in_dims: UnsafePointer<Int64>?, _ inputs: UnsafePointer<UnsafePointer<Float>?>?,
                                           _ n_outputs: Int64, _ out_capacity: UnsafePointer<Int64>?,
                                           _ outputs: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                                           _ out_ranks: UnsafeMutablePointer<Int64>?, _ out_dims: UnsafeMutablePointer<Int64>?,
                                           _ max_out_dims: Int64) -> inloop_status {
    runShaped(model, n_inputs, in_ranks, in_dims, inputs, n_outputs, out_capacity, outputs, out_ranks, out_dims, max_out_dims,
              { (e, r, d, i, o, c, orr, od) throws(InLoopError) in
                  try e.run(ranks: r, dims: d, inputs: i, outputs: o, capacities: c, outRanks: orr, outDims: od) })
}

/// As inloop_model_run_shaped_f32 for double arrays; a float32 model computes in float32, converting
/// on the way in and out (every input is read before any output is written).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, SIZE_MISMATCH,
/// UNSUPPORTED, NONFINITE, BUSY, OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_run_shaped_f64(_ model: OpaquePointer?, _ n_inputs: Int64, _ in_ranks: UnsafePointer<Int64>?,
                                           _ in_dims: UnsafePointer<Int64>?, _ inputs: UnsafePointer<UnsafePointer<Double>?>?,
                                           _ n_outputs: Int64, _ out_capacity: UnsafePointer<Int64>?,
                                           _ outputs: UnsafePointer<UnsafeMutablePointer<Double>?>?,
                                           _ out_ranks: UnsafeMutablePointer<Int64>?, _ out_dims: UnsafeMutablePointer<Int64>?,
                                           _ max_out_dims: Int64) -> inloop_status {
    runShaped(model, n_inputs, in_ranks, in_dims, inputs, n_outputs, out_capacity, outputs, out_ranks, out_dims, max_out_dims,
              { (e, r, d, i, o, c, orr, od) throws(InLoopError) in
                  try e.run(ranks: r, dims: d, inputs: i, outputs: o, capacities: c, outRanks: orr, outDims: od) })
}

/// Stores the output shapes the model gives for these input shapes (in_ranks, in_dims as in
/// inloop_model_run_shaped_f32) in out_ranks[0 .. n_outputs-1] and out_dims (one output after another,
/// room for max_out_dims values), without running. Compiles the plan for these sizes if needed.
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT, SIZE_MISMATCH, UNSUPPORTED, BUSY,
/// OUT_OF_MEMORY.
/// Section: running.
@c public func inloop_model_output_shapes(_ model: OpaquePointer?, _ n_inputs: Int64, _ in_ranks: UnsafePointer<Int64>?,
                                          _ in_dims: UnsafePointer<Int64>?, _ n_outputs: Int64,
                                          _ out_ranks: UnsafeMutablePointer<Int64>?, _ out_dims: UnsafeMutablePointer<Int64>?,
                                          _ max_out_dims: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard let out_ranks else { throw InLoopError(.nullPointer, "output_shapes: out_ranks is NULL") }
        guard let out_dims else { throw InLoopError(.nullPointer, "output_shapes: out_dims is NULL") }
        let (ranks, dims) = try shapeArguments(box, "output_shapes", n_inputs, in_ranks, in_dims, n_outputs, max_out_dims)
        let orr = UnsafeMutableBufferPointer(start: out_ranks, count: box.outputs.count)
        let od = UnsafeMutableBufferPointer(start: out_dims, count: Int(max_out_dims))
        do throws(InLoopError) {
            try box.model.outputShapes(ranks: ranks, dims: dims, outRanks: orr, outDims: od)
        } catch {
            throw error.prefixed("output_shapes (model '\(box.model.name)')")
        }
    }
}

/// enabled != 0: every forward on this model checks x and y for NaN/Inf and returns
/// INLOOP_ERR_NONFINITE naming the first bad value (y is then already written). Off by default.
/// Statuses: NULL_POINTER, INVALID_HANDLE, BUSY (the model is running on another thread).
/// Section: running.
@c public func inloop_model_set_check_finite(_ model: OpaquePointer?, _ enabled: Int32) -> inloop_status {
    guarded { () throws(InLoopError) in
        try models.lookup(model).model.setOptions(checkFinite: enabled != 0, reproducible: nil)
    }
}

/// enabled != 0: results become independent of batching. Each column's output is then bitwise the same
/// whatever the batch size, the column's position in the batch, or the number of MPI ranks the columns
/// are spread over (dense layers run one matrix-vector product per column: slower for large batches).
/// Off by default: results are then bitwise reproducible run to run for the same batching, but a
/// column's last bits may depend on its position in the batch (optimised GEMM sums by tiles).
/// Statuses: NULL_POINTER, INVALID_HANDLE, BUSY (the model is running on another thread).
/// Section: running.
@c public func inloop_model_set_reproducible(_ model: OpaquePointer?, _ enabled: Int32) -> inloop_status {
    guarded { () throws(InLoopError) in
        try models.lookup(model).model.setOptions(checkFinite: nil, reproducible: enabled != 0)
    }
}

// MARK: - Shared argument checking of the forward entry points

@inline(__always)
private func runModel(_ m: Engine.Model, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) throws(InLoopError) {
    try m.forward(UnsafeBufferPointer(start: x, count: try Limits.arrayCount(batch: n, perSample: m.inputSize)), batch: n,
                  into: UnsafeMutableBufferPointer(start: y, count: try Limits.arrayCount(batch: n, perSample: m.outputSize)))
}

@inline(__always)
private func runModel(_ m: Engine.Model, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ n: Int) throws(InLoopError) {
    try m.forward(UnsafeBufferPointer(start: x, count: try Limits.arrayCount(batch: n, perSample: m.inputSize)), batch: n,
                  into: UnsafeMutableBufferPointer(start: y, count: try Limits.arrayCount(batch: n, perSample: m.outputSize)))
}

@inline(__always)
private func forward<T>(_ handle: OpaquePointer?, _ x: UnsafePointer<T>?, _ nIn: Int64?, _ batch: Int64,
                        _ y: UnsafeMutablePointer<T>?, _ nOut: Int64?,
                        _ run: (Engine.Model, UnsafePointer<T>, UnsafeMutablePointer<T>, Int) throws(InLoopError) -> Void) -> inloop_status {
    guarded { () throws(InLoopError) in
        let m = try models.lookup(handle).model
        guard let x else { throw InLoopError(.nullPointer, "forward: input array x is NULL") }
        guard let y else { throw InLoopError(.nullPointer, "forward: output array y is NULL") }
        if let nIn, nIn != Int64(m.inputSize) {
            throw InLoopError(.sizeMismatch, "forward: x has \(nIn) values per column but model '\(m.name)' takes \(m.inputSize) inputs")
        }
        if let nOut, nOut != Int64(m.outputSize) {
            throw InLoopError(.sizeMismatch, "forward: y has \(nOut) values per column but model '\(m.name)' gives \(m.outputSize) outputs")
        }
        guard batch >= 1, batch <= Int64(Int32.max) else {
            throw InLoopError(.invalidArgument, "forward: batch (number of columns) must be between 1 and \(Int32.max), got \(batch)")
        }
        let n = Int(batch)
        do throws(InLoopError) {
            try run(m, x, y, n)
        } catch {
            throw error.prefixed("forward (model '\(m.name)')")
        }
    }
}

private func tensorRank(_ model: OpaquePointer?, _ index: Int64, _ rank: UnsafeMutablePointer<Int64>?,
                        input: Bool) throws(InLoopError) {
    let box = try models.lookup(model)
    let what = input ? "input_rank" : "output_rank"
    guard let rank else { throw InLoopError(.nullPointer, "\(what): rank is NULL") }
    let k = try box.index(index, input: input, what)
    rank.pointee = Int64((input ? box.inputs : box.outputs)[k].shape.count)
}

private func tensorShape(_ model: OpaquePointer?, _ index: Int64, _ dims: UnsafeMutablePointer<Int64>?, _ maxDims: Int64,
                         input: Bool) throws(InLoopError) {
    let box = try models.lookup(model)
    let what = input ? "input_shape" : "output_shape"
    guard let dims else { throw InLoopError(.nullPointer, "\(what): dims is NULL") }
    let k = try box.index(index, input: input, what)
    let spec = (input ? box.inputs : box.outputs)[k]
    guard maxDims >= Int64(spec.shape.count) else {
        throw InLoopError(.sizeMismatch, "\(what): \(input ? "input" : "output") \(k) ('\(spec.name)') has \(spec.shape.count) per-sample dimensions \(Tensor.format(spec.shape)) but dims has room for \(maxDims)")
    }
    for (i, d) in spec.shape.enumerated() { dims[i] = Int64(d) }
}

private func tensorIndex(_ model: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ index: UnsafeMutablePointer<Int64>?,
                         input: Bool) throws(InLoopError) {
    let box = try models.lookup(model)
    let what = input ? "input_index" : "output_index"
    guard let name else { throw InLoopError(.nullPointer, "\(what): name is NULL") }
    guard let index else { throw InLoopError(.nullPointer, "\(what): index is NULL") }
    let s = String(cString: name)
    let specs = input ? box.inputs : box.outputs
    guard let k = specs.firstIndex(where: { $0.name == s }) else {
        throw InLoopError(.invalidArgument, "\(what): model '\(box.model.name)' has no \(input ? "input" : "output") named '\(s)'; its \(input ? "inputs" : "outputs") are \(specs.map { "'\($0.name)'" }.joined(separator: ", "))")
    }
    index.pointee = Int64(k)
}

/// Shared checks of inloop_model_run_f32/_f64: counts, NULL arrays; then the model checks sizes.
@inline(__always)
private func runAll<T>(_ handle: OpaquePointer?, _ batch: Int64, _ nInputs: Int64, _ inputs: UnsafePointer<UnsafePointer<T>?>?,
                       _ nOutputs: Int64, _ outputs: UnsafePointer<UnsafeMutablePointer<T>?>?,
                       _ run: (Engine.Model, Int, UnsafeBufferPointer<UnsafePointer<T>>,
                               UnsafeBufferPointer<UnsafeMutablePointer<T>>) throws(InLoopError) -> Void) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(handle)
        let m = box.model
        guard nInputs == Int64(box.inputs.count), nOutputs == Int64(box.outputs.count) else {
            throw InLoopError(.sizeMismatch, "run: model '\(m.name)' has \(box.inputs.count) input(s) and \(box.outputs.count) output(s); got n_inputs = \(nInputs), n_outputs = \(nOutputs)")
        }
        guard let inputs else { throw InLoopError(.nullPointer, "run: inputs (the array of input pointers) is NULL") }
        guard let outputs else { throw InLoopError(.nullPointer, "run: outputs (the array of output pointers) is NULL") }
        for k in 0..<box.inputs.count where inputs[k] == nil {
            throw InLoopError(.nullPointer, "run: inputs[\(k)] (input '\(box.inputs[k].name)') is NULL")
        }
        for k in 0..<box.outputs.count where outputs[k] == nil {
            throw InLoopError(.nullPointer, "run: outputs[\(k)] (output '\(box.outputs[k].name)') is NULL")
        }
        guard batch >= 1, batch <= Int64(Int32.max) else {
            throw InLoopError(.invalidArgument, "run: batch (number of samples) must be between 1 and \(Int32.max), got \(batch)")
        }
        // Optional<pointer> has the layout of a pointer; none is NULL here.
        let ins = UnsafeBufferPointer(start: UnsafeRawPointer(inputs).assumingMemoryBound(to: UnsafePointer<T>.self),
                                      count: box.inputs.count)
        let outs = UnsafeBufferPointer(start: UnsafeRawPointer(outputs).assumingMemoryBound(to: UnsafeMutablePointer<T>.self),
                                       count: box.outputs.count)
        do throws(InLoopError) {
            try run(m, Int(batch), ins, outs)
        } catch {
            throw error.prefixed("run (model '\(m.name)')")
        }
    }
}

/// What a model handle refers to: the core model and the C strings the C API hands out for it,
/// which live exactly as long as the handle.
final class ModelBox: @unchecked Sendable {  // immutable; the model guards its own workspace
    let model: Engine.Model
    let inputs: [TensorSpec]
    let outputs: [TensorSpec]
    let inputNames: [UnsafeMutablePointer<CChar>]
    let outputNames: [UnsafeMutablePointer<CChar>]
    /// Differentiable copies of the model, for the derivative functions (TrainerAPI.swift).
    let derivatives = DerivativeCache()

    init(_ model: Engine.Model) throws(InLoopError) {
        self.model = model
        inputs = model.inputSpecs
        outputs = model.outputSpecs
        var i: [UnsafeMutablePointer<CChar>] = [], o: [UnsafeMutablePointer<CChar>] = []
        for s in inputs { if let p = strdup(s.name) { i.append(p) } }
        for s in outputs { if let p = strdup(s.name) { o.append(p) } }
        inputNames = i
        outputNames = o
        guard i.count == inputs.count, o.count == outputs.count else {
            throw InLoopError(.outOfMemory, "cannot allocate the model's names")
        }
    }

    /// Checks a C index against the inputs or outputs.
    func index(_ index: Int64, input: Bool, _ what: String) throws(InLoopError) -> Int {
        let n = input ? inputs.count : outputs.count
        guard index >= 0, index < Int64(n) else {
            let kind = input ? "input" : "output"
            throw InLoopError(.invalidArgument, "\(what): index \(index) out of range; the model has \(n) \(kind)\(n == 1 ? "" : "s") (index 0\(n > 1 ? "...\(n - 1)" : ""))")
        }
        return Int(index)
    }

    deinit {
        for p in inputNames { free(p) }
        for p in outputNames { free(p) }
    }
}

// MARK: - Full shapes

/// Checks the shape arguments common to run_shaped and output_shapes: counts, NULL arrays, ranks in
/// range; returns the ranks and the dims they span.
private func shapeArguments(_ box: ModelBox, _ what: String, _ nInputs: Int64, _ inRanks: UnsafePointer<Int64>?,
                            _ inDims: UnsafePointer<Int64>?, _ nOutputs: Int64,
                            _ maxOutDims: Int64) throws(InLoopError) -> (UnsafeBufferPointer<Int64>, UnsafeBufferPointer<Int64>) {
    guard nInputs == Int64(box.inputs.count), nOutputs == Int64(box.outputs.count) else {
        throw InLoopError(.sizeMismatch, "\(what): model '\(box.model.name)' has \(box.inputs.count) input(s) and \(box.outputs.count) output(s); got n_inputs = \(nInputs), n_outputs = \(nOutputs)")
    }
    guard maxOutDims >= 0, maxOutDims <= Int64(Int32.max) else {
        throw InLoopError(.invalidArgument, "\(what): max_out_dims must be between 0 and \(Int32.max), got \(maxOutDims)")
    }
    // a model without inputs (a lone Constant) may take NULL in_ranks and in_dims
    if box.inputs.isEmpty && inRanks == nil { return (UnsafeBufferPointer(start: nil, count: 0), UnsafeBufferPointer(start: nil, count: 0)) }
    guard let inRanks else { throw InLoopError(.nullPointer, "\(what): in_ranks is NULL") }
    var total = 0
    for k in 0..<box.inputs.count {
        guard inRanks[k] >= 0, inRanks[k] <= Int64(Engine.maxRank) else {
            throw InLoopError(.invalidArgument, "\(what): in_ranks[\(k)] (input '\(box.inputs[k].name)') is \(inRanks[k]); ranks are between 0 and \(Engine.maxRank)")
        }
        total += Int(inRanks[k])
    }
    let dims: UnsafeBufferPointer<Int64>
    if total == 0 {
        dims = UnsafeBufferPointer(start: inDims, count: 0)
    } else {
        guard let inDims else { throw InLoopError(.nullPointer, "\(what): in_dims is NULL") }
        dims = UnsafeBufferPointer(start: inDims, count: total)
    }
    return (UnsafeBufferPointer(start: inRanks, count: box.inputs.count), dims)
}

private func runShaped<T>(_ handle: OpaquePointer?, _ nInputs: Int64, _ inRanks: UnsafePointer<Int64>?,
                           _ inDims: UnsafePointer<Int64>?, _ inputs: UnsafePointer<UnsafePointer<T>?>?,
                           _ nOutputs: Int64, _ outCapacity: UnsafePointer<Int64>?,
                           _ outputs: UnsafePointer<UnsafeMutablePointer<T>?>?,
                           _ outRanks: UnsafeMutablePointer<Int64>?, _ outDims: UnsafeMutablePointer<Int64>?,
                           _ maxOutDims: Int64,
                           _ engineRun: (Engine.Model, UnsafeBufferPointer<Int64>, UnsafeBufferPointer<Int64>,
                                         UnsafeBufferPointer<UnsafePointer<T>>, UnsafeBufferPointer<UnsafeMutablePointer<T>>,
                                         UnsafeBufferPointer<Int64>, UnsafeMutableBufferPointer<Int64>?,
                                         UnsafeMutableBufferPointer<Int64>?) throws(InLoopError) -> Void) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(handle)
        let m = box.model
        let (ranks, dims) = try shapeArguments(box, "run_shaped", nInputs, inRanks, inDims, nOutputs, maxOutDims)
        guard inputs != nil || box.inputs.isEmpty else {
            throw InLoopError(.nullPointer, "run_shaped: inputs (the array of input pointers) is NULL")
        }
        guard let outputs else { throw InLoopError(.nullPointer, "run_shaped: outputs (the array of output pointers) is NULL") }
        guard let outCapacity else { throw InLoopError(.nullPointer, "run_shaped: out_capacity is NULL") }
        guard (outRanks == nil) == (outDims == nil) else {
            throw InLoopError(.nullPointer, "run_shaped: out_ranks and out_dims must both be given or both be NULL")
        }
        for k in 0..<box.inputs.count where inputs?[k] == nil {
            throw InLoopError(.nullPointer, "run_shaped: inputs[\(k)] (input '\(box.inputs[k].name)') is NULL")
        }
        for k in 0..<box.outputs.count where outputs[k] == nil {
            throw InLoopError(.nullPointer, "run_shaped: outputs[\(k)] (output '\(box.outputs[k].name)') is NULL")
        }
        // (no input: an empty buffer, whatever `inputs` is)
        let ins = UnsafeBufferPointer(start: inputs.map { UnsafeRawPointer($0).assumingMemoryBound(to: UnsafePointer<T>.self) },
                                      count: box.inputs.count)
        let outs = UnsafeBufferPointer(start: UnsafeRawPointer(outputs).assumingMemoryBound(to: UnsafeMutablePointer<T>.self),
                                       count: box.outputs.count)
        let caps = UnsafeBufferPointer(start: outCapacity, count: box.outputs.count)
        let orr = outRanks.map { UnsafeMutableBufferPointer(start: $0, count: box.outputs.count) }
        let od = outDims.map { UnsafeMutableBufferPointer(start: $0, count: Int(maxOutDims)) }
        do throws(InLoopError) {
            try engineRun(m, ranks, dims, ins, outs, caps, orr, od)
        } catch {
            throw error.prefixed("run_shaped (model '\(m.name)')")
        }
    }
}
