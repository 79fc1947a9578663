import BerthConfig
import BerthAPI
import BerthCore
import BerthTLS
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
import Logging

/// What the agent does with its engine on the manager's behalf: start, stop, list, log and exec
/// unit containers. Docker labels are the only record of what runs.
final class UnitService: Sendable {
    let docker: DockerClient
    let config: ServerConfig
    let template: UnitTemplate
    /// What the template may set here; each start checks its own render against it, since a
    /// placeholder's value is known only then.
    let policy: TemplatePolicy
    let logger: Logger
    let networks: UserNetworks
    let admission: StartAdmission
    let usage: UnitUsage

    init(docker: DockerClient, config: ServerConfig, template: UnitTemplate, policy: TemplatePolicy, logger: Logger) {
        self.docker = docker
        self.config = config
        self.template = template
        self.policy = policy
        self.logger = logger
        self.networks = UserNetworks(docker: docker, agent: config.server)
        self.admission = StartAdmission(limit: config.concurrentStarts)
        self.usage = UnitUsage(docker: docker)
    }

    var hostLabel: String { config.server.description }

    // MARK: - Start

    /// Creates and starts one unit container and returns once its port serves. On any failure
    /// the container is removed and the error names the unit, the cause and its last log lines.
    /// The engine work waits for one of the host's start slots; `progress` hears where it waits.
    func start(_ request: StartUnitRequest, progress: (StartUnitEvent) async -> Void = { _ in }) async throws -> UnitStatus {
        let unit = request.unit
        try validate(request)
        let account = try HomeFiles.prepare(home: request.home, homeRoot: config.homeRoot, account: request.account)
        let slot = try await admission.enter { place in await progress(StartUnitEvent(kind: .queued, place: place, slots: admission.limit)) }
        defer { slot.leave() }
        if slot.waited { await progress(StartUnitEvent(kind: .starting)) }
        let network = try await networks.ensure(user: request.user)
        var spec = UnitSpec(
            request: request, memory: request.memory, share: config.share, defaultImage: config.image,
            hostLabel: hostLabel, network: network, account: account)
        var fingerprint: KeyFingerprint?
        if config.tls != nil {
            let made = try ClusterCertificates.makeSelfSigned(address: unit.host)
            spec.unitTLS = (made.certificate, made.key)
            fingerprint = made.fingerprint
        }

        try await checkPortFree(unit, user: request.user)

        let body = try spec.createBody(template: template, policy: policy)
        let clock = ContinuousClock()
        let creating = clock.now
        var id = try await create(spec, body: body, user: request.user, unit: unit)
        let starting = clock.now
        let started: ContinuousClock.Instant
        do {
            do {
                try await docker.startContainer(id)
            } catch EngineError.notFound {
                // The engine checks the network only now: it went behind this agent's back.
                try? await docker.removeContainer(id, force: true)
                try await networks.renew(user: request.user)
                id = try await create(spec, body: body, user: request.user, unit: unit)
                try await docker.startContainer(id)
            }
            slot.leave()
            started = clock.now
            try await Readiness(docker: docker, timeout: .seconds(config.readyTimeoutSeconds)).wait(container: id, unit: unit)
        } catch {
            AgentMetrics.shared.engineError(error)
            let cause = describe(error, unit: unit)
            let tail = (try? await docker.logTail(id, lines: 10))?.trimmed ?? ""
            try? await docker.removeContainer(id, force: true)
            logger.warning("unit failed to start", metadata: ["unit": "\(unit)", "user": "\(request.user)", "cause": "\(cause)"])
            throw AgentError(tail.isEmpty ? cause : "\(cause); last log lines:\n\(tail)")
        }
        let ready = clock.now
        // Where a start's time goes: the engine's create and start, then the unit's own program.
        logger.info("unit ready", metadata: [
            "unit": "\(unit)", "user": "\(request.user)", "container": "\(id.prefix(12))",
            "create_ms": "\((starting - creating).tenthsOfMilliseconds)", "start_ms": "\((started - starting).tenthsOfMilliseconds)",
            "ready_ms": "\((ready - started).tenthsOfMilliseconds)",
        ])
        return UnitStatus(unit: unit, user: request.user, session: request.session, state: .running, container: id, fingerprint: fingerprint)
    }

