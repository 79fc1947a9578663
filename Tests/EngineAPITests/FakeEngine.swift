import Foundation

/// A Unix-socket server answering every request with one canned response, or never answering,
/// to test the client against engines that are old, broken or hung.
final class FakeEngine: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let response: String?

    /// `response: nil` accepts connections and then stays silent.
    init(response: String?) throws {
        path = NSTemporaryDirectory() + "berth-fake-\(UUID().uuidString.prefix(8)).sock"
        self.response = response
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
            Thread { [response] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                var received = Data()
                while !received.contains(Data("\r\n\r\n".utf8)) {
                    let n = read(client, &buffer, buffer.count)
                    if n <= 0 { close(client); return }
                    received.append(contentsOf: buffer[0..<n])
                }
                guard let response else { sleep(30); close(client); return }
                _ = response.withCString { write(client, $0, strlen($0)) }
                close(client)
            }.start()
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }
}

extension Data {
    func contains(_ other: Data) -> Bool { range(of: other) != nil }
}
