import InLoopCore

/// Status codes returned by every InLoop call that can fail. `INLOOP_OK` is 0; the message
/// of the last failure on the calling thread is `inloop_last_error()`.
@c public enum inloop_status: Int32 {
    /// Success.
    case INLOOP_OK = 0
    /// A required pointer argument is NULL.
    case INLOOP_ERR_NULL_POINTER = 1
    /// A size or value is out of range (batch <= 0, threads < 1, ...).
    case INLOOP_ERR_INVALID_ARGUMENT = 2
    /// A size the caller passed disagrees with the model.
    case INLOOP_ERR_SIZE_MISMATCH = 3
    /// The handle was already freed, or was never made by this library.
    case INLOOP_ERR_INVALID_HANDLE = 4
    /// A file is missing, unreadable, a directory, or cannot be written.
    case INLOOP_ERR_IO = 5
    /// Not a valid model file: truncated, malformed or inconsistent.
    case INLOOP_ERR_FORMAT = 6
    /// A valid file that uses a feature (layer, activation, version) this InLoop lacks.
    case INLOOP_ERR_UNSUPPORTED = 7
    /// NaN or Inf found where checking was asked for.
    case INLOOP_ERR_NONFINITE = 8
    /// Memory could not be allocated.
    case INLOOP_ERR_OUT_OF_MEMORY = 9
    /// The handle is being used by another thread at this moment.
    case INLOOP_ERR_BUSY = 10
    /// A bug in InLoop: please report it with the message.
    case INLOOP_ERR_INTERNAL = 11
    /// An MPI call failed, or MPI is not initialised where a communicator was given.
    case INLOOP_ERR_MPI = 12
}

extension inloop_status {
    init(_ kind: InLoopError.Kind) {
        self = inloop_status(rawValue: kind.rawValue) ?? .INLOOP_ERR_INTERNAL
    }

    /// Short description for `inloop_status_string`.
    var text: String {
        switch self {
        case .INLOOP_OK: return "INLOOP_OK: success"
        case .INLOOP_ERR_NULL_POINTER: return "INLOOP_ERR_NULL_POINTER: a required pointer argument is NULL"
        case .INLOOP_ERR_INVALID_ARGUMENT: return "INLOOP_ERR_INVALID_ARGUMENT: an argument is out of range"
        case .INLOOP_ERR_SIZE_MISMATCH: return "INLOOP_ERR_SIZE_MISMATCH: array sizes disagree with the model"
        case .INLOOP_ERR_INVALID_HANDLE: return "INLOOP_ERR_INVALID_HANDLE: handle already freed or not made by InLoop"
        case .INLOOP_ERR_IO: return "INLOOP_ERR_IO: file cannot be read or written"
        case .INLOOP_ERR_FORMAT: return "INLOOP_ERR_FORMAT: not a valid model file"
        case .INLOOP_ERR_UNSUPPORTED: return "INLOOP_ERR_UNSUPPORTED: model uses a feature this InLoop does not support"
        case .INLOOP_ERR_NONFINITE: return "INLOOP_ERR_NONFINITE: NaN or Inf found"
        case .INLOOP_ERR_OUT_OF_MEMORY: return "INLOOP_ERR_OUT_OF_MEMORY: memory could not be allocated"
        case .INLOOP_ERR_BUSY: return "INLOOP_ERR_BUSY: handle in use by another thread"
        case .INLOOP_ERR_INTERNAL: return "INLOOP_ERR_INTERNAL: internal error in InLoop (please report)"
        case .INLOOP_ERR_MPI: return "INLOOP_ERR_MPI: MPI call failed or MPI not initialized"
        }
    }
}
