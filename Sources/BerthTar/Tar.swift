// The tar format `berth cp` moves files in: POSIX ustar with pax extended headers for what
// ustar cannot hold (long names and link targets, large sizes), as GNU tar and Docker write it.
// Read and written as a stream, so no archive is ever held whole.

/// One member of an archive.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file
        case directory
        case symlink(target: String)
        /// Anything else (hard links, devices, FIFOs, …), by its type flag; `berth cp` refuses these.
        case other(UInt8)
    }

    /// Relative and `/`-separated, as stored, without a trailing `/`.
    public var path: String
    public var kind: Kind
    /// Permission bits (and set-id and sticky bits) as stored.
    public var mode: UInt32
    /// The file's size; 0 for anything but a file.
    public var size: Int
    /// Seconds since 1970.
    public var modified: Int64
    public var uid: Int
    public var gid: Int

    public init(path: String, kind: Kind, mode: UInt32, size: Int = 0, modified: Int64, uid: Int = 0, gid: Int = 0) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.size = size
        self.modified = modified
        self.uid = uid
        self.gid = gid
    }
}

/// What a `TarReader` shows as it reads.
public enum TarEvent {
    case begin(TarEntry)
    /// Part of the current file's contents; valid only during the call.
    case data(UnsafeRawBufferPointer)
    case end
}

