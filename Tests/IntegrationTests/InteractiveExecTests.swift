import BerthAPI
import Foundation
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

/// A pseudo-terminal pair: a program runs on its secondary side as on a user's terminal, and the
/// test types and reads on the primary side.
final class PseudoTerminal: @unchecked Sendable {
    let primary: Int32
    let secondary: Int32
    private(set) var transcript = ""

    init(rows: Int, columns: Int) throws {
        // posix_openpt and its kin by hand, as Linux does them: Swift's Glibc leaves them out.
        primary = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0, number: UInt32 = 0
        let setLock: UInt = 0x4004_5431, getNumber: UInt = 0x8004_5430  // TIOCSPTLCK, TIOCGPTN
        guard primary >= 0, ioctl(primary, setLock, &unlock) == 0, ioctl(primary, getNumber, &number) == 0 else {
            throw TestSetupError("no pseudo-terminal")
        }
        secondary = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
        guard secondary >= 0 else { throw TestSetupError("cannot open /dev/pts/\(number)") }
        _ = fcntl(primary, F_SETFL, fcntl(primary, F_GETFL) | O_NONBLOCK)
        resize(rows: rows, columns: columns)
    }

    deinit {
        close(primary)
        close(secondary)
    }

    func resize(rows: Int, columns: Int) {
        var size = winsize(ws_row: UInt16(rows), ws_col: UInt16(columns), ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(primary, UInt(TIOCSWINSZ), &size)
    }

    /// The terminal's line settings, to compare before and after.
    func settings() -> [UInt32] {
        var settings = termios()
        tcgetattr(secondary, &settings)
        return [settings.c_iflag, settings.c_oflag, settings.c_cflag, settings.c_lflag]
    }

    func run(_ path: String, _ arguments: [String], environment: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let handle = FileHandle(fileDescriptor: secondary, closeOnDealloc: false)
        process.standardInput = handle
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    func type(_ text: String) throws {
        let written = text.withCString { write(primary, $0, strlen($0)) }
        guard written == text.utf8.count else { throw TestSetupError("cannot type on the terminal") }
    }

    /// Reads what the terminal shows until `text` appears (true) or 20 s pass (false).
    func read(until text: String) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            let count = Glibc.read(primary, &buffer, buffer.count)
            if count > 0 {
                transcript += String(decoding: buffer[0..<count], as: UTF8.self)
                if transcript.contains(text) { return true }
            } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        return false
    }
}
