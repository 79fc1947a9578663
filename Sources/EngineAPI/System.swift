import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension DockerClient {
    /// `GET /_ping`: whether the engine answers, and its API version.
    @discardableResult
    public func ping() async throws -> String {
        let response = try await engine { try await transport.send(HTTPRequest(method: "GET", path: "/_ping", timeout: timeout)) }
        guard response.status == 200 else {
            throw EngineError.fromResponse(response, method: "GET", path: "/_ping")
        }
        return response.head.header("Api-Version") ?? ""
    }

    /// `GET /version`.
    public func version() async throws -> EngineVersion {
        try decode(EngineVersion.self, from: try await request("GET", "/version"))
    }

    /// `GET /info`.
    public func info() async throws -> EngineInfo {
        try decode(EngineInfo.self, from: try await request("GET", "/info"))
    }
}
