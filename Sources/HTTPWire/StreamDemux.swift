#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One piece of a container's output, typed by where it came from.
public enum OutputFrame: Sendable, Equatable {
    case stdout(Data)
    case stderr(Data)
    /// Output of a container or exec with a TTY: one merged stream, no framing.
    case console(Data)

    public var data: Data {
        switch self {
        case .stdout(let data), .stderr(let data), .console(let data): data
        }
    }
}

/// A frame announcing more than the reader takes: the stream is broken or hostile.
public struct FrameTooLarge: Error, CustomStringConvertible {
    public let size: Int
    public let limit: Int

    public var description: String { "a frame of \(size) bytes, more than the \(limit) a frame may hold" }
}

/// Splits Docker's multiplexed stream (`[stream, 0, 0, 0, size:UInt32 BE]` then `size` bytes)
/// into frames, whatever chunk boundaries the bytes arrive with.
public struct StreamDemux: Sendable {
    private var buffer = Data()
    private let raw: Bool
    /// The largest payload a frame may announce, so that a broken or hostile sender cannot make
    /// the reader gather gigabytes for one frame. Docker's frames are what one read gave, 32 KiB.
    public let maxFrame: Int

    /// `tty: true` passes bytes through as `.console`; otherwise they are demultiplexed.
    public init(tty: Bool, maxFrame: Int = 8 << 20) {
        raw = tty
        self.maxFrame = maxFrame
    }

    /// Feeds bytes and returns every frame they complete.
    public mutating func feed(_ bytes: Data) throws(FrameTooLarge) -> [OutputFrame] {
        if raw { return bytes.isEmpty ? [] : [.console(bytes)] }
        buffer.append(bytes)
        var frames: [OutputFrame] = []
        var offset = buffer.startIndex
        while buffer.endIndex - offset >= 8 {
            let kind = buffer[offset]
            let size = buffer[(offset + 4)..<(offset + 8)].reduce(0) { ($0 << 8) | Int($1) }
            guard size <= maxFrame else { throw FrameTooLarge(size: size, limit: maxFrame) }
            guard buffer.endIndex - offset - 8 >= size else { break }
            let payload = Data(buffer[(offset + 8)..<(offset + 8 + size)])
            offset += 8 + size
            guard size > 0 else { continue }
            frames.append(kind == 2 ? .stderr(payload) : .stdout(payload))
        }
        if offset != buffer.startIndex {
            buffer = Data(buffer[offset...])
        }
        return frames
    }

    /// Bytes of an incomplete frame left when the stream ended.
    public var pendingByteCount: Int { buffer.count }

    /// Whether the start of a body looks multiplexed (a stream byte 0–2 then three zero bytes).
    public static func looksMultiplexed(_ prefix: Data) -> Bool {
        guard prefix.count >= 8 else { return false }
        let start = prefix.startIndex
        return prefix[start] <= 2 && prefix[start + 1] == 0 && prefix[start + 2] == 0 && prefix[start + 3] == 0
    }
}

/// The frames of a log or exec body, demultiplexed unless the container has a TTY. Pulled: the
/// body is read only as fast as the consumer takes frames, so a slow consumer (a log saved to
/// disk, a client far away) holds back the transfer's window, never the whole log in memory.
public struct OutputFrames: AsyncSequence, Sendable {
    public typealias Element = OutputFrame

    private let makeChunks: @Sendable () -> ChunkSource
    let tty: Bool

    /// The frames in `chunks`, demultiplexed unless `tty`.
    public init<Chunks: AsyncSequence & Sendable>(chunks: Chunks, tty: Bool) where Chunks.Element == Data {
        makeChunks = { ChunkSource(chunks.makeAsyncIterator()) }
        self.tty = tty
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(chunks: makeChunks(), demux: StreamDemux(tty: tty))
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let chunks: ChunkSource
        var demux: StreamDemux
        /// The frames of the last chunk not yet handed out.
        var pending: ArraySlice<OutputFrame> = []

        public mutating func next() async throws -> OutputFrame? {
            while pending.isEmpty {
                guard let chunk = try await chunks.next() else { return nil }
                pending = try demux.feed(chunk)[...]
            }
            return pending.popFirst()
        }
    }
}

/// One reader's iterator over some sequence of chunks, whatever its type.
final class ChunkSource: @unchecked Sendable {
    private let pull: () async throws -> Data?

    init<Iterator: AsyncIteratorProtocol>(_ iterator: Iterator) where Iterator.Element == Data {
        var iterator = iterator
        pull = { try await iterator.next() }
    }

    func next() async throws -> Data? {
        try await pull()
    }
}

extension HTTPStreamingResponse {
    /// The body as typed frames, demultiplexed unless `tty`.
    public func frames(tty: Bool) -> OutputFrames {
        OutputFrames(chunks: body, tty: tty)
    }
}

extension OutputFrame {
    /// The frame in Docker's multiplexed framing, to pass a stream on unchanged.
    public var multiplexed: Data {
        let kind: UInt8
        switch self {
        case .stdout, .console: kind = 1
        case .stderr: kind = 2
        }
        var bytes = Data([kind, 0, 0, 0])
        let size = UInt32(data.count).bigEndian
        withUnsafeBytes(of: size) { bytes.append(contentsOf: $0) }
        bytes.append(data)
        return bytes
    }
}