/// A damaged or hostile archive, in one line.
public struct TarError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Reads an archive from bytes arriving in any pieces. Headers are gathered (a block each, plus
/// bounded pax records); contents pass through as they come.
public struct TarReader: Sendable {
    private enum State {
        case header
        case contents(left: Int, padding: Int)
        case pax(left: Int, padding: Int, global: Bool)
        case padding(left: Int)
        case finished
    }

    private var state = State.header
    private var block: [UInt8] = []
    private var paxRecords: [UInt8] = []
    /// Values from a pax header for the next entry.
    private var overrides: [String: String] = [:]
    /// A pax header larger than this is refused: it would only be a way to fill memory.
    public static let maxPaxHeader = 64 * 1024

    public init() {}

    /// Whether the end-of-archive marker has been read.
    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    public mutating func feed(_ input: UnsafeRawBufferPointer, _ visit: (TarEvent) throws -> Void) throws {
        var offset = 0
        while offset < input.count {
            switch state {
            case .finished:
                // Whatever follows the end marker (tar pads to a record size) is ignored.
                return
            case .header:
                let take = min(512 - block.count, input.count - offset)
                block += input[offset..<(offset + take)]
                offset += take
                guard block.count == 512 else { return }
                let header = block
                block = []
                try readHeader(header, visit)
            case .contents(let left, let padding):
                let take = min(left, input.count - offset)
                if take > 0 { try visit(.data(UnsafeRawBufferPointer(rebasing: input[offset..<(offset + take)]))) }
                offset += take
                if take == left {
                    try visit(.end)
                    state = padding > 0 ? .padding(left: padding) : .header
                } else {
                    state = .contents(left: left - take, padding: padding)
                }
            case .pax(let left, let padding, let global):
                let take = min(left, input.count - offset)
                paxRecords += input[offset..<(offset + take)]
                offset += take
                if take == left {
                    if !global { overrides = try Self.parsePax(paxRecords) }
                    paxRecords = []
                    state = padding > 0 ? .padding(left: padding) : .header
                } else {
                    state = .pax(left: left - take, padding: padding, global: global)
                }
            case .padding(let left):
                let take = min(left, input.count - offset)
                offset += take
                state = take == left ? .header : .padding(left: left - take)
            }
        }
    }

    /// Checks the archive ended where it should: after its end marker, or at least between members.
    public func finish() throws {
        switch state {
        case .finished: return
        // Every writer ends with zero blocks: a stream without them was cut short, whatever
        // the connection below said.
        case .header where block.isEmpty: throw TarError("the archive ends without its end blocks: it was cut short")
        default: throw TarError("the archive ends in the middle of a member")
        }
    }

    private mutating func readHeader(_ header: [UInt8], _ visit: (TarEvent) throws -> Void) throws {
        if header.allSatisfy({ $0 == 0 }) {
            // One zero block ends the archive (two are written; one is enough to know).
            state = .finished
            return
        }
        let stored = header[148..<156]
        var sum = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 0x20 : Int(byte) }
        guard let expected = Self.octal(stored), expected == sum else { throw TarError("a tar header's checksum does not match: not a tar archive, or a damaged one") }
        let type = header[156]
        let size = try Self.size(try Self.number(header[124..<136], "size"))
        let padding = (512 - size % 512) % 512
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "g"):
            guard size <= Self.maxPaxHeader else { throw TarError("a pax header of \(size) bytes is over \(Self.maxPaxHeader)") }
            state = size > 0 ? .pax(left: size, padding: padding, global: type == UInt8(ascii: "g")) : .header
            return
        case UInt8(ascii: "L"), UInt8(ascii: "K"):
            throw TarError("GNU long-name headers are not read; write the archive with --format=pax")
        default:
            break
        }
        var path = Self.string(header[0..<100])
        let prefix = Self.string(header[345..<500])
        if header[257..<262].elementsEqual(Array("ustar".utf8)), !prefix.isEmpty { path = prefix + "/" + path }
        var linkTarget = Self.string(header[157..<257])
        var entrySize = size
        var modified = Int64(try Self.number(header[136..<148], "mtime"))
        var uid = try Self.number(header[108..<116], "uid")
        var gid = try Self.number(header[116..<124], "gid")
        if let value = overrides["path"] { path = value }
        if let value = overrides["linkpath"] { linkTarget = value }
        if let value = overrides["size"] {
            guard let parsed = Int(value), parsed >= 0 else { throw TarError("a pax size \"\(value.prefix(40))\" is not a size") }
            entrySize = try Self.size(parsed)
        }
        if let value = overrides["mtime"], let seconds = Int64(value.split(separator: ".").first ?? "") { modified = seconds }
        if let value = overrides["uid"], let parsed = Int(value) { uid = parsed }
        if let value = overrides["gid"], let parsed = Int(value) { gid = parsed }
        overrides = [:]
        let kind: TarEntry.Kind
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = path.hasSuffix("/") ? .directory : .file
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "2"): kind = .symlink(target: linkTarget)
        default: kind = .other(type)
        }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let mode = UInt32(try Self.number(header[100..<108], "mode") & 0o7777)
        let contents = kind == .file ? entrySize : 0
        let entryPadding = (512 - entrySize % 512) % 512
        try visit(.begin(TarEntry(path: path, kind: kind, mode: mode, size: contents, modified: modified, uid: uid, gid: gid)))
        // Whatever a member other than a file carries is skipped unread.
        if kind == .file {
            if entrySize == 0 {
                try visit(.end)
                state = .header
            } else {
                state = .contents(left: entrySize, padding: entryPadding)
            }
        } else {
            try visit(.end)
            state = entrySize > 0 ? .padding(left: entrySize + entryPadding) : .header
        }
    }

    /// Sizes a file system can hold: far larger ones are hostile, and would overflow the
    /// arithmetic of padding and skipping.
    static let maxMemberSize = 1 << 50

    private static func size(_ value: Int) throws -> Int {
        guard value <= maxMemberSize else { throw TarError("a member of \(value) bytes is larger than any file") }
        return value
    }

    private static func string(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    private static func octal(_ field: ArraySlice<UInt8>) -> Int? {
        let digits = field.drop { $0 == 0x20 }.prefix { $0 >= 0x30 && $0 <= 0x37 }
        guard !digits.isEmpty, digits.count <= 21 else { return digits.isEmpty ? 0 : nil }
        return digits.reduce(0) { $0 * 8 + Int($1 - 0x30) }
    }

    /// An octal field, or GNU's base-256 form (high bit set) for large values.
    private static func number(_ field: ArraySlice<UInt8>, _ name: String) throws -> Int {
        if let first = field.first, first & 0x80 != 0 {
            var value = Int(first & 0x7F)
            for byte in field.dropFirst() {
                guard value < Int.max >> 8 else { throw TarError("a tar header's \(name) is too large") }
                value = value << 8 | Int(byte)
            }
            return value
        }
        guard let value = octal(field) else { throw TarError("a tar header's \(name) is not a number") }
        return value
    }

    /// `LENGTH KEY=VALUE\n` records.
    private static func parsePax(_ bytes: [UInt8]) throws -> [String: String] {
        var values: [String: String] = [:]
        var offset = 0
        while offset < bytes.count {
            guard let space = bytes[offset...].firstIndex(of: 0x20),
                let length = Int(String(decoding: bytes[offset..<space], as: UTF8.self)), length > space - offset, length <= bytes.count - offset,
                bytes[offset + length - 1] == 0x0A,
                let equals = bytes[(space + 1)..<(offset + length)].firstIndex(of: UInt8(ascii: "="))
            else { throw TarError("a pax header's records are damaged") }
            values[String(decoding: bytes[(space + 1)..<equals], as: UTF8.self)] = String(decoding: bytes[(equals + 1)..<(offset + length - 1)], as: UTF8.self)
            offset += length
        }
        return values
    }
}

