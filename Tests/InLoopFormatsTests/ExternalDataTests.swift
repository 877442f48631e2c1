import XCTest
import Foundation
import InLoopFormats
import InLoopCore

/// ONNX external data (`model.onnx` + `model.onnx.data`), read from the model's directory when the
/// model is loaded from its path; the files are Tests/fuzz/regressions/onnx/ext_* (written by
/// Tests/fuzz/make_regressions.py, also run through the fuzz target and LimitsTests as bytes).
final class ExternalDataTests: XCTestCase {
    static let dir = repoRoot.appendingPathComponent("Tests/fuzz/regressions/onnx")

    /// y = x·Wᵀ + B with W = (0..<12)/8 − 0.5 as [3, 4] and B = [0.25, −0.5, 1], both external:
    /// the reference is computed here in Double from the same formula, not from the file.
    func testExternalWeightsLoadFromThePath() throws {
        let m = try ModelFile.load(path: ExternalDataTests.dir.appendingPathComponent("ext_good.onnx").path)
        let b: [Double] = [0.25, -0.5, 1.0]
        for batch in [1, 3] {
            let x = (0..<(batch * 4)).map { Float($0 % 7) * 0.3 - 0.7 }
            let y = try m.runArrays(batch: batch, [x])[0]
            XCTAssertEqual(y.count, batch * 3)
            for s in 0..<batch {
                for o in 0..<3 {
                    var ref = b[o]
                    for i in 0..<4 { ref += Double(x[s * 4 + i]) * (Double(o * 4 + i) / 8 - 0.5) }
                    XCTAssertEqual(Double(y[s * 3 + o]), ref, accuracy: 1e-5, "batch \(batch) sample \(s) output \(o)")
                }
            }
        }
    }

    /// Relative paths resolve against the model's directory, not the working directory.
    func testRelativeModelPath() throws {
        let cwd = FileManager.default.currentDirectoryPath
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        _ = FileManager.default.changeCurrentDirectoryPath(ExternalDataTests.dir.deletingLastPathComponent().path)
        XCTAssertNoThrow(try ModelFile.load(path: "onnx/ext_good.onnx"))
        _ = FileManager.default.changeCurrentDirectoryPath(ExternalDataTests.dir.path)
        XCTAssertNoThrow(try ModelFile.load(path: "ext_good.onnx"))
    }

    /// From memory there is no directory: refused, and the message says how to load it.
    func testFromBytesIsRefused() throws {
        let bytes = [UInt8](try Data(contentsOf: ExternalDataTests.dir.appendingPathComponent("ext_good.onnx")))
        XCTAssertThrowsError(try ModelFile.load(bytes: bytes)) { e in
            let err = e as? InLoopError
            XCTAssertEqual(err?.kind, .unsupported)
            XCTAssertTrue(err?.message.contains("inloop_model_load") ?? false, err?.message ?? "")
        }
    }

    /// Hostile references: an error of the expected kind naming the problem, never a read outside the
    /// directory or past the end of a file.
    func testHostileReferencesGiveErrors() throws {
        let cases: [(String, InLoopError.Kind, String)] = [
            ("ext_offset_beyond_end", .format, "past the end"),
            ("ext_offset_2p63", .format, "past the end"),
            ("ext_offset_negative", .format, "offset"),
            ("ext_length_mismatch", .format, "length 40"),
            ("ext_parent_dir", .format, ".."),
            ("ext_absolute_path", .format, "not a relative path"),
            ("ext_truncated", .format, "truncated"),
            ("ext_missing_file", .io, "no_such_file.data"),
            ("ext_no_location", .format, "no 'location' key"),
        ]
        for (name, kind, needle) in cases {
            let path = ExternalDataTests.dir.appendingPathComponent(name + ".onnx").path
            XCTAssertThrowsError(try ModelFile.load(path: path), name) { e in
                let err = e as? InLoopError
                XCTAssertEqual(err?.kind, kind, "\(name): \(err?.message ?? "")")
                XCTAssertTrue(err?.message.contains(needle) ?? false, "\(name): \(err?.message ?? "")")
            }
        }
    }

    /// A symbolic link that leaves the model's directory is refused like `..`.
    func testSymlinkOutsideTheDirectoryIsRefused() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("inloop-ext-\(getpid())")
        let inner = tmp.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: inner, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let src = ExternalDataTests.dir
        try FileManager.default.copyItem(at: src.appendingPathComponent("ext_good.onnx"), to: inner.appendingPathComponent("ext_good.onnx"))
        try FileManager.default.copyItem(at: src.appendingPathComponent("ext_good.onnx.data"), to: tmp.appendingPathComponent("outside.data"))
        try FileManager.default.createSymbolicLink(atPath: inner.appendingPathComponent("ext_good.onnx.data").path,
                                                   withDestinationPath: tmp.appendingPathComponent("outside.data").path)
        XCTAssertThrowsError(try ModelFile.load(path: inner.appendingPathComponent("ext_good.onnx").path)) { e in
            XCTAssertEqual((e as? InLoopError)?.kind, .format, (e as? InLoopError)?.message ?? "")
            XCTAssertTrue((e as? InLoopError)?.message.contains("outside the model's directory") ?? false)
        }
        // the same file copied inside loads
        try FileManager.default.removeItem(at: inner.appendingPathComponent("ext_good.onnx.data"))
        try FileManager.default.copyItem(at: tmp.appendingPathComponent("outside.data"), to: inner.appendingPathComponent("ext_good.onnx.data"))
        XCTAssertNoThrow(try ModelFile.load(path: inner.appendingPathComponent("ext_good.onnx").path))
    }
}
