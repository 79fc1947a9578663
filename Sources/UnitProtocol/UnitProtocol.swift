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
/// How `berth call` proves to a unit that it holds the session's unit secret: `Authorization:
/// Bearer SECRET`, compared in constant time so that timing tells nothing of the secret.
public enum UnitAuthorization {
    public static func header(secret: String) -> String { "Bearer \(secret)" }

    public static func admits(_ presented: String?, secret: String) -> Bool {
        let lhs = Array((presented ?? "").utf8), rhs = Array(header(secret: secret).utf8)
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}

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
        return Self.header(kind: kind, size: payload.count) + payload
    }

    /// The 8 bytes before a payload of `size` bytes: stdout is kind 1, stderr 2, the exit 3.
    public static func header(kind: UInt8, size: Int) -> [UInt8] {
        let size = UInt32(size)
        return [kind, 0, 0, 0, UInt8(size >> 24), UInt8((size >> 16) & 0xFF), UInt8((size >> 8) & 0xFF), UInt8(size & 0xFF)]
    }
}

/// A frame as the decoder shows it: the payload points into the bytes being fed (or into the
/// decoder's buffer, for a frame split between chunks) and is valid only while it is shown.
public enum UnitFrameView {
    case stdout(UnsafeRawBufferPointer)
    case stderr(UnsafeRawBufferPointer)
    case exit(Int32)
}

/// A frame announcing more than the reader takes: the stream is broken or hostile.
public struct UnitFrameTooLarge: Error, CustomStringConvertible {
    public let size: Int
    public let limit: Int

    public var description: String { "a frame of \(size) bytes, more than the \(limit) a frame may hold" }
}

/// Reassembles frames from bytes arriving in any chunks. Frames are read straight from each
/// chunk; only a frame split between chunks is gathered in a buffer.
public struct UnitFrameDecoder: Sendable {
    /// The start of a frame that the next chunk continues.
    private var partial: [UInt8] = []
    /// The largest payload a frame may announce: a sender cannot make the reader gather
    /// gigabytes for one frame. Units send what one read of a pipe gives, 256 KiB at most.
    public let maxFrame: Int

    public init(maxFrame: Int = 8 << 20) {
        self.maxFrame = maxFrame
    }

    /// The frames completed by `bytes`, each payload copied into its frame.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws -> [UnitFrame] {
        var frames: [UnitFrame] = []
        func collect(_ view: UnitFrameView) {
            switch view {
            case .stdout(let payload): frames.append(.stdout(Array(payload)))
            case .stderr(let payload): frames.append(.stderr(Array(payload)))
            case .exit(let status): frames.append(.exit(status))
            }
        }
        if try bytes.withContiguousStorageIfAvailable({ try feed(UnsafeRawBufferPointer($0), collect) }) == nil {
            try Array(bytes).withUnsafeBytes { try feed($0, collect) }
        }
        return frames
    }

    /// Shows `visit` each frame that `input` completes, in order, without copying its payload:
    /// a reader that writes each payload somewhere at once touches every byte once. When `visit`
    /// throws, the rest of `input` is dropped and the error passes on.
    public mutating func feed(_ input: UnsafeRawBufferPointer, _ visit: (UnitFrameView) throws -> Void) throws {
        var offset = 0
        if !partial.isEmpty {
            // Complete the split frame with just the bytes it still lacks.
            if partial.count < 8 {
                let take = min(8 - partial.count, input.count)
                partial += input[0..<take]
                offset = take
                if partial.count < 8 { return }
            }
            let size = partial.withUnsafeBytes { Self.size($0, at: 0) }
            guard size <= maxFrame else { throw UnitFrameTooLarge(size: size, limit: maxFrame) }
            let take = min(8 + size - partial.count, input.count - offset)
            partial += input[offset..<(offset + take)]
            offset += take
            if partial.count < 8 + size { return }
            let completed = partial
            partial = []
            try completed.withUnsafeBytes { frame in
                try visit(Self.view(kind: frame[0], payload: UnsafeRawBufferPointer(rebasing: frame[8...])))
            }
        }
        while input.count - offset >= 8 {
            let size = Self.size(input, at: offset)
            guard size <= maxFrame else { throw UnitFrameTooLarge(size: size, limit: maxFrame) }
            guard input.count - offset - 8 >= size else { break }
            let kind = input[offset]
            let payload = UnsafeRawBufferPointer(rebasing: input[(offset + 8)..<(offset + 8 + size)])
            offset += 8 + size
            try visit(Self.view(kind: kind, payload: payload))
        }
        partial += input[offset...]
    }

    /// The payload size in the frame header at `index`.
    private static func size(_ bytes: UnsafeRawBufferPointer, at index: Int) -> Int {
        Int(bytes[index + 4]) << 24 | Int(bytes[index + 5]) << 16 | Int(bytes[index + 6]) << 8 | Int(bytes[index + 7])
    }

    private static func view(kind: UInt8, payload: UnsafeRawBufferPointer) -> UnitFrameView {
        switch kind {
        case 2: .stderr(payload)
        case 3: .exit(Int32(String(decoding: payload, as: UTF8.self)) ?? -1)
        default: .stdout(payload)
        }
    }

    /// Bytes of an unfinished frame.
    public var pendingByteCount: Int { partial.count }
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
