import BerthAPI
import Hummingbird
import NIOCore
import Synchronization

/// A streamed answer whose producer is cancelled the moment the client's connection closes: a
/// followed log or a long exec whose reader hung up stops at once, upstream included, instead of
/// at its next byte. `produce` sends each piece and waits until it is written, so a slow reader
/// slows the producer and nothing piles up in between. `ended` runs once the stream is over,
/// however it ended (to give back a stream slot, say).
public func streamingResponse(
    contentType: String, channel: any Channel, ended: @escaping @Sendable () -> Void = {},
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
            while let piece = try await handoff.next() {
                try await writer.write(piece)
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
