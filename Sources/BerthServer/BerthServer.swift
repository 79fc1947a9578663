import BerthAPI
import BerthCore
import BerthVersion
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import Logging
import NIOCore

/// A failure with the HTTP status it deserves and one line a person can act on.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// Whether the connection closes after the answer: the request's body was left unread.
    public var closing: Bool

    public init(_ status: HTTPResponse.Status, _ message: String, closing: Bool = false) {
        self.status = status
        self.message = message
        self.closing = closing
    }

    public var description: String { message }
}

/// The request context of both daemons: Hummingbird's, plus who is on the other end.
public struct BerthRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    public var maxUploadSize: Int { maxRequestBody }
    /// The body digest a verified signature covers; the body is checked against it when read.
    public var signedBodyDigest: String?

    /// The request's connection.
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// The client's IP address as text, for sessions and the audit log.
    public var clientAddress: String {
        remoteAddress?.ipAddress ?? "unknown"
    }
}

/// Turns every error into `{"error": "…"}` with a fitting status; nothing else leaks.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            var response = Self.response(error.status, error.message)
            if error.closing { response.headers[.connection] = "close" }
            return response
        } catch let error as HTTPError {
            return Self.response(error.status, error.body ?? error.status.reasonPhrase)
        } catch is DecodingError {
            return Self.response(.badRequest, "request body is not the expected JSON")
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return Self.response(.internalServerError, "\(error)")
        }
    }

    static func response(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = (try? BerthJSON.encoder.encode(ErrorBody(error: message))) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Refuses (401) every request that does not prove knowledge of the cluster secret, on its head:
/// no byte of a stranger's body is read. The body, read later by the route, must match the digest
/// the signature covers.
public struct SignatureMiddleware: RouterMiddleware {
    let verifier: RequestVerifier

    public init(verifier: RequestVerifier) {
        self.verifier = verifier
    }

    public func handle(_ request: Request, context: BerthRequestContext, next: (Request, BerthRequestContext) async throws -> Response) async throws -> Response {
        // A daemon of another protocol version may mean anything by its request: refused unread.
        // A request with neither version nor signature is no daemon's, and meets the signature check.
        let header = { (name: String) in request.headers.first { $0.name.canonicalName == name.lowercased() }?.value }
        let version = header(RequestSigner.versionHeader)
        if version != nil || header(RequestSigner.signatureHeader) != nil, let mismatch = BerthVersion.mismatch(peer: version) {
            context.logger.warning("refused request of another Berth version", metadata: ["path": "\(request.uri.path)", "reason": "\(mismatch)"])
            throw APIError(HTTPResponse.Status(code: 426, reasonPhrase: "Upgrade Required"), mismatch, closing: true)
        }
        var context = context
        do {
            context.signedBodyDigest = try verifier.verifyHead(method: request.method.rawValue, target: request.uri.description, header: header)
            context.channel.markAuthenticated()
        } catch {
            context.logger.warning("refused request", metadata: ["path": "\(request.uri.path)", "reason": "\(error)"])
            throw APIError(.unauthorized, "unauthorized: \(error)", closing: true)
        }
        return try await next(request, context)
    }
}

extension Request {
    /// The body decoded as `T`: at most `limit` bytes, matching the signed digest when there is
    /// one, or a 400 that names what is wrong.
    public func decodeJSON<T: Decodable>(_ type: T.Type, limit: Int, context: BerthRequestContext) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch {
            throw unreadableBody(error, limit: limit)
        }
        let data = Data(buffer.readableBytesView)
        if let digest = context.signedBodyDigest, !RequestVerifier.body(data, matches: digest) {
            context.logger.warning("refused request", metadata: ["path": "\(uri.path)", "reason": "\(RequestVerifier.Refusal.bodyMismatch)"])
            throw APIError(.unauthorized, "unauthorized: \(RequestVerifier.Refusal.bodyMismatch)", closing: true)
        }
        do {
            return try BerthJSON.decodeRequest(type, from: data)
        } catch {
            throw APIError(.badRequest, error.description)
        }
    }
}

/// The most any route takes; each route's own cap is smaller.
let maxRequestBody = 1 << 20

/// A body too large is a 413 (and the connection closes: the rest is never read), one cut short
/// or badly framed a 400: the client's mistake, not a 500.
private func unreadableBody(_ error: any Error, limit: Int) -> APIError {
    if error is NIOTooManyBytesError {
        let size = limit >= 1 << 20 ? "\(limit >> 20) MiB" : "\(limit >> 10) KiB"
        return APIError(.contentTooLarge, "request body is larger than this route's \(size)", closing: true)
    }
    return APIError(.badRequest, "request body could not be read: \(error)", closing: true)
}

/// A JSON response.
public func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try BerthJSON.encoder.encode(value))))
}

/// A body of JSON lines written as the producer yields them, e.g. login progress.
public func jsonLinesResponse<T: Encodable & Sendable>(
    _ produce: @escaping @Sendable (_ emit: @escaping @Sendable (T) async throws -> Void) async throws -> Void
) -> Response {
    Response(
        status: .ok, headers: [.contentType: "application/x-ndjson"],
        body: ResponseBody { writer in
            let (stream, continuation) = AsyncStream<T>.makeStream()
            // The work goes on to its end even if the client goes away: a login half done would
            // leave containers nobody owns.
            let producer = Task {
                defer { continuation.finish() }
                try await produce { value in continuation.yield(value) }
            }
            for await value in stream {
                var line = try BerthJSON.encoder.encode(value)
                line.append(UInt8(ascii: "\n"))
                try await writer.write(ByteBuffer(bytes: line))
            }
            try await producer.value
            try await writer.finish(nil)
        })
}
