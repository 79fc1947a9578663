import Foundation

/// One HTTP request to the engine, as the transport sends it.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        case none
        case data(Data, contentType: String)
        /// Streamed from a file, so a large tarball is never held in memory.
        case file(path: String, contentType: String)
    }

    public var method: String
    /// The absolute path, including any `/v1.xx` prefix.
    public var path: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: Body
    /// Overall limit for the transfer; `nil` for streams that last as long as the caller reads.
    public var timeout: Duration?

    public init(
        method: String, path: String, query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)] = [], body: Body = .none, timeout: Duration? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }

    /// The path with its percent-encoded query string.
    public var target: String {
        guard !query.isEmpty else { return path }
        return path + "?" + query.map { "\(percentEncode($0.name))=\(percentEncode($0.value))" }.joined(separator: "&")
    }
}

private let queryAllowed: CharacterSet = {
    var set = CharacterSet.alphanumerics
    set.insert(charactersIn: "-._~")
    return set
}()

func percentEncode(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: queryAllowed) ?? text
}

/// The status line and headers of a response.
public struct HTTPResponseHead: Sendable {
    public var version: String
    public var status: Int
    public var reason: String
    public var headers: [(name: String, value: String)]

    public init(version: String = "HTTP/1.1", status: Int, reason: String = "", headers: [(name: String, value: String)] = []) {
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
    }

    /// The first header with this name, compared case-insensitively. Header names are ASCII
    /// (RFC 9110), so this folds ASCII letters only and needs none of Foundation's Unicode tables.
    public func header(_ name: String) -> String? {
        headers.first { Self.sameName($0.name, name) }?.value
    }

    private static func sameName(_ a: String, _ b: String) -> Bool {
        func lower(_ byte: UInt8) -> UInt8 { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte }
        return a.utf8.elementsEqual(b.utf8) { lower($0) == lower($1) }
    }

    public var statusLine: String {
        "\(version) \(status)\(reason.isEmpty ? "" : " " + reason)"
    }
}

/// A whole response, body buffered.
public struct HTTPResponse: Sendable {
    public var head: HTTPResponseHead
    public var body: Data

    public init(head: HTTPResponseHead, body: Data) {
        self.head = head
        self.body = body
    }

    public var status: Int { head.status }
}

/// A response whose body arrives as it is produced (logs, events, exec output).
public struct HTTPStreamingResponse: Sendable {
    public var head: HTTPResponseHead
    /// Chunks as they arrive. Dropping or cancelling the consumer aborts the transfer.
    public var body: AsyncThrowingStream<Data, any Error>
}
