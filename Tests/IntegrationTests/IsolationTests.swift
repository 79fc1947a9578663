import BerthAPI
import BerthCore
import HTTPClient
import EngineAPI
import Foundation
import Synchronization
import Testing

/// A logged-in user attacks the host through what the agent does as root, and through what a
/// unit may do: every attack here worked before Berth confined both.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
final class IsolationTests {
    let cluster: ClusterFixture
    /// A root-owned directory on the host that no user may write into or own.
    let victim: String

    init() async throws {
        cluster = try await ClusterFixture(
            users: [("aaa", ClusterFixture.hosts), ("bbb", [ClusterFixture.hosts[1]])],
            templateFields: #", "StopSignal": "SIGUSR1", "HostConfig": {"ShmSize": 134217728, "Ulimits": [{"Name": "nofile", "Soft": 1000, "Hard": 2000}]}"#)
        victim = cluster.root + "/victim"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try "root's\n".write(toFile: victim + "/file", atomically: false, encoding: .utf8)
    }

    deinit {
        cluster.shutdown()
    }

    /// Owner and mode of a path, not following a final symlink.
    static func owner(_ path: String) -> (uid: UInt32, gid: UInt32, mode: UInt32)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (info.st_uid, info.st_gid, UInt32(info.st_mode & 0o7777))
    }

