import BerthAPI
import BerthCore
import BerthPasswords
import EngineAPI
import HTTPClient
import Foundation
import Testing

/// The esProc design's login / work / logout cycle through the real binaries: a manager on
/// 127.0.0.1, agents on 127.0.0.2 and 127.0.0.3, the real engine underneath.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
final class ClusterTests {
    let cluster: ClusterFixture

    init() async throws {
        cluster = try await ClusterFixture()
    }

    deinit {
        cluster.shutdown()
    }

    @Test func loginStartsEveryUnitAsTheAdminConfiguredItAndLogoutKeepsFiles() async throws {
        let units = cluster.units["aaa"]!
        let login = try await cluster.login("aaa")
        #expect(login.status == 0, "\(login.stderr)")
        #expect(login.stdout.contains("logged in as aaa: 2 units ready"))
        for unit in units { #expect(login.stderr.contains("unit \(unit)  ready")) }

        let containers = try await cluster.containers(of: "aaa")
        #expect(containers.count == 2)
        for (container, unit) in zip(containers, units) {
            let host = container.hostConfig
            #expect(host.memory == 64 << 20)
            #expect(host.cpuShares == 512)
            #expect(host.`init` == true)
            #expect(host.binds?.contains("\(cluster.share):/share:ro") == true)
            #expect(host.binds?.contains("\(cluster.home("aaa")):/app") == true)
            #expect(host.portBindings?["\(unit.port)/tcp"] == [PortBinding(hostIp: unit.host, hostPort: String(unit.port))])
            #expect(host.securityOpt?.contains("no-new-privileges") == true)
            let labels = container.config.labels ?? [:]
            #expect(labels[UnitLabel.user] == "aaa")
            #expect(labels[UnitLabel.unit] == unit.description)
            #expect(labels[UnitLabel.host] == "\(unit.host):\(cluster.communicationPort)")
            #expect(labels[UnitLabel.session]?.isEmpty == false)
            #expect(container.mounts?.first { $0.destination == "/share" }?.rw == false)
            #expect(container.mounts?.first { $0.destination == "/app" }?.rw == true)
            // Reached on its own ip:port, serving the admin's template.
            let banner = try await DockerTestSupport.readBanner(host: unit.host, port: unit.port)
            #expect(banner == "unit aaa \(unit) memory 64m\n")
        }
        for sub in ["script", "data", "config"] {
            #expect(FileManager.default.fileExists(atPath: cluster.home("aaa") + "/" + sub))
        }

        let status = try await cluster.berth(["status", "--json"], user: "aaa")
        #expect(status.status == 0, "\(status.stderr)")
        let parsed = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect(parsed?["user"] as? String == "aaa")
        let listed = (parsed?["units"] as? [[String: Any]]) ?? []
        #expect(listed.map { $0["unit"] as? String } == units.map(\.description))
        #expect(listed.allSatisfy { $0["state"] as? String == "running" })
        // Each running unit's use: memory against its limit; CPU while a busy loop runs in one.
        #expect(listed.allSatisfy { ($0["memory_bytes"] as? Int ?? 0) > 0 && $0["memory_limit_bytes"] as? Int == 64 << 20 }, "\(listed)")
        let busy = try await cluster.berth(
            ["exec", "--unit", units[0].description, "--", "sh", "-c", "timeout 30 sh -c 'while :; do :; done' >/dev/null 2>&1 &"], user: "aaa")
        #expect(busy.status == 0, "\(busy.stderr)")
        let loaded = try await cluster.berth(["status", "--json"], user: "aaa")
        let loadedUnits = ((try JSONSerialization.jsonObject(with: Data(loaded.stdout.utf8)) as? [String: Any])?["units"] as? [[String: Any]]) ?? []
        // Above an idle unit's nothing: how far above depends on what else the host runs (8.9 %
        // once, beside other work on 2 cores).
        #expect((loadedUnits.first?["cpu_percent"] as? Double ?? 0) > 1, "\(loadedUnits)")
        let table = try await cluster.berth(["status"], user: "aaa")
        #expect(table.stdout.contains("CPU") && table.stdout.contains("/ 64MiB ("), "\(table.stdout)")

        // The home is writable from inside, the share is not.
        let write = try await cluster.berth(["exec", "--unit", units[0].description, "--", "sh", "-c", "echo kept > /app/data/result.txt"], user: "aaa")
        #expect(write.status == 0, "\(write.stderr)")
        let denied = try await cluster.berth(["exec", "--unit", units[1].description, "--", "touch", "/share/x"], user: "aaa")
        #expect(denied.status != 0)
        #expect(denied.stderr.contains("Read-only file system"))
        let read = try await cluster.berth(["exec", "--unit", units[1].description, "--", "cat", "/share/readme.txt"], user: "aaa")
        #expect(read.stdout == "shared\n")

        let logout = try await cluster.berth(["logout"], user: "aaa")
        #expect(logout.status == 0, "\(logout.stderr)")
        #expect(try await cluster.containers(of: "aaa").isEmpty)
        let kept = try String(contentsOfFile: cluster.home("aaa") + "/data/result.txt", encoding: .utf8)
        #expect(kept == "kept\n")
        // Each unit's log was saved into the home before its container went.
        let saved = try FileManager.default.contentsOfDirectory(atPath: cluster.home("aaa") + "/logs")
        #expect(Set(saved.map { $0.split(separator: "-").prefix(2).joined(separator: ":") }) == Set(units.map(\.description)))
        let after = try await cluster.berth(["status"], user: "aaa")
        #expect(after.status != 0)
        #expect(after.stderr.hasPrefix("error: not logged in"))
    }

    @Test func secondLoginIsRefusedUnlessForced() async throws {
        try await cluster.expectLogin("bbb")
        let firstSession = try await cluster.containers(of: "bbb").first?.config.labels?[UnitLabel.session]
        let second = try await cluster.login("bbb")
        #expect(second.status != 0)
        #expect(second.stderr.contains("error: bbb is already logged in since"))
        #expect(second.stderr.contains("--force"))

        let forced = try await cluster.login("bbb", force: true)
        #expect(forced.status == 0, "\(forced.stderr)")
        let containers = try await cluster.containers(of: "bbb")
        #expect(containers.count == 1)
        #expect(containers.first?.config.labels?[UnitLabel.session] != firstSession)
        #expect(try await cluster.berth(["logout"], user: "bbb").status == 0)
    }

    @Test func wrongPasswordAndUnknownUserLookTheSame() async throws {
        let wrong = try await cluster.login("ccc", password: "not-the-password")
        let unknown = try await cluster.login("nobody", password: "whatever")
        #expect(wrong.status != 0 && unknown.status != 0)
        #expect(wrong.stderr == "error: wrong user name or password\n")
        #expect(unknown.stderr == wrong.stderr)
    }

    /// 20 wrong passwords for ccc from another client's address lock ccc there only: its owner,
    /// here, still logs in; the attacker is told it is locked, with no time to plan by.
    @Test func wrongPasswordsLockTheNameForTheirAddressOnly() async throws {
        let url = "http://\(cluster.managerAddress.host):\(cluster.managerAddress.port)/v1/login"
        func attempt(_ password: String) async throws -> String {
            try await Background.run {
                try DockerTestSupport.run("/usr/bin/curl", [
                    "-s", "--max-time", "10", "--interface", "127.0.0.9", "-H", "Content-Type: application/json",
                    "--data", #"{"user":"ccc","password":"\#(password)","force":false}"#, url,
                ])
            }
        }
        for index in 0..<20 {
            let answer = try await attempt("guess")
            #expect(answer.contains(index < 5 ? #""message":"wrong user name or password""# : #""message":"too many failed logins"#), "\(answer)")
        }
        #expect(try await attempt(ClusterFixture.password).contains(#""message":"too many failed logins for this name from 127.0.0.9; try again later""#))
        let owner = try await cluster.login("ccc")
        #expect(owner.status == 0, "\(owner.stderr)")
        #expect(try await cluster.berth(["logout"], user: "ccc").status == 0)
    }

    @Test func garbageOnTheManagerPortGetsAnErrorAndServiceGoesOn() async throws {
        for garbage in ["GARBAGE\r\n\r\n", "POST /v1/login HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n{", "\u{0}\u{1}\u{2}\r\n\r\n"] {
            let answer = try DockerTestSupport.exchange(host: cluster.managerAddress.host, port: cluster.managerAddress.port, send: garbage)
            #expect(answer.isEmpty || answer.hasPrefix("HTTP/1.1 4"), "\(answer)")
        }
        let wrongShape = try DockerTestSupport.exchange(
            host: cluster.managerAddress.host, port: cluster.managerAddress.port,
            send: "POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"user\": 42}")
        #expect(wrongShape.hasPrefix("HTTP/1.1 400"), "\(wrongShape)")
        let wrong = try await cluster.login("ddd", password: "nope")
        #expect(wrong.stderr == "error: wrong user name or password\n")
    }

    @Test func oneUsersContainerCannotReachAnothers() async throws {
        try await cluster.expectLogin("aaa")
        try await cluster.expectLogin("ddd")
        let unit = cluster.units["aaa"]![0]
        let target = try await cluster.containers(of: "aaa").first { $0.config.labels?[UnitLabel.unit] == unit.description }
        let address = try #require(target?.networkSettings?.networks?["berth-aaa-\(unit.host)-\(cluster.communicationPort)"]?.ipAddress)
        // The address serves (from the host), so a refusal below is the isolation, not a dead port.
        let banner = try await DockerTestSupport.readBanner(host: address, port: unit.port)
        #expect(banner.hasPrefix("unit aaa"))
        let ddd = cluster.units["ddd"]![0]
        #expect(ddd.host == unit.host)
        let probe = try await cluster.berth(["exec", "--unit", ddd.description, "--", "sh", "-c", "nc -w 2 \(address) \(unit.port) </dev/null"], user: "ddd")
        #expect(probe.status != 0, "ddd reached aaa's container at \(address):\(unit.port): \(probe.stdout)")
        #expect(!probe.stdout.contains("unit aaa"))
        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)
        #expect(try await cluster.berth(["logout"], user: "ddd").status == 0)
    }

