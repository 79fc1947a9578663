#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CCurl
import Dispatch
@_exported import HTTPWire
import Synchronization

/// HTTP/1.1 to one engine through libcurl: pooled kept-alive connections, blocking work on the
/// pool's own threads, async to callers, and cancellation that aborts the transfer.
public final class Transport: Sendable {
    public let endpoint: HTTPEndpoint
    /// How long establishing a connection may take; an engine that is not there fails this fast.
    public let connectTimeout: Duration
    /// How far a stream's reader may fall behind before its sender waits: the most memory one
    /// stream holds in chunks not yet read.
    public let streamWindow: Int
    public static let defaultStreamWindow = 4 << 20
    /// How long a worker polls for an answer before it goes to sleep waiting for it: a local
    /// engine answers within this, and a thread woken from sleep on a virtual machine takes longer
    /// than the engine did. At most this much CPU per request; `.zero` always sleeps.
    public let busyPoll: Duration
    public static let defaultBusyPoll = Duration.microseconds(100)
    /// Requests answered whole (create, start, stop, inspect) run on `pool`; streams, which may
    /// last as long as a followed log, on `streamPool`, so that streams by the hundred never take
    /// the threads those requests need.
    let pool: CurlWorkerPool
    let streamPool: CurlWorkerPool

    /// Workers for requests answered whole, and for streams, at most; a request beyond waits in
    /// line, its timeout and cancellation counting from the moment it was made.
    public struct Lanes: Sendable {
        public var requests: Int
        public var streams: Int

        public init(requests: Int = 64, streams: Int = 256) {
            self.requests = max(1, requests)
            self.streams = max(1, streams)
        }
    }

    public init(
        endpoint: HTTPEndpoint, connectTimeout: Duration = .seconds(2), streamWindow: Int = Transport.defaultStreamWindow,
        busyPoll: Duration = Transport.defaultBusyPoll, lanes: Lanes = Lanes()
    ) {
        self.endpoint = endpoint
        self.connectTimeout = connectTimeout
        self.streamWindow = streamWindow
        self.busyPoll = busyPoll
        let sessions = endpoint.tls == nil ? nil : TLSSessions()
        self.pool = CurlWorkerPool(maximumWorkers: lanes.requests, sessions: sessions)
        self.streamPool = CurlWorkerPool(maximumWorkers: lanes.streams, minimumWorkers: 0, sessions: sessions)
    }

    deinit {
        pool.shutDown()
        streamPool.shutDown()
    }

    /// Hands `transfer` to `pool`; when it has to wait for a busy worker, it fails at its timeout
    /// if still waiting then.
    private func submit(_ transfer: Transfer, to pool: CurlWorkerPool) {
        guard pool.submit(transfer), let timeout = transfer.request.timeout else { return }
        // On a dispatch thread: Swift's few cooperative threads may be the busy ones.
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanoseconds))) {
            transfer.abandonIfQueued(transfer.queuedTimeout)
        }
    }

    /// Where engine work runs cheapest: a task that prefers this executor
    /// (`withTaskExecutorPreference(transport.executor) { … }`) makes its requests on the thread
    /// it already runs on, with no hand-off in either direction.
    public var executor: any TaskExecutor { pool }

    /// Runs blocking work (a socket probe, say) on the pool's threads: right here when the task
    /// already runs on one of them, else on a free one; never on Swift's cooperative threads.
    public func runBlocking<T: Sendable>(_ work: @Sendable () -> T) async -> T {
        if pool.handlesOfCurrentThread() != nil { return work() }
        // A closure that never suspends would run where it is; a `@concurrent` function moves to
        // the preferred executor.
        return await withTaskExecutorPreference(pool) { await Self.run(work) }
    }

    @concurrent private static func run<T: Sendable>(_ work: @Sendable () -> T) async -> T {
        work()
    }

    /// A transfer of `request` with this transport's settings.
    func makeTransfer(
        _ request: HTTPRequest, delivery: Transfer.Delivery,
        traceRequest: (@Sendable (String) -> Void)? = nil, streamErrorResponses: Bool = false
    ) -> Transfer {
        Transfer(
            request: request, endpoint: endpoint, connectTimeout: connectTimeout, busyPoll: busyPoll, delivery: delivery,
            traceRequest: traceRequest, streamErrorResponses: streamErrorResponses, streamWindow: streamWindow)
    }

    /// Sends a request and returns the whole response, whatever its status.
    public func send(_ request: HTTPRequest, traceRequest: (@Sendable (String) -> Void)? = nil) async throws -> HTTPResponse {
        if case .stream = request.body {
            // Written by another task while it goes, and as long as it lasts: never on this
            // thread, which that task may need, nor in the lane of control calls.
            return try await sendThroughPool(request, on: streamPool, traceRequest: traceRequest)
        }
        if pool.handlesOfCurrentThread() != nil {
            return try await sendHere(request, traceRequest: traceRequest)
        }
        return try await sendThroughPool(request, traceRequest: traceRequest)
    }

    /// Hands the transfer to a free worker and waits for its answer.
    private func sendThroughPool(
        _ request: HTTPRequest, on lane: CurlWorkerPool? = nil, traceRequest: (@Sendable (String) -> Void)?
    ) async throws -> HTTPResponse {
        let box = TransferBox()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let transfer = makeTransfer(request, delivery: .buffered(continuation), traceRequest: traceRequest)
                box.set(transfer)
                submit(transfer, to: lane ?? pool)
            }
        } onCancel: {
            box.cancel()
        }
    }

    /// Runs the transfer on the worker thread the calling task is on (it prefers `executor`).
    private func sendHere(_ request: HTTPRequest, traceRequest: (@Sendable (String) -> Void)?) async throws -> HTTPResponse {
        let transfer = makeTransfer(request, delivery: .direct, traceRequest: traceRequest)
        return try await withTaskCancellationHandler {
            // Nothing here suspends, so this is still the thread whose handle is taken.
            guard let handles = pool.handlesOfCurrentThread() else {
                return try await sendThroughPool(request, traceRequest: traceRequest)
            }
            _ = transfer.run(on: handles)
            return try transfer.outcome.get()
        } onCancel: {
            transfer.cancel()
        }
    }

    /// Sends a request and returns as soon as the response head arrives; the body follows as a
    /// stream. A status of 400 or more throws, with the engine's message, unless
    /// `streamErrorResponses` asks for every response as it comes.
    public func stream(
        _ request: HTTPRequest, traceRequest: (@Sendable (String) -> Void)? = nil, streamErrorResponses: Bool = false
    ) async throws -> HTTPStreamingResponse {
        let box = TransferBox()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let (raw, chunks) = AsyncThrowingStream<Data, any Error>.makeStream()
                let reader = ChunkReader(raw.makeAsyncIterator())
                // Delivered through `reader`, which tells the transfer what has been taken.
                let transfer = makeTransfer(
                    request, delivery: .streaming(head: continuation, body: BodyHandover(AsyncThrowingStream { try await reader.next() }), chunks: chunks),
                    traceRequest: traceRequest, streamErrorResponses: streamErrorResponses)
                reader.flow = transfer.flow
                chunks.onTermination = { termination in
                    if case .cancelled = termination { transfer.cancel() }
                }
                box.set(transfer)
                submit(transfer, to: streamPool)
            }
        } onCancel: {
            box.cancel()
        }
    }
}

