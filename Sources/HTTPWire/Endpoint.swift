#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where a server listens: a Unix socket or a TCP address.
public struct HTTPEndpoint: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case unix(path: String)
        case tcp(host: String, port: Int)
    }

    public var kind: Kind
    /// With it, a TCP endpoint is reached over TLS (HTTPS) and checked as it says.
    public var tls: ClientTLS?

    public init(_ kind: Kind, tls: ClientTLS? = nil) {
        self.kind = kind
        self.tls = tls
    }

    public static func unix(_ path: String) -> HTTPEndpoint {
        HTTPEndpoint(.unix(path: path))
    }

    /// Parses `unix:///path`, a bare absolute `/path`, or `tcp://host:port` (as `DOCKER_HOST` spells them).
    public init(parsing text: String) throws {
        if text.hasPrefix("unix://") {
            let path = String(text.dropFirst("unix://".count))
            guard path.hasPrefix("/") else {
                throw HTTPClientError.invalidEndpoint(text, reason: "a unix socket path must be absolute")
            }
            self.init(.unix(path: path))
        } else if text.hasPrefix("/") {
            self.init(.unix(path: text))
        } else if text.hasPrefix("tcp://") || text.hasPrefix("http://") {
            let rest = text.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
            let authority = rest.count > 2 ? String(rest[2]) : ""
            guard let colon = authority.lastIndex(of: ":"),
                  let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port),
                  colon != authority.startIndex
            else {
                throw HTTPClientError.invalidEndpoint(text, reason: "expected tcp://HOST:PORT")
            }
            self.init(.tcp(host: String(authority[..<colon]), port: port))
        } else {
            throw HTTPClientError.invalidEndpoint(text, reason: "expected unix:///PATH or tcp://HOST:PORT")
        }
    }

    /// The URL prefix requests are sent to; over a Unix socket the host name is only a label.
    package var baseURL: String {
        switch kind {
        case .unix: "http://docker"
        case .tcp(let host, let port):
            // An IPv6 address needs brackets in a URL.
            "\(tls == nil ? "http" : "https")://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        }
    }

    /// What a request names as its `Host`, as libcurl would from `baseURL`.
    package var hostHeader: String {
        switch kind {
        case .unix: "docker"
        case .tcp(let host, let port): "\(host.contains(":") ? "[\(host)]" : host):\(port)"
        }
    }

    public var description: String {
        switch kind {
        case .unix(let path): path
        case .tcp(let host, let port): "\(tls == nil ? "tcp" : "tls")://\(host):\(port)"
        }
    }
}

/// How a client checks the server it reaches over TLS, and how it proves itself.
public struct ClientTLS: Sendable, Equatable {
    /// PEM of the CAs whose certificates are trusted, and only those (never the system's); the
    /// server's certificate must also name the address connected to. Nil: no CA, `pinnedKey` only.
    public var trustedCAs: String?
    /// `sha256//BASE64` of the server's public key: only a server with this key is accepted.
    public var pinnedKey: String?
    /// PEM of this client's certificate and key, presented to servers that ask (manager → agent).
    public var clientCertificate: String?
    public var clientKey: String?

    public init(trustedCAs: String? = nil, pinnedKey: String? = nil, clientCertificate: String? = nil, clientKey: String? = nil) {
        self.trustedCAs = trustedCAs
        self.pinnedKey = pinnedKey
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
    }
}
