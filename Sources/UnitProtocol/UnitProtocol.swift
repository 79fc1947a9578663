// What `berth call` and `berth-unit` say to each other. No Foundation here: berth-unit stays small.

/// A request to run `/app/script/<script> <arguments…>` in a unit.
public struct CallRequest: Codable, Sendable, Equatable {
    public var script: String
    public var arguments: [String]
    /// 1-based part of `parts` with `--split`: the script sees BERTH_PART and BERTH_PARTS.
    public var part: Int?
    public var parts: Int?

    public init(script: String, arguments: [String], part: Int? = nil, parts: Int? = nil) {
        self.script = script
        self.arguments = arguments
        self.part = part
        self.parts = parts
    }
}

/// The paths a unit serves.
public enum UnitPath {
    public static let call = "/call"
    public static let health = "/health"
}

/// A piece of a call's answer. On the wire: `[kind, 0, 0, 0, size:UInt32 BE]` then `size` bytes,
/// the framing Docker uses for container output, plus a last frame with the exit status.
public enum UnitFrame: Sendable, Equatable {
    case stdout([UInt8])
    case stderr([UInt8])
    /// The script's exit status; always the last frame.
    case exit(Int32)

    public func encoded() -> [UInt8] {
        let kind: UInt8
        let payload: [UInt8]
        switch self {
        case .stdout(let bytes): kind = 1; payload = bytes
        case .stderr(let bytes): kind = 2; payload = bytes
        case .exit(let status): kind = 3; payload = Array(String(status).utf8)
        }
        let size = UInt32(payload.count)
        return [kind, 0, 0, 0, UInt8(size >> 24), UInt8((size >> 16) & 0xFF), UInt8((size >> 8) & 0xFF), UInt8(size & 0xFF)] + payload
    }
}

/// Reassembles frames from bytes arriving in any chunks.
public struct UnitFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [UnitFrame] {
        buffer.append(contentsOf: bytes)
        var frames: [UnitFrame] = []
        while buffer.count - start >= 8 {
            let kind = buffer[start]
            let size = Int(buffer[start + 4]) << 24 | Int(buffer[start + 5]) << 16 | Int(buffer[start + 6]) << 8 | Int(buffer[start + 7])
            guard buffer.count - start - 8 >= size else { break }
            let payload = Array(buffer[(start + 8)..<(start + 8 + size)])
            start += 8 + size
            switch kind {
            case 2: frames.append(.stderr(payload))
            case 3: frames.append(.exit(Int32(String(decoding: payload, as: UTF8.self)) ?? -1))
            default: frames.append(.stdout(payload))
            }
        }
        if start > 65536 || start == buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return frames
    }

    /// Bytes of an unfinished frame.
    public var pendingByteCount: Int { buffer.count - start }
}

/// Script names are relative paths inside `/app/script`; this rejects the ones that can never be.
/// (berth-unit also resolves symlinks before running anything.)
public enum ScriptName {
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "no script name" }
        if name.hasPrefix("/") { return "script \(name): give a name inside /app/script, not an absolute path" }
        if name.utf8.contains(0) { return "script name contains a NUL byte" }
        if name.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == ".." || $0.isEmpty || $0 == "." }) {
            return "script \(name): .. and empty path parts are not allowed"
        }
        return nil
    }
}
