// swift-tools-version:6.1
// InLoop: neural-network inference/training engine for Fortran/C hosts, shipped as libInLoop.so.
import PackageDescription

// The MPI the library is built against: Open MPI (default, pkg-config `ompi-c`) or MPICH with
// INLOOP_MPI=mpich (`make MPI=mpich`, in its own scratch directory; pkg-config `mpich`).
let mpich = Context.environment["INLOOP_MPI"] == "mpich"

let package = Package(
    name: "InLoop",
    products: [
        // The one shared library a Fortran or C program links: libInLoop.so
        .library(name: "InLoop", type: .dynamic, targets: ["InLoop"]),
    ],
    dependencies: [
        // ONNX protobuf decoding (message code generated once by tools/gen_onnx_proto.sh, committed).
        // No traits: the default BinaryDelimitedStreams trait imports all of Foundation (and ICU).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
        // The `inloop` command-line tool only (not linked into libInLoop.so).
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // OpenBLAS (cblas_sgemm, cblas_sgemv, openblas_set_num_threads), found with pkg-config.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // The MPI C library (Open MPI or MPICH, see `mpich`), found with pkg-config, which also gives the
        // library to link; only the shim below includes mpi.h.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: mpich ? "mpich" : "ompi-c",
                       providers: [.apt([mpich ? "libmpich-dev" : "libopenmpi-dev"])]),
        // libyaml (Debian libyaml-dev) for YAML training configurations. Yams, its Swift wrapper,
        // needs Foundation, which would load ICU into every Fortran process.
        .systemLibrary(name: "CYAML", path: "Sources/CYAML", pkgConfig: "yaml-0.1",
                       providers: [.apt(["libyaml-dev"])]),
        // Tiny C shim: MPI handles are C macros, so Swift reaches them through plain functions.
        .target(name: "InLoopMPIShim", dependencies: ["CMPI"], path: "Sources/InLoopMPIShim"),
        // InLoop's hot float32 elementwise kernels in C, each compiled for baseline x86-64, AVX2 and
        // AVX-512 (per-function targets) and picked at run time (Swift cannot compile per-function
        // targets). -O2 in debug builds too, so that the test suite checks the vectorised code it ships;
        // -ffp-contract=off: an FMA contraction would change bits between levels.
        .target(name: "InLoopKernelsC", path: "Sources/InLoopKernelsC",
                cSettings: [.unsafeFlags(["-O2", "-ffp-contract=off", "-fno-math-errno"])]),
        // Engine core: pure Swift (no Foundation, no C types in its API): tensors, kernels, layers, model, plan.
        .target(name: "InLoopCore", dependencies: ["CBLAS", "InLoopKernelsC"], path: "Sources/InLoopCore",
                swiftSettings: [
                    // sqrt without errno (never read): the IEEE instruction, which loops can vectorise.
                    .unsafeFlags(["-Xcc", "-fno-math-errno"]),
                    // No dynamic exclusivity checks in release builds: each batch-1 call made a dozen
                    // swift_beginAccess calls on the model's and executor's properties (~5% of an l96
                    // call). A model runs under its own busy flag, so no two calls touch one model at
                    // once; debug builds (the test suite) keep the checks.
                    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
                ]),
        // Model file formats (native safetensors, ONNX) -> core models.
        .target(name: "InLoopFormats",
                dependencies: ["InLoopCore", "CYAML", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                path: "Sources/InLoopFormats"),
        // MPI for the C ABI: communicators, deterministic data-parallel reduction, rank-0 reads,
        // thread defaults. The core stays MPI-free.
        .target(name: "InLoopMPI", dependencies: ["InLoopCore", "InLoopFormats", "InLoopMPIShim"], path: "Sources/InLoopMPI"),
        // The C ABI: @c functions that validate arguments, call the core and map errors to status codes.
        .target(name: "InLoop", dependencies: ["InLoopCore", "InLoopFormats", "InLoopMPI"],
                path: "Sources/InLoop",
                swiftSettings: [
                    // The compiler writes the C declarations of the @c functions here;
                    // tools/gen_header.py turns them into Include/inloop.h.
                    .unsafeFlags(["-emit-clang-header-path", ".build/inloop-swift.h"]),
                    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
                ]),
        // `make bench`: engine forward vs bare BLAS on the same layer shapes (not part of the library).
        .executableTarget(name: "inloop-bench", dependencies: ["InLoopCore", "InLoopFormats", "CBLAS"],
                          path: "bench/swift"),
        // `make bench`: time of one training step (not part of the library).
        .executableTarget(name: "inloop-bench-training", dependencies: ["InLoopCore", "InLoopFormats"],
                          path: "bench/training"),
        // `inloop inspect|run|convert`: the command-line tool (Foundation allowed here, not in the library).
        .executableTarget(name: "inloop",
                          dependencies: ["InLoopCore", "InLoopFormats", "InLoopNpy",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/inloop-cli"),
        // The CLI's .npy reader and writer (Foundation; not part of the library), a module of its own so
        // that its fuzz target links it.
        .target(name: "InLoopNpy", path: "Sources/InLoopNpy"),
        .testTarget(name: "InLoopCoreTests", dependencies: ["InLoopCore"], path: "Tests/InLoopCoreTests"),
        .testTarget(name: "InLoopFormatsTests", dependencies: ["InLoopFormats", "InLoopCore"],
                    path: "Tests/InLoopFormatsTests"),
        .testTarget(name: "InLoopTests", dependencies: ["InLoop", "InLoopFormats", "InLoopCore"],
                    path: "Tests/InLoopTests"),
    ]
)

// Fuzz targets (Tests/fuzz, `make fuzz`): libFuzzer executables, part of the package only when
// INLOOP_FUZZ=1, built with `swift build --sanitize=fuzzer` (libFuzzer provides `main`).
if Context.environment["INLOOP_FUZZ"] == "1" {
    for (name, deps) in [("native", ["InLoopCore", "InLoopFormats"]), ("onnx", ["InLoopCore", "InLoopFormats"]),
                         ("config", ["InLoopCore", "InLoopFormats"]), ("checkpoint", ["InLoopCore", "InLoopFormats"]),
                         ("npy", ["InLoopNpy"])] {
        package.targets.append(.executableTarget(name: "fuzz-\(name)",
                                                 dependencies: deps.map { .target(name: $0) },
                                                 path: "Tests/fuzz/targets/\(name)"))
    }
}
