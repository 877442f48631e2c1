import XCTest
@testable import InLoop
import InLoopCore

/// The C layer does no size arithmetic of its own, and the work-space limits are settable from C.
final class LimitsCABITests: XCTestCase {
    let regressions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz/regressions")

    func lastError() -> String { String(cString: inloop_last_error()) }

    func testWorkspaceLimitsFromC() {
        var p: Int64 = 0, t: Int64 = 0
        XCTAssertEqual(inloop_get_max_workspace_bytes(&p, &t), .INLOOP_OK)
        XCTAssertEqual(p, 1 << 30)
        XCTAssertEqual(t, 1 << 34)
        XCTAssertEqual(inloop_set_max_workspace_bytes(-1, 0), .INLOOP_ERR_INVALID_ARGUMENT)
        XCTAssertEqual(inloop_set_max_workspace_bytes(1 << 20, 1 << 25), .INLOOP_OK)
        XCTAssertEqual(inloop_get_max_workspace_bytes(&p, &t), .INLOOP_OK)
        XCTAssertEqual([p, t], [1 << 20, 1 << 25])
        XCTAssertEqual(inloop_get_max_workspace_bytes(nil, &t), .INLOOP_ERR_NULL_POINTER)
        XCTAssertEqual(inloop_set_max_workspace_bytes(0, 0), .INLOOP_OK)
        XCTAssertEqual(inloop_get_max_workspace_bytes(&p, &t), .INLOOP_OK)
        XCTAssertEqual([p, t], [1 << 30, 1 << 34])
    }

    /// Issue 11: a native model declaring 2^33 inputs loaded, then forward trapped on n * inputSize in
    /// the C layer and jvp on s * batch in the layer stack. Now the load fails; a model of the largest
    /// size (2^31 - 1, loaded with the per-sample limit raised) gets OUT_OF_MEMORY for a huge batch from
    /// forward and jvp without touching the caller's (too small) arrays.
    func testHugeInputSizeIsAStatusNotATrap() throws {
        var m: OpaquePointer?
        XCTAssertEqual(inloop_model_load(regressions.appendingPathComponent("native/input_size_2p33.safetensors").path, &m),
                       .INLOOP_ERR_FORMAT, lastError())
        XCTAssertTrue(lastError().contains("8589934592"), lastError())
        let largest = regressions.appendingPathComponent("native/workspace_8gib_per_sample.safetensors").path
        XCTAssertEqual(inloop_model_load(largest, &m), .INLOOP_ERR_OUT_OF_MEMORY, lastError())
        XCTAssertEqual(inloop_set_max_workspace_bytes(1 << 34, 1 << 36), .INLOOP_OK)
        defer { _ = inloop_set_max_workspace_bytes(0, 0) }
        XCTAssertEqual(inloop_model_load(largest, &m), .INLOOP_OK, lastError())
        defer { _ = inloop_model_free(m) }
        let x = [Float](repeating: 0, count: 4), dx = x, x64 = [Double](repeating: 0, count: 4)
        var y = [Float](repeating: 0, count: 4), dy = y, y64 = [Double](repeating: 0, count: 4)
        // float32: the arrays the call claims (2^61 values each) would overlap: refused before anything else
        XCTAssertEqual(inloop_model_forward_f32(m, x, 1 << 30, &y), .INLOOP_ERR_INVALID_ARGUMENT, lastError())
        XCTAssertEqual(inloop_model_forward_f64(m, x64, 1 << 30, &y64), .INLOOP_ERR_OUT_OF_MEMORY, lastError())
        XCTAssertEqual(inloop_model_jvp_f32(m, x, dx, 1 << 30, &y, &dy), .INLOOP_ERR_OUT_OF_MEMORY, lastError())
        XCTAssertEqual(y + dy, [Float](repeating: 0, count: 8))
        XCTAssertEqual(y64, [0, 0, 0, 0])
    }
}
