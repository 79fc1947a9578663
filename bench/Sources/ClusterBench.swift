import BerthAPI
import BerthCore
import BerthPasswords
import BerthTLS
import EngineAPI
import HTTPClient
import Foundation
import TestSupport
import UnitProtocol

/// A Berth cluster on loopback for benchmarks: agents on 127.0.0.2 and 127.0.0.3 and a manager,
/// from the release binaries, with the berth-unit image and one user per entry of `users`.
/// Its processes are set up in `init` and ended in `shutdown`; between the two it is read only.
final class BenchCluster: @unchecked Sendable {
    let root: String
    let manager: HostPort
    let agents: [HostPort]
    let units: [String: [HostPort]]
    let password = "bench-password"
    private var processes: [Process] = []
    /// Whether manager, agents and units speak TLS, with a CA made for this cluster.
    let tls: Bool
    /// The CA clients trust, with TLS.
    var caFile: String { root + "/tls/ca.crt" }
    /// One client for every call, as `berth` would be one per user: a client per call would leave
    /// its worker threads behind in this process.
    private let managerClient: ServiceClient

    static let hosts = ["127.0.0.2", "127.0.0.3"]
    /// The account every bench user's units run as.
    static let account = UnixAccount(uid: 20_001, gid: 20_001)

    /// `concurrentStarts` is the agents' `<ConcurrentStarts>`; nil leaves Berth's default.
    init(binaries: String, users: [String: [String]], memory: String = "128m", concurrentStarts: Int? = nil, tls: Bool = false) async throws {
        root = NSTemporaryDirectory() + "berth-bench-\(UUID().uuidString.prefix(8))"
        self.tls = tls
        try FileManager.default.createDirectory(atPath: root + "/share", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: root + "/cluster.key", contents: Data((UUID().uuidString + UUID().uuidString).utf8), attributes: [.posixPermissions: 0o600])
        let communication = try Self.freePortOnHosts()
        agents = Self.hosts.map { HostPort(host: $0, port: communication) }
        manager = HostPort(host: "127.0.0.1", port: try freePort())
        var clientTLS: ClientTLS?
        if tls {
            // As `berth-manager tls` makes them: the manager's host's certificate names the manager's address too.
            let ca = try ClusterCertificates.makeAuthority()
            try NewFiles.makeDirectory(root + "/tls")
            try NewFiles.write(ca.certificate, to: root + "/tls/ca.crt", mode: 0o644)
            for (index, host) in Self.hosts.enumerated() {
                let made = try ClusterCertificates.makeHost(addresses: index == 0 ? [host, manager.host] : [host], manager: index == 0, authority: ca)
                try NewFiles.write(made.certificate, to: root + "/tls/\(host).crt", mode: 0o644)
                try NewFiles.write(made.key, to: root + "/tls/\(host).key", mode: 0o600)
            }
            clientTLS = ClientTLS(trustedCAs: ca.certificate)
        }
        managerClient = ServiceClient(address: manager, name: "manager", tls: clientTLS, transport: Transport.self)
        var units: [String: [HostPort]] = [:]
        let hash = try PasswordHash.make(password)
        var xml = "<Users>\n"
        // A port just found free may be found again: each unit gets one of its own.
        var taken: Set<Int> = [communication, manager.port]
        func unitPort() throws -> Int {
            while true {
                let port = try Self.freePortOnHosts()
                if taken.insert(port).inserted { return port }
            }
        }
        for (user, hosts) in users.sorted(by: { $0.key < $1.key }) {
            units[user] = try hosts.map { HostPort(host: $0, port: try unitPort()) }
            try FileManager.default.createDirectory(atPath: root + "/home/\(user)/script", withIntermediateDirectories: true)
            // Units never run as root: each user's account owns the home.
            chown(root + "/home/\(user)", Self.account.uid, Self.account.gid)
            chown(root + "/home/\(user)/script", Self.account.uid, Self.account.gid)
            xml += "<User><Name>\(user)</Name><PwdHash>\(hash)</PwdHash><Memory>\(memory)</Memory><CPU>1024</CPU>"
            xml += "<Home>\(root)/home/\(user)</Home><Uid>\(Self.account)</Uid><Unit>\(units[user]!.map(\.description).joined(separator: ","))</Unit></User>\n"
        }
        self.units = units
        try (xml + "</Users>\n").write(toFile: root + "/users.xml", atomically: true, encoding: .utf8)
        do {
            try await launchAll(binaries: binaries, communication: communication, concurrentStarts: concurrentStarts)
        } catch {
            let logs = ["manager"] + Self.hosts.map { "agent-\($0)" }
            let tails = logs.compactMap { log in
                (try? String(contentsOfFile: root + "/\(log).log", encoding: .utf8)).map { "\(log): " + $0.split(separator: "\n").suffix(2).joined(separator: " / ") }
            }
            shutdown()
            throw BenchError("\(error)\n" + tails.joined(separator: "\n"))
        }
    }

