import BerthAPI
import Foundation
import TestSupport
import Testing

/// `berth exec -i`, `-it` and `berth shell` through a real login, driven as a user would: stdin
/// from a pipe, or a real pseudo-terminal.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
final class InteractiveExecTests {
    let cluster: ClusterFixture

    init() async throws {
        cluster = try await ClusterFixture(users: [("aaa", [ClusterFixture.hosts[0]]), ("bbb", [ClusterFixture.hosts[1]])])
        try await cluster.expectLogin("aaa")
        try await cluster.expectLogin("bbb")
    }

    deinit {
        cluster.shutdown()
    }

    var unit: String { cluster.units["aaa"]![0].description }

    /// 10 MB on stdin arrive whole; the command's stdin ends with ours, and its status passes.
    @Test func stdinArrivesWholeAndItsEndReachesTheCommand() async throws {
        let line = "0123456789 the quick brown fox jumps over the lazy dog\n"
        let input = String(repeating: line, count: (10 << 20) / line.utf8.count)
        let result = try await cluster.berth(["exec", "-i", "--unit", unit, "--", "sh", "-c", "md5sum; exit 4"], user: "aaa", stdin: input)
        #expect(result.status == 4, "\(result.stderr)")
        let file = cluster.root + "/stdin.txt"
        try input.write(toFile: file, atomically: false, encoding: .utf8)
        let local = try DockerTestSupport.run("/usr/bin/md5sum", [file])
        #expect(result.stdout.prefix(32) == local.prefix(32))
        #expect(result.stdout.prefix(32).count == 32)
    }

    /// A shell on a real terminal: what is typed runs, the size follows the local terminal, the
    /// exit status passes, and the local terminal is as it was afterwards.
    @Test func aShellOnATerminalFollowsItsSizeAndRestoresIt() async throws {
        let terminal = try PseudoTerminal(rows: 24, columns: 80)
        let before = terminal.settings()
        let process = try terminal.run(ClusterFixture.binaries + "/berth", ["exec", "-it", "--unit", unit, "--", "sh"],
                                       environment: ["BERTH_SESSION": cluster.root + "/session-aaa.json", "TERM": "xterm"])
        try terminal.type("echo typed-$((40 + 2))\r")
        #expect(try await terminal.read(until: "typed-42"), "\(terminal.transcript)")
        try terminal.type("stty size\r")
        #expect(try await terminal.read(until: "24 80"), "\(terminal.transcript)")
        terminal.resize(rows: 33, columns: 101)
        kill(process.processIdentifier, SIGWINCH)
        try await Task.sleep(for: .milliseconds(300))
        try terminal.type("stty size\r")
        #expect(try await terminal.read(until: "33 101"), "\(terminal.transcript)")
        // Ctrl-C goes to the unit: it stops what runs there, and the session goes on.
        try terminal.type("sleep 100\r")
        try await Task.sleep(for: .milliseconds(300))
        try terminal.type("\u{3}")
        try terminal.type("echo after-$((1 + 1))\r")
        #expect(try await terminal.read(until: "after-2"), "\(terminal.transcript)")
        try terminal.type("exit 3\r")
        let status = try await Background.run { () -> Int32 in
            process.waitUntilExit()
            return process.terminationStatus
        }
        #expect(status == 3, "\(terminal.transcript)")
        #expect(terminal.settings() == before)
        // The audit names the command, never what was typed.
        let audit = try String(contentsOfFile: cluster.root + "/state/audit.jsonl", encoding: .utf8)
        #expect(audit.contains("with a terminal"))
        #expect(!audit.contains("typed-"))
    }

    /// Another user's unit is out of reach, with stdin or a terminal as without.
    @Test func anotherUsersUnitIsRefused() async throws {
        let result = try await cluster.berth(["exec", "-i", "--unit", unit, "--", "sh", "-c", "cat > /app/stolen"], user: "bbb", stdin: "data\n")
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("error: unit \(unit) is not one of your units"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: cluster.home("aaa") + "/stolen"))
    }

    /// `berth shell` is the same, on the first unit; a client that is killed leaves nothing
    /// running in the unit.
    @Test func aDroppedShellLeavesNoProcessBehind() async throws {
        let terminal = try PseudoTerminal(rows: 24, columns: 80)
        let process = try terminal.run(ClusterFixture.binaries + "/berth", ["shell"], environment: ["BERTH_SESSION": cluster.root + "/session-aaa.json"])
        try terminal.type("sleep 1234 && echo never\r")
        try await Task.sleep(for: .milliseconds(500))
        let during = try await cluster.berth(["exec", "--unit", unit, "--", "ps"], user: "aaa")
        #expect(during.stdout.contains("sleep 1234"), "\(during.stdout)")
        kill(process.processIdentifier, SIGKILL)
        var after = ""
        for _ in 0..<50 {
            after = try await cluster.berth(["exec", "--unit", unit, "--", "ps"], user: "aaa").stdout
            if !after.contains("sleep 1234") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(!after.contains("sleep 1234"), "\(after)")
    }

    /// -t without a terminal is refused at once, naming what to do instead.
    @Test func aTerminalIsRefusedWithoutOne() async throws {
        let result = try await cluster.berth(["exec", "-it", "--unit", unit, "--", "sh"], user: "aaa", stdin: "")
        #expect(result.status != 0)
        #expect(result.stderr == "error: -t needs a terminal on stdin; leave it out to pipe input (berth exec -i)\n")
    }
}
