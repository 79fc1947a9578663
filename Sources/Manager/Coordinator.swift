import BerthConfig
import BerthAPI
import BerthCore
import BerthServer
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Prometheus
import NIOCore
import Synchronization

/// Logs users in and out across the agents: all of a user's units start in parallel, and a login
/// succeeds only when every one serves; otherwise everything it started is removed.
final class Coordinator: Sendable {
    let sessions: SessionStore
    let auth: Auth
    let audit: Audit
    let logger: Logger
    let planner: Planner
    /// Each user's open logs and execs, capped.
    let streams = StreamSlots()
    /// The server's connections, whose trust in a user ends with the user's session.
    let connections: ConnectionCounter?
    private let currentUsers: Mutex<UsersConfig>

    init(
        users: UsersConfig, planner: Planner, sessions: SessionStore, auth: Auth, audit: Audit, logger: Logger,
        connections: ConnectionCounter? = nil
    ) {
        self.sessions = sessions
        self.auth = auth
        self.audit = audit
        self.logger = logger
        self.planner = planner
        self.connections = connections
        currentUsers = Mutex(users)
    }

    /// What ends with a session besides its units: its streams, and the trust its token won.
    private func ended(_ session: Session) {
        streams.end(session: session.id)
        connections?.distrust(owner: session.user)
    }

    var users: UsersConfig { currentUsers.withLock { $0 } }

    /// Swaps in a reloaded user list (SIGHUP); sessions already running keep their units.
    func reload(users: UsersConfig) {
        currentUsers.withLock { $0 = users }
        Task { [auth] in await auth.reload(users: users) }
    }

    typealias Emit = @Sendable (LoginEvent) async throws -> Void

    /// `checked` runs once the password is right, before any unit starts: false when the client
    /// has gone, and the login stops there.
    func login(_ request: LoginRequest, from address: String, checked passed: @Sendable () -> Bool = { true }, emit: @escaping Emit) async throws {
        let user: UserConfig
        let clock = ContinuousClock()
        let received = clock.now
        do {
            user = try await auth.check(name: request.user, password: request.password, from: address, users: users)
        } catch {
            // The name is the sender's text: one escaped line, so it cannot forge log lines.
            logger.notice("login refused", metadata: ["user": "\(request.user.asOneLine(limit: 80))", "from": "\(address)", "reason": "\(error)"])
            await audit.record("login.failed", user: request.user, from: address, detail: "\(error)")
            ManagerMetrics.shared.loginRefused(error)
            try await emit(LoginEvent(kind: .failed, message: "\(error)"))
            return
        }
        guard passed() else {
            logger.notice("login abandoned: its client went away during the password check", metadata: ["user": "\(user.name)", "from": "\(address)"])
            return
        }
        // The outcome goes out once the claim is released: a client that logs out as soon as it
        // reads `done` must find the user free.
        let checked = clock.now - received
        let outcome = try await holdingClaim(on: user.name) {
            try await loginClaimed(user, request: request, from: address, checked: checked, emit: emit)
        }
        guard let outcome else {
            ManagerMetrics.shared.login(.busy)
            try await emit(LoginEvent(kind: .failed, message: "a login or logout of \(user.name) is already under way; try again in a moment"))
            return
        }
        try await emit(outcome)
    }

    /// Runs `body` holding the user's claim (one login or logout at a time per user); nil when
    /// another holds it. The claim is released before this returns, so a next request finds it free.
    private func holdingClaim<T: Sendable>(on user: String, _ body: () async throws -> T) async throws -> T? {
        guard await sessions.claim(user) else { return nil }
        do {
            let result = try await body()
            await sessions.release(user)
            return result
        } catch {
            await sessions.release(user)
            throw error
        }
    }

    /// Logs the user in (progress through `emit`) and returns the outcome, `done` or `failed`.
    private func loginClaimed(
        _ user: UserConfig, request: LoginRequest, from address: String, checked: Duration, emit: @escaping Emit
    ) async throws -> LoginEvent {
        if let existing = await sessions.session(user: user.name) {
            guard request.force else {
                ManagerMetrics.shared.login(.alreadyLoggedIn)
                let since = existing.since.iso8601
                return LoginEvent(kind: .failed, message: "\(user.name) is already logged in since \(since) from \(existing.from); log out there, or use --force to end that session")
            }
            try await emit(LoginEvent(kind: .notice, message: "ending the session since \(existing.since.iso8601) from \(existing.from)"))
            try await stopUnits(of: existing)
            try await sessions.remove(user: user.name)
            ended(existing)
            logger.notice("session ended by --force", metadata: ["user": "\(user.name)", "from": "\(address)"])
            await audit.record("session.forced_end", user: user.name, from: address, detail: "session since \(existing.since) from \(existing.from)")
        }

        let session = Session(
            id: UUID().uuidString.lowercased(), tokenHash: "", user: user.name, units: user.units,
            from: address, since: Date(), lastSeen: Date())
        await sessions.beginPending(session: session.id)
        do {
            let outcome = try await startSession(session, user: user, from: address, checked: checked, emit: emit)
            await sessions.endPending(session: session.id)
            return outcome
        } catch {
            await sessions.endPending(session: session.id)
            throw error
        }
    }

