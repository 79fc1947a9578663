import Foundation

/// A Unix-socket server answering every request with one canned response, or never answering,
/// to test a client against servers (Docker engines above all) that are old, broken or hung.
public final class FakeServer: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private let response: String?
    private let pause: Duration
    private let silentFor: String?

    /// `response: nil` accepts connections and then stays silent; so does any request whose
    /// request line contains `silentFor`. A `pause` is waited before the first half of the
    /// response and again before the rest, as a slow engine answers.
    public init(response: String?, pause: Duration = .zero, silentFor: String? = nil) throws {
        path = NSTemporaryDirectory() + "berth-fake-\(UUID().uuidString.prefix(8)).sock"
        self.response = response
        self.pause = pause
        self.silentFor = silentFor
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            path.utf8CString.withUnsafeBytes { raw.copyMemory(from: $0) }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    private func serve() {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 { return }
            Thread { [response, pause, silentFor] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                var received = Data()
                while !received.contains(Data("\r\n\r\n".utf8)) {
                    let n = read(client, &buffer, buffer.count)
                    if n <= 0 { close(client); return }
                    received.append(contentsOf: buffer[0..<n])
                }
                let requestLine = String(decoding: received.prefix { $0 != 13 }, as: UTF8.self)
                guard let response, !(silentFor.map { requestLine.contains($0) } ?? false) else { sleep(30); close(client); return }
                // Whole at once, or in two halves after a pause each; a client that has gone
                // away must not take the test process with it (SIGPIPE).
                let bytes = Array(response.utf8)
                let pieces = pause > .zero ? [bytes[..<(bytes.count / 2)], bytes[(bytes.count / 2)...]] : [bytes[...]]
                for piece in pieces {
                    if pause > .zero { Thread.sleep(forTimeInterval: pause / .seconds(1)) }
                    _ = piece.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                }
                close(client)
            }.start()
        }
    }

    public func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }
}

extension Data {
    public func contains(_ other: Data) -> Bool { range(of: other) != nil }
}