    private func launchAll(binaries: String, communication: Int, concurrentStarts: Int?) async throws {
        let limit = concurrentStarts.map { "<ConcurrentStarts>\($0)</ConcurrentStarts>" } ?? ""
        for host in Self.hosts {
            let tlsElements = tls ? "<CA>\(caFile)</CA><Cert>\(root)/tls/\(host).crt</Cert><Key>\(root)/tls/\(host).key</Key>" : ""
            try """
                <Config><Server>\(host):\(communication)</Server><Share>\(root)/share</Share>\(tlsElements)
                \(host == Self.hosts[0] ? "<NodeType>manager</NodeType>" : "")<Manager>\(manager)</Manager><Secret>\(root)/cluster.key</Secret>\(limit)
                <HomeRoot>\(root)/home</HomeRoot><LogDir>\(root)/agent-logs</LogDir></Config>
                """.write(toFile: root + "/server-\(host).xml", atomically: true, encoding: .utf8)
            try launch(binaries + "/berth-agent", ["serve", "--config", root + "/server-\(host).xml"], log: "agent-\(host)")
        }
        try launch(binaries + "/berth-manager", [
            "serve", "--config", root + "/server-\(Self.hosts[0]).xml", "--users", root + "/users.xml", "--state-dir", root + "/state",
        ], log: "manager")
        for address in agents + [manager] {
            try await waitListening(address)
        }
    }

    /// The process ids of the agents (in `hosts` order) and of the manager.
    var agentPIDs: [Int32] { processes.prefix(Self.hosts.count).map(\.processIdentifier) }
    var managerPID: Int32 { processes[Self.hosts.count].processIdentifier }

    func home(_ user: String) -> String { root + "/home/" + user }

    var share: String { root + "/share" }

    /// The user's units as the floors start them.
    func benchUnits(_ user: String) -> [BenchUnit] {
        units[user]!.map { BenchUnit(user: user, unit: $0, home: home(user), cluster: self) }
    }

    /// What one login saw: the session, and whether any unit waited in line for a start slot.
    struct Login {
        let token: String
        let unitSecret: String
        let queued: Bool
        /// With TLS: each unit's key, as the session file keeps them.
        let unitKeys: [UnitKey]
    }

    /// Logs in through the manager's API, as `berth login` does.
    func login(_ user: String) async throws -> Login {
        let response = try await managerClient.stream(ManagerRoutes.login, LoginRequest(user: user, password: password, force: true))
        var lines = LineSplitter()
        var queued = false
        for try await chunk in response.body {
            for line in lines.feed(chunk) {
                let event = try BerthJSON.decoder.decode(LoginEvent.self, from: line)
                if event.state == .queued { queued = true }
                if event.kind == .failed { throw BenchError("login \(user) failed: \(event.message ?? "")") }
                if event.kind == .done, let token = event.token, let secret = event.unitSecret {
                    return Login(token: token, unitSecret: secret, queued: queued, unitKeys: event.unitKeys ?? [])
                }
            }
        }
        throw BenchError("login \(user) ended without an answer")
    }

    func logout(token: String) async throws {
        _ = try await managerClient.call(ManagerRoutes.logout, token: token, timeout: .seconds(120))
    }

    /// Every benchmark user's name starts with this, so what a run cut short left behind is found.
    static let userPrefix = "bench"

