import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension DockerClient {
    /// `GET /events`: engine events as they happen, filtered like
    /// `["type": ["container"], "label": ["berth.user"]]`. Runs until the caller stops reading.
    public func events(since: String? = nil, until: String? = nil, filters: [String: [String]] = [:]) async throws -> AsyncThrowingStream<EngineEvent, any Error> {
        var query = Query()
        query.add("since", since)
        query.add("until", until)
        if !filters.isEmpty { query.add("filters", EngineJSON.filters(filters)) }
        let chunks = try await stream("GET", "/events", query: query.items).body
        return AsyncThrowingStream { continuation in
            let task = Task {
                var lines = LineSplitter()
                do {
                    for try await chunk in chunks {
                        for line in lines.feed(chunk) {
                            continuation.yield(try EngineJSON.decoder.decode(EngineEvent.self, from: line))
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