    /// The memory was checked when the request was read (`MemorySpec` decodes only valid text).
    private func validate(_ request: StartUnitRequest) throws {
        // The same rules the users file is read with: the manager sends what it read there.
        guard UnitRules.isValidUserName(request.user) else {
            throw AgentError("user name \"\(request.user)\" is not allowed")
        }
        guard request.unit.host == config.server.host else {
            throw AgentError("unit \(request.unit) is not on this host (\(config.server.host))")
        }
        guard request.unit.port != config.communicationPort else {
            throw AgentError("unit \(request.unit) uses the communication port")
        }
        guard UnitRules.cpuShares.contains(request.cpu) else {
            throw AgentError("CPU shares \(request.cpu) must be from \(UnitRules.cpuShares.lowerBound) to \(UnitRules.cpuShares.upperBound)")
        }
    }

    private func describe(_ error: any Error, unit: HostPort) -> String {
        switch error {
        case Readiness.Failure.exited(let code, let oomKilled):
            oomKilled
                ? "unit \(unit): container was killed for exceeding its memory limit before its port served"
                : "unit \(unit): container exited with code \(code) before its port served"
        case Readiness.Failure.timedOut:
            "unit \(unit): port did not serve within \(config.readyTimeoutSeconds) s"
        case let error as EngineError:
            "unit \(unit): \(error)"
        default:
            "unit \(unit): \(error)"
        }
    }

    /// Creates the unit's container. The common case costs one engine call: a container left
    /// under the unit's name by an earlier session, or (on engines that check it here) a user
    /// network removed behind this agent's back, shows up as the create's refusal and is dealt
    /// with then, and the create tried again.
    private func create(_ spec: UnitSpec, body: [String: JSONValue], user: String, unit: HostPort) async throws -> String {
        let image = body.value(ofField: "Image")?.stringValue ?? config.image
        var removedStale = false
        var renewedNetwork = false
        while true {
            do {
                return try await docker.createContainer(name: spec.containerName, body: body).id
            } catch EngineError.conflict(let message, _, _) {
                guard !removedStale else { throw AgentError("unit \(unit): \(message)") }
                try await removeStale(named: spec.containerName, user: user, unit: unit)
                removedStale = true
            } catch EngineError.notFound {
                // The network or the image. A network is made again; an image is the admin's.
                guard !renewedNetwork else {
                    throw AgentError("unit \(unit): image \(image) is not on host \(config.server.host) (build it with `make image`, or `docker load` it there)")
                }
                try await networks.renew(user: user)
                renewedNetwork = true
            }
        }
    }

    /// A container left from an earlier session under the unit's name is removed; a foreign
    /// container with that name is the admin's to sort out.
    private func removeStale(named name: String, user: String, unit: HostPort) async throws {
        guard let existing = try? await docker.inspectContainer(name) else { return }
        guard existing.config.labels?[UnitLabel.user] == user else {
            throw AgentError("unit \(unit): a container named \(name) exists and is not this user's Berth unit; remove it")
        }
        logger.notice("removing stale unit container", metadata: ["unit": "\(unit)", "container": "\(existing.id.prefix(12))"])
        try await docker.removeContainer(existing.id, force: true)
    }

    /// Refuses a port something else holds. The user's own unit container from an earlier
    /// session (the manager starts a unit only when no session of the user has it) is removed.
    private func checkPortFree(_ unit: HostPort, user: String) async throws {
        var removedStale = false
        while true {
            let result = await docker.transport.runBlocking { PortProbe.isFree(host: unit.host, port: unit.port) }
            guard case .failure(let error) = result else { return }
            guard error.code == .EADDRINUSE else {
                throw AgentError("unit \(unit): cannot use the address: \(String(cString: strerror(error.code.rawValue)))")
            }
            let holders = (try? await docker.listContainers(labels: ["\(UnitLabel.unit)=\(unit)"])) ?? []
            guard let holder = holders.first else {
                throw AgentError("unit \(unit): port in use by another process on \(unit.host)")
            }
            let owner = holder.labels?[UnitLabel.user] ?? "unknown"
            guard owner == user, !removedStale else {
                throw AgentError("unit \(unit): port in use by user \(owner)'s unit container")
            }
            logger.notice("removing stale unit container", metadata: ["unit": "\(unit)", "container": "\(holder.id.prefix(12))"])
            try await docker.removeContainer(holder.id, force: true)
            removedStale = true
        }
    }

