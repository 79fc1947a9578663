import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What `logs` returns; the defaults give every line so far from both streams.
public struct LogOptions: Sendable {
    public var stdout = true
    public var stderr = true
    /// Keep streaming new output until the container exits or the caller stops reading.
    public var follow = false
    /// Unix seconds (fractions allowed) or an RFC 3339 time.
    public var since: String?
    public var until: String?
    /// Number of lines from the end, or nil for all.
    public var tail: Int?
    public var timestamps = false

    public init(follow: Bool = false, since: String? = nil, until: String? = nil, tail: Int? = nil, timestamps: Bool = false) {
        self.follow = follow
        self.since = since
        self.until = until
        self.tail = tail
        self.timestamps = timestamps
    }
}

extension DockerClient {
    /// `GET /containers/{id}/logs` as typed frames. The framing follows the container's `Tty`,
    /// read from inspect unless given. A followed stream ends when the container exits.
    public func logs(_ id: String, options: LogOptions = LogOptions(), tty: Bool? = nil) async throws -> OutputFrames {
        let isTTY: Bool
        if let tty { isTTY = tty } else { isTTY = try await inspectContainer(id).config.tty ?? false }
        var query = Query()
        query.add("stdout", options.stdout)
        query.add("stderr", options.stderr)
        query.add("follow", options.follow)
        query.add("since", options.since)
        query.add("until", options.until)
        query.add("tail", options.tail.map(String.init) ?? "all")
        query.add("timestamps", options.timestamps)
        return try await stream("GET", "/containers/\(id)/logs", query: query.items).frames(tty: isTTY)
    }

    /// The last `lines` of a container's output, stdout and stderr interleaved, as text.
    public func logTail(_ id: String, lines: Int) async throws -> String {
        var text = Data()
        for try await frame in try await logs(id, options: LogOptions(tail: lines)) {
            text.append(frame.data)
        }
        return String(decoding: text, as: UTF8.self)
    }
}
