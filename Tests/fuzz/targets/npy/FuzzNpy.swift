// libFuzzer target: the `inloop` CLI's .npy reader; what parses must write and read back unchanged
// (as float64 C-order values). Built by `make fuzz`.
import InLoopNpy

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNpy(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    guard let a = try? NpyArray.parse(bytes) else { return 0 }
    let wide = try? NpyArray(shape: a.shape, dtype: .float64, values: a.values)
    guard let back = try? NpyArray.parse(wide?.bytes() ?? []), back.shape == a.shape,
          zip(back.values, a.values).allSatisfy({ $0.bitPattern == $1.bitPattern }) else {
        fatalError("a parsed .npy array does not survive writing and reading back: shape \(a.shape)")
    }
    return 0
}
