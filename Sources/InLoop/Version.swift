/// The library version (semantic versioning).
enum InLoopVersion {
    static let string = "0.1.0"
}
