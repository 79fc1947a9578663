import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// A typed Docker Engine API client. Endpoints live in one file per resource
/// (`Containers.swift`, `Images.swift`, …), each a thin function over `request`.
public final class DockerClient: Sendable {
    public let transport: Transport
    /// Limit for control calls (create, start, inspect, …); streams have none.
    public let timeout: Duration
    private let negotiated = Mutex<APIVersion?>(nil)

    public var endpoint: EngineEndpoint { transport.endpoint }

    public init(
        endpoint: EngineEndpoint = .unix(), timeout: Duration = .seconds(30), connectTimeout: Duration = .seconds(2),
        lanes: Transport.Lanes = Transport.Lanes()
    ) {
        self.transport = Transport(endpoint: endpoint, connectTimeout: connectTimeout, lanes: lanes)
        self.timeout = timeout
    }

    /// The API version in use, negotiated once from `GET /_ping`.
    public func apiVersion() async throws -> APIVersion {
        if let version = negotiated.withLock({ $0 }) { return version }
        let response = try await engine { try await transport.send(HTTPRequest(method: "GET", path: "/_ping", timeout: timeout)) }
        guard response.status == 200 else {
            throw EngineError.fromResponse(response, method: "GET", path: "/_ping")
        }
        let version = try APIVersion.negotiate(engine: response.head.header("Api-Version"))
        negotiated.withLock { $0 = version }
        return version
    }

    /// Builds the versioned request for an engine path such as `/containers/json`.
    func makeRequest(
        _ method: String, _ path: String, query: [(name: String, value: String)] = [],
        body: HTTPRequest.Body = .none, timeout: Duration?? = .none
    ) async throws -> HTTPRequest {
        let version = try await apiVersion()
        return HTTPRequest(
            method: method, path: "/v\(version)\(path)", query: query, body: body,
            timeout: timeout ?? self.timeout)
    }

    /// Sends a control request; a status of 400 or more throws with the engine's message.
    @discardableResult
    func request(
        _ method: String, _ path: String, query: [(name: String, value: String)] = [],
        body: HTTPRequest.Body = .none, timeout: Duration?? = .none
    ) async throws -> HTTPResponse {
        let request = try await makeRequest(method, path, query: query, body: body, timeout: timeout)
        let response = try await engine { try await transport.send(request) }
        guard response.status < 400 else {
            throw EngineError.fromResponse(response, method: method, path: request.path)
        }
        return response
    }

    /// Opens a streaming request (no overall timeout); errors before the body throw.
    func stream(
        _ method: String, _ path: String, query: [(name: String, value: String)] = [],
        body: HTTPRequest.Body = .none
    ) async throws -> HTTPStreamingResponse {
        let request = try await makeRequest(method, path, query: query, body: body, timeout: .some(nil))
        return try await engine { try await transport.stream(request) }
    }

    /// Runs a transport call, its failures said of the engine.
    func engine<T>(_ call: () async throws -> T) async throws -> T {
        do {
            return try await call()
        } catch let error as HTTPClientError {
            throw EngineError(error)
        }
    }

    func decode<T: Decodable>(_ type: T.Type, from response: HTTPResponse) throws -> T {
        do {
            return try EngineJSON.decoder.decode(type, from: response.body)
        } catch {
            throw EngineError.invalidResponse("\(T.self): \(error)")
        }
    }
}

/// JSON as the engine spells it: `PascalCase` keys for Swift's `camelCase` properties.
/// Dictionary keys (labels, port specs) are left alone by Foundation.
public enum EngineJSON {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .custom { path in
            let key = path.last!.stringValue
            return Key(stringValue: key.prefix(1).uppercased() + key.dropFirst())
        }
        return encoder
    }()

    public static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in
            let key = path.last!.stringValue
            return Key(stringValue: key.prefix(1).lowercased() + key.dropFirst())
        }
        return decoder
    }()

    static func body<T: Encodable>(_ value: T) throws -> HTTPRequest.Body {
        .data(try encoder.encode(value), contentType: "application/json")
    }

    /// Docker's `filters` query value: `{"label":["berth.user=aaa"]}`.
    static func filters(_ filters: [String: [String]]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(filters)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

/// Query items without the noise of optional handling at every call site.
struct Query {
    private(set) var items: [(name: String, value: String)] = []

    mutating func add(_ name: String, _ value: String?) {
        if let value { items.append((name: name, value: value)) }
    }

    mutating func add(_ name: String, _ flag: Bool) {
        items.append((name: name, value: flag ? "1" : "0"))
    }

    mutating func add(_ name: String, _ number: Int?) {
        if let number { items.append((name: name, value: String(number))) }
    }
}