    private func startSession(
        _ session: Session, user: UserConfig, from address: String, checked: Duration, emit: @escaping Emit
    ) async throws -> LoginEvent {
        for unit in user.units { try? await emit(LoginEvent(kind: .unit, unit: unit, state: .starting)) }
        let unitSecret = Session.newToken()
        let clock = ContinuousClock()
        let starting = clock.now
        let (failures, unitKeys) = await startAll(user: user, session: session.id, unitSecret: unitSecret, emit: emit)
        let started = clock.now - starting
        if !failures.isEmpty {
            var outcome = "nothing was left running"
            do {
                for unit in try await stopUnits(of: session, saveLogs: false) {
                    try? await emit(LoginEvent(kind: .unit, unit: unit, state: .removed))
                }
            } catch {
                // The reconciler removes what is left once the agent answers again.
                outcome = "what started is removed as soon as its agent answers"
                logger.warning("rollback incomplete", metadata: ["user": "\(user.name)", "error": "\(error)"])
            }
            logger.warning("login rolled back", metadata: ["user": "\(user.name)", "failures": "\(failures)"])
            await audit.record("login.rolled_back", user: user.name, from: address, detail: failures.joined(separator: "; "))
            ManagerMetrics.shared.login(.failed)
            return LoginEvent(kind: .failed, message: "login failed, \(outcome): " + failures.joined(separator: "\n"))
        }
        let token = Session.newToken()
        var saved = session
        saved.tokenHash = Session.hash(token: token)
        try await sessions.save(saved)
        // Where a login's time goes: the password check, then the agents' starts (their own logs
        // split those further).
        logger.info("logged in", metadata: [
            "user": "\(user.name)", "from": "\(address)", "units": "\(user.units.count)",
            "check_ms": "\(checked.tenthsOfMilliseconds)", "start_ms": "\(started.tenthsOfMilliseconds)",
        ])
        await audit.record("login.ok", user: user.name, from: address, detail: user.units.map(\.description).joined(separator: ","))
        ManagerMetrics.shared.login(.ok)
        return LoginEvent(kind: .done, message: "\(user.units.count) unit\(user.units.count == 1 ? "" : "s") ready", token: token, units: user.units, unitSecret: unitSecret,
            unitKeys: unitKeys.isEmpty ? nil : unitKeys.sorted { $0.unit < $1.unit })
    }

    /// Starts every unit in parallel; returns one message per failed unit, and the TLS keys of
    /// the units that serve TLS.
    private func startAll(user: UserConfig, session: String, unitSecret: String, emit: @escaping Emit) async -> (failures: [String], keys: [UnitKey]) {
        return await withTaskGroup(of: Result<UnitKey?, StartFailure>.self) { group in
            for (agent, units) in planner.byHost(user.units) {
                for unit in units {
                    group.addTask {
                        let request = StartUnitRequest(
                            user: user.name, session: session, unit: unit, memory: user.memory, cpu: user.cpu, home: user.home,
                            account: user.account, unitSecret: unitSecret)
                        let clock = ContinuousClock()
                        let started = clock.now
                        do {
                            let status = try await agent.start(request) { event in
                                guard let progress = Self.progress(event, unit: unit) else { return }
                                try? await emit(progress)
                            }
                            try? await emit(LoginEvent(kind: .unit, unit: unit, state: .ready, message: (clock.now - started).formattedSeconds))
                            return .success(status.fingerprint.map { UnitKey(unit: unit, fingerprint: $0) })
                        } catch {
                            let message = Self.unitFailure(error, unit: unit)
                            try? await emit(LoginEvent(kind: .unit, unit: unit, state: .failed, message: message))
                            return .failure(StartFailure(message: message))
                        }
                    }
                }
            }
            var failures: [String] = []
            var keys: [UnitKey] = []
            for await outcome in group {
                switch outcome {
                case .success(let key): if let key { keys.append(key) }
                case .failure(let failure): failures.append(failure.message)
                }
            }
            return (failures, keys)
        }
    }

    private struct StartFailure: Error {
        let message: String
    }

    /// What the user sees of an agent's start events: the place in line while the unit waits for
    /// one of its host's start slots, then `starting` again once it has one.
    private static func progress(_ event: StartUnitEvent, unit: HostPort) -> LoginEvent? {
        switch event.kind {
        case .queued:
            let place = event.place ?? 0
            let slots = event.slots.map { ", which starts \($0) unit\($0 == 1 ? "" : "s") at a time" } ?? ""
            let message = place == 1 ? "next in line on \(unit.host)\(slots)" : "\(place - 1) ahead in line on \(unit.host)\(slots)"
            return LoginEvent(kind: .unit, unit: unit, state: .queued, message: message)
        case .starting:
            return LoginEvent(kind: .unit, unit: unit, state: .starting)
        case .ready, .failed:
            return nil
        }
    }

