extension Engine.Graph {
    /// Checks the graph's structure and puts its nodes in topological order (the only place this is
    /// done; every later pass relies on it):
    /// - every value a node or the graph output uses is defined (a graph input, a constant or exactly
    ///   one node's output; `addNode` already refuses a second producer);
    /// - no cycles;
    /// - graph inputs and constants are not also node outputs (refused when added).
    /// Errors name the node and the value. The order is stable: among nodes that are ready, the one
    /// listed first in the file comes first.
    public func verify() throws(InLoopError) {
        if let missing = undefinedNames.first {
            for node in nodes where node.inputs.contains(where: { $0.map { values[$0.index].name } == missing }) {
                throw InLoopError(.format, "\(describe(node)): input '\(missing)' is not defined (not a graph input, an initializer or a node output)")
            }
            throw InLoopError(.format, "value '\(missing)' is not defined")
        }
        for o in outputs where values[o.index].producer == nil && values[o.index].constant == nil && !inputs.contains(o) {
            throw InLoopError(.format, "graph output '\(values[o.index].name)' is not defined")
        }
        guard !nodes.isEmpty else { return }
        // Kahn's algorithm; `ready` is kept sorted by original position (a min-heap would do the same;
        // graphs have thousands of nodes at most, and insertion keeps this simple and deterministic).
        var pending = [Int](repeating: 0, count: nodes.count)
        var consumers = [[Int]](repeating: [], count: nodes.count)
        for (i, node) in nodes.enumerated() {
            for case let v? in node.inputs {
                if let p = values[v.index].producer {
                    pending[i] += 1
                    consumers[p.index].append(i)
                }
            }
        }
        var heap = MinHeap()
        for i in nodes.indices where pending[i] == 0 { heap.push(i) }
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        while let i = heap.pop() {
            order.append(i)
            for c in consumers[i] {
                pending[c] -= 1
                if pending[c] == 0 { heap.push(c) }
            }
        }
        guard order.count == nodes.count else {
            let stuck = nodes.indices.first { pending[$0] > 0 } ?? 0
            throw InLoopError(.format, "\(describe(nodes[stuck])) is part of a cycle: the graph is not a DAG")
        }
        if order != Array(nodes.indices) { setNodes(order.map { nodes[$0] }) }
    }
}

/// A binary min-heap of node positions.
struct MinHeap {
    private var a: [Int] = []

    mutating func push(_ x: Int) {
        a.append(x)
        var i = a.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard a[p] > a[i] else { break }
            a.swapAt(p, i)
            i = p
        }
    }

    mutating func pop() -> Int? {
        guard let top = a.first else { return nil }
        let last = a.removeLast()
        if !a.isEmpty {
            a[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < a.count, a[l] < a[m] { m = l }
                if r < a.count, a[r] < a[m] { m = r }
                guard m != i else { break }
                a.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
