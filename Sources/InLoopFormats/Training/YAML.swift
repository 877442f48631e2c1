import CYAML
import InLoopCore

/// YAML documents read with libyaml into the same `JSON` value the JSON parser produces, so one
/// schema reader serves both. Plain scalars are resolved with the YAML 1.2 core schema (null, bool,
/// int, float, else string); quoted scalars are strings. Anchors/aliases and multiple documents are
/// refused with a clear error (configurations do not need them).
public enum YAML {
    public static func parse(_ text: String) throws(InLoopError) -> JSON {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw InLoopError(.outOfMemory, "cannot initialise the YAML parser") }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { (buf) throws(InLoopError) -> JSON in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            var reader = EventReader(parser: &parser)
            return try reader.document()
        }
    }

    private struct EventReader {
        var parser: UnsafeMutablePointer<yaml_parser_t>
        var depth = 0

        init(parser: UnsafeMutablePointer<yaml_parser_t>) { self.parser = parser }

        mutating func next() throws(InLoopError) -> yaml_event_t {
            var event = yaml_event_t()
            guard yaml_parser_parse(parser, &event) == 1 else {
                let p = parser.pointee
                let problem = p.problem.map { String(cString: $0) } ?? "syntax error"
                throw InLoopError(.format, "invalid YAML at line \(p.problem_mark.line + 1), column \(p.problem_mark.column + 1): \(problem)")
            }
            return event
        }

        mutating func document() throws(InLoopError) -> JSON {
            var e = try next(); defer { yaml_event_delete(&e) }
            guard e.type == YAML_STREAM_START_EVENT else { throw InLoopError(.format, "invalid YAML stream") }
            var d = try next()
            if d.type == YAML_STREAM_END_EVENT { yaml_event_delete(&d); return .null }
            guard d.type == YAML_DOCUMENT_START_EVENT else { yaml_event_delete(&d); throw InLoopError(.format, "invalid YAML document") }
            yaml_event_delete(&d)
            var first = try next()
            let value = try node(&first)
            var end = try next(); defer { yaml_event_delete(&end) }
            guard end.type == YAML_DOCUMENT_END_EVENT else { throw InLoopError(.format, "invalid YAML document end") }
            var after = try next(); defer { yaml_event_delete(&after) }
            guard after.type == YAML_STREAM_END_EVENT else {
                throw InLoopError(.format, "YAML holds more than one document; a configuration is one document")
            }
            return value
        }

        /// Converts the node starting with `event` (consumed) and its children.
        mutating func node(_ event: inout yaml_event_t) throws(InLoopError) -> JSON {
            defer { yaml_event_delete(&event) }
            let line = event.start_mark.line + 1
            switch event.type {
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
                return s.style == YAML_PLAIN_SCALAR_STYLE ? resolve(text) : .string(text)
            case YAML_SEQUENCE_START_EVENT:
                depth += 1
                defer { depth -= 1 }
                guard depth < 64 else { throw InLoopError(.format, "YAML nested deeper than 64 levels at line \(line)") }
                var items: [JSON] = []
                while true {
                    var e = try next()
                    if e.type == YAML_SEQUENCE_END_EVENT { yaml_event_delete(&e); return .array(items) }
                    items.append(try node(&e))
                }
            case YAML_MAPPING_START_EVENT:
                depth += 1
                defer { depth -= 1 }
                guard depth < 64 else { throw InLoopError(.format, "YAML nested deeper than 64 levels at line \(line)") }
                var members: [(String, JSON)] = []
                while true {
                    var k = try next()
                    if k.type == YAML_MAPPING_END_EVENT { yaml_event_delete(&k); return .object(members) }
                    let keyLine = k.start_mark.line + 1
                    guard case .string(let key) = try keyString(&k) else { throw InLoopError(.internal, "YAML key") }
                    guard !members.contains(where: { $0.0 == key }) else {
                        throw InLoopError(.format, "YAML line \(keyLine): duplicate key \"\(key)\"")
                    }
                    var v = try next()
                    members.append((key, try node(&v)))
                }
            case YAML_ALIAS_EVENT:
                throw InLoopError(.format, "YAML line \(line): anchors and aliases are not supported in configurations")
            default:
                throw InLoopError(.format, "YAML line \(line): unexpected structure")
            }
        }

        mutating func keyString(_ event: inout yaml_event_t) throws(InLoopError) -> JSON {
            guard event.type == YAML_SCALAR_EVENT else {
                let line = event.start_mark.line + 1
                yaml_event_delete(&event)
                throw InLoopError(.format, "YAML line \(line): mapping keys must be plain strings")
            }
            let s = event.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
            yaml_event_delete(&event)
            return .string(text)
        }
    }

    /// YAML 1.2 core schema resolution of a plain scalar.
    static func resolve(_ t: String) -> JSON {
        switch t {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .number(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .number(-.infinity)
        case ".nan", ".NaN", ".NAN": return .number(.nan)
        default: break
        }
        if t.hasPrefix("0x"), let v = Int(t.dropFirst(2), radix: 16) { return .number(Double(v)) }
        if t.hasPrefix("0o"), let v = Int(t.dropFirst(2), radix: 8) { return .number(Double(v)) }
        let allowed = t.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || $0 == 43 || $0 == 45 || $0 == 46 || $0 == 101 || $0 == 69 }
        if allowed, t.utf8.contains(where: { $0 >= 48 && $0 <= 57 }), let d = Double(t) { return .number(d) }
        return .string(t)
    }
}
