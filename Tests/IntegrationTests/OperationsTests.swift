import BerthAPI
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

    /// The daemons and `berth` link FoundationEssentials and nothing more of Foundation, whose
    /// rest brings CoreFoundation and ICU: megabytes every agent keeps resident (`make bench`,
    /// footprint), and milliseconds at the start of every command a user runs.
    @Test(arguments: ["berth-agent", "berth-manager", "berth"])
    func programsLinkNoFullFoundation(binary: String) throws {
        let libraries = try DockerTestSupport.run("/usr/bin/ldd", [ClusterFixture.binaries + "/" + binary])
        for library in ["libFoundation.so", "libFoundationInternationalization.so", "lib_FoundationICU.so", "libFoundationXML.so"] {
            #expect(!libraries.contains(library), "\(binary) links \(library)")
        }
    }

    /// Output that cannot be written (here a full disk, `/dev/full`) ends the command with one
    /// line and a failure status: a cut-short output never looks like success.
    @Test(.enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"), arguments: [
        "berth-agent api-dump GET /_ping", "echo pw | berth-manager hash-password", "berth --version", "berth-agent --help",
    ])
    func outputThatCannotBeWrittenFailsTheCommand(command: String) async throws {
        let script = "PATH='\(ClusterFixture.binaries)':$PATH; \(command) > /dev/full; echo \"status $?\" >&2"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(text.contains("error: cannot write the output"), "\(text)")
        #expect(text.hasSuffix("status 1\n"), "\(text)")
    }

    /// The link order lists name functions by their mangled names, which change when code moves
    /// between modules or is renamed: a list whose names the program mostly no longer has orders
    /// nothing, and the program keeps more of itself resident. Checked against the debug build
    /// beside the tests, which has about half of a fresh list's names (the rest are release-only
    /// specializations): the minimums are three quarters of what a fresh list gave on 2026-12-04.
    @Test(arguments: [("berth-agent", 0.38), ("berth-manager", 0.37), ("berth", 0.25)])
    func linkOrderListsAreCurrent(program: String, minimum: Double) throws {
        let list = try String(contentsOfFile: DockerTestSupport.repositoryRoot + "/Resources/link-order/\(program).txt", encoding: .utf8)
        let listed = Set(list.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init))
        let symbols = try DockerTestSupport.run("/usr/bin/nm", [ClusterFixture.binaries + "/" + program])
        let present = Set(symbols.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) })
        let share = Double(listed.intersection(present).count) / Double(max(1, listed.count))
        #expect(share >= minimum, "only \(Int(share * 100)) % of Resources/link-order/\(program).txt exists in \(program); run scripts/link-order.sh")
    }

    /// The Docker client is the agent's alone. The manager reaches the agents through the
    /// libcurl transport; `berth` through the SwiftNIO one, and links no libcurl, whose thirty
    /// libraries the dynamic loader took milliseconds to bind at the start of every command.
    @Test(arguments: [("berth", "12NIOTransportAAC"), ("berth-manager", "10HTTPClient9TransportC")])
    func onlyTheAgentLinksTheDockerClient(binary: String, transport: String) throws {
        let symbols = try DockerTestSupport.run("/usr/bin/nm", [ClusterFixture.binaries + "/" + binary])
        #expect(!symbols.contains("9EngineAPI"), "\(binary) links EngineAPI")
        #expect(symbols.contains(transport), "\(binary) does not link its transport")
        if binary == "berth" {
            let libraries = try DockerTestSupport.run("/usr/bin/ldd", [ClusterFixture.binaries + "/" + binary])
            #expect(!libraries.contains("libcurl"), "berth links libcurl")
        }
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
    func usageMistakesAreOneLine(binary: String, arguments: [String], prefix: String) async throws {
        let result = try await ClusterFixture.run(binary, arguments, environment: ["BERTH_SESSION": "/nonexistent/session.json"])
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix(prefix), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    /// A session file that could not be written is found out before the login starts anything
    /// (here before the manager is even asked): a login whose units ran with no session saved
    /// would leave the user nothing to log out with.
    @Test func aSessionFolderThatCannotBeMadeFailsBeforeTheLogin() async throws {
        let result = try await ClusterFixture.run(
            "berth", ["login", "--server", "127.0.0.1:1", "--user", "aaa", "--password-stdin"],
            environment: ["BERTH_SESSION": "/proc/berth-none/session.json"], stdin: "pw\n")
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("error: cannot make /proc/berth-none, the folder of the session file"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
}
