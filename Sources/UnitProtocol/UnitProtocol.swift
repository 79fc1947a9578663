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

/// A piece of a frame as the decoder shows it: an output payload points into the bytes being fed
/// and is valid only while it is shown.
public enum UnitFrameView {
    case stdout(UnsafeRawBufferPointer)
    case stderr(UnsafeRawBufferPointer)
    case exit(Int32)
}

/// A frame announcing more than the reader takes: the stream is broken or hostile.
public struct UnitFrameTooLarge: Error, CustomStringConvertible {
    public let size: Int
    public let limit: Int
    /// An exit status's frame, which holds a number.
    public var isExitStatus = false

    public var description: String {
        isExitStatus
            ? "an exit status of \(size) bytes, more than the \(limit) a status takes"
            : "a frame of \(size) bytes, more than the \(limit) a frame may hold"
    }
}

/// Reassembles frames from bytes arriving in any chunks. Output passes on in place, a piece at a
/// time as it arrives: a frame of 256 KiB read 64 KiB at a time shows as four pieces and is never
/// gathered. Only a header split between chunks and the few bytes of an exit status are.
public struct UnitFrameDecoder: Sendable {
    /// A header split between chunks, or the exit status being read.
    private var partial: [UInt8] = []
    /// The kind and the bytes left of the frame whose payload is being read; nil between frames.
    private var payload: (kind: UInt8, remaining: Int)?
    /// The pieces of an output frame not yet whole, for the caller that wants whole frames.
    private var gathered: [UInt8] = []
    /// The largest payload a frame may announce: a sender cannot have the reader take gigabytes
    /// for one frame. Units send what one read of a pipe gives, 256 KiB at most.
    public let maxFrame: Int
    /// An exit status is a decimal number.
    static let longestExit = 16

    public init(maxFrame: Int = 8 << 20) {
        self.maxFrame = maxFrame
    }

    /// The frames completed by `bytes`, each whole, its payload copied.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws -> [UnitFrame] {
        var frames: [UnitFrame] = []
        var gathered = self.gathered
        self.gathered = []
        func collect(_ view: UnitFrameView, ends: Bool) {
            switch view {
            case .stdout(let piece), .stderr(let piece): gathered += piece
            case .exit: break
            }
            guard ends else { return }
            switch view {
            case .stdout: frames.append(.stdout(gathered))
            case .stderr: frames.append(.stderr(gathered))
            case .exit(let status): frames.append(.exit(status))
            }
            gathered = []
        }
        if try bytes.withContiguousStorageIfAvailable({ try decode(UnsafeRawBufferPointer($0), collect) }) == nil {
            try Array(bytes).withUnsafeBytes { try decode($0, collect) }
        }
        self.gathered = gathered
        return frames
    }

    /// Shows `visit` each piece of output that `input` holds, in order, without copying it: a
    /// reader that writes each piece somewhere at once touches every byte once. A frame split
    /// between chunks shows as several pieces of its kind. When `visit` throws, the rest of
    /// `input` is dropped and the error passes on.
    public mutating func feed(_ input: UnsafeRawBufferPointer, _ visit: (UnitFrameView) throws -> Void) throws {
        try decode(input) { view, _ in try visit(view) }
    }

    /// As `feed(_:_:)`, telling each piece whether it ends its frame.
    public mutating func feed(_ input: UnsafeRawBufferPointer, pieces visit: (UnitFrameView, _ endsFrame: Bool) throws -> Void) throws {
        try decode(input, visit)
    }

    /// The pieces of `input`, each with whether it ends its frame.
    private mutating func decode(_ input: UnsafeRawBufferPointer, _ visit: (UnitFrameView, _ ends: Bool) throws -> Void) throws {
        var offset = 0
        while true {
            if let (kind, remaining) = payload {
                if kind == 3 {
                    let take = min(remaining, input.count - offset)
                    partial += input[offset..<(offset + take)]
                    offset += take
                    guard take == remaining else { payload = (kind, remaining - take); return }
                    let status = Int32(String(decoding: partial, as: UTF8.self)) ?? -1
                    partial = []
                    payload = nil
                    try visit(.exit(status), true)
                    continue
                }
                let take = min(remaining, input.count - offset)
                // An empty frame still shows, as one empty piece.
                guard take > 0 || remaining == 0 else { return }
                let piece = UnsafeRawBufferPointer(rebasing: input[offset..<(offset + take)])
                offset += take
                payload = take == remaining ? nil : (kind, remaining - take)
                try visit(kind == 2 ? .stderr(piece) : .stdout(piece), payload == nil)
                continue
            }
            // A header: straight from the input when it is whole there, gathered when split.
            let size: Int, kind: UInt8
            if partial.isEmpty && input.count - offset >= 8 {
                kind = input[offset]
                size = Self.size(input, at: offset)
                offset += 8
            } else {
                let take = min(8 - partial.count, input.count - offset)
                partial += input[offset..<(offset + take)]
                offset += take
                guard partial.count == 8 else { return }
                kind = partial[0]
                size = partial.withUnsafeBytes { Self.size($0, at: 0) }
                partial = []
            }
            guard size <= (kind == 3 ? Self.longestExit : maxFrame) else {
                throw UnitFrameTooLarge(size: size, limit: kind == 3 ? Self.longestExit : maxFrame, isExitStatus: kind == 3)
            }
            payload = (kind, size)
        }
    }

    /// The payload size in the frame header at `index`.
    private static func size(_ bytes: UnsafeRawBufferPointer, at index: Int) -> Int {
        Int(bytes[index + 4]) << 24 | Int(bytes[index + 5]) << 16 | Int(bytes[index + 6]) << 8 | Int(bytes[index + 7])
    }

    /// Bytes of an unfinished frame held here: a split header or exit status, or for whole
    /// frames the output gathered so far.
    public var pendingByteCount: Int { partial.count + gathered.count }
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
