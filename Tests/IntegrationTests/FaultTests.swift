import BerthAPI
import BerthCore
import HTTPClient
import EngineAPI
import Foundation
import Testing

/// Nothing lost, nothing left behind, when things break: an agent killed in the middle of a login,
/// an engine that goes away and comes back, garbage on the daemons' ports.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
struct FaultTests {
    @Test func anAgentKilledDuringALoginFailsItNamingTheHostAndNothingIsLeftOnceItIsBack() async throws {
        // The victim's unit takes 60 s to serve: its agent is killed while it waits for it.
        let victim = ClusterFixture.hosts[0]
        let cluster = try await ClusterFixture(payload: .slowBannerTemplate(seconds: 60, host: victim), users: [("aaa", ClusterFixture.hosts)])
        defer { cluster.shutdown() }
        let agent = cluster.agent(victim)
        let login = Task { try await cluster.login("aaa") }

        // Well within the unit's 60 s, however long a machine starting fifty suites takes to start it.
        try await waitUntil("aaa's unit container running on \(victim)", within: .seconds(45)) {
            // A container can go between being listed and being inspected.
            ((try? await cluster.containers(of: "aaa")) ?? []).contains { $0.config.labels?[UnitLabel.host] == agent.description && $0.state.running }
        }
        cluster.killAgentHard(victim)
        let result = try await login.value
        #expect(result.status != 0, "\(result.stdout) \(result.stderr)")
        #expect(result.stderr.contains("\nerror: login failed"), "\(result.stderr)")
        #expect(result.stderr.contains("agent \(agent)"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: cluster.root + "/session-aaa.json"))
        // The other host's unit, ready meanwhile, was rolled back at once; the killed agent's is still in Docker.
        let left = try await cluster.containers(of: "aaa")
        #expect(left.map { $0.config.labels?[UnitLabel.host] } == [agent.description])

        try await cluster.startAgent(victim)
        // The reconciler's bound: an orphan goes within 30 s of its agent answering again.
        try await waitUntil("aaa's orphan container removed", within: .seconds(30)) {
            try await cluster.containers(of: "aaa").isEmpty
        }
        let status = try await cluster.berth(["status"], user: "aaa")
        #expect(status.stderr.hasPrefix("error: not logged in"))
        let audit = try String(contentsOfFile: cluster.root + "/state/audit.jsonl", encoding: .utf8)
        #expect(audit.contains("\"event\":\"login.rolled_back\""))
        #expect(audit.contains("\"event\":\"unit.orphan_removed\""))
    }

