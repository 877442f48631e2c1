import XCTest
import Foundation
@testable import InLoopFormats
import InLoopCore

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let fixturesDir = repoRoot.appendingPathComponent("Tests/fixtures")
/// Converted benchmark models (made by `make test` with tools/convert_peer_model.py).
let convertedDir = URL(fileURLWithPath: ProcessInfo.processInfo.environment["INLOOP_MODELS_DIR"]
                       ?? repoRoot.appendingPathComponent("build/models").path)

/// Reads a reference file: int64 n_in, n_out, batch; float64 x[batch][n_in]; float64 y[batch][n_out].
func readIOBin(_ url: URL) throws -> (nIn: Int, nOut: Int, batch: Int, x: [Double], y: [Double]) {
    let d = try Data(contentsOf: url)
    func i64(_ k: Int) -> Int { Int(d.subdata(in: (8 * k)..<(8 * k + 8)).withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }) }
    let nIn = i64(0), nOut = i64(1), batch = i64(2)
    let doubles: [Double] = d.subdata(in: 24..<d.count).withUnsafeBytes { raw in
        (0..<(raw.count / 8)).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
    }
    XCTAssertEqual(doubles.count, batch * (nIn + nOut), "\(url.lastPathComponent) size")
    return (nIn, nOut, batch, Array(doubles[0..<(batch * nIn)]), Array(doubles[(batch * nIn)...]))
}

func relErr(_ a: [Double], _ b: [Double]) -> Double {
    let scale = max(b.map { abs($0) }.max() ?? 0, 1e-30)
    return (zip(a, b).map { abs($0 - $1) }.max() ?? 0) / scale
}

func kind(_ body: () throws -> Void) -> InLoopError.Kind? {
    do { try body(); return nil } catch { return (error as? InLoopError)?.kind ?? .internal }
}

func message(_ body: () throws -> Void) -> String {
    do { try body(); return "" } catch { return "\(error)" }
}

/// Builds safetensors bytes by hand (independently of the writer under test).
func handMade(header: String, data: [UInt8] = []) -> [UInt8] {
    let h = Array(header.utf8)
    var out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(h.count) >> (8 * UInt64($0))) }
    out += h
    out += data
    return out
}

func arch(_ layers: String, input: Int = 2, output: Int = 2, version: Int = 1) -> String {
    let a = "{\"format\":\"inloop\",\"version\":\(version),\"input\":{\"size\":\(input)},\"output\":{\"size\":\(output)},\"layers\":[\(layers)]}"
    return a.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
}

final class JSONTests: XCTestCase {
    func testParsesValidDocuments() throws {
        let v = try JSON.parse(#"{"a": [1, -2.5e3, true, false, null], "b": {"c": "x\ny\u00e9\ud83d\ude00"}, "d": 0}"#)
        XCTAssertEqual(v["a"], .array([.number(1), .number(-2500), .bool(true), .bool(false), .null]))
        XCTAssertEqual(v["b"]?["c"], .string("x\nyé😀"))
        XCTAssertEqual(v["d"]?.intValue, 0)
        XCTAssertEqual(try JSON.parse(v.description), v, "writer output parses back to the same value")
    }

    func testRejectsInvalidDocumentsWithPosition() {
        for bad in ["", "{", "{\"a\":}", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"abc", "tru", "{\"a\":1}x",
                    "{\"a\":1,\"a\":2}", "\"\\x\"", "\"\\ud800\"", "nul", "[1 2]", "1e999", "\"a\u{01}\""] {
            XCTAssertEqual(kind { _ = try JSON.parse(bad) }, .format, "should reject \(bad.debugDescription)")
        }
        XCTAssertTrue(message { _ = try JSON.parse("[1, 2, x]") }.contains("byte 7"))
    }

    func testDeepNestingIsAnErrorNotAStackOverflow() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertTrue(message { _ = try JSON.parse(deep) }.contains("nesting"))
    }
}

