import Foundation

/// The floor: the least work that can talk HTTP/1.1 to the engine. One persistent blocking
/// socket, a request written by hand, the response read by hand. Nothing Berth ships uses it.
final class RawHTTP {
    private var fd: Int32 = -1
    private let path: String
    private var buffer = [UInt8](repeating: 0, count: 65536)
    private var pending: [UInt8] = []

    init(socketPath: String) throws {
        path = socketPath
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
        return try readResponse()
    }

    private func fill() throws {
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { throw BenchError("raw connection closed") }
        pending += buffer[0..<n]
    }

    private func readLine() throws -> String {
        while true {
            if let index = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<index], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                pending.removeFirst(index + 1)
                return line
            }
            try fill()
        }
    }

    private func readBytes(_ count: Int) throws -> [UInt8] {
        while pending.count < count { try fill() }
        let bytes = Array(pending[..<count])
        pending.removeFirst(count)
        return bytes
    }

    private func readResponse() throws -> (status: Int, body: Data) {
        let statusLine = try readLine()
        let status = Int(statusLine.split(separator: " ")[1]) ?? 0
        var length: Int?
        var chunked = false
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            let lower = line.lowercased()
            if lower.hasPrefix("content-length:") { length = Int(lower.dropFirst(15).trimmingCharacters(in: .whitespaces)) }
            if lower.hasPrefix("transfer-encoding:") && lower.contains("chunked") { chunked = true }
        }
        if status == 204 || status == 304 { return (status, Data()) }
        if let length { return (status, Data(try readBytes(length))) }
        guard chunked else { return (status, Data()) }
        var body = Data()
        while true {
            let size = Int(try readLine(), radix: 16) ?? 0
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
