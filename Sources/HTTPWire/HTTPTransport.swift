#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// HTTP/1.1 to one server, whatever carries it: the daemons use libcurl (`HTTPClient`), which
/// they need for the engine's socket anyway; `berth` uses SwiftNIO (`NIOTransport`), so a command
/// starts without loading libcurl's thirty libraries. Failures are `HTTPClientError`s.
public protocol HTTPTransport: AnyObject, Sendable {
    /// A transport to `endpoint` that gives up connecting after `connectTimeout`.
    static func make(endpoint: HTTPEndpoint, connectTimeout: Duration, streamWindow: Int) -> Self

    /// Sends a request and returns the whole response, whatever its status.
    func send(_ request: HTTPRequest) async throws -> HTTPResponse

    /// Returns once the response head arrives; the body follows as a stream, at most
    /// `streamWindow` bytes of it unread. A status of 400 or more throws
    /// `HTTPClientError.status` unless `streamErrorResponses`.
    func stream(_ request: HTTPRequest, streamErrorResponses: Bool) async throws -> HTTPStreamingResponse

    /// Hands the body to `receive` piece by piece and returns the head once it has ended; the
    /// body of a status of 400 or more is returned whole instead, for its message. What
    /// `receive` throws ends the transfer and is rethrown.
    func receive(_ request: HTTPRequest, into receive: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) async throws -> HTTPResponse
}
