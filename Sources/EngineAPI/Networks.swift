import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension DockerClient {
    /// `POST /networks/create`: returns the network's id.
    @discardableResult
    public func createNetwork(_ network: NetworkCreate) async throws -> String {
        let response = try await request("POST", "/networks/create", body: try EngineJSON.body(network))
        return try decode(IDResponse.self, from: response).id
    }

    /// `GET /networks`, optionally only those matching label filters.
    public func listNetworks(labels: [String] = []) async throws -> [Network] {
        var query = Query()
        if !labels.isEmpty { query.add("filters", EngineJSON.filters(["label": labels])) }
        return try decode([Network].self, from: try await request("GET", "/networks", query: query.items))
    }

    /// `GET /networks/{id}`.
    public func inspectNetwork(_ id: String) async throws -> Network {
        try decode(Network.self, from: try await request("GET", "/networks/\(id)"))
    }

    /// `DELETE /networks/{id}`.
    public func removeNetwork(_ id: String) async throws {
        try await request("DELETE", "/networks/\(id)")
    }

    /// `POST /networks/{id}/connect`.
    public func connectNetwork(_ id: String, container: String, aliases: [String]? = nil) async throws {
        struct Connect: Encodable { var container: String; var endpointConfig: EndpointSettings? }
        let body = Connect(container: container, endpointConfig: aliases.map { EndpointSettings(aliases: $0) })
        try await request("POST", "/networks/\(id)/connect", body: try EngineJSON.body(body))
    }

    /// `POST /networks/{id}/disconnect`.
    public func disconnectNetwork(_ id: String, container: String, force: Bool = false) async throws {
        struct Disconnect: Encodable { var container: String; var force: Bool }
        try await request("POST", "/networks/\(id)/disconnect", body: try EngineJSON.body(Disconnect(container: container, force: force)))
    }
}
