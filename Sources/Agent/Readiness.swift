import BerthAPI
import BerthCore
import EngineAPI
import HTTPClient
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

/// Waits until a started unit serves on its published `ip:port`, failing early when its container
/// exits and at the latest after the timeout.
///
/// Docker's proxy accepts on the published `ip:port` before the unit's program listens, and under
/// load it can hold such a connection open for tens of milliseconds before closing it, which a
/// probe of the published port alone cannot tell from a server. So the probe asks the container
/// itself first, at its address on the user's network, where nothing stands in between: a refusal
/// there means "not yet" and an accepted connection means the program listens. Only then is the
/// published `ip:port` checked, the way users come. Where the container has no such address (a
/// template with another network mode) or this host cannot reach it, the published port is probed
/// alone and a connection must stay open a moment to count.
struct Readiness {
    let docker: DockerClient
    let timeout: Duration
    /// Between probes; a probe of a local address that refuses costs a few microseconds.
    var interval: Duration = .milliseconds(5)
    /// Between probes while a unit usually comes up, its first `quickFor` after the start
    /// (`make bench`: most serve 5 to 9 ms after it): a user waits for the probe that sees it.
    var quickInterval: Duration = .milliseconds(1)
    var quickFor: Duration = .milliseconds(50)

    enum Failure: Error {
        case exited(code: Int, oomKilled: Bool)
        case timedOut
    }

    func wait(container: String, unit: HostPort) async throws {
        let clock = ContinuousClock()
        let begun = clock.now
        let deadline = begun + timeout
        var inside: String?
        var insideUsable = true
        var round = 0
        var lastInspected = begun
        while true {
            try Task.checkCancellation()
            // Asking the engine whether the container died costs far more than a probe, so that
            // happens on the first round (which also learns the container's address) and then
            // about every 100 ms.
            if round == 0 || clock.now - lastInspected >= .milliseconds(100) {
                lastInspected = clock.now
                let details = try await docker.inspectContainer(container)
                guard details.state.running else {
                    throw Failure.exited(code: details.state.exitCode ?? -1, oomKilled: details.state.oomKilled ?? false)
                }
                if inside == nil {
                    inside = details.networkSettings?.networks?.values.lazy.compactMap(\.ipAddress).first { !$0.isEmpty }
                }
            }
            round += 1
            let direct = insideUsable ? inside : nil
            let answer = await docker.transport.runBlocking { Self.probe(unit: unit, inside: direct) }
            switch answer {
            case .serving:
                return
            case .insideUnreachable:
                insideUsable = false
            case .notYet:
                break
            }
            guard clock.now < deadline else { throw Failure.timedOut }
            try await Task.sleep(for: clock.now - begun < quickFor ? quickInterval : interval)
        }
    }

    enum Answer: Equatable {
        case serving
        case notYet
        /// The container's own address does not answer from here at all: probe the published port alone.
        case insideUnreachable
    }

    /// One round of probes; blocks for a moment at most. The container listens on the unit's
    /// port (published 1:1) unless `insidePort` says otherwise.
    static func probe(unit: HostPort, inside: String?, insidePort: Int? = nil) -> Answer {
        guard let inside else {
            return PortProbe.probe(host: unit.host, port: unit.port, settle: 10) == .serving ? .serving : .notYet
        }
        switch PortProbe.probe(host: inside, port: insidePort ?? unit.port, settle: 0, connectTimeout: 200) {
        case .notYet: return .notYet
        case .unreachable: return .insideUnreachable
        case .serving: break
        }
        // The program listens, so the proxy in front of it forwards at once: the published
        // ip:port accepting (not refusing, not already closed) is the unit answering there.
        // Waiting a millisecond more to see the connection held cost every login that much.
        return PortProbe.probe(host: unit.host, port: unit.port, settle: 0) == .serving ? .serving : .notYet
    }
}
