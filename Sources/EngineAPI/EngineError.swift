import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Everything that can go wrong talking to the engine, with the context a person needs.
public enum EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing answers at the endpoint (no socket, connection refused, no answer in time).
    case unreachable(endpoint: String, reason: String)
    case timeout(method: String, path: String, after: Duration)
    case cancelled
    /// 404: no such container, image, network or exec.
    case notFound(message: String, method: String, path: String)
    /// 409: a name in use, a container that is running, a network with endpoints.
    case conflict(message: String, method: String, path: String)
    /// Any other status of 400 or more.
    case status(code: Int, message: String, method: String, path: String)
    /// The engine's API is older than this client supports.
    case unsupportedEngine(engineVersion: String, minimum: String)
    /// A response this client could not read.
    case invalidResponse(String)
    /// The engine answered 200 and then reported a failure inside the stream (image import, load).
    case streamError(String)
    case invalidEndpoint(String, reason: String)
    case transport(String)

    public var description: String {
        switch self {
        case .unreachable(let endpoint, let reason):
            "Docker engine not reachable at \(endpoint): \(reason) (is dockerd running?)"
        case .timeout(let method, let path, let after):
            "Docker engine did not answer \(method) \(path) within \(after.formattedSeconds)"
        case .cancelled:
            "cancelled"
        case .notFound(let message, _, _), .conflict(let message, _, _):
            message
        case .status(let code, let message, let method, let path):
            "\(method) \(path): \(code) \(message)"
        case .unsupportedEngine(let engineVersion, let minimum):
            "Docker engine API \(engineVersion) is too old: Berth needs API \(minimum) or newer (Docker 20.10+)"
        case .invalidResponse(let detail):
            "unreadable answer from the Docker engine: \(detail)"
        case .streamError(let message):
            message
        case .invalidEndpoint(let text, let reason):
            "invalid Docker endpoint \"\(text)\": \(reason)"
        case .transport(let detail):
            detail
        }
    }

    /// Maps a response with an error status to its case, keeping the engine's own message.
    static func fromResponse(_ response: HTTPResponse, method: String, path: String) -> EngineError {
        let message = engineMessage(in: response.body) ?? (response.head.reason.isEmpty ? "HTTP \(response.status)" : response.head.reason)
        switch response.status {
        case 404: return .notFound(message: message, method: method, path: path)
        case 409: return .conflict(message: message, method: method, path: path)
        default: return .status(code: response.status, message: message, method: method, path: path)
        }
    }

    private struct Message: Decodable {
        let message: String
    }

    static func engineMessage(in body: Data) -> String? {
        if let decoded = try? JSONDecoder().decode(Message.self, from: body) { return decoded.message }
        // A plain-text message, made one line.
        let words = String(decoding: body, as: UTF8.self).split(whereSeparator: \.isWhitespace)
        return words.isEmpty ? nil : words.joined(separator: " ")
    }
}

extension EngineError {
    /// The transport's failure said of the engine; an error status keeps the engine's message.
    public init(_ error: HTTPClientError) {
        switch error {
        case .unreachable(let endpoint, let reason): self = .unreachable(endpoint: endpoint, reason: reason)
        case .timeout(let method, let path, let after): self = .timeout(method: method, path: path, after: after)
        case .cancelled: self = .cancelled
        case .status(let response, let method, let path): self = .fromResponse(response, method: method, path: path)
        case .invalidEndpoint(let text, let reason): self = .invalidEndpoint(text, reason: reason)
        case .transport(let detail): self = .transport(detail)
        case .untrusted(let endpoint, let reason), .tlsFailed(let endpoint, let reason):
            self = .transport("Docker engine at \(endpoint): TLS: \(reason)")
        }
    }
}
