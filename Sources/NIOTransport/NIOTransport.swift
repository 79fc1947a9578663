import HTTPWire
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// HTTP/1.1 on SwiftNIO, for `berth`: one connection per request (a command makes a few) unless
/// a request keeps its connection for the next, TLS through NIOSSL, streams with a window,
/// cancellation that closes the connection. A command linking it starts without libcurl, whose
/// thirty libraries the dynamic loader took longer to bind than the rest of a login's client work.
public final class NIOTransport: HTTPTransport {
    public let endpoint: HTTPEndpoint
    public let connectTimeout: Duration
    public let streamWindow: Int
    /// Made once: a context holds the parsed CAs.
    private let tls: Result<NIOSSLContext, HTTPClientError>?
    /// The connection a request kept (`HTTPRequest.keepsConnection`), for the next request.
    private let kept = Mutex<(any Channel)?>(nil)

    public static func make(endpoint: HTTPEndpoint, connectTimeout: Duration, streamWindow: Int) -> NIOTransport {
        NIOTransport(endpoint: endpoint, connectTimeout: connectTimeout, streamWindow: streamWindow)
    }

    public init(endpoint: HTTPEndpoint, connectTimeout: Duration = .seconds(3), streamWindow: Int = 1 << 20) {
        self.endpoint = endpoint
        self.connectTimeout = connectTimeout
        self.streamWindow = max(1, streamWindow)
        tls = endpoint.tls.map { Self.context(for: $0, endpoint: endpoint) }
    }

    deinit {
        kept.withLock { $0 }?.close(promise: nil)
    }

