import Foundation

/// The floor: the least work that can talk HTTP/1.1 to the engine. One persistent blocking
/// socket, a request written by hand, the response read by hand. Nothing Berth ships uses it.
/// Used by one thread at a time. With a `busyPoll`, it polls for the answer that long before it
/// blocks, as EngineAPI's transfers do: the floor for that way of waiting.
final class RawHTTP: @unchecked Sendable {
    private var fd: Int32 = -1
    private let path: String
    private var buffer = [UInt8](repeating: 0, count: 65536)
    private var pending: [UInt8] = []
    private let busyPoll: Duration
    /// What is left of `busyPoll` for the request being read.
    private var pollLeft: Duration = .zero

    init(socketPath: String, busyPoll: Duration = .zero) throws {
        path = socketPath
        self.busyPoll = busyPoll
        try connectSocket()
    }

    deinit { if fd >= 0 { close(fd) } }

    private func connectSocket() throws {
        if fd >= 0 { close(fd) }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            path.utf8CString.withUnsafeBytes { raw.copyMemory(from: $0) }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw BenchError("raw connect to \(path) failed: errno \(errno)") }
        pending = []
    }

    /// Sends one request and returns the status and body.
    func request(_ method: String, _ target: String, body: Data? = nil) throws -> (status: Int, body: Data) {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: docker\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" } else if method == "POST" { head += "Content-Length: 0\r\n" }
        var bytes = Array((head + "\r\n").utf8)
        if let body { bytes += body }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 {
                try connectSocket()
                return try request(method, target, body: body)
            }
            sent += n
        }
        pollLeft = busyPoll
        return try readResponse()
    }

    private func fill() throws {
        if pollLeft > .zero {
            let clock = ContinuousClock()
            let start = clock.now
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while poll(&entry, 1, 0) == 0 && clock.now - start < pollLeft {}
            pollLeft -= clock.now - start
        }
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { throw BenchError("raw connection closed") }
        pending += buffer[0..<n]
    }

    /// The bytes of the next line, without its CR LF; byte work only, so the floor spends no
    /// time on text handling that a client needs none of.
    private func readLine() throws -> ArraySlice<UInt8> {
        var searchFrom = 0
        while true {
            if let index = pending[searchFrom...].firstIndex(of: 10) {
                let end = index > 0 && pending[index - 1] == 13 ? index - 1 : index
                let line = pending[..<end]
                pending = Array(pending[(index + 1)...])
                return line
            }
            searchFrom = pending.count
            try fill()
        }
    }

    private func readBytes(_ count: Int) throws -> [UInt8] {
        while pending.count < count { try fill() }
        let bytes = Array(pending[..<count])
        pending = Array(pending[count...])
        return bytes
    }

    private static let contentLength = Array("content-length:".utf8)
    private static let transferEncoding = Array("transfer-encoding:".utf8)

    /// Whether `line` starts with `name` (lower case), ignoring the line's case.
    private static func hasName(_ line: ArraySlice<UInt8>, _ name: [UInt8]) -> Bool {
        guard line.count >= name.count else { return false }
        return zip(line.prefix(name.count), name).allSatisfy { $0 | 0x20 == $1 | 0x20 }
    }

    private static func decimal(_ bytes: some Collection<UInt8>, radix: Int = 10) -> Int? {
        var value = 0
        var digits = 0
        for byte in bytes {
            let digit: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f") where radix == 16: digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F") where radix == 16: digit = Int(byte - UInt8(ascii: "A")) + 10
            case UInt8(ascii: " "), UInt8(ascii: "\t"): if digits == 0 { continue } else { return value }
            default: return digits > 0 ? value : nil
            }
            value = value * radix + digit
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    private func readResponse() throws -> (status: Int, body: Data) {
        let statusLine = try readLine()
        // "HTTP/1.1 200 OK"
        let status = Self.decimal(statusLine.dropFirst(9).prefix(3)) ?? 0
        var length: Int?
        var chunked = false
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            if Self.hasName(line, Self.contentLength) {
                length = Self.decimal(line.dropFirst(Self.contentLength.count))
            } else if Self.hasName(line, Self.transferEncoding) {
                chunked = line.dropFirst(Self.transferEncoding.count).contains(UInt8(ascii: "k"))
            }
        }
        if status == 204 || status == 304 { return (status, Data()) }
        if let length { return (status, Data(try readBytes(length))) }
        guard chunked else { return (status, Data()) }
        var body = Data()
        while true {
            let size = Self.decimal(try readLine(), radix: 16) ?? 0
            if size == 0 { _ = try readLine(); break }
            body.append(contentsOf: try readBytes(size))
            _ = try readLine()
        }
        return (status, body)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
