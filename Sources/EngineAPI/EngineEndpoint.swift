import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where a Docker engine listens: a Unix socket (the default) or a TCP address.
public typealias EngineEndpoint = HTTPEndpoint

extension HTTPEndpoint {
    public static let defaultSocketPath = "/var/run/docker.sock"

    /// The engine's usual socket.
    public static func unix() -> HTTPEndpoint {
        .unix(defaultSocketPath)
    }

    /// The endpoint named by `DOCKER_HOST`, else the default socket.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> HTTPEndpoint {
        if let host = environment["DOCKER_HOST"], !host.isEmpty {
            return try HTTPEndpoint(parsing: host)
        }
        return .unix()
    }
}
