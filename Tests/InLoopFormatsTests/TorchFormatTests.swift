import XCTest
import Foundation
@testable import InLoopFormats
@testable import InLoopCore

/// Format-side regressions found by the torch exports (Tests/onnx/torch, suite onnx-torch).
final class TorchFormatTests: XCTestCase {
    static let torchDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("onnx/torch").path

    /// Native v2 kept integer attributes as JSON numbers (doubles): Slice's INT64_MAX ends (torch's
    /// nn.MultiheadAttention export) came back as 9.223372036854776e18 and the file did not load.
    func testIntegerAttributesBeyond2To53RoundTrip() throws {
        let values = [Int.max, Int.min, (1 << 53) + 1, -(1 << 60), 9_007_199_254_740_992, 5, 0, -7]
        var attributes: [Engine.AttributeValue] = values.map { .int($0) }
        attributes.append(.ints(values))
        attributes.append(.tensor(Engine.TensorValue(dtype: .int64, shape: [values.count], ints: values)))
        var decoded: [Int] = []
        for a in attributes {
            let text = try NativeV2.encode(a).description
            let back = try NativeV2.decode(try JSON.parse(text))
            switch back {
            case .int(let v): decoded.append(v)
            case .ints(let l): XCTAssertEqual(l, values)
            case .tensor(let t): XCTAssertEqual(t.ints, values); XCTAssertEqual(t.dtype, .int64)
            default: XCTFail("\(text) decoded as another kind")
            }
            XCTAssertEqual(try NativeV2.encode(back).description, text)
        }
        XCTAssertEqual(decoded, values)
        // an integer that is neither a number nor a decimal string is refused
        XCTAssertThrowsError(try NativeV2.decode(try JSON.parse(#"{"int": "12x"}"#)))
        XCTAssertThrowsError(try NativeV2.decode(try JSON.parse(#"{"int": 1e300}"#)))
    }

    /// torch's TorchScript exporter shares equal weights through Identity nodes (LayerNorm's zero bias
    /// is the attention's out_proj bias): the trainer must see a parameter there, not a computed value.
    func testIdentityOfAnInitializerTrains() throws {
        let m = try ONNXReader.load(path: Self.torchDir + "/encoder_ts.onnx")
        XCTAssertFalse(m.graph.nodes.contains { $0.op.name == "Identity" })
        let net = try EngineNetwork<Float>(model: m)
        XCTAssertGreaterThan(net.parameterCount, 0)
    }
}
