#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// A request body written while the request is under way: the transport sends it chunked as it
/// comes, and reads the answer at the same time, so the body and the answer can go on together
/// (an interactive command's keystrokes and its output). libcurl's transport reads it from its
/// callback (`read(into:)`), SwiftNIO's pulls it (`nextChunk`). A writer that gets `window` bytes ahead of
/// the connection waits.
public final class UploadStream: Sendable {
    private struct State {
        var chunks: [Data] = []
        var offset = 0
        var buffered = 0
        var finished = false
        var failure: HTTPClientError?
        /// libcurl asked for more and was told to wait: it must be woken for the next chunk.
        var paused = false
        var wake: (@Sendable () -> Void)?
        var writer: CheckedContinuation<Void, any Error>?
        /// A transport that pulls (`nextChunk`) waits here for the next chunk or the end.
        var puller: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    private let window: Int

    public init(window: Int = 256 * 1024) {
        self.window = window
    }

    /// Queues `data`, waiting while more than the window is still unsent. Throws once the
    /// request has ended.
    public func write(_ data: Data) async throws {
        guard !data.isEmpty else { return }
        let (wake, puller) = try state.withLock { state throws(HTTPClientError) in
            if let failure = state.failure { throw failure }
            guard !state.finished else { throw HTTPClientError.transport("a request body was written after its end") }
            state.chunks.append(data)
            state.buffered += data.count
            defer { state.puller = nil }
            return (state.paused ? state.wake : nil, state.puller)
        }
        wake?()
        puller?.resume()
        try await withCheckedThrowingContinuation { (waiting: CheckedContinuation<Void, any Error>) in
            let ready = state.withLock { state -> Result<Void, HTTPClientError>? in
                if let failure = state.failure { return .failure(failure) }
                guard state.buffered > window else { return .success(()) }
                state.writer = waiting
                return nil
            }
            if let ready { waiting.resume(with: ready) }
        }
    }

    /// Ends the body once what is queued is sent.
    public func finish() {
        let (wake, puller) = state.withLock { state in
            state.finished = true
            defer { state.puller = nil }
            return (state.paused ? state.wake : nil, state.puller)
        }
        wake?()
        puller?.resume()
    }

    /// For a transport that pulls: the next queued chunk, waiting for one; nil at the end.
    package func nextChunk() async throws(HTTPClientError) -> Data? {
        while true {
            let taken = state.withLock { state -> (Result<Data?, HTTPClientError>, CheckedContinuation<Void, any Error>?)? in
                if let failure = state.failure { return (.failure(failure), nil) }
                guard !state.chunks.isEmpty else { return state.finished ? (.success(nil), nil) : nil }
                var chunk = state.chunks.removeFirst()
                if state.offset > 0 { chunk = chunk.dropFirst(state.offset) }
                state.offset = 0
                state.buffered -= chunk.count
                guard state.buffered <= window else { return (.success(chunk), nil) }
                defer { state.writer = nil }
                return (.success(chunk), state.writer)
            }
            if let (result, writer) = taken {
                writer?.resume()
                return try result.get()
            }
            await withCheckedContinuation { (waiting: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state in
                    guard state.chunks.isEmpty, !state.finished, state.failure == nil else { return true }
                    state.puller = waiting
                    return false
                }
                if ready { waiting.resume() }
            }
        }
    }

    // MARK: - For the transfer, on its worker thread

    /// Called when the transfer starts, with what wakes its worker.
    package func attach(wake: @escaping @Sendable () -> Void) {
        state.withLock { $0.wake = wake }
    }

    /// What the read callback does: copies up to `count` bytes into `buffer`; 0 at the end, nil
    /// when nothing is queued yet (the callback then pauses the upload until `needsResume`).
    package func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        let (count, writer) = state.withLock { state -> (Int?, CheckedContinuation<Void, any Error>?) in
            guard !state.chunks.isEmpty else {
                if state.finished { return (0, nil) }
                state.paused = true
                return (nil, nil)
            }
            var copied = 0
            while copied < buffer.count, !state.chunks.isEmpty {
                let chunk = state.chunks[0]
                let take = min(buffer.count - copied, chunk.count - state.offset)
                chunk.withUnsafeBytes { bytes in
                    buffer.baseAddress!.advanced(by: copied).copyMemory(from: bytes.baseAddress!.advanced(by: state.offset), byteCount: take)
                }
                copied += take
                state.offset += take
                if state.offset == chunk.count {
                    state.chunks.removeFirst()
                    state.offset = 0
                }
            }
            state.buffered -= copied
            var writer: CheckedContinuation<Void, any Error>?
            if state.buffered <= window {
                writer = state.writer
                state.writer = nil
            }
            return (copied, writer)
        }
        writer?.resume()
        return count
    }

    /// Whether the upload is paused with something to send (or its end): the worker then resumes it.
    package func takeResume() -> Bool {
        state.withLock { state in
            guard state.paused, !state.chunks.isEmpty || state.finished else { return false }
            state.paused = false
            return true
        }
    }

    /// Whether libcurl's transport waits for a chunk that has not been written.
    package var isWaiting: Bool {
        state.withLock { $0.paused && $0.chunks.isEmpty && !$0.finished }
    }

    /// The request is over: a waiting writer, and any later, gets `error`.
    package func fail(_ error: HTTPClientError) {
        let (writer, puller) = state.withLock { state in
            if state.failure == nil { state.failure = error }
            state.wake = nil
            defer { state.writer = nil; state.puller = nil }
            return (state.writer, state.puller)
        }
        writer?.resume(throwing: error)
        puller?.resume()
    }
}