    @Test func aSlowUnitIsReadyOnlyOnceItsProgramServes() async throws {
        // Docker's proxy accepts on the unit's ip:port before the program listens, and sometimes
        // holds such a connection for tens of milliseconds before closing it.
        let cluster = try await ClusterFixture(payload: .slowBannerTemplate(seconds: 3), users: [("aaa", ClusterFixture.hosts)])
        defer { cluster.shutdown() }
        let clock = ContinuousClock()
        let begun = clock.now
        try await cluster.expectLogin("aaa")
        #expect(clock.now - begun >= .seconds(3))
        for unit in cluster.units["aaa"]! {
            let banner = try await DockerTestSupport.readBanner(host: unit.host, port: unit.port, within: .seconds(2))
            #expect(banner.hasPrefix("unit aaa"))
        }
        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)
    }

    @Test func anEngineThatGoesAwayFailsFastNamingHostAndSocketAndTheAgentRecovers() async throws {
        let host = ClusterFixture.hosts[0]
        let cluster = try await ClusterFixture(users: [("ddd", [host])], engineBehindProxy: host)
        defer { cluster.shutdown() }
        let socket = try #require(cluster.proxiedEngineSocket)
        let proxy = EngineProxy(path: socket)
        defer { proxy.stop() }
        let clock = ContinuousClock()

        // No engine behind the agent's socket: the login fails at once, saying where and why.
        var begun = clock.now
        let refused = try await cluster.login("ddd")
        #expect(clock.now - begun < .seconds(5))
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("unit \(host):"), "\(refused.stderr)")
        #expect(refused.stderr.contains("Docker engine not reachable at \(socket)"), "\(refused.stderr)")
        #expect(cluster.isAgentRunning(host))
        var metrics = try await Metrics.scrape(cluster.agent(host))
        #expect(Metrics.value("berth_agent_engine_up", in: metrics) == 0)
        #expect((Metrics.value(#"berth_agent_engine_errors_total{kind="unreachable"}"#, in: metrics) ?? 0) >= 1)

        // The engine is back: the same agent process serves again.
        try proxy.start()
        try await cluster.expectLogin("ddd")
        #expect(try await cluster.containers(of: "ddd").first?.state.running == true)

        // It goes away while ddd is logged in: status answers at once and says so; the session stays.
        proxy.stop()
        begun = clock.now
        let status = try await cluster.berth(["status"], user: "ddd")
        #expect(clock.now - begun < .seconds(5))
        #expect(status.stdout.contains("Docker engine not reachable at \(socket)"), "\(status.stdout) \(status.stderr)")
        #expect(status.stdout.contains("host \(host)"), "\(status.stdout)")
        let logoutWithoutEngine = try await cluster.berth(["logout"], user: "ddd")
        #expect(logoutWithoutEngine.status != 0)
        #expect(logoutWithoutEngine.stderr.contains("the session is kept"), "\(logoutWithoutEngine.stderr)")
        #expect(cluster.isAgentRunning(host))

        try proxy.start()
        metrics = try await Metrics.scrape(cluster.agent(host))
        #expect(Metrics.value("berth_agent_engine_up", in: metrics) == 1)
        let logout = try await cluster.berth(["logout"], user: "ddd")
        #expect(logout.status == 0, "\(logout.stderr)")
        #expect(try await cluster.containers(of: "ddd").isEmpty)
    }

    @Test func garbageTruncatedAndHugeRequestsGetA4xxOrAClosedConnection() async throws {
        let cluster = try await ClusterFixture()
        defer { cluster.shutdown() }
        let host = ClusterFixture.hosts[0]
        let agent = cluster.agent(host)
        for (target, path) in [(agent, "/v1/units/start"), (cluster.managerAddress, "/v1/login")] {
            let post = "POST \(path) HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n"
            let cases: [(String, [UInt8], Bool)] = [
                ("garbage", Array("GARBAGE\r\n\r\n".utf8), false),
                ("binary", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }, false),
                ("a 256 KiB header", Array("GET /v1/units HTTP/1.1\r\nHost: berth\r\nX-Junk: \(String(repeating: "a", count: 256 << 10))\r\n\r\n".utf8), false),
                ("a body cut short", Array((post + "Content-Length: 300\r\n\r\n{\"user\": \"aaa\", \"pass").utf8), true),
                ("a claimed 100 MB body", Array((post + "Content-Length: 100000000\r\n\r\n{").utf8), true),
                ("a 4 MiB body", Array((post + "Content-Length: \(4 << 20)\r\n\r\n").utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 4 << 20), true),
                ("a bad chunk", Array((post + "Transfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n").utf8), true),
            ]
            for (name, bytes, halfClose) in cases {
                let answer = RawExchange(host: target.host, port: target.port, send: bytes, halfClose: halfClose)
                #expect(answer.reply.isEmpty || answer.reply.hasPrefix("HTTP/1.1 4"), "\(target) \(name): \(answer.reply.prefix(300))")
                #expect(answer.closed || answer.reply.hasPrefix("HTTP/1.1 4"), "\(target) \(name): neither answered nor closed within 5 s")
            }
        }
        // Signed, but the body has the wrong shape: a 400 that names the field, not a 500.
        let signed = ServiceClient(address: agent, name: "agent", signer: RequestSigner(secret: cluster.secret), transport: Transport.self)
        do {
            _ = try await signed.call("POST", "/v1/units/start", body: ["user": 42], as: UnitStatus.self)
            Issue.record("a start request of the wrong shape was accepted")
        } catch ServiceError.refused(let status, let message) {
            #expect(status == 400)
            #expect(message == "request body field \"user\" has the wrong type", "\(message)")
        }
        #expect(cluster.isAgentRunning(host))
        let units = try await signed.call("GET", "/v1/units", as: UnitList.self)
        #expect(units.units.isEmpty)
        // Both keep serving.
        try await cluster.expectLogin("ddd")
        #expect(try await cluster.berth(["logout"], user: "ddd").status == 0)
    }
}

/// Polls `condition` every 100 ms until it holds; throws naming `what` after `limit`.
func waitUntil(_ what: String, within limit: Duration, _ condition: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let end = clock.now + limit
    while clock.now < end {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestSetupError("\(what): not within \(limit)")
}

/// Raw bytes to a TCP port and what comes back: the reply, and whether the server closed the
/// connection (rather than the 5 s wait running out).
struct RawExchange {
    var reply = ""
    var closed = false

    init(host: String, port: Int, send bytes: [UInt8], halfClose: Bool) {
        guard let fd = TestSocket.open(host: host, port: port, connect: true, receiveTimeout: 5) else { return }
        defer { close(fd) }
        var sent = 0
        while sent < bytes.count {
            // The server may answer and close before it has read everything: that is allowed.
            let count = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { break }
            sent += count
        }
        if halfClose { shutdown(fd, Int32(SHUT_WR)) }
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < 1 << 20 {
            let count = read(fd, &buffer, buffer.count)
            if count > 0 {
                received.append(contentsOf: buffer[0..<count])
                continue
            }
            // 0: closed; ECONNRESET: closed without reading the rest; EAGAIN: the 5 s ran out.
            closed = count == 0 || errno == ECONNRESET
            break
        }
        reply = String(decoding: received, as: UTF8.self)
    }
}
