import BerthAPI
import BerthCore
import Foundation
import Testing

@testable import Agent

/// One round of readiness probes, against listeners on loopback standing in for a unit's
/// container address and its published `ip:port`.
@Suite struct ReadinessProbeTests {
    /// A unit published on one loopback listener, its container "inside" on another; `closing`
    /// closes one of the two first.
    private func probe(closing closed: KeyPath<(published: Listener, inside: Listener), Listener>? = nil) throws -> Readiness.Answer {
        let pair = (published: try Listener(), inside: try Listener())
        if let closed { pair[keyPath: closed].close() }
        let unit = HostPort(host: "127.0.0.1", port: pair.published.port)
        return Readiness.probe(unit: unit, inside: "127.0.0.1", insidePort: pair.inside.port)
    }

    @Test func nothingListeningInsideIsNotYetEvenWhenThePublishedPortAccepts() throws {
        // The published port accepts, as Docker's proxy does before the program listens.
        #expect(try probe(closing: \.inside) == .notYet)
    }

    @Test func aListeningProgramBehindAnOpenPublishedPortIsServing() throws {
        #expect(try probe() == .serving)
    }

    @Test func aClosedPublishedPortIsNotYetWhateverListensInside() throws {
        #expect(try probe(closing: \.published) == .notYet)
    }

    @Test func anInsideAddressThisHostCannotReachFallsBackToThePublishedPort() throws {
        let published = try Listener()
        let unit = HostPort(host: "127.0.0.1", port: published.port)
        // TCP to the broadcast address fails in the kernel (network unreachable); nothing is sent.
        #expect(Readiness.probe(unit: unit, inside: "255.255.255.255", insidePort: published.port) == .insideUnreachable)
        // Alone, the published port must hold a connection open for a moment: this one does.
        #expect(Readiness.probe(unit: unit, inside: nil) == .serving)
    }
}

/// A TCP listener on 127.0.0.1 that accepts (in the kernel's backlog) and never answers.
private final class Listener {
    private var fd: Int32
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(descriptor, 16) == 0 else {
            Glibc.close(descriptor)
            throw POSIXError(.EADDRINUSE)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        fd = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}
