import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension DockerClient {
    /// `GET /images/json`.
    public func listImages(labels: [String] = []) async throws -> [ImageSummary] {
        var query = Query()
        if !labels.isEmpty { query.add("filters", EngineJSON.filters(["label": labels])) }
        return try decode([ImageSummary].self, from: try await request("GET", "/images/json", query: query.items))
    }

    /// `GET /images/{name}/json`.
    public func inspectImage(_ name: String) async throws -> ImageInspect {
        try decode(ImageInspect.self, from: try await request("GET", "/images/\(name)/json"))
    }

    /// `POST /images/create?fromSrc=-`: imports a root filesystem tarball as `repository:tag`,
    /// like `docker import`. Returns the new image's id.
    @discardableResult
    public func importImage(tarball path: String, repository: String, tag: String = "latest", changes: [String] = []) async throws -> String {
        var query = Query()
        query.add("fromSrc", "-")
        query.add("repo", repository)
        query.add("tag", tag)
        for change in changes { query.add("changes", change) }
        let response = try await request(
            "POST", "/images/create", query: query.items,
            body: .file(path: path, contentType: "application/x-tar"), timeout: .some(.seconds(600)))
        let messages = try Self.progressMessages(response.body)
        return messages.compactMap(\.status).last { $0.hasPrefix("sha256:") } ?? ""
    }

    /// `POST /images/load`: loads a `docker save` tarball. Returns the engine's messages.
    @discardableResult
    public func loadImage(tarball path: String) async throws -> [String] {
        var query = Query()
        query.add("quiet", true)
        let response = try await request(
            "POST", "/images/load", query: query.items,
            body: .file(path: path, contentType: "application/x-tar"), timeout: .some(.seconds(600)))
        return try Self.progressMessages(response.body).compactMap { $0.stream ?? $0.status }
    }

    /// `DELETE /images/{name}`.
    public func removeImage(_ name: String, force: Bool = false) async throws {
        var query = Query()
        query.add("force", force)
        try await request("DELETE", "/images/\(name)", query: query.items)
    }

    struct ProgressMessage: Decodable {
        var status: String?
        var stream: String?
        var error: String?
    }

    /// Image endpoints answer 200 and report failures inside their JSON-lines body.
    static func progressMessages(_ body: Data) throws -> [ProgressMessage] {
        var messages: [ProgressMessage] = []
        for line in body.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            guard let message = try? EngineJSON.decoder.decode(ProgressMessage.self, from: Data(line)) else { continue }
            if let error = message.error { throw EngineError.streamError(error) }
            messages.append(message)
        }
        return messages
    }
}
