import InLoopCore

// Noise inputs of stochastic parameterizations (issue 15, item 4): features of a model input filled
// by the engine on every forward/run with standard normals from a counter-based generator
// (Philox4x32-10) keyed by (seed, step, global column, feature): the same numbers on any number of
// ranks, batch split or thread count, and after a restart that passes the same step
// (Sources/InLoopCore/Runtime/Noise.swift has the exact recipe).

/// Declares features first_feature .. first_feature + count - 1 of input `input_index` (0-based) noise
/// features: every later forward/run fills them with standard normals of (seed, step, global column,
/// feature - first_feature), the key set by inloop_model_set_noise_step (step 0 and columns from 0
/// until then). The caller's array is not changed and what it holds there is ignored; the numbers
/// are rounded to the type of the call's arrays. count 0 removes the declaration. A later
/// inloop_model_add_constraint_* call (a new model in the handle) drops it: declare it afterwards.
/// The seed is any int64 (its 64 bits are the generator's key). run_shaped refuses to run while a
/// noise input is declared (UNSUPPORTED).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (index or features out of range, count
/// < 0), UNSUPPORTED (an input that does not lead with the batch), BUSY.
/// Section: running.
@c public func inloop_model_set_noise_input(_ model: OpaquePointer?, _ input_index: Int64, _ first_feature: Int64,
                                            _ count: Int64, _ seed: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard count >= 0, count <= Int64(Int32.max), first_feature >= 0, first_feature <= Int64(Int32.max),
              input_index >= 0, input_index <= Int64(Int32.max) else {
            throw InLoopError(.invalidArgument, "set_noise_input: input \(input_index), features \(first_feature) + \(count): out of range")
        }
        try box.model.setNoise(input: Int(input_index), firstFeature: Int(first_feature), count: Int(count), seed: UInt64(bitPattern: seed))
    }
}

/// The key of the next forward/run calls of a model with a noise input: the step (>= 0; e.g. the time
/// step of the host model) and the global index of the batch's first column (0 <= first_column <
/// 2^32). block 0: the batch's columns are first_column, first_column + 1, ...; block > 0: the batch
/// is made of blocks of `block` consecutive columns whose global indices are `stride` (>= block) apart
/// (column j is first_column + (j / block) * stride + j % block: ensemble members times local
/// columns, or the rows of a rank's patch of a 2-D grid). Every column of a call must be below 2^32
/// (checked by the call: INVALID_ARGUMENT).
/// Statuses: NULL_POINTER, INVALID_HANDLE, INVALID_ARGUMENT (no noise input; a negative step or
/// column; block < 0 or stride < block), BUSY.
/// Section: running.
@c public func inloop_model_set_noise_step(_ model: OpaquePointer?, _ step: Int64, _ first_column: Int64,
                                           _ block: Int64, _ stride: Int64) -> inloop_status {
    guarded { () throws(InLoopError) in
        let box = try models.lookup(model)
        guard block >= 0, block <= Int64(Int32.max), stride >= 0 else {
            throw InLoopError(.invalidArgument, "set_noise_step: block must be between 0 and \(Int32.max) and stride >= 0, got block \(block), stride \(stride)")
        }
        try box.model.setNoiseStep(Int(step), firstColumn: Int(first_column), block: Int(block), stride: Int(stride))
    }
}

/// The standard normal the noise inputs use for (seed, step, column, feature): for checks and for
/// callers that draw the same numbers themselves (e.g. in a training loop of their own).
/// Statuses: NULL_POINTER, INVALID_ARGUMENT (step < 0; column or feature outside 0 .. 2^32 - 1 and
/// 0 .. 2^33 - 1).
/// Section: running.
@c public func inloop_noise_normal(_ seed: Int64, _ step: Int64, _ column: Int64, _ feature: Int64,
                                   _ value: UnsafeMutablePointer<Double>?) -> inloop_status {
    guarded { () throws(InLoopError) in
        guard let value else { throw InLoopError(.nullPointer, "noise_normal: value is NULL") }
        guard step >= 0, column >= 0, column < Int64(Engine.Noise.columnLimit), feature >= 0, feature < 2 * Int64(Engine.Noise.columnLimit) else {
            throw InLoopError(.invalidArgument, "noise_normal: step \(step), column \(column), feature \(feature): step >= 0, column below 2^32, feature below 2^33")
        }
        value.pointee = Engine.Noise.normal(seed: UInt64(bitPattern: seed), step: Int(step), column: Int(column), feature: Int(feature))
    }
}
