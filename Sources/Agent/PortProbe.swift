#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Socket checks on a unit's `ip:port`. Each call blocks for at most a moment, and callers run
/// it off the event loops (see `Transport.runBlocking`).
enum PortProbe {
    /// Whether this host can bind `host:port` now, i.e. nothing else holds it.
    static func isFree(host: String, port: Int) -> Result<Void, POSIXError> {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .failure(POSIXError(.EMFILE)) }
        defer { close(fd) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return .failure(POSIXError(.EINVAL)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result == 0 { return .success(()) }
        return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EADDRINUSE))
    }

    enum Answer: Equatable {
        /// Accepted and held open, or sent something: a server is there.
        case serving
        /// Refused, or accepted and closed at once (Docker's userland proxy with nothing behind it).
        case notYet
        /// No answer at all, not even a refusal, within the connect timeout: the address cannot be
        /// reached from here.
        case unreachable
    }

    /// Whether something serves on `host:port`. Docker's proxy accepts connections before the
    /// container listens and then closes them, so an accepted connection is not enough: the
    /// connection must stay open for `settle` milliseconds or carry data. The proxy (on this same
    /// host) closes within a millisecond when nothing listens behind it.
    static func probe(host: String, port: Int, settle: Int32 = 10, connectTimeout: Int32 = 1000) -> Answer {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .notYet }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return .notYet }
        let started = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if started != 0 && errno != EINPROGRESS { return errno == ECONNREFUSED ? .notYet : .unreachable }
        var pollable = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&pollable, 1, connectTimeout) == 1 else { return .unreachable }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else { return error == ECONNREFUSED ? .notYet : .unreachable }
        pollable = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pollable, 1, settle)
        if ready == 0 { return .serving }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK)) > 0 ? .serving : .notYet
    }
}
