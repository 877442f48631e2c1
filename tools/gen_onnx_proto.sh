#!/usr/bin/env bash
# Regenerates Sources/InLoopFormats/ONNX/onnx.pb.swift from tools/onnx/onnx.proto.
#
# The generated Swift is committed: building InLoop needs neither protoc nor the plugin. Run this
# only when onnx.proto or the swift-protobuf version changes.
#
# Needs:
#   protoc               (Debian/Ubuntu: apt-get install protobuf-compiler)
#   protoc-gen-swift     built from swift-protobuf at the SAME version as Package.swift resolves
#                        (the generated code checks the runtime version it was made for):
#       git clone --depth 1 --branch 1.39.0 https://github.com/apple/swift-protobuf /tmp/swift-protobuf
#       (cd /tmp/swift-protobuf && swift build -c release --product protoc-gen-swift)
#   then either put /tmp/swift-protobuf/.build/release on PATH or set PROTOC_GEN_SWIFT to the binary.
#
# tools/onnx/onnx.proto is the onnx.proto shipped in the `onnx` Python package
# (python3 -c "import onnx,os;print(os.path.dirname(onnx.__file__))"), copied unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PLUGIN="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || echo /tmp/swift-protobuf/.build/release/protoc-gen-swift)}"
[ -x "$PLUGIN" ] || { echo "gen_onnx_proto: protoc-gen-swift not found (see the comment at the top of $0)" >&2; exit 1; }
command -v protoc >/dev/null || { echo "gen_onnx_proto: protoc not found" >&2; exit 1; }
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
protoc --plugin=protoc-gen-swift="$PLUGIN" \
       --proto_path="$ROOT/tools/onnx" \
       --swift_opt=Visibility=Internal \
       --swift_out="$OUT" \
       "$ROOT/tools/onnx/onnx.proto"
mkdir -p "$ROOT/Sources/InLoopFormats/ONNX"
cp "$OUT/onnx.pb.swift" "$ROOT/Sources/InLoopFormats/ONNX/onnx.pb.swift"
echo "gen_onnx_proto: wrote Sources/InLoopFormats/ONNX/onnx.pb.swift"
