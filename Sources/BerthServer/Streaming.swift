import BerthAPI
import Hummingbird
import NIOCore
import NIOHTTPTypes
import Synchronization

/// A streamed answer whose producer is cancelled the moment the client's connection closes: a
/// followed log or a long exec whose reader hung up stops at once, upstream included, instead of
/// at its next byte. `produce` sends each piece and waits until no more than `window` bytes are
/// still on their way to the socket, so a slow reader slows the producer and nothing piles up in
/// between. `ended` runs once the stream is over, however it ended (to give back a stream slot,
/// say).
public func streamingResponse(
    contentType: String, channel: any Channel, window: Int = 1 << 20, ended: @escaping @Sendable () -> Void = {},
    _ produce: @escaping @Sendable (_ send: @Sendable (ByteBuffer) async throws -> Void) async throws -> Void
) -> Response {
    // Started now, not when the body is asked for: if the connection is gone before that, the
    // producer is still cancelled, and `ended` still runs.
    let handoff = Handoff()
    let producer = Task {
        defer { ended() }
        do {
            try await produce { try await handoff.send($0) }
            handoff.finish(nil)
        } catch {
            handoff.finish(error)
        }
    }
    channel.whenClientHangsUp { producer.cancel() }
    return Response(
        status: .ok, headers: [.contentType: contentType],
        body: ResponseBody { writer in
            defer { producer.cancel() }
            // The writer waits only once the connection reports it cannot take more, which its
            // event loop learns late when busy: 200 MB of exec output once had 20 MB of pieces
            // queued for it. Counting what reached the socket holds the producer to `window`.
            let written = try? await channel.pipeline.handler(type: OutboundWindow.self).get().written
            var sent = written?.start()
            while let piece = try await handoff.next() {
                sent?.bytes += piece.readableBytes
                try await writer.write(piece)
                if let written, let sent { await written.wait(until: sent, lagsBy: window) }
                handoff.taken()
            }
            try await writer.finish(nil)
        })
}

/// One piece at a time from a producer task to the writer: `send` returns once the writer has
/// written the piece, or throws when the producer is cancelled.
final class Handoff: Sendable {
    private struct State {
        var piece: ByteBuffer?
        var end: Result<Void, any Error>?
        /// The writer waiting for a piece or the end.
        var reader: CheckedContinuation<Void, Never>?
        /// The producer waiting for its piece to be written.
        var sender: CheckedContinuation<Void, any Error>?
    }

    private let state = Mutex(State())

    func send(_ piece: ByteBuffer) async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                        return nil
                    }
                    state.piece = piece
                    state.sender = continuation
                    defer { state.reader = nil }
                    return state.reader
                }
                reader?.resume()
            }
        } onCancel: {
            let sender = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                defer { state.sender = nil; state.piece = nil }
                return state.sender
            }
            sender?.resume(throwing: CancellationError())
        }
    }

    func finish(_ error: (any Error)?) {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.end = error.map { .failure($0) } ?? .success(())
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume()
    }

    /// The next piece; nil at the end; throws what the producer threw.
    func next() async throws -> ByteBuffer? {
        while true {
            let ready = state.withLock { state -> Result<ByteBuffer?, any Error>? in
                if let piece = state.piece { return .success(piece) }
                if let end = state.end { return end.map { nil } }
                return nil
            }
            if let ready { return try ready.get() }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.piece != nil || state.end != nil { return true }
                    state.reader = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        }
    }

    /// The piece `next` returned is written: its sender may go on.
    func taken() {
        let sender = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            state.piece = nil
            defer { state.sender = nil }
            return state.sender
        }
        sender?.resume()
    }
}

/// Counts the response body bytes a connection has written to its socket (or dropped, once it
/// closed), so that a stream can wait for its pieces rather than for the connection's
/// writability flag. Added to every connection of `daemonServer`.
final class OutboundWindow: ChannelOutboundHandler, RemovableChannelHandler, Sendable {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let written = WrittenBytes()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .body(let piece) = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        let count = piece.readableBytes
        let done = context.eventLoop.makePromise(of: Void.self)
        done.futureResult.whenComplete { [written] _ in written.add(count) }
        done.futureResult.cascade(to: promise)
        context.write(data, promise: done)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all { written.close() }
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        written.close()
    }
}

/// Body bytes written so far on one connection, and the streams waiting for them. Once the
/// connection has closed nobody waits: pieces still queued will never be written.
final class WrittenBytes: Sendable {
    /// What one response has handed to its writer, counted from the connection's total when it
    /// began.
    struct Sent {
        let base: Int
        var bytes = 0
    }

    private struct State {
        var total = 0
        var closed = false
        var waiters: [(target: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    func start() -> Sent {
        Sent(base: state.withLock { $0.total })
    }

    /// Returns at once while no more than `window` of the bytes in `sent` are unwritten, else
    /// once half as many are: a stream that fills the window then goes on in large steps.
    func wait(until sent: Sent, lagsBy window: Int) async {
        guard state.withLock({ !$0.closed && $0.total < sent.base + sent.bytes - window }) else { return }
        let target = sent.base + sent.bytes - window / 2
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.closed || state.total >= target { return true }
                state.waiters.append((target, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }

    func add(_ count: Int) {
        resume { state in
            state.total += count
            return state.total
        }
    }

    func close() {
        resume { state in
            state.closed = true
            return .max
        }
    }

    private func resume(_ change: (inout State) -> Int) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            let reached = change(&state)
            let ready = state.waiters.filter { $0.target <= reached }.map(\.continuation)
            state.waiters.removeAll { $0.target <= reached }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }
}
