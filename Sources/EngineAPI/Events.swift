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

/// Splits a byte stream into newline-terminated lines across chunk boundaries.
public struct LineSplitter: Sendable {
    private var pending = Data()

    public init() {}

    public mutating func feed(_ chunk: Data) -> [Data] {
        pending.append(chunk)
        var lines: [Data] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = pending[pending.startIndex..<newline]
            if !line.isEmpty { lines.append(Data(line)) }
            pending = Data(pending[(newline + 1)...])
        }
        return lines
    }

    /// What is left after the last newline.
    public var remainder: Data { pending }
}
