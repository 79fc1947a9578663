import Foundation

/// A Unix socket that forwards every connection to the real engine's socket, and that a test can
/// take away and bring back: an engine that goes down and returns, without stopping the dockerd
/// other tests use.
final class EngineProxy: @unchecked Sendable {
    let path: String
    let target: String
    private let lock = NSLock()
    private var listener: Int32 = -1
    private var open: Set<Int32> = []

    init(path: String, target: String = DockerTestSupport.socketPath) {
        self.path = path
        self.target = target
    }

    deinit { stop() }

    /// Serves `path` until `stop`.
    func start() throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket: \(String(cString: strerror(errno)))") }
        guard Self.withAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestSetupError("cannot listen on \(path): \(String(cString: strerror(errno)))")
        }
        lock.withLock { listener = fd }
        Thread.detachNewThread { [self] in acceptLoop(fd) }
    }

    /// Removes the socket and cuts every forwarded connection: the engine is gone.
    func stop() {
        let (fd, connections) = lock.withLock { () -> (Int32, Set<Int32>) in
            defer { listener = -1 }
            return (listener, open)
        }
        guard fd >= 0 else { return }
        // shutdown wakes the threads blocked in accept and poll; they close their own descriptors.
        shutdown(fd, Int32(SHUT_RDWR))
        for connection in connections { shutdown(connection, Int32(SHUT_RDWR)) }
        unlink(path)
    }

    private func acceptLoop(_ fd: Int32) {
        defer { close(fd) }
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let engine = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard engine >= 0, Self.withAddress(target, { connect(engine, $0, $1) }) == 0 else {
                if engine >= 0 { close(engine) }
                close(client)
                continue
            }
            let accepted = lock.withLock { () -> Bool in
                guard listener == fd else { return false }
                open.formUnion([client, engine])
                return true
            }
            guard accepted else {
                close(client)
                close(engine)
                return
            }
            Thread.detachNewThread { [self] in pump(client, engine) }
        }
    }

    /// Copies both ways until either side closes.
    private func pump(_ a: Int32, _ b: Int32) {
        defer {
            lock.withLock { open.subtract([a, b]) }
            close(a)
            close(b)
        }
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            guard poll(&fds, 2, 1000) >= 0 || errno == EINTR else { return }
            for (from, to) in [(0, 1), (1, 0)] where fds[from].revents != 0 {
                let count = read(fds[from].fd, &buffer, buffer.count)
                guard count > 0 else { return }
                var sent = 0
                while sent < count {
                    let written = buffer.withUnsafeBytes { send(fds[to].fd, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                    guard written > 0 else { return }
                    sent += written
                }
            }
        }
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8.prefix(raw.count - 1))
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
