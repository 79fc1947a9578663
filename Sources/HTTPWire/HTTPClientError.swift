#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What can go wrong on the way to a server and back, named by the server's address; callers
/// (the Docker client, Berth's daemons) say which server it is.
public enum HTTPClientError: Error, Sendable, CustomStringConvertible {
    /// Nothing answers at the endpoint (no socket, connection refused, no connection in time).
    case unreachable(endpoint: String, reason: String)
    case timeout(method: String, path: String, after: Duration)
    case cancelled
    /// A streaming request answered with an error status; its head and whole (small) body.
    case status(HTTPResponse, method: String, path: String)
    case invalidEndpoint(String, reason: String)
    case transport(String)
    /// The server's certificate or key is not the one trusted.
    case untrusted(endpoint: String, reason: String)
    /// No TLS session could be set up (the server speaks no TLS, refused our certificate, …).
    case tlsFailed(endpoint: String, reason: String)

    public var description: String {
        switch self {
        case .unreachable(let endpoint, let reason): "\(endpoint) is not reachable: \(reason)"
        case .timeout(let method, let path, let after): "no answer to \(method) \(path) within \(after.formattedSeconds)"
        case .cancelled: "cancelled"
        case .status(let response, let method, let path): "\(method) \(path): HTTP \(response.status)"
        case .invalidEndpoint(let text, let reason): "invalid endpoint \"\(text)\": \(reason)"
        case .transport(let detail): detail
        case .untrusted(let endpoint, let reason): "\(endpoint) is not trusted: \(reason)"
        case .tlsFailed(let endpoint, let reason): "no TLS session with \(endpoint): \(reason)"
        }
    }
}

extension Duration {
    /// `2 s`, `0.3 s`: a duration as progress lines show it.
    public var formattedSeconds: String {
        let seconds = Double(components.seconds) + Double(components.attoseconds) / 1e18
        let tenths = (seconds * 10).rounded()
        return tenths.truncatingRemainder(dividingBy: 10) == 0 ? "\(Int(tenths / 10)) s" : "\(tenths / 10) s"
    }

    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Milliseconds to the nearest tenth (`7.3`), as the daemons log a login's parts: whole
    /// milliseconds, rounded down, would make each part look up to a millisecond shorter.
    public var tenthsOfMilliseconds: String {
        let (seconds, attoseconds) = components
        let tenths = seconds * 10_000 + (attoseconds + 50_000_000_000_000) / 100_000_000_000_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}
