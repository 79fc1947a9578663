import BerthAPI
import BerthCore
import EngineAPI
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Per-user bridge networks: a user's units on this host share one; Docker keeps different
/// bridges apart, so one user's container cannot reach another's. A network outlives its user's
/// last unit by `keepIdle`, so logging in again does not pay for creating it (~80 ms), and is
/// removed after that: an engine has room for only so many bridges.
actor UserNetworks {
    let docker: DockerClient
    let agent: HostPort
    let keepIdle: TimeInterval
    private var pending: [String: Task<String, any Error>] = [:]
    private var idleSince: [String: Date] = [:]
    /// Users whose network this agent has seen or made, and not removed since.
    private var present: Set<String> = []

    init(docker: DockerClient, agent: HostPort, keepIdle: TimeInterval = 600) {
        self.docker = docker
        self.agent = agent
        self.keepIdle = keepIdle
    }

    /// The user's network here, made if missing. Once seen it is not asked for again: a start
    /// whose create finds it gone after all calls `renew`.
    func ensure(user: String) async throws -> String {
        idleSince[user] = nil
        let name = UnitSpec.networkName(user: user, agent: agent)
        if present.contains(user) { return name }
        if let task = pending[user] { return try await task.value }
        let task = Task { [docker, agent] in
            if (try? await docker.inspectNetwork(name)) != nil { return name }
            do {
                try await docker.createNetwork(NetworkCreate(name: name, labels: [UnitLabel.user: user, UnitLabel.host: agent.description]))
            } catch EngineError.conflict {
                // Created meanwhile by an earlier agent process: fine.
            }
            return name
        }
        pending[user] = task
        defer { pending[user] = nil }
        let made = try await task.value
        present.insert(user)
        return made
    }

    /// The user's network was not found where it was expected (removed outside Berth): makes it again.
    @discardableResult
    func renew(user: String) async throws -> String {
        present.remove(user)
        return try await ensure(user: user)
    }

    /// The user's last unit here is gone; the network goes after `keepIdle` unless used again.
    func released(user: String) {
        idleSince[user] = idleSince[user] ?? Date()
    }

    /// Removes this agent's user networks that have had no container for `keepIdle`. Networks
    /// found empty without a record (after an agent restart) start their idle time now.
    func sweep(now: Date = Date()) async {
        guard let networks = try? await docker.listNetworks(labels: ["\(UnitLabel.host)=\(agent)"]) else { return }
        for network in networks {
            guard let user = network.labels?[UnitLabel.user], pending[user] == nil else { continue }
            let recorded = idleSince[user]
            guard let detail = try? await docker.inspectNetwork(network.id), (detail.containers ?? [:]).isEmpty else {
                idleSince[user] = nil
                continue
            }
            // A start may have claimed the network while the engine answered.
            guard pending[user] == nil, idleSince[user] == recorded else { continue }
            let since = idleSince[user] ?? now
            idleSince[user] = since
            if now.timeIntervalSince(since) >= keepIdle {
                present.remove(user)
                try? await docker.removeNetwork(network.id)
                idleSince[user] = nil
            }
        }
    }
}