    @Test func aPortHeldByAnotherProcessRollsTheWholeLoginBack() async throws {
        let blocked = cluster.units["ccc"]![1]
        let holder = try PortHolder(host: blocked.host, port: blocked.port)
        defer { holder.close() }
        let login = try await cluster.login("ccc")
        #expect(login.status != 0)
        #expect(login.stderr.contains("unit \(blocked): port in use"), "\(login.stderr)")
        #expect(login.stderr.contains("nothing was left running"))
        #expect(try await cluster.containers(of: "ccc").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: cluster.root + "/session-ccc.json"))
    }

    @Test func logsShowEachStreamAndRespectTail() async throws {
        try await cluster.expectLogin("ddd")
        let unit = cluster.units["ddd"]![0]
        let container = try #require(try await cluster.containers(of: "ddd").first)
        let exec = try await DockerTestSupport.client.exec(container: container.id, config: ExecConfig(cmd: ["true"]))
        #expect(exec.exitCode == 0)
        let logs = try await cluster.berth(["logs", "--unit", unit.description, "--tail", "5", "--timestamps"], user: "ddd")
        #expect(logs.status == 0, "\(logs.stderr)")
        let refused = try await cluster.berth(["logs", "--unit", cluster.units["aaa"]![0].description], user: "ddd")
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("is not one of your units"))
        let badSince = try await cluster.berth(["logs", "--since", "yesterday-ish"], user: "ddd")
        #expect(badSince.stderr.hasPrefix("error: --since yesterday-ish:"))
        #expect(try await cluster.berth(["logout"], user: "ddd").status == 0)
    }

    @Test func anAgentThatDoesNotAnswerIsNamedAndNothingIsLeft() async throws {
        let login = try await cluster.login("eee")
        #expect(login.status != 0)
        #expect(login.stderr.contains("agent \(ClusterFixture.absentHost):\(cluster.communicationPort) is not reachable"), "\(login.stderr)")
        #expect(try await cluster.containers(of: "eee").isEmpty)
    }

    @Test func checkConfigReportsEveryProblemWithItsLine() async throws {
        let ok = try await ClusterFixture.run("berth-manager", ["check-config", "--config", cluster.serverConfig, "--users", cluster.usersConfig])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.hasPrefix("ok: 5 users"))
        let bad = cluster.root + "/bad_user.xml"
        try """
            <Users>
              <User><Name>aaa</Name><Pwd>x</Pwd><Memory>1.5g</Memory><CPU>1</CPU><Home>relative</Home><Unit>127.0.0.2:\(cluster.communicationPort)</Unit></User>
            </Users>
            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let result = try await ClusterFixture.run("berth-manager", ["check-config", "--config", cluster.serverConfig, "--users", bad])
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("\(bad):2: ") && !$0.contains("warning:") }
        #expect(lines.count >= 4, "\(result.stderr)")
    }

    @Test func hashPasswordMakesAHashTheManagerAccepts() async throws {
        let result = try await ClusterFixture.run("berth-manager", ["hash-password"], stdin: "correct horse\n")
        #expect(result.status == 0)
        let hash = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(PasswordHash.verify("correct horse", against: hash))
        #expect(!PasswordHash.verify("correct horse ", against: hash))
        let empty = try await ClusterFixture.run("berth-manager", ["hash-password"], stdin: "")
        #expect(empty.status != 0)
        #expect(empty.stderr.hasPrefix("error: no password on stdin"))
    }

    @Test func sighupReloadsUsersAndKeepsTheOldListWhenTheNewOneIsBad() async throws {
        let original = try String(contentsOfFile: cluster.usersConfig, encoding: .utf8)
        // A broken file: the manager says so in its log and keeps serving the old users.
        try "<Users><User><Name>zzz</Name></User>".write(toFile: cluster.usersConfig, atomically: true, encoding: .utf8)
        cluster.reloadManager()
        try await Task.sleep(for: .milliseconds(500))
        let wrong = try await cluster.login("ddd", password: "nope")
        #expect(wrong.stderr == "error: wrong user name or password\n")
        try await cluster.expectLogin("ddd")
        #expect(try await cluster.berth(["logout"], user: "ddd").status == 0)
        let log = try String(contentsOfFile: cluster.root + "/manager.log", encoding: .utf8)
        #expect(log.contains("reload refused"), "\(log)")

        // A good file without ddd: ddd can no longer log in.
        let withoutDDD = original.replacingOccurrences(
            of: #"(?s)<User>\s*<Name>ddd</Name>.*?</User>"#, with: "", options: .regularExpression)
        #expect(withoutDDD != original)
        try withoutDDD.write(toFile: cluster.usersConfig, atomically: true, encoding: .utf8)
        cluster.reloadManager()
        try await Task.sleep(for: .milliseconds(500))
        let gone = try await cluster.login("ddd")
        #expect(gone.stderr == "error: wrong user name or password\n", "\(gone.stderr)")
        try original.write(toFile: cluster.usersConfig, atomically: true, encoding: .utf8)
        cluster.reloadManager()
    }

    @Test func aManagerKilledAndRestartedKeepsEverySession() async throws {
        try await cluster.expectLogin("bbb")
        try await cluster.restartManagerHard()
        let status = try await cluster.berth(["status", "--json"], user: "bbb")
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("\"running\""))
        let again = try await cluster.login("bbb")
        #expect(again.stderr.contains("already logged in"))
        // The reconciler adopted the session's container rather than removing it.
        try await Task.sleep(for: .seconds(3))
        #expect(try await cluster.containers(of: "bbb").count == 1)
        #expect(try await cluster.berth(["logout"], user: "bbb").status == 0)
    }

    @Test func aLabelledContainerNoSessionOwnsIsRemoved() async throws {
        let unit = cluster.units["ccc"]![0]
        let client = DockerTestSupport.client
        // What a login cut short by a crash leaves: a unit container of a session that never was.
        let orphan = try await client.createContainer(config: ContainerConfig(
            image: DockerTestSupport.image, cmd: ["sleep", "300"],
            labels: [UnitLabel.user: "ccc", UnitLabel.unit: unit.description, UnitLabel.session: "never-saved",
                     UnitLabel.host: "\(unit.host):\(cluster.communicationPort)", DockerTestSupport.testLabel: "1"]))
        try await client.startContainer(orphan.id)
        var gone = false
        for _ in 0..<40 where !gone {
            try await Task.sleep(for: .milliseconds(250))
            gone = (try? await client.inspectContainer(orphan.id)) == nil
        }
        #expect(gone, "the orphan container was not removed within 10 s")
        let audit = try String(contentsOfFile: cluster.root + "/state/audit.jsonl", encoding: .utf8)
        #expect(audit.contains("\"event\":\"unit.orphan_removed\""))
    }

    /// What an earlier session or an admin left behind on a unit's name, port or network, as the
    /// agent finds it at the next login: the user's own leftovers go, a stranger's are refused.
    @Test func leftoversUnderAUnitsNamePortOrNetworkAreClearedOrNamed() async throws {
        let unit = cluster.units["bbb"]![0]
        let client = DockerTestSupport.client
        let name = "berth-bbb-\(unit.host)-\(unit.port)"
        let agentLog = cluster.root + "/agent-\(unit.host).log"
        // Without berth.host, so the manager's reconciler does not remove them first.
        let usersOwn = [UnitLabel.user: "bbb", UnitLabel.unit: unit.description, UnitLabel.session: "earlier", DockerTestSupport.testLabel: "1"]
        func staleRemovals() -> Int {
            ((try? String(contentsOfFile: agentLog, encoding: .utf8)) ?? "").components(separatedBy: "removing stale unit container").count - 1
        }

        // The user's container of an earlier session, running under the unit's name and holding its port.
        let spec = "\(unit.port)/tcp"
        let holder = try await client.createContainer(name: name, config: ContainerConfig(
            image: DockerTestSupport.image, cmd: ["sleep", "300"], labels: usersOwn, exposedPorts: [spec: EmptyObject()],
            hostConfig: HostConfig(portBindings: [spec: [PortBinding(hostIp: unit.host, hostPort: String(unit.port))]])))
        try await client.startContainer(holder.id)
        try await cluster.expectLogin("bbb")
        #expect((try? await client.inspectContainer(holder.id)) == nil)
        #expect(staleRemovals() == 1)
        #expect(try await DockerTestSupport.readBanner(host: unit.host, port: unit.port).hasPrefix("unit bbb"))
        #expect(try await cluster.berth(["logout"], user: "bbb").status == 0)

        // A stopped one under the unit's name.
        let stopped = try await client.createContainer(name: name, config: ContainerConfig(image: DockerTestSupport.image, cmd: ["true"], labels: usersOwn))
        try await cluster.expectLogin("bbb")
        #expect((try? await client.inspectContainer(stopped.id)) == nil)
        #expect(staleRemovals() == 2)
        #expect(try await cluster.berth(["logout"], user: "bbb").status == 0)

        // The user's network, removed behind the agent's back after it last used it.
        let network = "berth-bbb-\(unit.host)-\(cluster.communicationPort)"
        try await client.removeNetwork(network)
        try await cluster.expectLogin("bbb")
        #expect(try await client.inspectNetwork(network).labels?[UnitLabel.user] == "bbb")
        #expect(try await DockerTestSupport.readBanner(host: unit.host, port: unit.port).hasPrefix("unit bbb"))
        #expect(try await cluster.berth(["logout"], user: "bbb").status == 0)

        // Someone else's container under the unit's name: the login is refused, naming it, and it stays.
        let foreign = try await client.createContainer(name: name, config: ContainerConfig(
            image: DockerTestSupport.image, cmd: ["true"], labels: [DockerTestSupport.testLabel: "1"]))
        let refused = try await cluster.login("bbb")
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("a container named \(name) exists and is not this user's Berth unit; remove it"), "\(refused.stderr)")
        #expect((try? await client.inspectContainer(foreign.id)) != nil)
        try await client.removeContainer(foreign.id, force: true)
    }

    @Test func agentsRefuseUnsignedAndReplayedRequests() async throws {
        let agent = HostPort(host: ClusterFixture.hosts[0], port: cluster.communicationPort)
        let start = StartUnitRequest(
            user: "aaa", session: "forged", unit: cluster.units["aaa"]![0], memory: try MemorySpec(parsing: "64m"), cpu: 512, home: cluster.home("aaa"), unitSecret: "x")
        let unsigned = ServiceClient(address: agent, name: "agent", transport: Transport.self)
        await #expect(throws: ServiceError.self) {
            _ = try await unsigned.call("POST", "/v1/units/start", body: start, as: UnitStatus.self)
        }
        let wrongKey = ServiceClient(address: agent, name: "agent", signer: RequestSigner(secret: Array("wrong".utf8)), transport: Transport.self)
        do {
            _ = try await wrongKey.call("GET", "/v1/units", as: UnitList.self)
            Issue.record("a request signed with the wrong key was accepted")
        } catch ServiceError.refused(let status, _) {
            #expect(status == 401)
        }

        // A correctly signed request, captured and sent again, is refused the second time.
        let signer = RequestSigner(secret: cluster.secret)
        let headers = signer.headers(method: "GET", target: "/v1/units", audience: agent.description, body: Data())
        let transport = Transport(endpoint: EngineEndpoint(.tcp(host: agent.host, port: agent.port)))
        let request = HTTPRequest(method: "GET", path: "/v1/units", headers: headers, timeout: .seconds(5))
        #expect(try await transport.send(request).status == 200)
        #expect(try await transport.send(request).status == 401)
        #expect(try await cluster.containers(of: "aaa").isEmpty)
    }
}

/// Holds a TCP port the way a stray process would.
final class PortHolder {
    private let fd: Int32

    init(host: String, port: Int) throws {
        guard let fd = TestSocket.open(host: host, port: port, connect: false), listen(fd, 4) == 0 else {
            throw TestSetupError("cannot hold \(host):\(port)")
        }
        self.fd = fd
    }

    func close() { Glibc.close(fd) }
}
