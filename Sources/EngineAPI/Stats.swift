import HTTPClient

extension DockerClient {
    /// `GET /containers/{id}/stats?stream=false`: one sample of a container's CPU and memory.
    /// The engine answers at its next collection, up to a second later (two with `oneShot` off,
    /// which also fills `precpuStats`).
    public func stats(_ id: String, oneShot: Bool = true) async throws -> ContainerStats {
        var query = Query()
        query.add("stream", false)
        query.add("one-shot", oneShot)
        return try decode(ContainerStats.self, from: try await request("GET", "/containers/\(id)/stats", query: query.items))
    }
}
