import BerthAPI
import BerthCore
import HTTPClient
import EngineAPI
import Foundation
import Testing
import UnitProtocol

/// `berth call` on the real berth-unit image, through a real login: the esProc design's Employee
/// examples.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
final class CallTests {
    let cluster: ClusterFixture

    static let columns = ["EID", "NAME", "SURNAME", "GENDER", "STATE", "BIRTHDAY", "HIREDATE", "DEPT", "SALARY"]

    init() async throws {
        // 32 MB, so that a flood that makes the unit hold what it is sent would get it killed.
        cluster = try await ClusterFixture(
            payload: .berthUnit, users: [("aaa", ClusterFixture.hosts), ("bbb", [ClusterFixture.hosts[1]])], memory: "32m")
        let home = cluster.home("aaa")
        try FileManager.default.createDirectory(atPath: home + "/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: home + "/script", withIntermediateDirectories: true)
        try Self.employees().write(toFile: home + "/data/EMPLOYEE.txt", atomically: true, encoding: .utf8)
        try Self.write(home + "/script/Employee.sh", #"awk -F '\t' -v state="$1" 'NR == 1 || $5 == state' /app/data/EMPLOYEE.txt"#)
        try Self.write(home + "/script/Emp.sh", #"""
            awk -F '\t' -v state="$1" -v part="$BERTH_PART" -v parts="$BERTH_PARTS" '
              NR == 1 { print; next }
              (NR - 2) % parts == part - 1 && $5 == state' /app/data/EMPLOYEE.txt
            """#)
        try Self.write(home + "/script/lines.sh", #"""
            awk -v part="$BERTH_PART" 'BEGIN { for (i = 1; i <= 400000; i++) { print part, i; if (i == 200000) print "half", part > "/dev/stderr" } }'
            """#)
        try Self.write(home + "/script/pause.sh", "echo begun; sleep 3; echo done")
        // What the script was given, listed by the script's own process (ls in the shell's place:
        // a pipeline would show the shell's pipe to it).
        try Self.write(home + "/script/fds.sh", "exec ls -l /proc/self/fd")
        try Self.write(home + "/script/fail.sh", "echo partial\necho 'no such table' >&2\nexit 3")
        try Self.write(home + "/script/slow.sh", "echo started; sleep 30; echo never")
        try Self.write(home + "/script/header.sh", #"echo "H$BERTH_PART"; echo row"#)
        try Self.write(home + "/data/outside.sh", "echo escaped")
        try FileManager.default.createSymbolicLink(atPath: home + "/script/link.sh", withDestinationPath: "/app/data/outside.sh")
        try cluster.handHomeToUser("aaa")
        let login = try await cluster.login("aaa")
        #expect(login.status == 0, "\(login.stderr)")
    }

    deinit {
        cluster.shutdown()
    }

    static func write(_ path: String, _ text: String) throws {
        try (text + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// 40 employees in the esProc design's columns; every third lives in New York.
    static func employees() -> String {
        var lines = [columns.joined(separator: "\t")]
        let names = ["Rebecca", "Ashley", "Rachel", "Emily", "Ashley", "Matthew", "Alexis", "Megan", "Victoria", "Ryan"]
        for id in 1...40 {
            let state = id % 3 == 0 ? "New York" : (id % 3 == 1 ? "Texas" : "California")
            lines.append(["\(id)", names[id % names.count], "Smith", id % 2 == 0 ? "F" : "M", state, "1980-01-0\(id % 9 + 1)", "2005-03-01", "\(id % 6 + 1)", "\(5000 + id * 100)"].joined(separator: "\t"))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func newYorkRows() -> [String] {
        employees().split(separator: "\n").dropFirst().map(String.init).filter { $0.split(separator: "\t")[4] == "New York" }
    }

    @Test func aProxyInTheEnvironmentIsNotUsed() async throws {
        // Nothing listens on port 9: a request sent through the proxy would fail.
        let proxy = "http://127.0.0.1:9"
        let environment = ["http_proxy": proxy, "HTTP_PROXY": proxy, "all_proxy": proxy, "ALL_PROXY": proxy]
        let result = try await cluster.berth(["call", "header.sh"], user: "aaa", environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "H\nrow\nH\nrow\n")
        let status = try await cluster.berth(["status"], user: "aaa", environment: environment)
        #expect(status.status == 0, "\(status.stderr)")
    }

    @Test func singleUnitQueryReturnsTheMatchingRows() async throws {
        let unit = cluster.units["aaa"]![0]
        let result = try await cluster.berth(["call", "Employee.sh", "New York", "--unit", unit.description], user: "aaa")
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == Self.columns.joined(separator: "\t"))
        #expect(Array(lines.dropFirst()) == Self.newYorkRows())
    }

    @Test func splitQueryMergesBothHalvesWithOneHeader() async throws {
        let result = try await cluster.berth(["call", "Emp.sh", "New York", "--split", "--header"], user: "aaa")
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == Self.columns.joined(separator: "\t"))
        #expect(lines.filter { $0.hasPrefix("EID") }.count == 1)
        // Part 1 holds the rows at even offsets, part 2 the odd ones; together, every New York row once.
        #expect(Set(lines.dropFirst()) == Set(Self.newYorkRows()))
        #expect(lines.count - 1 == Self.newYorkRows().count)
        // Unit order: part 1's rows come first.
        let all = Self.employees().split(separator: "\n").dropFirst().map(String.init)
        let firstPart = all.enumerated().filter { $0.offset % 2 == 0 }.map(\.element).filter { Self.newYorkRows().contains($0) }
        #expect(Array(lines.dropFirst().prefix(firstPart.count)) == firstPart)
    }

    /// Megabytes from each unit, in frames as large as the unit reads from its pipe, with a line
    /// of stderr in the middle: every byte arrives once, in unit order.
    @Test func megabytesOfOutputArriveWholeAndInUnitOrder() async throws {
        let result = try await cluster.berth(["call", "lines.sh", "--split"], user: "aaa")
        #expect(result.status == 0, "\(result.stderr)")
        let expected = (1...2).flatMap { part in (1...400_000).map { "\(part) \($0)\n" } }.joined()
        #expect(result.stdout.utf8.count == expected.utf8.count)
        #expect(result.stdout == expected)
        #expect(result.stderr.contains("half 1") && result.stderr.contains("half 2"), "\(result.stderr)")
    }

    /// `berth call … | head -1` ends as any writer in a pipeline does when its reader goes: by
    /// SIGPIPE, with no error of its own (SwiftNIO ignores the signal, so the write fails instead).
    @Test func aCallPipedIntoHeadEndsQuietlyWhenHeadHasItsLine() async throws {
        let result = try await ClusterFixture.run(
            "/bin/bash", ["-c", "\"$0\" call lines.sh --split | head -1; echo \"status ${PIPESTATUS[0]}\" >&2", ClusterFixture.binaries + "/berth"],
            environment: ["BERTH_SESSION": cluster.root + "/session-aaa.json"])
        #expect(result.stdout == "1 1\n")
        #expect(result.stderr == "status \(128 + SIGPIPE)\n", "\(result.stderr)")
    }

    /// A script sees its own stdin, stdout and stderr and nothing else of berth-unit's: not its
    /// listening socket or connections, not the pipes of another call running at the same time
    /// (a script could read that call's output away from it).
    @Test func aScriptInheritsNoOtherDescriptor() async throws {
        let unit = cluster.units["aaa"]![0].description
        let cluster = cluster
        let other = Task { try await cluster.berth(["call", "pause.sh", "--unit", unit], user: "aaa") }
        try await Task.sleep(for: .milliseconds(500))
        let result = try await cluster.berth(["call", "fds.sh", "--unit", unit], user: "aaa")
        #expect(try await other.value.stdout == "begun\ndone\n")
        #expect(result.status == 0, "\(result.stderr)")
        // `lr-x------ 1 aaa aaa 64 Dec 6 06:40 0 -> /dev/null`: the descriptor and what it is.
        let open = result.stdout.split(separator: "\n").compactMap { line -> [String]? in
            guard let arrow = line.range(of: " -> ") else { return nil }
            return [String(line[..<arrow.lowerBound].split(separator: " ").last ?? ""), String(line[arrow.upperBound...])]
        }
        #expect(open.count >= 3, "\(result.stdout)")
        for entry in open where entry.count == 2 {
            #expect(!entry[1].hasPrefix("socket:") && !entry[1].hasPrefix("anon_inode:"), "descriptor \(entry[0]) is \(entry[1])")
            if entry[1].hasPrefix("pipe:") { #expect(entry[0] == "1" || entry[0] == "2", "descriptor \(entry[0]) is \(entry[1])") }
        }
    }

    /// Every command works for a user who is not root: `berth` once asked the kernel for a
    /// socket option only root may set (SO_DEBUG, for TCP_NODELAY at the wrong level), so no
    /// one else could reach the manager or a unit.
    @Test(.enabled(if: getuid() == 0, "runs berth as another account"))
    func aUserWhoIsNotRootLogsInCallsAndLogsOut() async throws {
        let login = try await cluster.berth(
            asAccountOf: "bbb", ["login", "--server", cluster.managerAddress.description, "--user", "bbb", "--password-stdin"],
            stdin: ClusterFixture.password + "\n")
        #expect(login.status == 0, "\(login.stderr)")
        try Self.write(cluster.home("bbb") + "/script/hello.sh", "echo hello from $BERTH_USER")
        try cluster.handHomeToUser("bbb")
        let call = try await cluster.berth(asAccountOf: "bbb", ["call", "hello.sh"])
        #expect(call.status == 0, "\(call.stderr)")
        #expect(call.stdout == "hello from bbb\n")
        let status = try await cluster.berth(asAccountOf: "bbb", ["status"])
        #expect(status.status == 0, "\(status.stderr)")
        let logout = try await cluster.berth(asAccountOf: "bbb", ["logout"])
        #expect(logout.status == 0, "\(logout.stderr)")
    }

    @Test func differingHeadersAreAnError() async throws {
        let result = try await cluster.berth(["call", "header.sh", "--split", "--header"], user: "aaa")
        #expect(result.status != 0)
        #expect(result.stderr.contains("header differs"), "\(result.stderr)")
    }

    @Test func aFailingScriptFailsTheCallWithItsStderrAndUnit() async throws {
        let unit = cluster.units["aaa"]![1]
        let result = try await cluster.berth(["call", "fail.sh", "--unit", unit.description], user: "aaa")
        #expect(result.status != 0)
        #expect(result.stderr.contains("error: unit \(unit): fail.sh exited with status 3: no such table"), "\(result.stderr)")
    }

    @Test func scriptsOutsideTheScriptDirectoryAreRefused() async throws {
        let traversal = try await cluster.berth(["call", "../data/outside.sh"], user: "aaa")
        #expect(traversal.status != 0)
        #expect(traversal.stderr.contains(".. and empty path parts are not allowed"))
        let link = try await cluster.berth(["call", "link.sh", "--unit", cluster.units["aaa"]![0].description], user: "aaa")
        #expect(link.status != 0)
        #expect(link.stderr.contains("resolves outside /app/script"), "\(link.stderr)")
        #expect(!link.stdout.contains("escaped"))
    }

    @Test func anotherUsersCallIsRefused() async throws {
        try await cluster.expectLogin("bbb")
        let bbbSecret = try BerthJSON.decoder.decode(SessionSecret.self, from: Data(contentsOf: URL(fileURLWithPath: cluster.root + "/session-bbb.json"))).unitSecret
        let aaaUnit = cluster.units["aaa"]![1]
        let client = ServiceClient(address: aaaUnit, name: "unit \(aaaUnit)", transport: Transport.self)
        for token in [bbbSecret, nil] {
            do {
                let response = try await client.stream("POST", UnitPath.call, body: CallRequest(script: "Employee.sh", arguments: ["Texas"]), token: token)
                for try await _ in response.body {}
                Issue.record("aaa's unit ran a call for \(token == nil ? "an anonymous caller" : "bbb")")
            } catch ServiceError.refused(let status, _) {
                #expect(status == 401 || status == 403)
            }
        }
        #expect(try await cluster.berth(["logout"], user: "bbb").status == 0)
    }

    /// Anyone who can reach a unit's published port (the LAN, another tenant's container) may
    /// send it requests: 100 anonymous 1 MB calls at once are refused on their heads, unread, and
    /// the 32 MB unit goes on serving its owner.
    @Test func aFloodOfAnonymousCallsIsRefusedUnread() async throws {
        let unit = cluster.units["aaa"]![1]
        let body = String(repeating: "x", count: 1 << 20)
        let answers = try await Self.connections(100, to: unit, receiveTimeout: 15) { fd, _ in
            let head = "POST /call HTTP/1.1\r\nHost: unit\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
            _ = (head + body).withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            return String(decoding: TestSocket.read(fd, limit: 4096), as: UTF8.self)
        }
        #expect(answers.filter { $0.hasPrefix("HTTP/1.1 401") }.count == 100, "\(Set(answers.map { $0.prefix(20) }))")
        let containers = try await cluster.containers(of: "aaa")
        #expect(containers.count == 2)
        for container in containers {
            #expect(container.state.running && container.state.oomKilled != true && (container.restartCount ?? 0) == 0)
        }
        let call = try await cluster.berth(["call", "--unit", unit.description, "Employee.sh", "Texas"], user: "aaa")
        #expect(call.status == 0, "\(call.stderr)")
    }

    /// A stranger's health check is answered and its connection closed, and one that comes with a
    /// body is refused unread: nothing of a stranger's is kept, and no one holds a connection.
    @Test func aStrangersHealthCheckKeepsNothingOpen() async throws {
        let unit = cluster.units["aaa"]![0]
        let answers = try await Self.connections(2, to: unit, receiveTimeout: 15) { fd, index in
            let request = index == 0
                ? "GET /health HTTP/1.1\r\nHost: unit\r\n\r\n"
                : "GET /health HTTP/1.1\r\nHost: unit\r\nContent-Length: 1000000\r\n\r\n" + String(repeating: "x", count: 1000)
            _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            // Read until the unit closes (a kept connection would run into the 15 s timeout).
            return String(decoding: TestSocket.read(fd, limit: 1 << 16), as: UTF8.self)
        }.sorted()
        #expect(answers[0].hasPrefix("HTTP/1.1 200") && answers[0].lowercased().contains("connection: close"), "\(answers[0])")
        #expect(answers[1].hasPrefix("HTTP/1.1 400") && answers[1].contains("a health check takes no body"), "\(answers[1])")
    }

    /// Anyone who reaches a unit's port may open connections, and through Docker's port proxy
    /// all of them come from one address: strangers holding every place the unit takes do not
    /// keep its owner out, since a stranger's connection gives way to a new one.
    @Test func strangersHoldingEveryConnectionDoNotKeepTheOwnerOut() async throws {
        let unit = cluster.units["aaa"]![0]
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for _ in 0..<160 {
            guard let fd = TestSocket.open(host: unit.host, port: unit.port, connect: true) else { break }
            held.append(fd)
        }
        #expect(held.count == 160)
        // Long enough for the port proxy to pass every connection on, well within the 10 s a
        // connection may wait for its request.
        try await Task.sleep(for: .seconds(1))
        for _ in 0..<3 {
            let call = try await cluster.berth(["call", "--unit", unit.description, "Employee.sh", "Texas"], user: "aaa")
            #expect(call.status == 0, "\(call.stderr)")
        }
    }

    /// Connections that send nothing, or a head one byte at a time, are closed after 10 s.
    @Test func slowSendersAreCutOff() async throws {
        let unit = cluster.units["aaa"]![0]
        let started = Date()
        let closedAfter = try await Self.connections(20, to: unit, receiveTimeout: 1) { fd, index in
            let head = Array("GET /health HTTP/1.1\r\nHost: unit\r\n".utf8)
            var byte = 0
            while Date().timeIntervalSince(started) < 30 {
                // Half of them trickle a head that never ends; the rest send nothing.
                if index % 2 == 0 {
                    var next = head[byte % head.count]
                    byte += 1
                    if send(fd, &next, 1, Int32(MSG_NOSIGNAL)) < 0 { break }
                }
                var buffer = [UInt8](repeating: 0, count: 64)
                let count = recv(fd, &buffer, buffer.count, 0)
                if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { break }
            }
            return Date().timeIntervalSince(started)
        }
        #expect(closedAfter.allSatisfy { $0 < 15 }, "\(closedAfter.sorted())")
        let call = try await cluster.berth(["call", "--unit", unit.description, "Employee.sh", "Texas"], user: "aaa")
        #expect(call.status == 0, "\(call.stderr)")
    }

    /// `count` connections to `target` at once, each on a thread of its own running `body` with
    /// the socket and its index; their results in any order.
    static func connections<T: Sendable>(
        _ count: Int, to target: HostPort, receiveTimeout: Int, _ body: @escaping @Sendable (Int32, Int) throws -> T
    ) async throws -> [T] {
        try await withThrowingTaskGroup(of: T.self) { group in
            for index in 0..<count {
                group.addTask {
                    try await Background.run {
                        guard let fd = TestSocket.open(host: target.host, port: target.port, connect: true, receiveTimeout: receiveTimeout) else {
                            throw TestSetupError("cannot connect to \(target)")
                        }
                        defer { close(fd) }
                        return try body(fd, index)
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test func everyCallLeavesALogLine() async throws {
        let unit = cluster.units["aaa"]![0]
        #expect(try await cluster.berth(["call", "Employee.sh", "Texas", "--unit", unit.description], user: "aaa").status == 0)
        let logs = try await cluster.berth(["logs", "--unit", unit.description], user: "aaa")
        #expect(logs.status == 0)
        #expect(logs.stdout.contains("call Employee.sh [\"Texas\"] exit 0"), "\(logs.stdout)")
    }

    @Test func ctrlCStopsEveryUnitsRun() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ClusterFixture.binaries + "/berth")
        process.arguments = ["call", "slow.sh"]
        process.environment = ProcessInfo.processInfo.environment.merging(["BERTH_SESSION": cluster.root + "/session-aaa.json"]) { _, new in new }
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        try await Task.sleep(for: .seconds(2))
        let clock = ContinuousClock()
        let interrupted = clock.now
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(clock.now - interrupted < .seconds(5))
        #expect(process.terminationStatus != 0)
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(stderr.contains("error: cancelled"), "\(stderr)")
        #expect(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == "started\n")
        // Each unit stopped its script and logged the call as cancelled.
        for unit in cluster.units["aaa"]! {
            var logged = false
            for _ in 0..<20 where !logged {
                logged = try await cluster.berth(["logs", "--unit", unit.description], user: "aaa").stdout.contains("call slow.sh [] exit")
                if !logged { try await Task.sleep(for: .milliseconds(250)) }
            }
            let logs = try await cluster.berth(["logs", "--unit", unit.description], user: "aaa").stdout
            #expect(logs.contains("(cancelled by the caller)"), "\(unit): \(logs)")
        }
    }

    struct SessionSecret: Decodable {
        var unitSecret: String
    }
}