    private static func unitFailure(_ error: any Error, unit: HostPort) -> String {
        let text = "\(error)"
        return text.contains(unit.description) ? text : "unit \(unit): \(text)"
    }

    /// Removes a session's containers on every host it used. Throws naming the hosts that failed.
    @discardableResult
    func stopUnits(of session: Session, saveLogs: Bool = true) async throws -> [HostPort] {
        let groups = planner.byHost(session.units)
        let results = await withTaskGroup(of: Result<StopUnitsResponse, any Error>.self) { group in
            for (agent, _) in groups {
                group.addTask {
                    do {
                        return .success(try await agent.stop(StopUnitsRequest(user: session.user, session: session.id, saveLogs: saveLogs)))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var all: [Result<StopUnitsResponse, any Error>] = []
            for await result in group { all.append(result) }
            return all
        }
        var removed: [HostPort] = []
        var problems: [String] = []
        for result in results {
            switch result {
            case .success(let stopped):
                removed += stopped.removed
                for note in stopped.notes ?? [] { await audit.record("unit.log_not_in_home", user: session.user, detail: note) }
            case .failure(let error): problems.append("\(error)")
            }
        }
        guard problems.isEmpty else { throw ManagerError(problems.joined(separator: "; ")) }
        return removed.sorted()
    }

    func logout(_ session: Session) async throws -> [HostPort] {
        let removed = try await holdingClaim(on: session.user) {
            let removed = try await stopUnits(of: session)
            try await sessions.remove(user: session.user)
            ended(session)
            return removed
        }
        guard let removed else {
            throw ManagerError("a login or logout of \(session.user) is already under way; try again in a moment")
        }
        logger.info("logged out", metadata: ["user": "\(session.user)", "units": "\(removed.count)"])
        await audit.record("logout", user: session.user, detail: "\(removed.count) units removed")
        ManagerMetrics.shared.logouts.increment()
        return removed
    }

    /// Each unit of the session as its agent sees it, with each running one's use if `usage`;
    /// an agent that does not answer is named.
    func status(_ session: Session, usage: Bool = false) async -> [UnitStatus] {
        let groups = planner.byHost(session.units)
        let found = await withTaskGroup(of: [UnitStatus].self) { group in
            for (agent, units) in groups {
                group.addTask {
                    do {
                        let live = try await agent.list(user: session.user, usage: usage)
                        return units.map { unit in
                            live.first { $0.unit == unit && $0.session == session.id }
                                ?? UnitStatus(unit: unit, user: session.user, session: session.id, state: .missing, detail: "no container")
                        }
                    } catch {
                        return units.map { UnitStatus(unit: $0, user: session.user, session: session.id, state: .unknown, detail: "\(error)") }
                    }
                }
            }
            var all: [UnitStatus] = []
            for await part in group { all += part }
            return all
        }
        return session.units.compactMap { unit in found.first { $0.unit == unit } }
    }
}

/// How many streams (logs, execs, copies) each user has open through the manager: one user's
/// hundreds cannot take the manager's or the agents' capacity from the others. Each stream's
/// connection is tied to its session, and closes when the session ends: a token taken from the
/// user stops working on its streams too, not only on new requests.
final class StreamSlots: Sendable {
    let perUser: Int
    private struct State {
        var open: [String: Int] = [:]
        var carrying: [String: [ObjectIdentifier: any Channel]] = [:]
    }
    private let state = Mutex(State())

    init(perUser: Int = 16) {
        self.perUser = perUser
    }

    /// Takes a slot of the session's user for a stream on `channel`; false when all are in use.
    func take(_ session: Session, on channel: (any Channel)?) -> Bool {
        state.withLock { state in
            guard state.open[session.user, default: 0] < perUser else { return false }
            state.open[session.user, default: 0] += 1
            if let channel { state.carrying[session.id, default: [:]][ObjectIdentifier(channel)] = channel }
            return true
        }
    }

    func give(_ session: Session, on channel: (any Channel)?) {
        state.withLock { state in
            let left = state.open[session.user, default: 1] - 1
            state.open[session.user] = left > 0 ? left : nil
            if let channel { state.carrying[session.id]?[ObjectIdentifier(channel)] = nil }
            if state.carrying[session.id]?.isEmpty == true { state.carrying[session.id] = nil }
        }
    }

    /// The session has ended: every connection carrying one of its streams closes.
    func end(session: String) {
        let channels = state.withLock { $0.carrying.removeValue(forKey: session) } ?? [:]
        for channel in channels.values { channel.close(promise: nil) }
    }

    /// Streams open now, all users together.
    var total: Int { state.withLock { $0.open.values.reduce(0, +) } }
}
