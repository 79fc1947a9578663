import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A path in a container as the archive endpoints describe it (`X-Docker-Container-Path-Stat`).
public struct PathStat: Codable, Sendable, Equatable {
    public var name: String
    public var size: Int64
    /// Go's `os.FileMode`: permission bits, and the kind in the high bits.
    public var mode: UInt32
    /// RFC 3339.
    public var mtime: String
    /// Where a link points; empty for anything else.
    public var linkTarget: String

    public var isDirectory: Bool { mode & (1 << 31) != 0 }
    public var isSymbolicLink: Bool { mode & (1 << 27) != 0 }
    public var permissions: UInt32 { mode & 0o777 }

    static let header = "X-Docker-Container-Path-Stat"

    /// The header's base64 JSON, or nil when it is missing or unreadable.
    init?(header value: String?) {
        guard let value, let json = Data(base64Encoded: value), let stat = try? JSONDecoder().decode(PathStat.self, from: json) else { return nil }
        self = stat
    }
}

extension DockerClient {
    /// `HEAD /containers/{id}/archive`: what is at `path` in the container, links not followed
    /// for the last name. Throws `EngineError` with 404 when nothing is there.
    public func pathStat(_ id: String, path: String) async throws -> PathStat {
        let response = try await request("HEAD", "/containers/\(id)/archive", query: [("path", path)])
        guard let stat = PathStat(header: response.head.header(PathStat.header)) else {
            throw EngineError.invalidResponse("the archive's HEAD answer has no readable \(PathStat.header)")
        }
        return stat
    }

    /// `GET /containers/{id}/archive`: `path` in the container as a tar stream, under its own
    /// name (a folder with all it holds), as it is read; with what the engine says of `path`.
    public func archive(_ id: String, path: String) async throws -> (stat: PathStat?, tar: AsyncThrowingStream<Data, any Error>) {
        let response = try await stream("GET", "/containers/\(id)/archive", query: [("path", path)])
        return (PathStat(header: response.head.header(PathStat.header)), response.body)
    }

    /// `PUT /containers/{id}/archive`: the tar stream written to `tar` (ended with `finish`) is
    /// unpacked into the folder `path` in the container. With `replacingKinds` false, as the
    /// engine's `noOverwriteDirNonDir`, a member may not put a file where a folder is or the other
    /// way round. The engine answers once the whole stream is in.
    public func putArchive(_ id: String, path: String, tar: UploadStream, replacingKinds: Bool = false) async throws {
        var query = Query()
        query.add("path", path)
        query.add("noOverwriteDirNonDir", !replacingKinds)
        try await request("PUT", "/containers/\(id)/archive", query: query.items, body: .stream(tar, contentType: "application/x-tar"), timeout: .some(nil))
    }
}