extension Transport {
    /// Sends a request and hands the response body to `receive` piece by piece as libcurl reads
    /// it, on the transfer's own thread: nothing is copied or queued on the way, and a receiver
    /// that blocks (writing to a pipe, say) holds the sender back with it. For a reader that puts
    /// each piece somewhere at once; `stream` suits one that awaits. Returns when the body has
    /// ended, with the head; the body of a status of 400 or more is not passed on but returned
    /// whole, for its message. What `receive` throws ends the transfer and is rethrown here.
    public func receive(
        _ request: HTTPRequest, into receive: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void
    ) async throws -> HTTPResponse {
        let box = TransferBox()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let transfer = makeTransfer(request, delivery: .sink(receive: receive, done: continuation))
                box.set(transfer)
                submit(transfer, to: pool)
            }
        } onCancel: {
            box.cancel()
        }
    }
}

/// Lets a cancellation handler reach a transfer created inside the continuation closure, in
/// whichever order the two run.
private final class TransferBox: Sendable {
    private let state = Mutex<(transfer: Transfer?, cancelled: Bool)>((nil, false))

    func set(_ transfer: Transfer) {
        let cancelNow = state.withLock { state in
            state.transfer = transfer
            return state.cancelled
        }
        if cancelNow { transfer.cancel() }
    }

    func cancel() {
        let transfer = state.withLock { state in
            state.cancelled = true
            return state.transfer
        }
        transfer?.cancel()
    }
}

/// Reads a transfer's chunks for the caller and credits each one back to its flow control.
private final class ChunkReader: @unchecked Sendable {
    private var iterator: AsyncThrowingStream<Data, any Error>.AsyncIterator
    var flow: FlowControl?

    init(_ iterator: AsyncThrowingStream<Data, any Error>.AsyncIterator) {
        self.iterator = iterator
    }

    func next() async throws -> Data? {
        let chunk = try await iterator.next()
        if let chunk { flow?.consumed(chunk.count) }
        return chunk
    }
}

extension Transport: HTTPTransport {
    public static func make(endpoint: HTTPEndpoint, connectTimeout: Duration, streamWindow: Int) -> Transport {
        Transport(endpoint: endpoint, connectTimeout: connectTimeout, streamWindow: streamWindow)
    }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        try await send(request, traceRequest: nil)
    }

    public func stream(_ request: HTTPRequest, streamErrorResponses: Bool) async throws -> HTTPStreamingResponse {
        try await stream(request, traceRequest: nil, streamErrorResponses: streamErrorResponses)
    }
}

/// Whether libcurl has started in this process, and whether without what TLS needs.
enum CurlStart {
    static let state = Mutex<(started: Bool, withoutTLS: Bool)>((false, false))
}

extension Transport {
    /// For a daemon: starts OpenSSL without the clean-up it would run at exit, which could race
    /// a libcurl worker thread still ending and crash the exit. Call it before the first transport
    /// is made (`startWithoutTLS` does the same); false when it comes too late.
    @discardableResult
    public static func startWithoutExitCleanup() -> Bool {
        CurlStart.state.withLock { state in
            !state.started && berth_start_openssl(BERTH_OPENSSL_NO_EXIT_CLEANUP) == 1
        }
    }

    /// For a process that makes no TLS connection through libcurl (an agent whose engine is a
    /// Unix socket): starts OpenSSL, before libcurl would, without the tables, configuration
    /// and error strings only certificate checks need, which libcurl's start otherwise reads
    /// into every such process (1.1 MB of an idle agent's 26 MB), and without the clean-up at
    /// exit. Call it before the first transport is made; false when it comes too late. TLS
    /// endpoints are refused afterwards.
    @discardableResult
    public static func startWithoutTLS() -> Bool {
        CurlStart.state.withLock { state in
            guard !state.started, berth_start_openssl(BERTH_OPENSSL_WITHOUT_TLS | BERTH_OPENSSL_NO_EXIT_CLEANUP) == 1 else { return false }
            state.withoutTLS = true
            return true
        }
    }
}
