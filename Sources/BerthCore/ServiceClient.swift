import BerthAPI
import HTTPWire
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A failure talking to a Berth daemon (manager or agent), worded for a person.
public enum ServiceError: Error, Sendable, CustomStringConvertible {
    /// Nothing answers at the address.
    case unreachable(what: String, reason: String)
    case timeout(what: String, after: Duration)
    /// The daemon answered with an error status and this message.
    case refused(status: Int, message: String)
    case invalidAnswer(what: String, detail: String)
    /// The daemon's certificate or key is not the one trusted, or no TLS session could be made.
    case untrusted(what: String, reason: String)

    public var description: String {
        switch self {
        case .unreachable(let what, let reason): "\(what) is not reachable: \(reason)"
        case .timeout(let what, let after): "\(what) did not answer within \(Int(after.components.seconds)) s"
        case .refused(_, let message): message
        case .invalidAnswer(let what, let detail): "unreadable answer from \(what): \(detail)"
        case .untrusted(let what, let reason): "\(what) is not trusted: \(reason)"
        }
    }
}

/// JSON over HTTP to one Berth daemon, optionally signing every request with the cluster secret.
public struct ServiceClient: Sendable {
    public let address: HostPort
    /// How the daemon is named in errors: "agent 127.0.0.2:9001", "the Berth manager at …".
    public let name: String
    private let transport: any HTTPTransport
    private let signer: RequestSigner?

    /// `streamWindow` bounds the unread bytes of each stream (a call's output, a log); 1 MB keeps
    /// a unit's link busy while holding `berth`'s memory down.
    /// `tls`: reach the daemon over TLS, checked as it says; nil speaks plain HTTP. `transport`:
    /// libcurl's in the daemons, SwiftNIO's in `berth`.
    public init(
        address: HostPort, name: String, signer: RequestSigner? = nil, tls: ClientTLS? = nil, connectTimeout: Duration = .seconds(3),
        streamWindow: Int = 1 << 20, transport: any HTTPTransport.Type
    ) {
        self.address = address
        self.name = name
        self.signer = signer
        self.transport = transport.make(
            endpoint: HTTPEndpoint(.tcp(host: address.host, port: address.port), tls: tls), connectTimeout: connectTimeout,
            streamWindow: streamWindow)
    }

    /// Calls `route` with `body` as JSON and decodes its answer.
    public func call<Body: Encodable, Answer: Decodable>(
        _ route: Route<Body, Answer>, _ body: Body, query: [(name: String, value: String)] = [], token: String? = nil,
        timeout: Duration = .seconds(30)
    ) async throws -> Answer {
        try await call(route.method.rawValue, route.path, query: route.query + query, body: body, token: token, timeout: timeout)
    }

    /// Calls `route`, which takes no body, and decodes its answer.
    public func call<Answer: Decodable>(
        _ route: Route<NoBody, Answer>, query: [(name: String, value: String)] = [], token: String? = nil, timeout: Duration = .seconds(30)
    ) async throws -> Answer {
        try await call(route.method.rawValue, route.path, query: route.query + query, token: token, timeout: timeout)
    }

    /// Opens `route`, whose answer streams; its body arrives as it is produced. Error statuses throw.
    public func stream<Body: Encodable, Answer>(
        _ route: Route<Body, Answer>, _ body: Body? = nil, query: [(name: String, value: String)] = [], token: String? = nil
    ) async throws -> HTTPStreamingResponse {
        try await stream(route.method.rawValue, route.path, query: route.query + query, body: body.flatMap { $0 is NoBody ? nil : $0 }, token: token)
    }

    /// Sends `body` (if any) as JSON and decodes the answer as `Answer`. Any method and path: for
    /// tests that send what no route would.
    package func call<Answer: Decodable>(
        _ method: String, _ path: String, query: [(name: String, value: String)] = [], body: (some Encodable)? = nil as String?,
        token: String? = nil, timeout: Duration = .seconds(30), as answer: Answer.Type = Answer.self
    ) async throws -> Answer {
        try await decodedAnswer(to: try makeRequest(method, path, query: query, body: body, token: token, timeout: timeout))
    }

    /// The status and body a plain `GET path` gets, whatever the status: asked before anything
    /// secret goes over plain HTTP, to see who answers. `keepingConnection`: the connection stays
    /// open for the next request, so what follows goes to the server that gave this answer.
    public func plainAnswer(to path: String, keepingConnection: Bool = false, timeout: Duration = .seconds(3)) async throws -> (status: Int, body: Data) {
        var request = HTTPRequest(method: "GET", path: path, timeout: timeout)
        request.keepsConnection = keepingConnection
        let response = try await send(request)
        return (response.head.status, response.body)
    }

    /// Sends `request` and decodes its answer; error statuses throw with the daemon's message.
    private func decodedAnswer<Answer: Decodable>(to request: HTTPRequest) async throws -> Answer {
        let response = try await send(request)
        try check(response.head.status, body: response.body)
        do {
            return try BerthJSON.decoder.decode(Answer.self, from: response.body)
        } catch {
            throw ServiceError.invalidAnswer(what: name, detail: "\(error)")
        }
    }

