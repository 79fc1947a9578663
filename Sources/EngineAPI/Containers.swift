import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension DockerClient {
    /// `POST /containers/create`.
    public func createContainer(name: String? = nil, config: ContainerConfig) async throws -> ContainerCreateResponse {
        try await createContainer(name: name, body: config)
    }

    /// `POST /containers/create` with any encodable body, e.g. an admin's template merged as raw
    /// JSON, whose fields Berth's model does not know.
    public func createContainer(name: String? = nil, body: some Encodable) async throws -> ContainerCreateResponse {
        var query = Query()
        query.add("name", name)
        let response = try await request("POST", "/containers/create", query: query.items, body: try EngineJSON.body(body))
        return try decode(ContainerCreateResponse.self, from: response)
    }

    /// `POST /containers/{id}/start`. Starting a running container is not an error.
    public func startContainer(_ id: String) async throws {
        try await request("POST", "/containers/\(id)/start")
    }

    /// `POST /containers/{id}/stop`: SIGTERM, then SIGKILL after `timeout` seconds.
    public func stopContainer(_ id: String, timeout seconds: Int = 10) async throws {
        var query = Query()
        query.add("t", seconds)
        try await request("POST", "/containers/\(id)/stop", query: query.items, timeout: self.timeout + .seconds(seconds))
    }

    /// `POST /containers/{id}/kill`.
    public func killContainer(_ id: String, signal: String = "SIGKILL") async throws {
        var query = Query()
        query.add("signal", signal)
        try await request("POST", "/containers/\(id)/kill", query: query.items)
    }

    /// `DELETE /containers/{id}`.
    public func removeContainer(_ id: String, force: Bool = false, volumes: Bool = false) async throws {
        var query = Query()
        query.add("force", force)
        query.add("v", volumes)
        try await request("DELETE", "/containers/\(id)", query: query.items)
    }

    /// `GET /containers/{id}/json`.
    public func inspectContainer(_ id: String) async throws -> ContainerInspect {
        try decode(ContainerInspect.self, from: try await request("GET", "/containers/\(id)/json"))
    }

    /// `GET /containers/json`, optionally every state and only those matching the label filters
    /// (`"berth.user=aaa"` or a bare `"berth.user"`).
    public func listContainers(all: Bool = false, labels: [String] = [], filters: [String: [String]] = [:]) async throws -> [ContainerSummary] {
        var query = Query()
        query.add("all", all)
        var filters = filters
        if !labels.isEmpty { filters["label", default: []] += labels }
        if !filters.isEmpty { query.add("filters", EngineJSON.filters(filters)) }
        return try decode([ContainerSummary].self, from: try await request("GET", "/containers/json", query: query.items))
    }

    /// `POST /containers/{id}/wait`: blocks until the container reaches `condition`
    /// (`not-running`, `next-exit`, `removed`) and returns its exit status. No timeout; cancellable.
    public func waitContainer(_ id: String, condition: String = "not-running") async throws -> ContainerWaitResponse {
        var query = Query()
        query.add("condition", condition)
        let response = try await request("POST", "/containers/\(id)/wait", query: query.items, timeout: .some(nil))
        return try decode(ContainerWaitResponse.self, from: response)
    }
}