    /// The most of an answer `send` holds: Berth's answers are small JSON, and a server that
    /// sends more (anyone can listen at an address given by mistake) does not fill the memory.
    public static let largestAnswer = 16 << 20

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let (exchange, head) = try await answer(to: request)
        var body = Data()
        while let chunk = try await exchange.next() {
            body.append(chunk)
            if body.count > Self.largestAnswer {
                exchange.close()
                throw HTTPClientError.transport("\(request.method) \(request.path): the answer is larger than \(Self.largestAnswer >> 20) MB")
            }
        }
        return HTTPResponse(head: head, body: body)
    }

    public func stream(_ request: HTTPRequest, streamErrorResponses: Bool) async throws -> HTTPStreamingResponse {
        let (exchange, head) = try await answer(to: request)
        if head.status >= 400 && !streamErrorResponses {
            let body = try await Self.message(of: exchange)
            throw HTTPClientError.status(HTTPResponse(head: head, body: body), method: request.method, path: request.path)
        }
        let reader = BodyReader(exchange)
        return HTTPStreamingResponse(head: head, body: AsyncThrowingStream { try await reader.next() })
    }

    /// The body goes to `receive` straight from NIO's buffer, on an event loop of this request's
    /// own: a receiver that blocks (writing to a paused pipe) holds back its own connection's
    /// reading, and no other connection's. A request body written as it goes keeps to the shared
    /// loops, whose lives do not end with the answer while its writer may still be at work.
    public func receive(
        _ request: HTTPRequest, into receive: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void
    ) async throws -> HTTPResponse {
        let ownLoop: MultiThreadedEventLoopGroup?
        switch request.body {
        case .none, .data, .file: ownLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        case .stream: ownLoop = nil
        }
        do {
            let exchange = try await begin(request, sink: receive, on: ownLoop ?? MultiThreadedEventLoopGroup.singleton)
            let head = try await exchange.head()
            var body = Data()
            if head.status >= 400 {
                // Only an error's body comes here, for its message.
                body = try await Self.message(of: exchange)
            } else {
                while try await exchange.next() != nil {}
            }
            try? await ownLoop?.shutdownGracefully()
            return HTTPResponse(head: head, body: body)
        } catch {
            try? await ownLoop?.shutdownGracefully()
            throw error
        }
    }

    /// An error answer's body, for its message: one line, so what is past 64 KiB is not read.
    private static func message(of exchange: Exchange) async throws -> Data {
        var body = Data()
        while body.count < 65536, let chunk = try await exchange.next() { body.append(chunk.prefix(65536 - body.count)) }
        exchange.close()
        return body
    }

    /// The exchange of `request` once its answer's head is in: on the kept connection if there is
    /// one and the request can be sent again, else on a new one. A kept connection that the
    /// server closed before answering (its idle timeout, a restart) gives way to a new one.
    private func answer(to request: HTTPRequest) async throws -> (Exchange, HTTPWire.HTTPResponseHead) {
        if let channel = swapKept(for: nil) {
            if request.isReplayable && channel.isActive {
                let exchange = makeExchange(request, sink: nil)
                do {
                    try await carry(exchange, on: channel)
                    return (exchange, try await exchange.head())
                } catch let error as HTTPClientError where !exchange.answered && error.isConnectionLost {
                    // Nothing of an answer came: the request goes again, on a connection of its own.
                }
            } else {
                channel.close(promise: nil)
            }
        }
        let exchange = try await begin(request, sink: nil)
        return (exchange, try await exchange.head())
    }

    private func makeExchange(_ request: HTTPRequest, sink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)?) -> Exchange {
        var keep: (@Sendable (any Channel) -> Void)?
        if request.keepsConnection {
            keep = { [weak self] channel in
                guard let self else { return channel.close(promise: nil) }
                self.swapKept(for: channel)?.close(promise: nil)
            }
        }
        let exchange = Exchange(request: request, endpoint: endpoint, window: streamWindow, sink: sink, keep: keep)
        if case .stream(let upload, _) = request.body {
            // However the exchange ends, before its request is written or after, the body's
            // writer hears of it rather than waiting for a reader that never comes.
            exchange.onEnd { upload.fail($0 ?? .cancelled) }
        }
        return exchange
    }

    /// Puts `channel` (or none) in the kept connection's place; returns the one that was there.
    @discardableResult
    private func swapKept(for channel: (any Channel)?) -> (any Channel)? {
        kept.withLock { kept in
            defer { kept = channel }
            return kept
        }
    }

    /// Ends the exchange at the request's time limit, if it has one.
    private func arm(_ exchange: Exchange, on loop: any EventLoop) {
        let request = exchange.request
        guard let timeout = request.timeout else { return }
        exchange.deadline(loop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
            exchange.fail(HTTPClientError.timeout(method: request.method, path: request.path, after: timeout))
        })
    }

    /// Sends the exchange's request on a kept connection, whose server was checked (TLS, a
    /// pinned key, a name) when it was made.
    private func carry(_ exchange: Exchange, on channel: any Channel) async throws {
        arm(exchange, on: channel.eventLoop)
        do {
            try await channel.eventLoop.submit {
                let context = try channel.pipeline.syncOperations.context(handlerType: ExchangeHandler.self)
                (context.handler as? ExchangeHandler)?.carry(exchange, context: context)
            }.get()
        } catch {
            let failure = HTTPClientError.unreachable(endpoint: endpoint.description, reason: "the connection closed without an answer")
            exchange.fail(failure)
            throw failure
        }
        exchange.attach(channel)
        write(exchange.request, to: channel, exchange: exchange)
    }

    /// Connects, writes the request once the connection is ready (its TLS checked), and returns
    /// the exchange the answer arrives on.
    private func begin(
        _ request: HTTPRequest, sink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)?,
        on group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> Exchange {
        let exchange = makeExchange(request, sink: sink)
        return try await withTaskCancellationHandler {
            do {
                let context = try tls?.get()
                let loop = group.next()
                arm(exchange, on: loop)
                let channel = try await connect(on: loop, exchange: exchange, tls: context)
                exchange.attach(channel)
                try await exchange.ready()
                write(request, to: channel, exchange: exchange)
                return exchange
            } catch {
                exchange.fail(error)
                throw error
            }
        } onCancel: {
            exchange.fail(HTTPClientError.cancelled)
        }
    }

    private func connect(on loop: any EventLoop, exchange: Exchange, tls context: NIOSSLContext?) async throws -> any Channel {
        let serverName = endpoint.serverName
        // Connecting and the TLS handshake share the one limit, as for libcurl.
        let handshakeDeadline = NIODeadline.now() + .nanoseconds(connectTimeout.nanoseconds)
        let handshakeTimeout = connectTimeout
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(connectTimeout.nanoseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if let context {
                        try operations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    }
                    try operations.addHTTPClientHandlers()
                    try operations.addHandler(ExchangeHandler(
                        exchange, tls: context != nil, serverName: serverName, handshakeDeadline: handshakeDeadline, handshakeTimeout: handshakeTimeout))
                }
            }
        do {
            switch endpoint.kind {
            case .unix(let path):
                return try await bootstrap.connect(unixDomainSocketPath: path).get()
            case .tcp(let host, let port):
                if let address = try? SocketAddress(ipAddress: host, port: port) {
                    return try await bootstrap.connect(to: address).get()
                }
                return try await bootstrap.connect(host: host, port: port).get()
            }
        } catch {
            let failure = exchange.failure ?? connectFailure(error)
            exchange.fail(failure)
            throw failure
        }
    }

    private func connectFailure(_ error: any Error) -> HTTPClientError {
        if let error = error as? HTTPClientError { return error }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return connectFailure(first.error)
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return .unreachable(endpoint: endpoint.description, reason: "no connection within \(connectTimeout.formattedSeconds)")
        }
        if let error = error as? IOError {
            return .unreachable(endpoint: endpoint.description, reason: String(cString: strerror(error.errnoCode)).lowercased())
        }
        return .unreachable(endpoint: endpoint.description, reason: "\(error)")
    }

    /// The head, then the body as the request says: whole, or as it is written. A
    /// part that cannot be written (a header NIO refuses, a connection gone) ends the exchange,
    /// which would otherwise wait for an answer to a request never sent.
    private func write(_ request: HTTPRequest, to channel: any Channel, exchange: Exchange) {
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.target)
        head.headers.add(name: "Host", value: endpoint.hostHeader)
        let send = { (part: HTTPClientRequestPart) -> EventLoopFuture<Void> in
            let written = channel.writeAndFlush(part)
            written.whenFailure { error in
                exchange.fail(HTTPClientError.transport("\(request.method) \(request.path): the request could not be sent: \(error)"))
            }
            return written
        }
        let sendHead = { (framing: [(name: String, value: String)]) in
            head.headers.add(contentsOf: framing + request.headers)
            _ = send(.head(head))
        }
        switch request.body {
        case .none:
            sendHead(request.method == "GET" || request.method == "HEAD" ? [] : [(name: "Content-Length", value: "0")])
            _ = send(.end(nil))
        case .data(let data, let contentType):
            sendHead([(name: "Content-Type", value: contentType), (name: "Content-Length", value: "\(data.count)")])
            if !data.isEmpty { _ = send(.body(.byteBuffer(ByteBuffer(bytes: data)))) }
            _ = send(.end(nil))
        case .file(let path, _):
            // `berth` streams what it sends (`UploadStream`); a body read from a file is the
            // daemons' (image imports), which libcurl's transport sends.
            exchange.fail(HTTPClientError.transport("\(request.method) \(request.path): this transport sends no file bodies (\(path))"))
        case .stream(let upload, let contentType):
            sendHead([(name: "Content-Type", value: contentType), (name: "Transfer-Encoding", value: "chunked")])
            Task {
                do {
                    while let chunk = try await upload.nextChunk() {
                        try await send(.body(.byteBuffer(ByteBuffer(bytes: chunk)))).get()
                    }
                    try await send(.end(nil)).get()
                } catch {
                    // The exchange has ended, or its connection has: the answer says why.
                }
            }
        }
    }

    /// Whether `pem` holds at least one certificate TLS can trust, read by the same parser the
    /// handshake will use (a login checks its `--ca` before asking for the password).
    public static func holdsCertificate(pem: String) -> Bool {
        (try? NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))?.isEmpty == false
    }

    /// A context that checks the server as `tls` says: against its CAs only (never the
    /// system's), the certificate naming the address connected to. A host name is checked
    /// against the certificate's DNS names by `ExchangeHandler` instead, as is a pinned key, once
    /// the handshake is done and before anything is sent: NIOSSL would also take a certificate
    /// naming the address the name led to, which anyone answering for the name has.
    private static func context(for tls: ClientTLS, endpoint: HTTPEndpoint) -> Result<NIOSSLContext, HTTPClientError> {
        guard tls.trustedCAs != nil || tls.pinnedKey != nil else {
            // TLS that checks nothing would look safe and be anyone's.
            return .failure(.untrusted(endpoint: endpoint.description, reason: "TLS with neither a trusted CA nor a pinned key"))
        }
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            if let pem = tls.trustedCAs {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
                configuration.certificateVerification = endpoint.serverName == nil ? .fullVerification : .noHostnameVerification
            } else {
                configuration.certificateVerification = .none
            }
            if let certificate = tls.clientCertificate, let key = tls.clientKey {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem))
            }
            return .success(try NIOSSLContext(configuration: configuration))
        } catch {
            return .failure(.untrusted(endpoint: endpoint.description, reason: "a TLS certificate or key cannot be read: \(error)"))
        }
    }
}

extension HTTPEndpoint {
    /// The name sent in the TLS handshake and looked for among the certificate's DNS names; none
    /// for an address, which the certificate must name instead.
    var serverName: String? {
        guard case .tcp(let host, _) = kind, (try? SocketAddress(ipAddress: host, port: 0)) == nil else { return nil }
        return host
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// What `stream` hands out: reads the exchange, and closes its connection once no one can.
private final class BodyReader: Sendable {
    let exchange: Exchange

    init(_ exchange: Exchange) {
        self.exchange = exchange
    }

    func next() async throws -> Data? {
        try await exchange.next()
    }

    deinit {
        exchange.close()
    }
}

extension HTTPClientError {
    /// The connection failed or went away, as a kept one the server has closed does.
    var isConnectionLost: Bool {
        switch self {
        case .unreachable, .transport: true
        default: false
        }
    }
}