    func victimIsUntouched(sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try FileManager.default.contentsOfDirectory(atPath: victim) == ["file"], sourceLocation: sourceLocation)
        #expect(try String(contentsOfFile: victim + "/file", encoding: .utf8) == "root's\n", sourceLocation: sourceLocation)
        #expect(Self.owner(victim)?.uid == 0 && Self.owner(victim)?.mode == 0o700, sourceLocation: sourceLocation)
        #expect(Self.owner(victim + "/file")?.uid == 0, sourceLocation: sourceLocation)
    }

    func exec(_ user: String, _ script: String, unit: Int = 0) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await cluster.berth(["exec", "--unit", cluster.units[user]![unit].description, "--", "sh", "-c", script], user: user)
    }

    @Test func aUnitRunsAsTheHomesOwnerWithNoCapabilityAndCannotMakeDevices() async throws {
        try await cluster.expectLogin("aaa")
        let account = ClusterFixture.account("aaa")
        let ids = try await exec("aaa", "id -u; id -g")
        #expect(ids.stdout == "\(account.uid)\n\(account.gid)\n", "\(ids.stderr)")
        let status = try await exec("aaa", "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status")
        #expect(status.stdout.contains("CapEff:\t0000000000000000"), "\(status.stdout)")
        #expect(status.stdout.contains("CapPrm:\t0000000000000000"), "\(status.stdout)")
        #expect(status.stdout.contains("CapBnd:\t0000000000000000"), "\(status.stdout)")
        #expect(status.stdout.contains("NoNewPrivs:\t1"), "\(status.stdout)")
        let mknod = try await exec("aaa", "mknod /app/mem c 1 1")
        #expect(mknod.status != 0)
        #expect(!FileManager.default.fileExists(atPath: cluster.home("aaa") + "/mem"))

        let container = try #require(try await cluster.containers(of: "aaa").first)
        #expect(container.hostConfig.pidsLimit == 1024)
        #expect(container.config.user == account.description)
        let raw = try await DockerTestSupport.inspectRaw(container.id)
        let host = raw["HostConfig"] as? [String: Any] ?? [:]
        #expect(host["CapDrop"] as? [String] == ["ALL"])
        let logConfig = host["LogConfig"] as? [String: Any]
        #expect(logConfig?["Type"] as? String == "json-file")
        #expect((logConfig?["Config"] as? [String: String])?["max-size"] == "10m")
        // The template's fields that Berth has no model of reach Docker as written.
        #expect(host["ShmSize"] as? Int == 134_217_728)
        let ulimits = host["Ulimits"] as? [[String: Any]]
        #expect(ulimits?.first?["Name"] as? String == "nofile" && ulimits?.first?["Hard"] as? Int == 2000)
        #expect((raw["Config"] as? [String: Any])?["StopSignal"] as? String == "SIGUSR1")
        _ = try await cluster.berth(["logout"], user: "aaa")
    }

    @Test func aLogsSymlinkAtLogoutSendsTheLogToTheAgentsDirectoryAndWritesNothingThrough() async throws {
        try await cluster.expectLogin("aaa")
        let link = try await exec("aaa", "rm -rf /app/logs && ln -s \(victim) /app/logs")
        #expect(link.status == 0, "\(link.stderr)")
        let logout = try await cluster.berth(["logout"], user: "aaa")
        #expect(logout.status == 0, "\(logout.stderr)")

        try victimIsUntouched()
        let fallback = cluster.root + "/agent-logs/units/aaa"
        let saved = try FileManager.default.contentsOfDirectory(atPath: fallback)
        #expect(Set(saved.map { $0.split(separator: "-").prefix(2).joined(separator: ":") }) == Set(cluster.units["aaa"]!.map(\.description)))
        let audit = try String(contentsOfFile: cluster.root + "/state/audit.jsonl", encoding: .utf8)
        #expect(audit.contains("\"event\":\"unit.log_not_in_home\""))
        #expect(audit.contains("logs is a symbolic link"))
    }

    /// The user flips `logs` between a directory and a symlink to the victim while logouts save
    /// the logs (the same directory entries the user reaches through /app, flipped from the host
    /// to flip faster). The agent's own tests run the same race 200 times on its log saving alone.
    @Test func flippingLogsDuringLogoutsNeverWritesOrChownsOutsideTheHome() async throws {
        let home = cluster.home("bbb")
        let flipper = Flipper(home: home, victim: victim)
        Thread.detachNewThread { flipper.run() }
        defer { _ = flipper.finish() }
        var logouts = 0
        for _ in 0..<30 where logouts < 6 {
            let login = try await cluster.login("bbb")
            guard login.status == 0 else {
                // The flip caught the login itself: a home whose logs is a link, or is gone for the
                // moment between the flipper's remove and its next create, is refused, as it must be.
                #expect(
                    login.stderr.contains("logs is not a directory") || login.stderr.contains("symbolic link")
                        || login.stderr.contains("logs does not exist"), "\(login.stderr)")
                continue
            }
            let logout = try await cluster.berth(["logout"], user: "bbb")
            #expect(logout.status == 0, "\(logout.stderr)")
            logouts += 1
        }
        #expect(logouts >= 3, "only \(logouts) logins got through the flipping")
        let flips = flipper.finish()
        #expect(flips > 100, "the flipper hardly ran: \(flips) flips")
        try victimIsUntouched()
    }

    @Test func symlinkedScriptAndDataBeforeLoginLeaveTheirTargetsAlone() async throws {
        let home = cluster.home("aaa")
        for sub in ["script", "data", "config", "logs"] {
            try? FileManager.default.removeItem(atPath: home + "/" + sub)
        }
        try FileManager.default.createSymbolicLink(atPath: home + "/script", withDestinationPath: victim)
        try FileManager.default.createSymbolicLink(atPath: home + "/data", withDestinationPath: "/etc")
        let etc = Self.owner("/etc")
        try await cluster.expectLogin("aaa")
        _ = try await cluster.berth(["logout"], user: "aaa")
        try victimIsUntouched()
        #expect(Self.owner("/etc")?.uid == etc?.uid && Self.owner("/etc")?.mode == etc?.mode)
        // The missing ones were made, the user's own.
        #expect(Self.owner(home + "/config")?.uid == ClusterFixture.account("aaa").uid)
        try FileManager.default.removeItem(atPath: home + "/script")
        try FileManager.default.removeItem(atPath: home + "/data")
    }

    @Test func aRootOwnedHomeIsRefusedWithTheFix() async throws {
        let home = cluster.home("bbb")
        chown(home, 0, 0)
        defer { chown(home, ClusterFixture.account("bbb").uid, ClusterFixture.account("bbb").gid) }
        let login = try await cluster.login("bbb")
        #expect(login.status != 0)
        #expect(login.stderr.contains("owned by root"), "\(login.stderr)")
        #expect(login.stderr.contains("<Uid>"), "\(login.stderr)")
        #expect(try await cluster.containers(of: "bbb").isEmpty)
    }

    /// Even a request signed with the cluster key (a manager misconfigured, or its key stolen)
    /// cannot have an agent work as root outside the homes' folder.
    @Test func anAgentRefusesHomesOutsideItsHomeRoot() async throws {
        let client = ServiceClient(
            address: cluster.agent(ClusterFixture.hosts[0]), name: "agent", signer: RequestSigner(secret: cluster.secret), transport: Transport.self)
        for home in ["/", "/etc", cluster.root + "/home2/aaa", cluster.root + "/share"] {
            let start = StartUnitRequest(
                user: "aaa", session: "outside", unit: cluster.units["aaa"]![0], memory: try MemorySpec(parsing: "64m"), cpu: 512, home: home,
                account: ClusterFixture.account("aaa"), unitSecret: "x")
            do {
                _ = try await client.call("POST", "/v1/units/start", body: start, as: UnitStatus.self)
                Issue.record("home \(home) was accepted")
            } catch ServiceError.refused(let status, let message) {
                #expect(status == 409)
                #expect(message.contains("home \(home)"), "\(message)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: cluster.root + "/home2"))
        #expect(try await cluster.containers(of: "aaa").isEmpty)
    }

    @Test func anAgentRefusesAKeyOthersCanRead() async throws {
        let key = cluster.root + "/open.key"
        FileManager.default.createFile(atPath: key, contents: Data(String(repeating: "k", count: 40).utf8), attributes: [.posixPermissions: 0o644])
        let config = cluster.root + "/open.xml"
        try """
            <Config><Server>127.0.0.9:\(cluster.communicationPort)</Server><Share>\(cluster.share)</Share><Secret>\(key)</Secret></Config>
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try await ClusterFixture.run("berth-agent", ["serve", "--config", config])
        #expect(agent.status != 0)
        #expect(agent.stderr.contains("chmod 600 \(key)"), "\(agent.stderr)")
    }

    @Test func anAgentRefusesALooseningTemplateNamingTheField() async throws {
        let template = cluster.root + "/loose.json"
        try #"{"Image": "x", "HostConfig": {"CapAdd": ["SYS_ADMIN"], "privileged": true}}"#.write(toFile: template, atomically: true, encoding: .utf8)
        let config = cluster.root + "/loose.xml"
        try """
            <Config><Server>127.0.0.9:\(cluster.communicationPort)</Server><Share>\(cluster.share)</Share>
            <Secret>\(cluster.root)/cluster.key</Secret><Template>\(template)</Template></Config>
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try await ClusterFixture.run("berth-agent", ["serve", "--config", config])
        #expect(agent.status != 0)
        #expect(agent.stderr.contains("HostConfig.CapAdd"), "\(agent.stderr)")
        #expect(agent.stderr.contains("HostConfig.Privileged"), "\(agent.stderr)")
    }
}

/// Flips `<home>/logs` between a real directory and a symlink to the victim as fast as it can,
/// on a thread of its own, until told to finish.
final class Flipper: Sendable {
    let home: String
    let victim: String
    private let done = Atomic(false)
    private let flips = Atomic(0)
    private let stopped = DispatchSemaphore(value: 0)

    init(home: String, victim: String) {
        self.home = home
        self.victim = victim
    }

    func run() {
        let logs = home + "/logs", parked = home + "/logs.real", link = home + "/logs.link"
        while !done.load(ordering: .relaxed) {
            unlink(link)
            symlink(victim, link)
            rename(logs, parked)
            rename(link, logs)
            rename(logs, link)
            rename(parked, logs)
            flips.add(1, ordering: .relaxed)
        }
        stopped.signal()
    }

    /// Stops the flipping with `logs` a directory again; returns how many flips there were.
    func finish() -> Int {
        if !done.exchange(true, ordering: .relaxed) { stopped.wait() }
        return flips.load(ordering: .relaxed)
    }
}
