import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP client on loopback that sends and reads raw bytes.
public final class RawSocket: @unchecked Sendable {
    private var descriptor: Int32
    public private(set) var closedByPeer = false

    /// `receiveBuffer`: a small one makes a client that stops reading felt at once. `from`: a
    /// loopback address of its own, so that the server counts it apart from other clients.
    public init(port: Int, receiveBuffer: Int32? = nil, from source: String? = nil) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close() }

    public func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    /// Sends all of `text` if the socket takes it now; false when it would wait.
    public func sendWithoutWaiting(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) } == text.utf8.count
    }

    public func send(_ text: String) throws {
        let sent = Array(text.utf8).withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent >= 0 else { throw POSIXError(.EPIPE) }
    }

    /// What arrives until the peer closes or `timeout` seconds pass without a byte. The wait runs
    /// on a thread of its own: blocking one of the few cooperative threads would starve the very
    /// server under test, whose handlers run there too.
    public func readAll(timeout: Double) async -> String {
        await withCheckedContinuation { done in
            DispatchQueue.global().async { done.resume(returning: self.blockingReadAll(timeout: timeout)) }
        }
    }

    private func blockingReadAll(timeout: Double) -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(timeout * 1000)) > 0 else { break }
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count <= 0 {
                closedByPeer = true
                break
            }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}