    /// Opens a streaming request; the body arrives as it is produced. Error statuses throw.
    package func stream(
        _ method: String, _ path: String, query: [(name: String, value: String)] = [], body: (some Encodable)? = nil as String?,
        token: String? = nil
    ) async throws -> HTTPStreamingResponse {
        try await openStream(try makeRequest(method, path, query: query, body: body, token: token, timeout: nil))
    }

    /// Opens `route` with a body written while its answer streams back (an interactive exec):
    /// `opening` as the first frame (`ExecInput.request`, the part a signature covers), then
    /// whatever the caller writes to `input`, framed as `ExecInput`. Error statuses throw.
    public func duplex<Body: Encodable, Answer>(
        _ route: Route<Body, Answer>, opening: Body, input: UploadStream, token: String? = nil
    ) async throws -> HTTPStreamingResponse {
        let payload = try BerthJSON.encoder.encode(opening)
        var request = HTTPRequest(
            method: route.method.rawValue, path: route.path, query: route.query, body: .stream(input, contentType: OutputStream.contentType))
        if let token { request.headers.append((name: "Authorization", value: "Bearer \(token)")) }
        if let signer {
            request.headers += signer.headers(method: request.method, target: request.target, audience: address.description, body: payload)
        }
        try await input.write(ExecInput.request(payload).encoded)
        return try await openStream(request)
    }

    /// Sends a body written to `input` while the request runs (a tar stream), then decodes the
    /// answer. Signed with no body: the query is what says where it goes.
    public func upload<Body, Answer: Decodable>(
        _ route: Route<Body, Answer>, query: [(name: String, value: String)] = [], input: UploadStream, contentType: String,
        token: String? = nil
    ) async throws -> Answer {
        var request = HTTPRequest(method: route.method.rawValue, path: route.path, query: route.query + query, body: .stream(input, contentType: contentType))
        if let token { request.headers.append((name: "Authorization", value: "Bearer \(token)")) }
        if let signer {
            request.headers += signer.headers(method: request.method, target: request.target, audience: address.description, body: Data())
        }
        return try await decodedAnswer(to: request)
    }

    /// The answer to `request`, whatever its status; transport failures worded for a person.
    private func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        do {
            return try await transport.send(request)
        } catch let error as HTTPClientError {
            throw translate(error)
        }
    }

    private func openStream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        do {
            let response = try await transport.stream(request, streamErrorResponses: true)
            if response.head.status >= 400 {
                // An error's message is one line: what is past 64 KiB is not read.
                var body = Data()
                for try await chunk in response.body {
                    body.append(chunk.prefix(65536 - body.count))
                    if body.count >= 65536 { break }
                }
                try check(response.head.status, body: body)
            }
            return response
        } catch let error as HTTPClientError {
            throw translate(error)
        }
    }

    /// Sends a request and hands the answer's body to `receive` piece by piece as it arrives, on
    /// the connection's own thread (see `HTTPTransport.receive`); returns when the body has ended. Error
    /// statuses throw; so does whatever `receive` throws, unchanged.
    public func receive(
        _ method: String, _ path: String, body: (some Encodable)? = nil as String?, token: String? = nil,
        into receive: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void
    ) async throws {
        let request = try makeRequest(method, path, query: [], body: body, token: token, timeout: nil)
        let response: HTTPResponse
        do {
            response = try await transport.receive(request, into: receive)
        } catch let error as HTTPClientError {
            throw translate(error)
        }
        try check(response.head.status, body: response.body)
    }

    private func makeRequest(
        _ method: String, _ path: String, query: [(name: String, value: String)], body: (some Encodable)?, token: String?, timeout: Duration?
    ) throws -> HTTPRequest {
        var request = HTTPRequest(method: method, path: path, query: query, timeout: timeout)
        var payload = Data()
        if let body {
            payload = try BerthJSON.encoder.encode(body)
            request.body = .data(payload, contentType: "application/json")
        }
        if let token { request.headers.append((name: "Authorization", value: "Bearer \(token)")) }
        if let signer {
            request.headers += signer.headers(method: method, target: request.target, audience: address.description, body: payload)
        }
        return request
    }

    private func check(_ status: Int, body: Data) throws {
        guard status >= 400 else { return }
        let message = (try? BerthJSON.decoder.decode(ErrorBody.self, from: body))?.error
            ?? "\(name) answered HTTP \(status)"
        throw ServiceError.refused(status: status, message: message)
    }

    private func translate(_ error: HTTPClientError) -> ServiceError {
        switch error {
        case .unreachable(_, let reason): .unreachable(what: name, reason: reason)
        case .timeout(_, _, let after): .timeout(what: name, after: after)
        case .untrusted(_, let reason): .untrusted(what: name, reason: reason)
        case .tlsFailed(_, let reason): .untrusted(what: name, reason: "no TLS session (a daemon without TLS, or one that refused this client's certificate): \(reason)")
        default: .invalidAnswer(what: name, detail: error.description)
        }
    }
}
