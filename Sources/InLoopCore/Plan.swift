/// A model compiled once into a flat list of operations over numbered storages, and the memory
/// plan that maps storages with disjoint lifetimes onto shared workspace buffers.
///
/// Storage 0 is the model input (the caller's array, never written). The final storage is the
/// caller's output array on the float32 path and a workspace buffer on the float64 path.
/// Running the plan is a loop over `ops` with no allocation and no look-ups.
struct Plan {
    enum Kind { case dense, activation, normalize, denormalize, add, copy }

    struct Op {
        var kind: Kind
        var src: Int
        var dst: Int
        /// Values per sample of `dst` (and of `src` for element-wise ops).
        var cols: Int
        /// Values per sample of `src` for dense.
        var inCols: Int = 0
        var activation: Activation = .identity
        // Pointers into tensors owned by the model's layers (kept alive by the model).
        var a: UnsafePointer<Float>? = nil   // dense weight, or mean
        var b: UnsafePointer<Float>? = nil   // dense bias, or std
    }

    private(set) var ops: [Op] = []
    /// Values per sample of each storage.
    private(set) var storageSize: [Int] = [0]
    /// For every storage but the input: the workspace buffer it lives in.
    private(set) var bufferOf: [Int] = [-1]
    /// Values per sample each workspace buffer must hold.
    private(set) var bufferSize: [Int] = []
    private(set) var finalStorage = 0

    init(layers: [Layer], inputSize: Int) {
        storageSize[0] = inputSize
        let (out, _) = emit(layers, input: 0, size: inputSize, protected: [0])
        var final = out
        if final == 0 {  // a model that is the identity still has to fill its output
            final = newStorage(inputSize)
            ops.append(Op(kind: .copy, src: 0, dst: final, cols: inputSize))
        }
        finalStorage = final
        assignBuffers()
    }

    private mutating func newStorage(_ size: Int) -> Int {
        storageSize.append(size)
        return storageSize.count - 1
    }

    /// Emits ops for `layers` reading storage `input`; in-place ops never write a `protected` storage.
    private mutating func emit(_ layers: [Layer], input: Int, size: Int, protected: Set<Int>) -> (Int, Int) {
        var cur = input, size = size
        for layer in layers {
            switch layer {
            case .dense(let d):
                let dst = newStorage(d.outFeatures)
                ops.append(Op(kind: .dense, src: cur, dst: dst, cols: d.outFeatures, inCols: d.inFeatures,
                              activation: d.activation, a: UnsafePointer(d.weight.storage.base),
                              b: d.bias.map { UnsafePointer($0.storage.base) }))
                cur = dst; size = d.outFeatures
            case .activation(let act):
                if act == .identity { continue }
                // Fuse into the dense op that just produced `cur`.
                if let last = ops.last, last.kind == .dense, last.dst == cur, last.activation == .identity,
                   !protected.contains(cur) {
                    ops[ops.count - 1].activation = act
                    continue
                }
                let dst = protected.contains(cur) ? newStorage(size) : cur
                ops.append(Op(kind: .activation, src: cur, dst: dst, cols: size, activation: act))
                cur = dst
            case .normalize(let n), .denormalize(let n):
                let dst = protected.contains(cur) ? newStorage(size) : cur
                let kind: Kind
                if case .normalize = layer { kind = .normalize } else { kind = .denormalize }
                ops.append(Op(kind: kind, src: cur, dst: dst, cols: size,
                              a: UnsafePointer(n.mean.storage.base), b: UnsafePointer(n.std.storage.base)))
                cur = dst
            case .residual(let inner):
                var (res, _) = emit(inner, input: cur, size: size, protected: protected.union([cur]))
                if res == cur {  // the block was all identities: f(x) = x
                    res = newStorage(size)
                    ops.append(Op(kind: .copy, src: cur, dst: res, cols: size))
                }
                ops.append(Op(kind: .add, src: cur, dst: res, cols: size))
                cur = res
            }
        }
        return (cur, size)
    }

    /// Greedy interval allocation: a buffer is reused once the storage in it is dead.
    private mutating func assignBuffers() {
        let n = storageSize.count
        var lastUse = [Int](repeating: -1, count: n)
        for (i, op) in ops.enumerated() { lastUse[op.src] = i; lastUse[op.dst] = i }
        bufferOf = [Int](repeating: -1, count: n)
        var free: [Int] = []
        for (i, op) in ops.enumerated() {
            if op.dst != 0, bufferOf[op.dst] < 0 {
                if let b = free.popLast() {
                    bufferOf[op.dst] = b
                    bufferSize[b] = max(bufferSize[b], storageSize[op.dst])
                } else {
                    bufferOf[op.dst] = bufferSize.count
                    bufferSize.append(storageSize[op.dst])
                }
            }
            for s in Set([op.src, op.dst]) where s != 0 && lastUse[s] == i && s != finalStorage {
                free.append(bufferOf[s])
            }
        }
    }
}

/// The per-model memory the plan runs in, sized for the largest batch seen so far.
/// Growing is the only allocation; a call with a batch no larger than before allocates nothing.
struct Workspace {
    private(set) var capacity = 0
    private var buffers: [FloatBuffer] = []
    /// Input storage for the float64 path (converted input).
    private(set) var input: FloatBuffer? = nil
    /// Base pointer of every storage; entry 0 and the final storage are set per call.
    var pointers: UnsafeMutablePointer<UnsafeMutablePointer<Float>>

    init(storages: Int) {
        pointers = .allocate(capacity: max(storages, 1))
    }

    func release() { pointers.deallocate() }

    mutating func ensure(batch: Int, plan: Plan, inputSize: Int) throws(InLoopError) {
        if batch <= capacity { return }
        var counts: [Int] = [], total = 0
        for size in plan.bufferSize + [inputSize] {
            let (n, o) = size.multipliedReportingOverflow(by: batch)
            let (t, o2) = total.addingReportingOverflow(n)
            guard !o, !o2 else { throw InLoopError(.outOfMemory, "batch \(batch) is too large") }
            counts.append(n)
            total = t
        }
        try Limits.workspace(floats: total, batch: batch)
        var newBuffers: [FloatBuffer] = []
        for n in counts.dropLast() { newBuffers.append(try FloatBuffer(count: n)) }
        let newInput = try FloatBuffer(count: counts[counts.count - 1])
        input = newInput
        buffers = newBuffers
        capacity = batch
        for s in 1..<plan.bufferOf.count { pointers[s] = buffers[plan.bufferOf[s]].base }
        inputBase = newInput.base
        finalBase = pointers[plan.finalStorage]
    }

    /// Where the float64 path converts its input to, and where its final storage lives.
    private(set) var inputBase: UnsafeMutablePointer<Float>? = nil
    private(set) var finalBase: UnsafeMutablePointer<Float>? = nil
}
