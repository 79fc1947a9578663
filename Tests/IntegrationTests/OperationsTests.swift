import BerthCore
import Foundation
import Testing

/// What an operator relies on: the systemd units are valid and the daemons say when they are ready.
@Suite struct OperationsTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")))
    func systemdUnitsVerify() throws {
        let directory = NSTemporaryDirectory() + "berth-units-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["berth-agent.service", "berth-manager.service"] {
            // The shipped units name /usr/local/bin; verify them against the binaries just built.
            let text = try String(contentsOfFile: DockerTestSupport.repositoryRoot + "/Resources/templates/systemd/" + name, encoding: .utf8)
            #expect(text.contains("Type=notify"))
            #expect(text.contains("Restart=on-failure"))
            try text.replacingOccurrences(of: "/usr/local/bin", with: ClusterFixture.binaries)
                .write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
        process.arguments = ["verify", directory + "/berth-agent.service", directory + "/berth-manager.service"]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let output = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let problems = output.split(separator: "\n").filter { $0.contains("berth-") }
        #expect(problems.isEmpty, "\(output)")
        #expect(process.terminationStatus == 0, "\(output)")
    }
}

/// An agent whose engine is missing answers at once, naming the host and the socket, and keeps serving.
@Suite struct MissingEngineTests {
    @Test func anAgentWithoutItsEngineSaysSoAndKeepsRunning() async throws {
        let root = NSTemporaryDirectory() + "berth-noengine-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/share", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let secret = Array("no-engine-secret".utf8)
        FileManager.default.createFile(atPath: root + "/key", contents: Data(secret), attributes: [.posixPermissions: 0o600])
        let agent = HostPort(host: "127.0.0.5", port: try DockerTestSupport.freePort(host: "127.0.0.5"))
        try """
            <Config><Server>\(agent)</Server><Share>\(root)/share</Share><Secret>\(root)/key</Secret>
            <Docker>unix://\(root)/missing.sock</Docker></Config>
            """.write(toFile: root + "/server.xml", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ClusterFixture.binaries + "/berth-agent")
        process.arguments = ["serve", "--config", root + "/server.xml"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        try await ClusterFixture.waitListening(agent)

        let client = ServiceClient(address: agent, name: "agent", signer: RequestSigner(secret: secret))
        let unit = HostPort(host: agent.host, port: try DockerTestSupport.freePort(host: agent.host))
        let start = StartUnitRequest(user: "aaa", session: "s", unit: unit, memory: "64m", cpu: 512, home: root + "/home", unitSecret: "x")
        for _ in 0..<2 {
            let clock = ContinuousClock()
            let begun = clock.now
            do {
                _ = try await client.call("POST", "/v1/units/start", body: start, as: UnitStatus.self)
                Issue.record("a unit started without an engine")
            } catch ServiceError.refused(let status, let message) {
                #expect(status == 503)
                #expect(message.contains("\(unit)"), "\(message)")
                #expect(message.contains("Docker engine not reachable at \(root)/missing.sock"), "\(message)")
            }
            #expect(clock.now - begun < .seconds(5))
        }
        #expect(process.isRunning)
    }
}

/// Every failure of the command-line tools is one line, `error: …`, and a non-zero status.
@Suite struct OneLineErrorTests {
    @Test(arguments: [
        ("berth", ["login", "--server", "not-an-address", "--user", "aaa"], "error: --server must be HOST:PORT"),
        ("berth", ["login", "--user", "aaa"], "error: Missing expected argument '--server"),
        ("berth", ["frobnicate"], "error: Unexpected argument 'frobnicate'"),
        ("berth-agent", ["api-dump", "FETCH", "/x"], "error: method FETCH is not one of"),
        ("berth-manager", ["hash-password", "--bogus"], "error: Unknown option '--bogus'"),
    ])
    func usageMistakesAreOneLine(binary: String, arguments: [String], prefix: String) throws {
        let result = try ClusterFixture.run(binary, arguments, environment: ["BERTH_SESSION": "/nonexistent/session.json"])
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix(prefix), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
}