    // MARK: - Stop, list

    /// Removes the user's unit containers here (all, one session's, or the given units), saving
    /// each one's log into the home first.
    func stop(_ request: StopUnitsRequest) async throws -> StopUnitsResponse {
        var labels = ["\(UnitLabel.user)=\(request.user)", "\(UnitLabel.host)=\(hostLabel)"]
        if let session = request.session { labels.append("\(UnitLabel.session)=\(session)") }
        let containers = try await docker.listContainers(all: true, labels: labels)
        var removed: [HostPort] = []
        var notes: [String] = []
        for container in containers {
            guard let unitText = container.labels?[UnitLabel.unit], let unit = HostPort(parsing: unitText) else { continue }
            if let only = request.units, !only.contains(unit) { continue }
            if request.saveLogs, let note = await saveLog(container: container, unit: unit, user: request.user) { notes.append(note) }
            do {
                // With its anonymous volumes, which nobody could reach again.
                try await docker.removeContainer(container.id, force: true, volumes: true)
            } catch EngineError.notFound {}
            removed.append(unit)
        }
        let left = try await docker.listContainers(all: true, labels: ["\(UnitLabel.user)=\(request.user)", "\(UnitLabel.host)=\(hostLabel)"])
        if left.isEmpty { await networks.released(user: request.user) }
        if !removed.isEmpty {
            logger.info("units removed", metadata: ["user": "\(request.user)", "units": "\(removed.map(\.description))"])
        }
        return StopUnitsResponse(removed: removed.sorted(), notes: notes.isEmpty ? nil : notes)
    }

    /// Streams the container's log to `<home>/logs/<ip>-<port>-<time>.log`, so it outlives the
    /// container; capped, keeping the newest part. A home whose `logs` is not a plain directory
    /// gets nothing written through it: the log goes to the agent's own directory, and the stop's
    /// answer says why, for the manager's audit.
    private func saveLog(container: ContainerSummary, unit: HostPort, user: String) async -> String? {
        do {
            let inspect = try await docker.inspectContainer(container.id)
            guard let home = inspect.mounts?.first(where: { $0.destination == "/app" })?.source else { return nil }
            // The account the unit ran as; for a root unit (where allowed), the home's owner.
            let owner = inspect.config.user.flatMap { try? UnixAccount.parse($0) }.flatMap { $0.isRoot ? nil : $0 }
            let stamp = Date().iso8601.filter { $0 != ":" }
            let frames = try await docker.logs(container.id, options: LogOptions(timestamps: true), tty: inspect.config.tty ?? false)
            let saved = try await HomeFiles.saveLog(
                home: home, homeRoot: config.homeRoot, user: user, fileName: "\(unit.host)-\(unit.port)-\(stamp).log", owner: owner,
                fallbackDirectory: config.logDirectory + "/units", cap: Self.savedLogCap, chunks: frames.map(\.data))
            var notes: [String] = []
            if let reason = saved.fallbackReason {
                logger.notice("unit log saved outside the home", metadata: ["unit": "\(unit)", "user": "\(user)", "path": "\(saved.path)", "reason": "\(reason)"])
                notes.append("log saved to \(saved.path), not the home: \(reason)")
            }
            if saved.unsavedBytes > 0 {
                logger.notice("unit log cut: its disk has no room left for users", metadata: ["unit": "\(unit)", "user": "\(user)", "path": "\(saved.path)", "unsaved": "\(saved.unsavedBytes)"])
                notes.append("log saved to \(saved.path) without its last \(saved.unsavedBytes) bytes: the disk has no room left for users")
            }
            return notes.isEmpty ? nil : "unit \(unit): " + notes.joined(separator: "; ")
        } catch {
            logger.warning("could not save a unit's log", metadata: ["unit": "\(unit)", "error": "\(error)"])
            return "unit \(unit): log not saved: \(error)"
        }
    }

    /// The newest 16 MiB of a unit's log are kept at logout; a user sizes the log.
    static let savedLogCap = 16 << 20

