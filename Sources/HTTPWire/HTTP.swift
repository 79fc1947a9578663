#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One HTTP request to the engine, as the transport sends it.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        case none
        case data(Data, contentType: String)
        /// Streamed from a file, so a large tarball is never held in memory.
        case file(path: String, contentType: String)
        /// Written while the request runs (sent chunked), as the answer comes; see `UploadStream`.
        case stream(UploadStream, contentType: String)
    }

    public var method: String
    /// The absolute path, including any `/v1.xx` prefix.
    public var path: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: Body
    /// Overall limit for the transfer; `nil` for streams that last as long as the caller reads.
    public var timeout: Duration?
    /// Keep the connection open after the answer, for the transport's next request to go on
    /// (where the transport makes a connection per request): the check that a server is the
    /// one meant, then the request that trusts it, on one connection.
    public var keepsConnection = false

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

    /// Whether the request can be sent again as it is: its body is not written as it goes.
    public var isReplayable: Bool {
        switch body {
        case .none, .data, .file: true
        case .stream: false
        }
    }

    /// The path with its percent-encoded query string.
    public var target: String {
        guard !query.isEmpty else { return path }
        return path + "?" + query.map { "\(percentEncode($0.name))=\(percentEncode($0.value))" }.joined(separator: "&")
    }
}

/// `text` with every byte but RFC 3986's unreserved ones (ASCII letters, digits, `-._~`) written
/// as `%XX`. Byte by byte: this runs for every request with a query, and Foundation's
/// `addingPercentEncoding` cost more than the rest of building the request.
package func percentEncode(_ text: String) -> String {
    func unreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }
    if text.utf8.allSatisfy(unreserved) { return text }
    let hex = Array("0123456789ABCDEF".utf8)
    var encoded: [UInt8] = []
    encoded.reserveCapacity(text.utf8.count * 3)
    for byte in text.utf8 {
        if unreserved(byte) {
            encoded.append(byte)
        } else {
            encoded += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
        }
    }
    return String(decoding: encoded, as: UTF8.self)
}

/// The status line and headers of a response.
public struct HTTPResponseHead: Sendable {
    public var version: String
    public var status: Int
    public var reason: String
    /// The header lines as received, `name: value` each ended by a line feed. Kept as bytes and
    /// read only when asked: most responses are asked for one header or none, and making a
    /// dozen strings per response was a good part of a small request's cost.
    private var fields: [UInt8] = []

    public init(version: String = "HTTP/1.1", status: Int, reason: String = "", headers: [(name: String, value: String)] = []) {
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
    }

    /// Every header in the order received.
    public var headers: [(name: String, value: String)] {
        get {
            var headers: [(name: String, value: String)] = []
            forEachField { name, value in
                headers.append((name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
                return true
            }
            return headers
        }
        set {
            fields = []
            for header in newValue { appendField(name: header.name.utf8, value: header.value.utf8) }
        }
    }

    /// Adds one header line as libcurl hands it over (`Name: value`, line end removed); a line
    /// without a colon is not a header and is left out.
    package mutating func appendField(line: UnsafeRawBufferPointer) {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        var valueStart = colon + 1
        while valueStart < line.count && (line[valueStart] == 0x20 || line[valueStart] == 0x09) { valueStart += 1 }
        if fields.isEmpty { fields.reserveCapacity(384) }
        appendField(name: line[..<colon], value: line[valueStart...])
    }

    private mutating func appendField(name: some Collection<UInt8>, value: some Collection<UInt8>) {
        fields.append(contentsOf: name)
        fields.append(UInt8(ascii: ":"))
        fields.append(contentsOf: value)
        fields.append(0x0A)
    }

    /// Calls `visit` with each header's name and value bytes until it returns false.
    private func forEachField(_ visit: (ArraySlice<UInt8>, ArraySlice<UInt8>) -> Bool) {
        var start = fields.startIndex
        while start < fields.endIndex, let end = fields[start...].firstIndex(of: 0x0A) {
            let colon = fields[start..<end].firstIndex(of: UInt8(ascii: ":")) ?? end
            guard visit(fields[start..<colon], fields[min(colon + 1, end)..<end]) else { return }
            start = end + 1
        }
    }

    /// The first header with this name, compared case-insensitively. Header names are ASCII
    /// (RFC 9110), so this folds ASCII letters only and needs none of Foundation's Unicode tables.
    public func header(_ name: String) -> String? {
        func lower(_ byte: UInt8) -> UInt8 { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte }
        var found: String?
        forEachField { fieldName, value in
            guard fieldName.elementsEqual(name.utf8, by: { lower($0) == lower($1) }) else { return true }
            found = String(decoding: value, as: UTF8.self)
            return false
        }
        return found
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

    public init(head: HTTPResponseHead, body: AsyncThrowingStream<Data, any Error>) {
        self.head = head
        self.body = body
    }
}
