import BerthConfig
import BerthAPI
import BerthCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Prometheus

/// Docker labels are the truth of what runs. Periodically, and once at start, compares every
/// agent's unit containers with the live sessions: a container no session owns is removed after
/// a grace period; a session idle too long is ended.
actor Reconciler {
    let coordinator: Coordinator
    let interval: Duration
    let grace: TimeInterval
    let idleTimeout: TimeInterval
    let logger: Logger
    private var orphansSince: [String: Date] = [:]

    init(coordinator: Coordinator, interval: Duration = .seconds(10), grace: TimeInterval = 10, idleTimeout: TimeInterval, logger: Logger) {
        self.coordinator = coordinator
        self.interval = interval
        self.grace = grace
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    /// One pass at start (logged as a summary line), then one per `interval` until cancelled.
    func run() async {
        let first = await pass(initial: true)
        logger.notice("reconciled at start", metadata: [
            "sessions": "\(first.sessions)", "units_running": "\(first.adopted)", "orphans_pending": "\(first.orphans)",
            "unreachable_hosts": "\(first.unreachable.joined(separator: ","))",
        ])
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            _ = await pass(initial: false)
        }
    }

    struct Summary {
        var sessions = 0
        var adopted = 0
        var orphans = 0
        var removed = 0
        var ended = 0
        var unreachable: [String] = []
    }

    func pass(initial: Bool) async -> Summary {
        var summary = Summary()
        let store = coordinator.sessions
        let now = Date()
        for session in await store.all where now.timeIntervalSince(session.lastSeen) > idleTimeout {
            do {
                _ = try await coordinator.logout(session)
                summary.ended += 1
                logger.notice("session ended after being idle", metadata: ["user": "\(session.user)", "last_seen": "\(session.lastSeen)"])
                await coordinator.audit.record("session.expired", user: session.user)
                ManagerMetrics.shared.sessionsExpired.increment()
            } catch {
                logger.warning("could not end an idle session", metadata: ["user": "\(session.user)", "error": "\(error)"])
            }
        }
        let sessions = await store.all
        summary.sessions = sessions.count
        let live = Set(sessions.map(\.id))
        let hosts = Set(coordinator.users.users.flatMap { $0.units.map(\.host) } + sessions.flatMap { $0.units.map(\.host) })
        var seen: Set<String> = []
        for host in hosts.sorted() {
            let agent = coordinator.planner.agent(for: host)
            let units: [UnitStatus]
            do {
                units = try await agent.list(user: nil)
            } catch {
                summary.unreachable.append(host)
                continue
            }
            for unit in units {
                if live.contains(unit.session) {
                    summary.adopted += 1
                    continue
                }
                if await store.isPending(session: unit.session) { continue }
                let key = "\(unit.session)/\(unit.unit)"
                seen.insert(key)
                let first = orphansSince[key] ?? now
                orphansSince[key] = first
                summary.orphans += 1
                guard now.timeIntervalSince(first) >= grace else { continue }
                do {
                    _ = try await agent.stop(StopUnitsRequest(user: unit.user, session: unit.session, units: [unit.unit]))
                    summary.removed += 1
                    orphansSince[key] = nil
                    logger.notice("removed an orphan unit container", metadata: ["unit": "\(unit.unit)", "user": "\(unit.user)"])
                    await coordinator.audit.record("unit.orphan_removed", user: unit.user, detail: unit.unit.description)
                    ManagerMetrics.shared.orphanUnitsRemoved.increment()
                } catch {
                    logger.warning("could not remove an orphan", metadata: ["unit": "\(unit.unit)", "error": "\(error)"])
                }
            }
        }
        orphansSince = orphansSince.filter { seen.contains($0.key) }
        return summary
    }
}
