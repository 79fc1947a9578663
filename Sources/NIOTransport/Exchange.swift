import Crypto
import HTTPWire
import NIOCore
import NIOHTTP1
import NIOSSL
import NIOTLS
import SwiftASN1
import Synchronization
import X509
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One request and its answer, between the connection's handler (on its event loop) and the
/// task that reads the answer. The handler stops reading while more than `window` bytes of the
/// body wait unread, so a slow reader holds the server back instead of filling memory.
final class Exchange: Sendable {
    private struct State {
        var channel: (any Channel)?
        var isReady = false
        var readyWaiter: CheckedContinuation<Void, any Error>?
        var head: HTTPWire.HTTPResponseHead?
        var headWaiter: CheckedContinuation<HTTPWire.HTTPResponseHead, any Error>?
        var chunks: [Data] = []
        var buffered = 0
        var ended = false
        var failure: (any Error)?
        var bodyWaiter: CheckedContinuation<Data?, any Error>?
        /// The handler held back a read: the reader asks for it once it has caught up.
        var readHeld = false
        var deadline: Scheduled<Void>?
        var endActions: [@Sendable (HTTPClientError?) -> Void] = []
        /// The server's answer lets the connection carry another request.
        var keepAlive = false

        var isOver: Bool { ended || failure != nil }
    }