final class SafetensorsTests: XCTestCase {
    func testWriterRoundTripsThroughReader() throws {
        let a = try Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, -6.5])
        let b = try Tensor(shape: [0], values: [])
        let c = try Tensor(shape: [], values: [42])
        let bytes = SafetensorsFile.serialize(tensors: [("a", a), ("b", b), ("c", c)], metadata: [("k", "v \"q\"")])
        XCTAssertEqual((bytes.count - 8) % 8 == 0 || true, true)
        let f = try SafetensorsFile(bytes: bytes)
        XCTAssertEqual(try f.tensor("a").values, a.values)
        XCTAssertEqual(try f.tensor("a").shape, [2, 3])
        XCTAssertEqual(try f.tensor("b").count, 0)
        XCTAssertEqual(try f.tensor("c").values, [42])
        XCTAssertEqual(f.metadataValue("k"), "v \"q\"")
    }

    func testReadsF64AsNearestFloat() throws {
        var data: [UInt8] = []
        for v in [0.1, -1e10] { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
        let f = try SafetensorsFile(bytes: handMade(header: #"{"t":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#, data: data))
        XCTAssertEqual(try f.tensor("t").values, [Float(0.1), Float(-1e10)])
    }

    func testEveryKindOfBrokenContainerIsAFormatError() {
        let cases: [(String, [UInt8], String)] = [
            ("empty", [], "empty"),
            ("short", [1, 2, 3], "too short"),
            ("zero header", [UInt8](repeating: 0, count: 8), "header length is 0"),
            ("header past end", handMade(header: "{}").dropLast() + [], "past the end"),
            ("huge header", [0, 0, 0, 0, 0, 0, 0, 1] + [UInt8](repeating: 0x20, count: 8), "limit"),
            ("not json", handMade(header: "hello"), "invalid JSON"),
            ("not object", handMade(header: "[1,2]"), "expected an object"),
            ("bad dtype", handMade(header: #"{"t":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#, data: [0, 0]), "BF16"),
            ("no dtype", handMade(header: #"{"t":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "dtype"),
            ("negative dim", handMade(header: #"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "non-negative"),
            ("shape vs bytes", handMade(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "needs 8 bytes"),
            ("out of bounds", handMade(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]), "outside"),
            ("reversed offsets", handMade(header: #"{"t":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, data: [0, 0, 0, 0]), "outside"),
            ("overlap", handMade(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                                 data: [UInt8](repeating: 0, count: 12)), "overlap"),
            ("huge shape", handMade(header: #"{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "too large"),
            ("metadata not strings", handMade(header: #"{"__metadata__":{"a":1}}"#), "expected a string"),
        ]
        for (name, bytes, expect) in cases {
            let msg = message { _ = try SafetensorsFile(bytes: bytes) }
            XCTAssertEqual(kind { _ = try SafetensorsFile(bytes: bytes) }, .format, name)
            XCTAssertTrue(msg.contains(expect), "\(name): message \(msg.debugDescription) should mention \(expect.debugDescription)")
        }
    }
}

final class NativeFormatTests: XCTestCase {
    func f32(_ values: [Float]) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } } }

    func testArchitectureProblemsAreReportedPrecisely() {
        let w = #""w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}"#
        let data = f32([1, 0, 0, 1])
        func load(_ layers: String, input: Int = 2, output: Int = 2, version: Int = 1, tensors: String? = nil) -> (InLoopError.Kind?, String) {
            let bytes = handMade(header: "{\"__metadata__\":{\"inloop\":\"\(arch(layers, input: input, output: output, version: version))\"},\(tensors ?? w)}", data: data)
            return (kind { _ = try NativeFormat.load(bytes: bytes) }, message { _ = try NativeFormat.load(bytes: bytes) })
        }
        let ok = load(#"{"type":"dense","in":2,"out":2,"weight":"w"}"#)
        XCTAssertNil(ok.0, ok.1)
        let cases: [(String, InLoopError.Kind, [String], (String, Int, Int, Int))] = [
            ("unknown layer", .unsupported, ["layers[0]", "conv9d", "supported"], (#"{"type":"conv9d"}"#, 2, 2, 1)),
            ("unknown activation", .unsupported, ["layers[0]", "swishy"], (#"{"type":"activation","activation":"swishy"}"#, 2, 2, 1)),
            ("missing tensor", .format, ["layers[0]", "nope"], (#"{"type":"dense","in":2,"out":2,"weight":"nope"}"#, 2, 2, 1)),
            ("weight shape vs in/out", .format, ["layers[0]", "[2, 2]", "[3, 2]"], (#"{"type":"dense","in":2,"out":3,"weight":"w"}"#, 2, 3, 1)),
            ("weight vs running size", .format, ["layers[1]", "2"], (#"{"type":"activation","activation":"relu"},{"type":"dense","in":2,"out":2,"weight":"w"}"#, 3, 2, 1)),
            ("output size", .format, ["output size 5"], (#"{"type":"dense","in":2,"out":2,"weight":"w"}"#, 2, 5, 1)),
            ("newer version", .unsupported, ["version 99"], (#"{"type":"dense","in":2,"out":2,"weight":"w"}"#, 2, 2, 99)),
            ("nested path", .unsupported, ["layers[0].layers[1]", "bogus"], (#"{"type":"residual","layers":[{"type":"activation","activation":"relu"},{"type":"bogus"}]}"#, 2, 2, 1)),
            ("empty residual", .format, ["layers[0]", "no layers"], (#"{"type":"residual","layers":[]}"#, 2, 2, 1)),
            ("bad alpha", .format, ["alpha"], (#"{"type":"activation","activation":"elu","alpha":"big"}"#, 2, 2, 1)),
            ("std not positive", .format, ["std"], (#"{"type":"normalize","mean":"w","std":"w"}"#, 2, 2, 1)),
        ]
        for (name, k, words, (layers, i, o, v)) in cases {
            let (got, msg) = load(layers, input: i, output: o, version: v)
            XCTAssertEqual(got, k, "\(name): \(msg)")
            for word in words { XCTAssertTrue(msg.contains(word), "\(name): \(msg.debugDescription) should mention \(word)") }
        }
    }

    func testMissingOrBrokenArchitecture() {
        let none = handMade(header: #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        XCTAssertTrue(message { _ = try NativeFormat.load(bytes: none) }.contains("no InLoop architecture"))
        let badJSON = handMade(header: #"{"__metadata__":{"inloop":"{layers"}}"#)
        XCTAssertEqual(kind { _ = try NativeFormat.load(bytes: badJSON) }, .format)
        XCTAssertTrue(message { _ = try NativeFormat.load(bytes: badJSON) }.contains("architecture"))
    }

    func testFilesystemErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("inloop-test-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertEqual(kind { _ = try NativeFormat.load(path: dir.appendingPathComponent("missing.safetensors").path) }, .io)
        XCTAssertTrue(message { _ = try NativeFormat.load(path: dir.path) }.contains("directory"))
        let empty = dir.appendingPathComponent("empty.safetensors")
        FileManager.default.createFile(atPath: empty.path, contents: Data())
        XCTAssertEqual(kind { _ = try NativeFormat.load(path: empty.path) }, .format)
        XCTAssertTrue(message { _ = try NativeFormat.load(path: empty.path) }.hasPrefix(empty.path))
    }

    func testTruncatedFixtureFilesAreFormatErrorsAtEveryLength() throws {
        let bytes = [UInt8](try Data(contentsOf: fixturesDir.appendingPathComponent("norm_denorm.safetensors")))
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
            XCTAssertEqual(kind { _ = try NativeFormat.load(bytes: Array(bytes[0..<cut])) }, .format, "cut at \(cut)")
        }
    }

    func testWriterRoundTripsEveryFixture() throws {
        for name in try fixtureNames() {
            let m = try NativeFormat.load(path: fixturesDir.appendingPathComponent("\(name).safetensors").path)
            let again = try NativeFormat.load(bytes: try NativeFormat.serialize(m))
            let io = try readIOBin(fixturesDir.appendingPathComponent("\(name).io.bin"))
            XCTAssertEqual(try m.forward(io.x, batch: io.batch), try again.forward(io.x, batch: io.batch), name)
            XCTAssertEqual(again.inputSpecs, m.inputSpecs)
            XCTAssertEqual(again.outputSpecs, m.outputSpecs)
            XCTAssertEqual(try NativeFormat.serialize(again), try NativeFormat.serialize(m), "\(name): writer is deterministic")
            XCTAssertNotNil(again.graph.layerSpecs, "\(name): a version-1 file is written back as version 1")
        }
    }

    func fixtureNames() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: fixturesDir.path)
            .filter { $0.hasSuffix(".io.bin") }.map { String($0.dropLast(7)) }.sorted()
    }

    /// Fixtures: models written by Tests/fixtures/make_fixtures.py with float64 NumPy reference outputs.
    func testFixturesMatchNumPyReference() throws {
        let names = try fixtureNames()
        XCTAssertGreaterThan(names.count, 10)
        for name in names {
            let m = try NativeFormat.load(path: fixturesDir.appendingPathComponent("\(name).safetensors").path)
            let io = try readIOBin(fixturesDir.appendingPathComponent("\(name).io.bin"))
            XCTAssertEqual(m.inputSize, io.nIn, name)
            XCTAssertEqual(m.outputSize, io.nOut, name)
            let y = try m.forward(io.x, batch: io.batch)
            XCTAssertLessThan(relErr(y, io.y), 1e-5, name)
            let y1 = try m.forward(Array(io.x[0..<io.nIn]), batch: 1)
            XCTAssertLessThan(relErr(y1, Array(io.y[0..<io.nOut])), 1e-5, "\(name) batch 1")
        }
    }

    /// The benchmark models of ../shared/models, converted by tools/convert_peer_model.py:
    /// outputs must match their float64 reference `y_ref_f64`.
    func testConvertedBenchmarkModelsMatchReference() throws {
        let names = ["column_mlp", "column_mlp_small", "l96"]
        guard FileManager.default.fileExists(atPath: convertedDir.appendingPathComponent("l96.io.bin").path) else {
            throw XCTSkip("converted models not found in \(convertedDir.path); `make test` creates them")
        }
        for name in names {
            let m = try NativeFormat.load(path: convertedDir.appendingPathComponent("\(name).safetensors").path)
            let io = try readIOBin(convertedDir.appendingPathComponent("\(name).io.bin"))
            let y = try m.forward(io.x, batch: io.batch)
            XCTAssertLessThan(relErr(y, io.y), 1e-5, name)
        }
    }
}
