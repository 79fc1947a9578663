import Foundation
import Testing

@testable import HTTPWire

func frame(_ stream: UInt8, _ payload: Data) -> Data {
    var bytes = Data([stream, 0, 0, 0])
    let size = UInt32(payload.count).bigEndian
    withUnsafeBytes(of: size) { bytes.append(contentsOf: $0) }
    return bytes + payload
}

@Suite struct StreamDemuxTests {
    /// The frames are read from the body only as they are asked for: after one frame, the
    /// chunks behind it are still in the body, not in a buffer of their own.
    @Test func framesArePulledFromTheBodyAsTheyAreAskedFor() async throws {
        let (body, feed) = AsyncThrowingStream<Data, any Error>.makeStream()
        let pieces = [frame(1, Data("one".utf8)) + frame(2, Data("two".utf8)).prefix(9), frame(2, Data("two".utf8)).dropFirst(9) + frame(1, Data("3".utf8))]
        for piece in pieces { feed.yield(piece) }
        feed.finish()
        var frames = OutputFrames(chunks: body, tty: false).makeAsyncIterator()
        #expect(try await frames.next() == .stdout(Data("one".utf8)))
        #expect(frames.pending.isEmpty)
        var rest: [OutputFrame] = []
        while let next = try await frames.next() { rest.append(next) }
        #expect(rest == [.stderr(Data("two".utf8)), .stdout(Data("3".utf8))])
    }

    @Test func framesSplitAcrossEveryByteBoundary() throws {
        let wire = frame(1, Data("hello\n".utf8)) + frame(2, Data("oops\n".utf8)) + frame(1, Data("bye".utf8))
        var demux = StreamDemux(tty: false)
        var frames: [OutputFrame] = []
        for byte in wire { frames += try demux.feed(Data([byte])) }
        #expect(frames == [.stdout(Data("hello\n".utf8)), .stderr(Data("oops\n".utf8)), .stdout(Data("bye".utf8))])
        #expect(demux.pendingByteCount == 0)
    }

    @Test func largeFrameArrivingInOddChunks() throws {
        let payload = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let wire = frame(2, payload) + frame(1, Data("tail".utf8))
        var demux = StreamDemux(tty: false)
        var frames: [OutputFrame] = []
        var offset = 0
        var step = 1
        while offset < wire.count {
            let end = min(wire.count, offset + step)
            frames += try demux.feed(wire.subdata(in: offset..<end))
            offset = end
            step = step * 3 + 7
        }
        #expect(frames.count == 2)
        #expect(frames.first == .stderr(payload))
        #expect(frames.last == .stdout(Data("tail".utf8)))
    }

    @Test func manyFramesInOneChunkAndEmptyFramesSkipped() throws {
        let wire = frame(1, Data("a".utf8)) + frame(1, Data()) + frame(2, Data("b".utf8))
        var demux = StreamDemux(tty: false)
        #expect(try demux.feed(wire) == [.stdout(Data("a".utf8)), .stderr(Data("b".utf8))])
    }

    @Test func incompleteFrameIsHeldUntilTheRestArrives() throws {
        let wire = frame(1, Data("partial".utf8))
        var demux = StreamDemux(tty: false)
        #expect(try demux.feed(wire.prefix(10)).isEmpty)
        #expect(demux.pendingByteCount == 10)
        #expect(try demux.feed(wire.dropFirst(10)) == [.stdout(Data("partial".utf8))])
    }

    @Test func ttyOutputPassesThroughUnframed() throws {
        var demux = StreamDemux(tty: true)
        #expect(try demux.feed(Data("\u{1}\0\0\0raw".utf8)) == [.console(Data("\u{1}\0\0\0raw".utf8))])
    }

    /// A frame header announcing gigabytes is refused before anything is gathered.
    @Test func aFrameLargerThanTheLimitIsRefused() {
        var demux = StreamDemux(tty: false, maxFrame: 1024)
        #expect(throws: FrameTooLarge.self) { try demux.feed(Data([1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])) }
    }

    @Test func multiplexedPrefixDetection() {
        #expect(StreamDemux.looksMultiplexed(frame(1, Data("x".utf8))))
        #expect(!StreamDemux.looksMultiplexed(Data("plain text".utf8)))
    }

    @Test func lineSplitterJoinsLinesAcrossChunks() {
        var lines = LineSplitter()
        #expect(lines.feed(Data("{\"a\":".utf8)).isEmpty)
        #expect(lines.feed(Data("1}\n{\"b\":2}\n{".utf8)) == [Data("{\"a\":1}".utf8), Data("{\"b\":2}".utf8)])
        #expect(lines.remainder == Data("{".utf8))
    }
}