/// Writes archive members: a header (with a pax header first when ustar's fields are too
/// small), then the caller's contents, then `padding`; `end` closes the archive.
public enum TarWriter {
    /// Two zero blocks.
    public static let end = [UInt8](repeating: 0, count: 1024)

    /// The header blocks for `entry`.
    public static func header(for entry: TarEntry) -> [UInt8] {
        var path = entry.path
        if entry.kind == .directory, !path.hasSuffix("/") { path += "/" }
        var link = ""
        if case .symlink(let target) = entry.kind { link = target }
        var pax: [(String, String)] = []
        let (prefix, name) = split(path)
        if name == nil { pax.append(("path", path)) }
        if link.utf8.count > 100 { pax.append(("linkpath", link)) }
        let size = entry.kind == .file ? entry.size : 0
        if size > 0o77777777777 { pax.append(("size", String(size))) }
        var blocks: [UInt8] = []
        if !pax.isEmpty {
            var records: [UInt8] = []
            for (key, value) in pax { records += record(key, value) }
            let paxName = "PaxHeaders/" + String(path.split(separator: "/").last ?? "entry").prefix(80)
            blocks += block(name: Array(paxName.utf8), prefix: [], mode: 0o644, uid: 0, gid: 0, size: records.count, modified: entry.modified, type: UInt8(ascii: "x"), link: [])
            blocks += records + [UInt8](repeating: 0, count: (512 - records.count % 512) % 512)
        }
        let type: UInt8 = switch entry.kind {
        case .file: UInt8(ascii: "0")
        case .directory: UInt8(ascii: "5")
        case .symlink: UInt8(ascii: "2")
        case .other(let flag): flag
        }
        blocks += block(
            name: Array((name ?? String(path.suffix(99))).utf8).prefix(100).map { $0 }, prefix: Array((name == nil ? "" : prefix).utf8),
            mode: entry.mode, uid: entry.uid, gid: entry.gid, size: size > 0o77777777777 ? 0 : size, modified: entry.modified, type: type,
            link: Array(link.utf8.prefix(100)))
        return blocks
    }

    /// Zero bytes that round a member's contents of `size` bytes up to a whole block.
    public static func padding(for size: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: (512 - size % 512) % 512)
    }

    /// ustar's name and prefix for `path`, or a nil name when it does not fit.
    private static func split(_ path: String) -> (String, String?) {
        let bytes = Array(path.utf8)
        if bytes.count <= 100 { return ("", path) }
        // The prefix ends at a slash, with at most 155 bytes before it and 100 after.
        for index in stride(from: min(155, bytes.count - 1), through: 1, by: -1) where bytes[index] == UInt8(ascii: "/") {
            if bytes.count - index - 1 <= 100 && bytes.count - index - 1 > 0 {
                return (String(decoding: bytes[..<index], as: UTF8.self), String(decoding: bytes[(index + 1)...], as: UTF8.self))
            }
        }
        return ("", nil)
    }

    private static func record(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n".utf8.count
        var length = body + String(body).count
        if String(length).count != String(body).count { length = body + String(length).count }
        return Array("\(length) \(key)=\(value)\n".utf8)
    }

    private static func block(name: [UInt8], prefix: [UInt8], mode: UInt32, uid: Int, gid: Int, size: Int, modified: Int64, type: UInt8, link: [UInt8]) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int, width: Int) {
            for (index, byte) in bytes.prefix(width).enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            let text = String(value, radix: 8)
            put(Array((String(repeating: "0", count: max(0, width - 1 - text.count)) + text).utf8), at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(Int(mode & 0o7777), at: 100, width: 8)
        octal(max(0, min(uid, 0o7777777)), at: 108, width: 8)
        octal(max(0, min(gid, 0o7777777)), at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(Int(max(0, min(modified, 0o77777777777))), at: 136, width: 12)
        header[156] = type
        put(link, at: 157, width: 100)
        put(Array("ustar\u{0}00".utf8), at: 257, width: 8)
        put(prefix, at: 345, width: 155)
        put(Array("        ".utf8), at: 148, width: 8)
        let sum = header.reduce(0) { $0 + Int($1) }
        octal(sum, at: 148, width: 7)
        header[154] = 0
        header[155] = 0x20
        return header
    }
}
