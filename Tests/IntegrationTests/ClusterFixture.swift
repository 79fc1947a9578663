import BerthAPI
import BerthCore
import BerthPasswords
import EngineAPI
import Foundation
import Testing

/// A whole Berth cluster on loopback: agents on 127.0.0.2 and 127.0.0.3, the manager on
/// 127.0.0.1, users' homes and the share under a temporary directory, all against the real engine.
final class ClusterFixture: @unchecked Sendable {
    let root: String
    let share: String
    let communicationPort: Int
    let managerAddress: HostPort
    let serverConfig: String
    let usersConfig: String
    let secret: [UInt8]
    /// Unit ports per user.
    let units: [String: [HostPort]]
    /// Whether manager, agents and units speak TLS, with a CA `berth-manager tls` made for this
    /// cluster (the manager's host's certificate names the manager's address too).
    let tls: Bool
    /// The cluster's CA certificate, which clients trust.
    var caFile: String { root + "/tls/ca/ca.crt" }
    private var processes: [Process] = []

    static let hosts = ["127.0.0.2", "127.0.0.3"]
    static let absentHost = "127.0.0.4"
    static let password = "s3cret-pass"

    /// The binaries built with these tests: beside the test bundle, whatever `--scratch-path` was.
    static let binaries: String = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        return FileManager.default.isExecutableFile(atPath: beside + "/berth-agent") ? beside : DockerTestSupport.repositoryRoot + "/.build/debug"
    }()

    /// What the unit containers run.
    enum Payload: Equatable {
        /// The busybox image with an admin template: `nc` answering a banner made of placeholders.
        case bannerTemplate
        /// The same banner, served only after the container has run for `seconds` (on `host` only,
        /// when given): a unit slow to be ready.
        case slowBannerTemplate(seconds: Int, host: String? = nil)
        /// The shipped default: the berth-unit image and the built-in template.
        case berthUnit
    }

    /// The engine socket of the agent given as `engineBehindProxy`: nothing serves it until the
    /// test starts an `EngineProxy` there.
    let proxiedEngineSocket: String?
    private var agents: [String: Process] = [:]

    /// `concurrentStarts` is the agents' `<ConcurrentStarts>`; nil leaves it out (Berth's default).
    /// `templateFields` are more fields of the banner template's JSON object, each with a leading comma.
    init(
        payload: Payload = .bannerTemplate, users userHosts: [(String, [String])]? = nil, engineBehindProxy proxiedHost: String? = nil,
        concurrentStarts: Int? = nil, templateFields: String = "", tls: Bool = false, memory: String = "64m"
    ) async throws {
        self.tls = tls
        let client = try await DockerTestSupport.ready()
        if payload == .berthUnit, (try? await client.inspectImage("berth-unit:latest")) == nil {
            throw TestSetupError("berth-unit:latest is missing; `make image` builds it (make test does)")
        }
        root = NSTemporaryDirectory() + "berth-cluster-\(UUID().uuidString.prefix(8))"
        share = root + "/share"
        try FileManager.default.createDirectory(atPath: share, withIntermediateDirectories: true)
        try "shared\n".write(toFile: share + "/readme.txt", atomically: true, encoding: .utf8)
        communicationPort = try Self.portFreeOnAllHosts()
        managerAddress = HostPort(host: "127.0.0.1", port: try DockerTestSupport.freePort())
        secret = Array("cluster-secret-\(UUID().uuidString)".utf8)
        FileManager.default.createFile(atPath: root + "/cluster.key", contents: Data(secret), attributes: [.posixPermissions: 0o600])
        let root = root
        proxiedEngineSocket = proxiedHost.map { root + "/engine-\($0).sock" }
        let template = payload == .berthUnit ? nil : root + "/unit.json"
        let banner = #"nc -ll -p {{port}} -e echo 'unit {{user}} {{ip}}:{{port}} memory {{memory}}'"#
        switch payload {
        case .bannerTemplate:
            try """
            {"Image": "\(DockerTestSupport.image)",
             "Cmd": ["nc", "-ll", "-p", "{{port}}", "-e", "echo", "unit {{user}} {{ip}}:{{port}} memory {{memory}}"]\(templateFields)}
            """.write(toFile: root + "/unit.json", atomically: true, encoding: .utf8)
        case .slowBannerTemplate(let seconds, let host):
            let wait = host.map { "[ {{ip}} != \($0) ] || sleep \(seconds)" } ?? "sleep \(seconds)"
            try """
            {"Image": "\(DockerTestSupport.image)", "Cmd": ["sh", "-c", "\(wait); exec \(banner)"]}
            """.write(toFile: root + "/unit.json", atomically: true, encoding: .utf8)
        case .berthUnit:
            break
        }

        var units: [String: [HostPort]] = [:]
        // eee's second host has no agent.
        let defaultUsers = [("aaa", Self.hosts), ("bbb", [Self.hosts[1]]), ("ccc", Self.hosts), ("ddd", [Self.hosts[0]]), ("eee", [Self.hosts[0], Self.absentHost])]
        for (user, hosts) in userHosts ?? defaultUsers {
            units[user] = try hosts.map { HostPort(host: $0, port: try Self.portFreeOnAllHosts()) }
        }
        self.units = units
        let hash = try PasswordHash.make(Self.password)
        var usersXML = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Users>\n"
        // The homes' folder is passable by the units' accounts, as /opt/app would be.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root)
        for (user, list) in units.sorted(by: { $0.key < $1.key }) {
            let home = root + "/home/" + user
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            // Units run as the home's owner: each user has an account of their own.
            let account = Self.account(user)
            chown(home, account.uid, account.gid)
            usersXML += """
                  <User>
                    <Name>\(user)</Name>
                    <Alias>用户 \(user)</Alias>
                    <PwdHash>\(hash)</PwdHash>
                    <Memory>\(memory)</Memory>
                    <CPU>512</CPU>
                    <Home>\(home)</Home>
                    <Unit>\(list.map(\.description).joined(separator: ","))</Unit>
                  </User>\n
                """
        }
        usersXML += "</Users>\n"
        usersConfig = root + "/docker_user.xml"
        try usersXML.write(toFile: usersConfig, atomically: true, encoding: .utf8)
        serverConfig = root + "/docker_server_manager.xml"
        if tls {
            for arguments in [
                ["ca", "--out", root + "/tls/ca"],
                ["cert", "--ca", root + "/tls/ca", "--host", "\(Self.hosts[0]),\(managerAddress.host)", "--manager", "--out", root + "/tls"],
                ["cert", "--ca", root + "/tls/ca", "--host", Self.hosts[1], "--out", root + "/tls"],
            ] {
                let made = try await Self.run("berth-manager", ["tls"] + arguments)
                guard made.status == 0 else { throw TestSetupError("berth-manager tls \(arguments[0]): \(made.stderr)") }
            }
        }
        for host in Self.hosts + ["manager"] {
            let server = host == "manager" ? Self.hosts[0] : host
            let tlsElements = tls ? "<CA>\(root)/tls/ca/ca.crt</CA><Cert>\(root)/tls/\(server).crt</Cert><Key>\(root)/tls/\(server).key</Key>" : ""
            try """
                <Config>
                  <Server>\(server):\(communicationPort)</Server>
                  <Share>\(share)</Share>
                  \(host == "manager" ? "<NodeType>manager</NodeType>\n  <Manager>\(managerAddress)</Manager>" : "")
                  <Secret>\(root)/cluster.key</Secret>
                  \(template.map { "<Template>\($0)</Template>" } ?? "")
                  \(host == proxiedHost ? "<Docker>unix://\(root)/engine-\(host).sock</Docker>" : "")
                  <ReadyTimeout>20</ReadyTimeout>
                  <HomeRoot>\(root)/home</HomeRoot>
                  <LogDir>\(root)/agent-logs</LogDir>
                  \(concurrentStarts.map { "<ConcurrentStarts>\($0)</ConcurrentStarts>" } ?? "")
                  \(tlsElements)
                </Config>
                """.write(toFile: root + "/docker_server_\(host).xml", atomically: true, encoding: .utf8)
        }
        do {
            for host in Self.hosts {
                try launchAgent(host)
            }
            try startManager()
            for address in Self.hosts.map({ HostPort(host: $0, port: communicationPort) }) + [managerAddress] {
                try await Self.waitListening(address)
            }
        } catch {
            // A cluster that did not come up leaves nothing running, and its daemons' logs say why.
            let tails = (["manager"] + Self.hosts.map { "agent-\($0)" }).compactMap { name -> String? in
                guard let text = try? String(contentsOfFile: root + "/\(name).log", encoding: .utf8), !text.isEmpty else { return nil }
                return "\(name).log: " + text.split(separator: "\n").suffix(3).joined(separator: " | ")
            }
            shutdown()
            throw TestSetupError(([String(describing: error)] + tails).joined(separator: "; "))
        }
    }

    func home(_ user: String) -> String { root + "/home/" + user }

    /// The account that owns a user's home and that the user's units run as: one per name.
    static func account(_ user: String) -> UnixAccount {
        let id = 20_000 + UInt32(user.utf8.reduce(0) { ($0 &* 31 &+ UInt32($1)) % 10_000 })
        return UnixAccount(uid: id, gid: id)
    }

    /// Hands what a test wrote into a home (as root) to the user, as the user's own uploads would be.
    func handHomeToUser(_ user: String) throws {
        let account = Self.account(user)
        try DockerTestSupport.run("/bin/chown", ["-R", account.description, home(user)])
    }

    private var manager: Process?

    private func startManager() throws {
        manager = try launch(
            "berth-manager",
            ["serve", "--config", serverConfig, "--users", usersConfig, "--state-dir", root + "/state", "--reconcile-seconds", "1"],
            log: "manager")
    }

    /// The resident memory of the manager, or of the agent on `host`, in bytes.
    func residentBytes(ofAgent host: String? = nil) -> Int {
        memoryFigure("VmRSS:", ofAgent: host)
    }

    /// The most resident memory the manager, or the agent on `host`, has had so far, in bytes.
    func peakResidentBytes(ofAgent host: String? = nil) -> Int {
        memoryFigure("VmHWM:", ofAgent: host)
    }

    /// Starts the peak of `peakResidentBytes` afresh from now (Linux: `5` to `clear_refs`).
    func resetPeakResidentBytes(ofAgent host: String? = nil) {
        guard let pid = host.map({ agents[$0]?.processIdentifier }) ?? manager?.processIdentifier else { return }
        try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }

    private func memoryFigure(_ field: String, ofAgent host: String?) -> Int {
        guard let pid = host.map({ agents[$0]?.processIdentifier }) ?? manager?.processIdentifier,
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }

    /// SIGHUP: the manager re-reads docker_user.xml.
    func reloadManager() {
        if let manager { kill(manager.processIdentifier, SIGHUP) }
    }

    /// SIGHUP to the agent on `host`: it re-reads its TLS files.
    func reloadAgent(_ host: String) {
        if let agent = agents[host] { kill(agent.processIdentifier, SIGHUP) }
    }

    private func launchAgent(_ host: String) throws {
        agents[host] = try launch("berth-agent", ["serve", "--config", root + "/docker_server_\(host).xml"], log: "agent-\(host)")
    }

    func agent(_ host: String) -> HostPort { HostPort(host: host, port: communicationPort) }

    /// `kill -9` of the agent on `host`; it stays down until `startAgent`.
    func killAgentHard(_ host: String) {
        guard let agent = agents[host] else { return }
        kill(agent.processIdentifier, SIGKILL)
        agent.waitUntilExit()
    }

    func startAgent(_ host: String) async throws {
        try launchAgent(host)
        try await Self.waitListening(agent(host))
    }

    func isAgentRunning(_ host: String) -> Bool { agents[host]?.isRunning == true }

    /// `kill -9` of the manager, then a new one on the same state directory.
    func restartManagerHard() async throws {
        if let manager {
            kill(manager.processIdentifier, SIGKILL)
            manager.waitUntilExit()
        }
        try startManager()
        try await Self.waitListening(managerAddress)
    }

    @discardableResult
    private func launch(_ binary: String, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binaries + "/" + binary)
        process.arguments = arguments
        // A restarted daemon appends to its predecessor's log.
        if !FileManager.default.fileExists(atPath: root + "/\(log).log") {
            FileManager.default.createFile(atPath: root + "/\(log).log", contents: nil)
        }
        let output = FileHandle(forWritingAtPath: root + "/\(log).log")
        output?.seekToEndOfFile()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        processes.append(process)
        return process
    }

    /// Stops every daemon and removes whatever containers and networks this cluster's users still
    /// have. Synchronous (curl over the socket) because it runs from a test suite's `deinit`, where
    /// waiting for a task could starve Swift's cooperative threads.
    /// Stops the daemons and removes what the cluster made. A daemon that crashes, or does not
    /// exit within 15 s of SIGTERM (one stuck in its crash handler), fails the test that owns
    /// the cluster, and the cluster's folder, with the daemons' logs, is kept.
    func shutdown() {
        for process in processes where process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(15)
        var keep = false
        for process in processes {
            let name = process.arguments?.first(where: { $0.hasSuffix(".xml") }).map { "the daemon of \($0)" } ?? "a daemon"
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                Issue.record("\(name) did not exit within 15 s of SIGTERM; logs kept in \(root)")
                keep = true
            } else if process.terminationReason == .uncaughtSignal, [SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE].contains(process.terminationStatus) {
                Issue.record("\(name) crashed (signal \(process.terminationStatus)); logs kept in \(root)")
                keep = true
            }
        }
        for host in Self.hosts {
            let agent = "\(host):\(communicationPort)"
            for id in DockerTestSupport.containerIDsSync(label: "\(UnitLabel.host)=\(agent)") {
                DockerTestSupport.curlSync(["-X", "DELETE", "http://docker/containers/\(id)?force=1"])
            }
            for user in units.keys {
                DockerTestSupport.curlSync(["-X", "DELETE", "http://docker/networks/berth-\(user)-\(host)-\(communicationPort)"])
            }
        }
        if !keep { try? FileManager.default.removeItem(atPath: root) }
    }

    /// Runs `berth` with this cluster's session file for `user`.
    /// `berth` as `user` runs it, in `directory` when given (relative paths are read from there).
    func berth(
        _ arguments: [String], user: String, stdin: String? = nil, environment: [String: String] = [:], in directory: String? = nil
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await Self.run(
            "berth", arguments, environment: environment.merging(["BERTH_SESSION": root + "/session-\(user).json"]) { $1 }, stdin: stdin,
            in: directory)
    }

    /// Runs `berth` as the user's own account, as every real user runs it: a copy of the binary
    /// (the build folder may lie where others cannot reach), with HOME and the session in a
    /// folder of the account's own, and the cluster's CA where the account can read it.
    func berth(asAccountOf user: String, _ arguments: [String], stdin: String? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
        let account = Self.account(user)
        let place = root + "/as-\(account.uid)"
        let home = place + "/home"
        if !FileManager.default.fileExists(atPath: home) {
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            chmod(place, 0o755)
            try FileManager.default.copyItem(atPath: Self.binaries + "/berth", toPath: place + "/berth")
            if tls { try FileManager.default.copyItem(atPath: caFile, toPath: place + "/ca.crt") }
            try DockerTestSupport.run("/bin/chown", ["-R", account.description, home])
            chmod(home, 0o700)
        }
        let ca = tls && arguments.first == "login" ? ["--ca", place + "/ca.crt"] : []
        return try await Self.run(
            "/usr/bin/setpriv", ["--reuid=\(account.uid)", "--regid=\(account.gid)", "--clear-groups", place + "/berth"] + arguments + ca,
            environment: ["HOME": home, "BERTH_SESSION": home + "/session.json"], stdin: stdin)
    }

    /// Runs one of the built binaries (or a program by its full path) and collects what it prints. The wait happens on a thread of
    /// its own: Swift's pool has one thread per core, and tests that block them stall every other
    /// test's tasks (and their timing) until they are done.
    static func run(
        _ binary: String, _ arguments: [String], environment extra: [String: String] = [:], stdin: String? = nil, in directory: String? = nil
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await Background.run { try runHere(binary, arguments, environment: extra, stdin: stdin, in: directory) }
    }

    private static func runHere(
        _ binary: String, _ arguments: [String], environment extra: [String: String], stdin: String?, in directory: String?
    ) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary.hasPrefix("/") ? binary : binaries + "/" + binary)
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    func login(_ user: String, password: String = ClusterFixture.password, force: Bool = false) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await berth(
            ["login", "--server", managerAddress.description, "--user", user, "--password-stdin"] + (force ? ["--force"] : [])
                + (tls ? ["--ca", caFile] : []), user: user, stdin: password + "\n")
    }

    func expectLogin(_ user: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let result = try await login(user)
        #expect(result.status == 0, "login \(user) failed: \(result.stderr)", sourceLocation: sourceLocation)
    }

    /// The user's unit containers in this cluster (other clusters may run the same user names).
    func containers(of user: String) async throws -> [ContainerInspect] {
        let client = DockerTestSupport.client
        var result: [ContainerInspect] = []
        let agents = Set(Self.hosts.map { "\($0):\(communicationPort)" })
        for summary in try await client.listContainers(all: true, labels: ["\(UnitLabel.user)=\(user)"])
        where agents.contains(summary.labels?[UnitLabel.host] ?? "") {
            do {
                result.append(try await client.inspectContainer(summary.id))
            } catch EngineError.notFound {
                // Removed between the listing and now: not there.
            }
        }
        return result.sorted { ($0.config.labels?[UnitLabel.unit] ?? "") < ($1.config.labels?[UnitLabel.unit] ?? "") }
    }

    static func portFreeOnAllHosts() throws -> Int {
        for _ in 0..<50 {
            let port = try DockerTestSupport.freePort()
            if hosts.allSatisfy({ DockerTestSupport.canBind(host: $0, port: port) }) { return port }
        }
        throw TestSetupError("no port free on every test host")
    }

    static func waitListening(_ address: HostPort) async throws {
        for _ in 0..<300 {
            if DockerTestSupport.canConnect(host: address.host, port: address.port) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSetupError("nothing listens on \(address)")
    }
}

/// A blocking call on a thread of its own, so the cooperative pool stays free meanwhile.
enum Background {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }
}