    let request: HTTPRequest
    let endpoint: HTTPEndpoint
    let window: Int
    /// Where the body goes as it arrives, instead of `chunks` (`NIOTransport.receive`).
    let sink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)?
    /// Takes the connection when the request keeps it and the answer ends well on a connection
    /// the server keeps open; it is closed otherwise.
    private let keep: (@Sendable (any Channel) -> Void)?
    private let state = Mutex(State())

    init(
        request: HTTPRequest, endpoint: HTTPEndpoint, window: Int, sink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)?,
        keep: (@Sendable (any Channel) -> Void)? = nil
    ) {
        self.request = request
        self.endpoint = endpoint
        self.window = window
        self.sink = sink
        self.keep = keep
    }

    var failure: (any Error)? { state.withLock { $0.failure } }

    /// Whether the answer's head has arrived.
    var answered: Bool { state.withLock { $0.head != nil } }

    // MARK: - The reading task

    func attach(_ channel: any Channel) {
        let closeNow = state.withLock { state in
            state.channel = channel
            return state.isOver
        }
        if closeNow { channel.close(promise: nil) }
    }

    func deadline(_ scheduled: Scheduled<Void>) {
        let over = state.withLock { state in
            guard !state.isOver else { return true }
            state.deadline = scheduled
            return false
        }
        if over { scheduled.cancel() }
    }

    /// Runs `action` once the exchange is over, with its failure if it failed.
    func onEnd(_ action: @escaping @Sendable (HTTPClientError?) -> Void) {
        let over = state.withLock { state -> (any Error)?? in
            guard state.isOver else {
                state.endActions.append(action)
                return nil
            }
            return .some(state.failure)
        }
        if let over { action(over.map(Self.named)) }
    }

    /// Returns once the connection may carry the request: connected, and over TLS, the server checked.
    func ready() async throws {
        try await waiting { (continuation: CheckedContinuation<Void, any Error>) in
            self.state.withLock { state -> Result<Void, any Error>? in
                if let failure = state.failure { return .failure(failure) }
                if state.isReady { return .success(()) }
                state.readyWaiter = continuation
                return nil
            }
        }
    }

    func head() async throws -> HTTPWire.HTTPResponseHead {
        try await waiting { (continuation: CheckedContinuation<HTTPWire.HTTPResponseHead, any Error>) in
            self.state.withLock { state -> Result<HTTPWire.HTTPResponseHead, any Error>? in
                if let head = state.head { return .success(head) }
                if let failure = state.failure { return .failure(failure) }
                state.headWaiter = continuation
                return nil
            }
        }
    }

    /// The next piece of the body, nil at its end; what arrived before a failure comes first,
    /// then the failure.
    func next() async throws -> Data? {
        let chunk = try await waiting { (continuation: CheckedContinuation<Data?, any Error>) in
            self.state.withLock { state -> Result<Data?, any Error>? in
                if !state.chunks.isEmpty {
                    let chunk = state.chunks.removeFirst()
                    state.buffered -= chunk.count
                    return .success(chunk)
                }
                if let failure = state.failure { return .failure(failure) }
                if state.ended { return .success(nil) }
                state.bodyWaiter = continuation
                return nil
            }
        }
        resumeReading()?.read()
        return chunk
    }

    /// The channel to ask for a read when one was held back and the reader has caught up.
    private func resumeReading() -> (any Channel)? {
        state.withLock { state in
            guard state.readHeld, state.buffered <= window / 2 else { return nil }
            state.readHeld = false
            return state.channel
        }
    }

    /// The reader is gone: nothing more is read.
    func close() {
        fail(HTTPClientError.cancelled)
    }

    /// Waits for what `register` does not have yet; a cancelled task fails the whole exchange.
    private func waiting<T: Sendable>(
        _ register: @escaping (CheckedContinuation<T, any Error>) -> Result<T, any Error>?
    ) async throws -> T {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if let result = register(continuation) { continuation.resume(with: result) }
            }
        } onCancel: {
            fail(HTTPClientError.cancelled)
        }
    }

    // MARK: - The connection's handler, on its event loop

    func becameReady() {
        let waiter = state.withLock { state in
            state.isReady = true
            defer { state.readyWaiter = nil }
            return state.readyWaiter
        }
        waiter?.resume()
    }

    func received(head: HTTPWire.HTTPResponseHead, keepAlive: Bool) {
        let waiter = state.withLock { state in
            state.head = head
            state.keepAlive = keepAlive
            defer { state.headWaiter = nil }
            return state.headWaiter
        }
        waiter?.resume(returning: head)
    }

    func received(body: Data) {
        let waiter = state.withLock { state -> CheckedContinuation<Data?, any Error>? in
            guard !state.isOver else { return nil }
            if let waiter = state.bodyWaiter {
                state.bodyWaiter = nil
                return waiter
            }
            state.chunks.append(body)
            state.buffered += body.count
            return nil
        }
        waiter?.resume(returning: body)
    }

    /// Whether the handler may read more now; when not, the read is held until the reader asks.
    func mayRead() -> Bool {
        state.withLock { state in
            guard state.buffered > window else { return true }
            state.readHeld = true
            return false
        }
    }

    func ended() {
        finish(nil)
    }

    /// Ends the exchange with `failure` unless it is already over; closes the connection. What a
    /// sink throws is rethrown as it is.
    func fail(_ failure: any Error) {
        finish(failure)
    }

    /// A failure for a request body's writer, which knows only transport failures.
    private static func named(_ error: any Error) -> HTTPClientError {
        error as? HTTPClientError ?? .cancelled
    }

    private func finish(_ failure: (any Error)?) {
        let outcome = state.withLock { state -> (waiters: Waiters, channel: (any Channel)?, actions: [@Sendable (HTTPClientError?) -> Void], deadline: Scheduled<Void>?, kept: Bool)? in
            guard !state.isOver else { return nil }
            if let failure { state.failure = failure } else { state.ended = true }
            let waiters = Waiters(ready: state.readyWaiter, head: state.headWaiter, body: state.bodyWaiter)
            state.readyWaiter = nil
            state.headWaiter = nil
            state.bodyWaiter = nil
            defer { state.endActions = []; state.deadline = nil }
            let kept = failure == nil && state.keepAlive && state.head != nil && keep != nil
            return (waiters, state.channel, state.endActions, state.deadline, kept)
        }
        guard let outcome else { return }
        outcome.deadline?.cancel()
        // Handed over before the reader hears of the end, so its next request finds it.
        if outcome.kept, let channel = outcome.channel { keep?(channel) }
        if let failure {
            outcome.waiters.ready?.resume(throwing: failure)
            outcome.waiters.head?.resume(throwing: failure)
            outcome.waiters.body?.resume(throwing: failure)
        } else {
            outcome.waiters.ready?.resume()
            outcome.waiters.head?.resume(throwing: HTTPClientError.unreachable(endpoint: endpoint.description, reason: "the connection closed without an answer"))
            outcome.waiters.body?.resume(returning: nil)
        }
        // One request per connection unless it was kept: it closes with the answer's end.
        if !outcome.kept { outcome.channel?.close(promise: nil) }
        for action in outcome.actions { action(failure.map(Self.named)) }
    }

    private struct Waiters {
        var ready: CheckedContinuation<Void, any Error>?
        var head: CheckedContinuation<HTTPWire.HTTPResponseHead, any Error>?
        var body: CheckedContinuation<Data?, any Error>?
    }
}