    /// Removes the units and networks of benchmark users (a run cut short, or the networks the
    /// agents keep for a while after logout) and the floor's containers.
    static func removeLeftovers(client: DockerClient) async throws {
        for container in try await client.listContainers(all: true, labels: [UnitLabel.user]) + client.listContainers(all: true, labels: [BenchContainers.label])
        where container.labels?[UnitLabel.user]?.hasPrefix(userPrefix) ?? true {
            try await client.removeContainer(container.id, force: true)
        }
        for network in try await client.listNetworks(labels: [UnitLabel.user]) where network.labels?[UnitLabel.user]?.hasPrefix(userPrefix) == true {
            try? await client.removeNetwork(network.id)
        }
    }

    /// Ends the daemons and removes the cluster's folder, unless `keep` (its logs stay for a look).
    func shutdown(keep: Bool = false) {
        for process in processes where process.isRunning { process.terminate() }
        for process in processes { process.waitUntilExit() }
        if keep {
            print("The cluster's configuration, homes and daemon logs: \(root)")
            return
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// The password checks of `user`'s logins so far, in order, as the manager logs them
    /// (`logged in … check_ms=…`).
    func passwordChecks(of user: String) -> [Duration] {
        loggedLines("manager", ending: "logged in", user: user).compactMap { Self.milliseconds("check_ms", in: $0) }
    }

    /// The lines of `log` (manager, agent-HOST) that end with `message` and name `user`.
    private func loggedLines(_ log: String, ending message: String, user: String) -> [Substring] {
        let text = (try? String(contentsOfFile: root + "/\(log).log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasSuffix(message) && $0.contains(" user=\(user) ") }
    }

    /// A log line's `name=N` field, in milliseconds (`7` or `7.3`).
    private static func milliseconds(_ name: String, in line: Substring) -> Duration? {
        guard let range = line.range(of: " \(name)=") else { return nil }
        return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." }).map { .nanoseconds(Int64(($0 * 1e6).rounded())) }
    }

    /// The unit starts of `user` so far, in order, as the agents log them (`unit ready …
    /// create_ms=… ready_ms=… start_ms=…`), and the manager's `start_ms` of each login.
    func unitStarts(of user: String) -> (units: [StartParts], logins: [Duration]) {
        let units = agents.flatMap { loggedLines("agent-\($0.host)", ending: "unit ready", user: user) }.compactMap { line -> StartParts? in
            guard let create = Self.milliseconds("create_ms", in: line), let start = Self.milliseconds("start_ms", in: line),
                  let ready = Self.milliseconds("ready_ms", in: line) else { return nil }
            return StartParts(create: create, start: start, ready: ready)
        }
        return (units, loggedLines("manager", ending: "logged in", user: user).compactMap { Self.milliseconds("start_ms", in: $0) })
    }

    /// The engine's part of each of the last `logins` logins of `user`: the longest create +
    /// start among its units, as the agents log them. Each agent logs a login's units one after
    /// another, so its lines come in groups of the user's units on its host. Nil when a login
    /// is missing from a log.
    func engineTimes(of user: String, logins: Int) -> [Duration]? {
        var engine = [Duration](repeating: .zero, count: logins)
        for agent in agents {
            let here = units[user]!.filter { $0.host == agent.host }.count
            guard here > 0 else { continue }
            let lines = loggedLines("agent-\(agent.host)", ending: "unit ready", user: user)
            guard lines.count >= logins * here else { return nil }
            for (index, line) in lines.suffix(logins * here).enumerated() {
                guard let create = Self.milliseconds("create_ms", in: line), let start = Self.milliseconds("start_ms", in: line) else { return nil }
                engine[index / here] = max(engine[index / here], create + start)
            }
        }
        return engine
    }

    private func launch(_ path: String, _ arguments: [String], log: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        // As deployed: with the environment the program's systemd unit gives it.
        let unit = URL(fileURLWithPath: path).lastPathComponent
        process.environment = ProcessInfo.processInfo.environment.merging(try Self.unitEnvironment(of: unit)) { $1 }
        FileManager.default.createFile(atPath: root + "/\(log).log", contents: nil)
        let output = FileHandle(forWritingAtPath: root + "/\(log).log")
        process.standardOutput = output
        process.standardError = output
        try process.run()
        processes.append(process)
    }

    /// The `Environment=` lines of `Resources/templates/systemd/PROGRAM.service`.
    static func unitEnvironment(of program: String) throws -> [String: String] {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let unit = try String(contentsOf: repository.appendingPathComponent("Resources/templates/systemd/\(program).service"), encoding: .utf8)
        var environment: [String: String] = [:]
        for line in unit.split(separator: "\n") {
            let line = line.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("Environment=") else { continue }
            // Assignments separated by spaces, each may be in double quotes, as systemd reads them.
            var assignments: [String] = []
            var current = ""
            var quoted = false
            for character in line.dropFirst("Environment=".count) {
                if character == "\"" {
                    quoted.toggle()
                } else if character == " " && !quoted {
                    if !current.isEmpty { assignments.append(current) }
                    current = ""
                } else {
                    current.append(character)
                }
            }
            if !current.isEmpty { assignments.append(current) }
            for assignment in assignments {
                guard let equals = assignment.firstIndex(of: "=") else { continue }
                environment[String(assignment[..<equals])] = String(assignment[assignment.index(after: equals)...])
            }
        }
        return environment
    }

    private func waitListening(_ address: HostPort) async throws {
        for _ in 0..<200 {
            if canConnect(host: address.host, port: address.port, expectBytes: false) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError("nothing listens on \(address)")
    }

    static func freePortOnHosts() throws -> Int {
        for _ in 0..<50 {
            let port = try freePort()
            if hosts.allSatisfy({ !canConnect(host: $0, port: port, expectBytes: false) }) { return port }
        }
        throw BenchError("no port free on the bench hosts")
    }
}

/// One unit as the floors start it: where it serves, the user's home, and the user's network
/// on that unit's agent, which Berth's login has created (and keeps for a while after logout).
struct BenchUnit: Sendable {
    let unit: HostPort
    let home: String
    let network: String

    init(user: String, unit: HostPort, home: String, cluster: BenchCluster) {
        self.unit = unit
        self.home = home
        let agent = cluster.agents.first { $0.host == unit.host }!
        // The agent's name for the network (UnitSpec.networkName).
        network = "berth-\(user)-\(agent.host)-\(agent.port)"
    }
}

/// The floor for a login: the same unit containers as Berth's (image, command, limits, mounts,
/// port binding, the user's network, PIDs limit, no-new-privileges, no capabilities, the user's
/// account) created, started and waited for in parallel with hand-written HTTP, no Berth in
/// between. Each unit has a thread of its own, so twenty starts really are twenty at once,
/// whatever the number of cores.
struct RawUnitStarter {
    let socketPath: String
    let version: APIVersion
    let share: String
    let image = "berth-unit:latest"
    /// On the engine's default bridge instead of the user's network: what isolation costs.
    var bare = false

    /// One raw start: the container, its time to serving from the start of the batch, and the
    /// engine's create, its start, and the wait until the unit answers, each on its own.
    struct Started: Sendable {
        let id: String
        var elapsed: Duration = .zero
        let parts: StartParts
    }

    /// Starts every unit at once, or at most `perHost` at a time on each host; returns each
    /// one's container and time to serving.
    func startAndWait(_ units: [BenchUnit], memoryBytes: Int64, perHost: Int? = nil) async throws -> [Started] {
        let slots = Dictionary(uniqueKeysWithValues: Set(units.map(\.unit.host)).map { ($0, DispatchSemaphore(value: perHost ?? units.count)) })
        return try await withThrowingTaskGroup(of: Started.self) { group in
            let begun = ContinuousClock.now
            for unit in units {
                group.addTask {
                    try await onOwnThread {
                        let slot = slots[unit.unit.host]!
                        slot.wait()
                        defer { slot.signal() }
                        var started = try startOne(unit, memoryBytes: memoryBytes)
                        started.elapsed = ContinuousClock.now - begun
                        return started
                    }
                }
            }
            var started: [Started] = []
            for try await one in group { started.append(one) }
            return started
        }
    }

    private func startOne(_ unit: BenchUnit, memoryBytes: Int64) throws -> Started {
        let raw = try RawHTTP(socketPath: socketPath)
        let port = unit.unit.port
        let spec = "\(port)/tcp"
        var host = HostConfig(
            memory: memoryBytes, cpuShares: 1024, binds: ["\(share):/share:ro", "\(unit.home):/app"],
            portBindings: [spec: [PortBinding(hostIp: unit.unit.host, hostPort: String(port))]], init: true)
        if !bare { host.networkMode = unit.network }
        // The same isolation as Berth's units: no capabilities, no new privileges, the PIDs
        // limit, the user's account.
        host.pidsLimit = 1024
        host.securityOpt = ["no-new-privileges"]
        host.capDrop = ["ALL"]
        let config = ContainerConfig(
            image: image, cmd: ["/bin/berth-unit", "serve", "--port", String(port)],
            env: ["BERTH_UNIT_SECRET=floor"], user: BenchCluster.account.description, workingDir: "/app",
            labels: [BenchContainers.label: "floor"], exposedPorts: [spec: EmptyObject()], hostConfig: host)
        let clock = ContinuousClock()
        let creating = clock.now
        let created = try raw.request("POST", "/v\(version)/containers/create", body: try EngineJSON.encoder.encode(config))
        guard created.status == 201, let id = (try JSONSerialization.jsonObject(with: created.body) as? [String: Any])?["Id"] as? String else {
            throw BenchError("floor create: \(created.status) \(String(decoding: created.body, as: UTF8.self))")
        }
        let starting = clock.now
        _ = try raw.request("POST", "/v\(version)/containers/\(id)/start")
        let started = clock.now
        try waitHealthy(unit.unit)
        return Started(id: id, parts: StartParts(create: starting - creating, start: started - starting, ready: clock.now - started))
    }
}

/// The esProc design's way (`raq_start.sh` per unit): `docker run -d` with the same settings, one
/// unit after another, then wait until each serves.
struct CLIUnitStarter {
    let docker: String
    let socketPath: String
    let share: String
    let image = "berth-unit:latest"
    /// On the engine's default bridge instead of the user's network: what isolation costs.
    var bare = false

    func startAndWait(_ units: [BenchUnit], memory: String) async throws -> [String] {
        try await onOwnThread {
            var ids: [String] = []
            for unit in units {
                let port = unit.unit.port
                let output = try runProcess(docker, [
                    "run", "-d", "--init", "--label", "\(BenchContainers.label)=cli", "-m", memory, "--cpu-shares", "1024",
                    "-v", "\(share):/share:ro", "-v", "\(unit.home):/app", "-p", "\(unit.unit.host):\(port):\(port)",
                    "--network", unit.network, "--pids-limit", "1024", "--security-opt", "no-new-privileges",
                    "-e", "BERTH_UNIT_SECRET=cli", "-u", "0:0", "-w", "/app",
                    image, "/bin/berth-unit", "serve", "--port", String(port),
                ], environment: ["DOCKER_HOST": "unix://\(socketPath)"])
                ids.append(output.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            for unit in units { try waitHealthy(unit.unit) }
            return ids
        }
    }
}

/// Runs blocking work on a thread of its own and returns its result.
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}

/// Where one unit start's time went: the engine's create, its start, then the wait until the
/// unit serves (the floor's health polls, or the agent's readiness probes).
struct StartParts: Sendable {
    let create: Duration
    let start: Duration
    let ready: Duration
}

/// Blocks until the unit answers its health request: the tightest readiness a raw client can have.
func waitHealthy(_ unit: HostPort, timeout: Duration = .seconds(30)) throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if healthAnswers(unit) { return }
        usleep(5000)
    }
    throw BenchError("unit \(unit) never answered")
}

func healthAnswers(_ unit: HostPort) -> Bool {
    guard let fd = connectTCP(host: unit.host, port: unit.port) else { return false }
    defer { close(fd) }
    let request = "GET \(UnitPath.health) HTTP/1.1\r\nHost: unit\r\n\r\n"
    _ = request.withCString { write(fd, $0, strlen($0)) }
    var buffer = [UInt8](repeating: 0, count: 64)
    let count = read(fd, &buffer, buffer.count)
    return count > 12 && String(decoding: buffer[0..<count], as: UTF8.self).hasPrefix("HTTP/1.1 200")
}