    /// The unit containers this agent manages (labelled with its host), of one user or of all;
    /// with `usage`, each running one's CPU and memory use too.
    func list(user: String?, usage withUsage: Bool = false) async throws -> [UnitStatus] {
        let labels = [user.map { "\(UnitLabel.user)=\($0)" } ?? UnitLabel.user, "\(UnitLabel.host)=\(hostLabel)"]
        let units = try await docker.listContainers(all: true, labels: labels).compactMap { container -> UnitStatus? in
            guard let labels = container.labels, let unitText = labels[UnitLabel.unit], let unit = HostPort(parsing: unitText) else { return nil }
            return UnitStatus(
                unit: unit, user: labels[UnitLabel.user] ?? "", session: labels[UnitLabel.session] ?? "",
                state: container.state.map(UnitState.init(rawValue:)) ?? .unknown, container: container.id, detail: container.status)
        }.sorted { $0.unit < $1.unit }
        return withUsage ? await usage.fill(units) : units
    }

    // MARK: - Logs, exec

    /// The user's container for a unit, or a 404-worthy error.
    func container(user: String, unit: HostPort) async throws -> ContainerSummary {
        let found = try await docker.listContainers(
            all: true, labels: ["\(UnitLabel.user)=\(user)", "\(UnitLabel.unit)=\(unit)", "\(UnitLabel.host)=\(hostLabel)"])
        guard let container = found.first else { throw AgentError("unit \(unit) is not running for \(user)") }
        return container
    }

    func logs(user: String, unit: HostPort, options: LogOptions) async throws -> OutputFrames {
        let container = try await container(user: user, unit: unit)
        return try await docker.logs(container.id, options: options, tty: false)
    }

    /// Starts the command; its output follows as frames, then `exitCode(ofExec:)` with the id.
    func startExec(_ request: ExecRequest) async throws -> (id: String, output: OutputFrames) {
        guard !request.command.isEmpty else { throw AgentError("exec needs a command") }
        let container = try await container(user: request.user, unit: request.unit)
        guard container.state == "running" else { throw AgentError("unit \(request.unit) is \(container.state ?? "not running")") }
        let id = try await docker.createExec(container: container.id, config: ExecConfig(cmd: request.command, workingDir: "/app"))
        return (id, try await docker.startExec(id))
    }

    /// Starts the command with stdin, and a terminal of the asked size if `terminal.tty`.
    func attachExec(_ request: ExecRequest, terminal: ExecTerminal) async throws -> AttachedExec {
        guard !request.command.isEmpty else { throw AgentError("exec needs a command") }
        let container = try await container(user: request.user, unit: request.unit)
        guard container.state == "running" else { throw AgentError("unit \(request.unit) is \(container.state ?? "not running")") }
        // TERM is the one setting a terminal needs from the client's side; it is checked to be a
        // plain name so it can carry nothing else into the container.
        let term = terminal.term.flatMap { $0.count <= 64 && $0.allSatisfy { $0.isLetter || $0.isNumber || "-_.+".contains($0) } ? $0 : nil }
        var config = ExecConfig(cmd: request.command, env: terminal.tty ? ["TERM=\(term ?? "xterm")"] : nil, workingDir: "/app", tty: terminal.tty)
        config.attachStdin = true
        let id = try await docker.createExec(container: container.id, config: config)
        let attached = try await docker.attachExec(id, tty: terminal.tty)
        if terminal.tty, let rows = terminal.rows, let columns = terminal.columns, rows > 0, columns > 0 {
            try? await docker.resizeExec(id, rows: rows, columns: columns)
        }
        return attached
    }

    /// Ends an exec whose client has gone, as a closed terminal would: SIGHUP to its process (a
    /// shell passes it on to what runs in its foreground). The engine itself leaves an exec
    /// running when its connection closes. Only with this host's own engine, whose process IDs
    /// are this host's, and only to a process that is still the exec's and in its container.
    func hangUp(exec id: String) async {
        guard case .unix = docker.transport.endpoint.kind,
            let state = try? await docker.inspectExec(id), state.running, let pid = state.pid, pid > 1,
            let container = state.containerID, container.count >= 12,
            Self.processCgroups(pid)?.contains(container) == true
        else { return }
        kill(pid_t(pid), SIGHUP)
        logger.info("exec hung up", metadata: ["exec": "\(id.prefix(12))", "container": "\(container.prefix(12))"])
    }

    /// `/proc/PID/cgroup`, which names the container a process runs in.
    private static func processCgroups(_ pid: Int) -> String? {
        let fd = open("/proc/\(pid)/cgroup", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let count = read(fd, &buffer, buffer.count)
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }
}