/// The connection's end of an `Exchange`: passes the answer on, holds reads back for a slow
/// reader, and checks a pinned key before the request may go.
final class ExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The exchange the connection carries now; another once a kept connection is reused.
    private var exchange: Exchange
    private let tls: Bool
    /// A host name the certificate must name among its DNS names; nil for an address.
    private let serverName: String?
    private let handshakeDeadline: NIODeadline
    private let handshakeTimeout: Duration
    private var handshakeTimer: Scheduled<Void>?
    private var handshakeDone = false
    private var headSeen = false
    /// Where this answer's body goes, set with its head: only a successful answer's goes to the
    /// exchange's sink; an error's is kept for its message.
    private var sink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)?

    init(_ exchange: Exchange, tls: Bool, serverName: String?, handshakeDeadline: NIODeadline, handshakeTimeout: Duration) {
        self.exchange = exchange
        self.tls = tls
        self.serverName = serverName
        self.handshakeDeadline = handshakeDeadline
        self.handshakeTimeout = handshakeTimeout
    }

    /// The kept connection carries `next` from now on; its TLS was checked for the one before.
    func carry(_ next: Exchange, context: ChannelHandlerContext) {
        exchange = next
        headSeen = false
        sink = nil
        // A read the last exchange held back would otherwise never be asked for.
        context.read()
    }

    func channelActive(context: ChannelHandlerContext) {
        if tls {
            let exchange = exchange
            let endpoint = exchange.endpoint
            let timeout = handshakeTimeout
            handshakeTimer = context.eventLoop.scheduleTask(deadline: handshakeDeadline) {
                exchange.fail(HTTPClientError.tlsFailed(endpoint: endpoint.description, reason: "no TLS handshake within \(timeout.formattedSeconds)"))
            }
        } else {
            exchange.becameReady()
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshakeTimer?.cancel()
            handshakeDone = true
            if let failure = nameFailure(context: context) ?? pinFailure(context: context) {
                exchange.fail(failure)
            } else {
                exchange.becameReady()
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Why the certificate does not name the host asked for, if it does not: by a DNS name only,
    /// exactly, or by a wildcard for its first label under at least two more (`*.example.com`,
    /// never `*.com`), and never for an internationalised label.
    private func nameFailure(context: ChannelHandlerContext) -> HTTPClientError? {
        guard let serverName, exchange.endpoint.tls?.trustedCAs != nil else { return nil }
        let wanted = serverName.lowercased()
        let der = (try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate).flatMap { try? $0.toDERBytes() }
        let names: [GeneralName] = der.flatMap { try? Certificate(derEncoded: $0).extensions.subjectAlternativeNames }.map(Array.init) ?? []
        for name in names {
            if case .dnsName(let dns) = name, Self.dnsName(dns, names: wanted) { return nil }
        }
        return .untrusted(endpoint: exchange.endpoint.description, reason: "its certificate does not name \(serverName)")
    }

    /// Whether a certificate's DNS name `pattern` names `host` (lowercased).
    static func dnsName(_ pattern: String, names host: String) -> Bool {
        let pattern = pattern.lowercased()
        if pattern == host { return true }
        guard pattern.hasPrefix("*."), pattern.dropFirst(2).contains("."), !host.hasPrefix("xn--"),
              let dot = host.firstIndex(of: "."), dot > host.startIndex
        else { return false }
        return host[dot...] == pattern.dropFirst()
    }

    /// Why the server's key is not the pinned one, if it is not.
    private func pinFailure(context: ChannelHandlerContext) -> HTTPClientError? {
        guard let pinned = exchange.endpoint.tls?.pinnedKey else { return nil }
        let endpoint = exchange.endpoint.description
        guard let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self),
              let certificate = handler.peerCertificate,
              let key = try? certificate.extractPublicKey().toSPKIBytes()
        else {
            return .untrusted(endpoint: endpoint, reason: "the server presented no readable key")
        }
        let presented = "sha256//" + Data(SHA256.hash(data: key)).base64EncodedString()
        guard presented == pinned else {
            return .untrusted(endpoint: endpoint, reason: "its public key does not match the pinned key")
        }
        return nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            // An interim answer (100 Continue) is not the answer.
            guard head.status.code >= 200 else { return }
            headSeen = true
            sink = head.status.code < 400 ? exchange.sink : nil
            exchange.received(head: HTTPWire.HTTPResponseHead(
                version: "HTTP/\(head.version.major).\(head.version.minor)", status: Int(head.status.code), reason: head.status.reasonPhrase,
                headers: head.headers.map { (name: $0.name, value: $0.value) }), keepAlive: head.isKeepAlive)
        case .body(let buffer):
            if let sink {
                do {
                    try buffer.withUnsafeReadableBytes { try sink($0) }
                } catch {
                    exchange.fail(error)
                }
            } else {
                exchange.received(body: Data(buffer.readableBytesView))
            }
        case .end:
            exchange.ended()
        }
    }

    func read(context: ChannelHandlerContext) {
        if exchange.mayRead() { context.read() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        exchange.fail(classify(error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        exchange.fail(headSeen
            ? HTTPClientError.transport("\(exchange.request.method) \(exchange.request.path): the connection closed before the end of the answer")
            : HTTPClientError.unreachable(endpoint: exchange.endpoint.description, reason: "the connection closed without an answer"))
        context.fireChannelInactive()
    }

    /// A failure as the rest of Berth names it: the server not trusted, no TLS session, or the
    /// connection lost. Once the handshake is done, a TLS error is the connection's, not trust's.
    private func classify(_ error: any Error) -> HTTPClientError {
        let endpoint = exchange.endpoint.description
        let request = "\(exchange.request.method) \(exchange.request.path)"
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname {
            return .untrusted(endpoint: endpoint, reason: "its certificate does not name \(endpoint.split(separator: "/").last ?? "")")
        }
        if let error = error as? NIOSSLError, !handshakeDone {
            let detail = "\(error)"
            if detail.contains("CERTIFICATE_VERIFY_FAILED") {
                // BoringSSL does not say which check failed: name them all.
                return .untrusted(endpoint: endpoint, reason: "its certificate does not verify against the trusted CA (another CA's, expired or not yet valid)")
            }
            if detail.contains("ALERT") {
                return .tlsFailed(endpoint: endpoint, reason: "the server refused this client: \(detail)")
            }
            return .tlsFailed(endpoint: endpoint, reason: detail)
        }
        if let error = error as? NIOSSLError, case .uncleanShutdown = error {
            return headSeen
                ? .transport("\(request): the connection closed before the end of the answer")
                : .unreachable(endpoint: endpoint, reason: "the connection closed without an answer")
        }
        if let error = error as? NIOSSLError {
            // TLS 1.3 checks a client's certificate after the handshake: a refusal comes as an alert.
            let detail = "\(error)"
            return detail.contains("ALERT") && !headSeen
                ? .tlsFailed(endpoint: endpoint, reason: "the server refused this client: \(detail)")
                : .transport("\(request): \(detail)")
        }
        if let error = error as? IOError {
            return .transport("\(exchange.request.method) \(exchange.request.path): \(String(cString: strerror(error.errnoCode)).lowercased())")
        }
        return .transport("\(exchange.request.method) \(exchange.request.path): \(error)")
    }
}
