import XCTest
@testable import InLoop
import InLoopFormats
import InLoopCore

/// The C entry points called from Swift: handle life cycle, error messages, status mapping.
final class CABITests: XCTestCase {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/mlp_medium.safetensors").path

    func lastError() -> String { String(cString: inloop_last_error()) }

    func testLifeCycleAndFreedHandleDetection() {
        var m: OpaquePointer?
        XCTAssertEqual(inloop_model_load(path, &m), .INLOOP_OK, lastError())
        var nIn: Int64 = 0, nOut: Int64 = 0
        XCTAssertEqual(inloop_model_input_size(m, &nIn), .INLOOP_OK)
        XCTAssertEqual(inloop_model_output_size(m, &nOut), .INLOOP_OK)
        let x = [Double](repeating: 0.25, count: Int(nIn) * 3)
        var y = [Double](repeating: 0, count: Int(nOut) * 3)
        XCTAssertEqual(inloop_model_forward_sized_f64(m, x, nIn, 3, &y, nOut), .INLOOP_OK)
        XCTAssertEqual(inloop_model_forward_sized_f64(m, x, nIn + 1, 3, &y, nOut), .INLOOP_ERR_SIZE_MISMATCH)
        XCTAssertTrue(lastError().contains("\(nIn + 1)") && lastError().contains("\(nIn)"), lastError())
        XCTAssertEqual(inloop_model_free(m), .INLOOP_OK)
        XCTAssertEqual(inloop_model_forward_f64(m, x, 3, &y), .INLOOP_ERR_INVALID_HANDLE)
        XCTAssertEqual(inloop_model_free(m), .INLOOP_ERR_INVALID_HANDLE)
        XCTAssertEqual(inloop_model_free(nil), .INLOOP_OK)
        XCTAssertEqual(inloop_model_forward_f64(nil, x, 3, &y), .INLOOP_ERR_NULL_POINTER)
    }

    func testLoadFailureClearsTheHandleAndNamesTheFile() {
        var m: OpaquePointer? = OpaquePointer(bitPattern: 0x999)
        XCTAssertEqual(inloop_model_load("/nonexistent/model.safetensors", &m), .INLOOP_ERR_IO)
        XCTAssertNil(m)
        XCTAssertTrue(lastError().contains("/nonexistent/model.safetensors"), lastError())
        XCTAssertEqual(inloop_model_load(nil, &m), .INLOOP_ERR_NULL_POINTER)
        XCTAssertEqual(inloop_model_load(path, nil), .INLOOP_ERR_NULL_POINTER)
    }

    func testStatusCodesMatchErrorKinds() {
        for k in 1...11 {
            let kind = InLoopError.Kind(rawValue: Int32(k))!
            XCTAssertEqual(inloop_status(kind).rawValue, Int32(k))
            XCTAssertTrue(String(cString: inloop_status_string(Int32(k))).hasPrefix("INLOOP_ERR_"))
        }
        XCTAssertEqual(String(cString: inloop_status_string(99)), "unknown InLoop status code")
    }
}
