import ArgumentParser
import BerthConfig
import BerthAPI
import BerthCore
import EngineAPI
import HTTPClient
import Foundation
import TestSupport

/// `berth-bench`: Berth against the floor and the alternatives, measured in one run.
@main
struct BerthBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth-bench",
        abstract: "Measure EngineAPI against a raw-socket floor, docker-py and the docker CLI; print and record the tables."
    )

    @Option(help: "The engine's Unix socket.")
    var socket = EngineEndpoint.defaultSocketPath

    @Option(help: "Requests per client per latency row.")
    var requests = 2000

    /// Rounds of the latency table: each runs every client once, so the engine's drift cancels out.
    static let latencyRounds = 10

    @Option(help: "Full container lifecycles per client.")
    var lifecycles = 12

    @Option(help: "Directory the tables are written to.")
    var results = "bench/results"

    @Option(help: "Image with busybox for the lifecycle rows (imported by `make bench` if missing).")
    var image = "berth-test-busybox:latest"

    @Option(help: "Logins per client in the login-to-ready table.")
    var logins = 12

    @Flag(help: "Keep each bench cluster's folder (configs, homes, the daemons' logs) and print where it is.")
    var keep = false

    @Option(help: "MB of script output per call run (split over two units).")
    var callMegabytes = 50

    @Option(help: "Which tables: all, engine, cluster (login with call, storm, footprint), or one of login, call, copy, storm, footprint.")
    var only = "all"

    @Option(help: "Users logging in at once in the login storm.")
    var stormUsers = 20

    @Option(help: "Rounds of the login storm per start limit.")
    var stormRounds = 3

    @Option(help: "The agents' <ConcurrentStarts> to compare in the login storm, comma-separated.")
    var stormLimits = "\(ServerConfig.defaultConcurrentStarts),\(ServerConfig.concurrentStartsRange.upperBound)"

    @Option(help: "Login/logout cycles between the footprint's readings.")
    var cycles = 1000

    func run() async throws {
        let client = DockerClient(endpoint: .unix(socket))
        let version = try await client.apiVersion()
        let clusterParts: Set<String> = switch only {
        case "all", "cluster": ["login", "storm", "footprint"]
        case "engine": []
        default: [only]
        }
        if !clusterParts.isEmpty {
            let limits = stormLimits.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            try await ClusterSections(
                client: client, socket: socket, version: version, logins: logins, callMegabytes: callMegabytes,
                storm: StormSection.Settings(users: stormUsers, rounds: stormRounds, limits: limits),
                footprint: FootprintSection.Settings(cycles: cycles),
                parts: clusterParts, machine: try await machineLine(client), command: commandLine, results: results, keep: keep
            ).run()
        }
        guard only == "all" || only == "engine" else { return }
        let raw = try RawHTTP(socketPath: socket)
        var report = Report(title: "EngineAPI latency and container lifecycle")
        report.header(machine: try await machineLine(client))

        let bench = BenchContainers(client: client, image: image)
        try await bench.removeLeftovers()

        var latency = Table(columns: ["call", "client", "median", "p90", "× floor"])
        for containerCount in [0, 10] {
            let created = try await bench.createIdle(count: containerCount)
            if containerCount == 0 {
                try await compareLatency(into: &latency, call: "GET /_ping", raw: raw, client: client,
                                         rawTarget: "/_ping", engineRequest: HTTPRequest(method: "GET", path: "/_ping", timeout: .seconds(10)),
                                         cli: nil, python: "c.api.ping()")
                // As the agent calls the engine: now and then, never back to back. A client that
                // is back within microseconds finds the engine's threads still awake.
                try await compareLatency(into: &latency, call: "GET /_ping, 1 ms apart", raw: raw, client: client,
                                         rawTarget: "/_ping", engineRequest: HTTPRequest(method: "GET", path: "/_ping", timeout: .seconds(10)),
                                         cli: nil, python: nil, apart: .milliseconds(1))
            }
            try await compareLatency(into: &latency, call: "GET /containers/json (\(created.count) containers)", raw: raw, client: client,
                                     rawTarget: "/v\(version)/containers/json?all=1",
                                     engineRequest: HTTPRequest(method: "GET", path: "/v\(version)/containers/json", query: [(name: "all", value: "1")], timeout: .seconds(10)),
                                     cli: ["ps", "-a", "-q"], python: "c.api.containers(all=True)",
                                     typed: { _ = try await client.listContainers(all: true) })
            try await bench.remove(created)
        }
        report.section(latency, note: "Median of \(requests) sequential requests per client (\(requests / 2) for the calls 1 ms apart, where each waits 1 ms, untimed, after the one before), in \(Self.latencyRounds) rounds; each round runs every client once, in an order that turns from round to round, and \"× floor\" is the median of the rounds' ratios (a client's median over the floor's in the same round), so a drift of the engine's speed during the run cancels out (docker-py and the CLI, timed apart, against the floor's overall median). EngineAPI goes through the pooled libcurl transport (worker thread hop and async resume included); the floor is one persistent blocking socket with hand-written HTTP. EngineAPI polls the socket for up to \(Transport.defaultBusyPoll.nanoseconds / 1000) µs before it sleeps for an answer; the floor's second row does the same, and the row with the busy poll off shows what it gains. \"libcurl alone\" is a bare `curl_easy_perform` loop (which sleeps at once): what any libcurl client pays at least.")

        var lifecycle = Table(columns: ["lifecycle", "client", "median", "p90", "× floor"])
        var floorTimes: [Duration] = []
        var engineTimes: [Duration] = []
        for _ in 0..<lifecycles {
            floorTimes.append(try await bench.rawLifecycle(raw: raw, version: version))
            engineTimes.append(try await bench.engineLifecycle())
        }
        let floor = Stats(floorTimes)
        lifecycle.row(["create → start → port-ready → stop → remove", "raw socket (floor)", floor.medianText, floor.p90Text, "1.00"])
        let engine = Stats(engineTimes)
        lifecycle.row(["", "EngineAPI", engine.medianText, engine.p90Text, ratio(engine, floor)])
        report.section(lifecycle, note: "\(lifecycles) lifecycles per client, alternating; stop uses t=1 on a busybox nc listener under tini (Init).")

        let pairs = 6
        report.section(try await compareBusyPoll(pairs: pairs), note: """
            EngineAPI's busy poll (\(Transport.defaultBusyPoll.nanoseconds / 1000) µs) off and on, on the transport's executor: \(pairs) pairs of \
            fresh transports measured one after the other, each the median of 3,000 calls back to back or 1,000 calls 1 ms \
            apart. In the table above one client's median moves by a tenth or more between runs, more than the poll changes; \
            measured in pairs, its effect shows.
            """)

        report.command(commandLine)
        try report.write(to: results, name: "engine.md")
    }

    /// The busy poll off and on, in pairs of fresh transports measured one after the other.
    private func compareBusyPoll(pairs: Int) async throws -> Table {
        var table = Table(columns: ["GET /_ping", "busy poll off (median of the pairs' medians)", "on", "on / off", "on faster in"])
        let request = HTTPRequest(method: "GET", path: "/_ping", timeout: .seconds(10))
        for (apart, count) in [(Duration.zero, 3000), (.milliseconds(1), 1000)] {
            var off: [Duration] = []
            var on: [Duration] = []
            for _ in 0..<pairs {
                for poll in [Duration.zero, Transport.defaultBusyPoll] {
                    let transport = Transport(endpoint: .unix(socket), busyPoll: poll)
                    let times = try await withTaskExecutorPreference(transport.executor) {
                        for _ in 0..<50 { _ = try await transport.send(request) }
                        return try await timedCalls("EngineAPI", count: count, apart: apart) { try await transport.send(request).status }
                    }
                    if poll == .zero { off.append(Stats(times).median) } else { on.append(Stats(times).median) }
                }
            }
            let offStats = Stats(off)
            let onStats = Stats(on)
            let wins = zip(on, off).filter { $0 < $1 }.count
            table.row([
                apart == .zero ? "back to back" : "1 ms apart", offStats.medianText, onStats.medianText, ratio(onStats, offStats), "\(wins) of \(pairs) pairs",
            ])
        }
        return table
    }

    private func compareLatency(
        into table: inout Table, call: String, raw: RawHTTP, client: DockerClient, rawTarget: String,
        engineRequest: HTTPRequest, cli: [String]?, python: String?, typed: (() async throws -> Void)? = nil, apart: Duration = .zero
    ) async throws {
        let rounds = Self.latencyRounds
        let perRound = max(1, (apart > .zero ? requests / 2 : requests) / rounds)
        let curl = try CurlAlone(socketPath: socket, target: rawTarget)
        let spinningRaw = try RawHTTP(socketPath: socket, busyPoll: Transport.defaultBusyPoll)
        let sleepingTransport = Transport(endpoint: .unix(socket), busyPoll: .zero)

        @Sendable func timed(_ name: String, _ call: () throws -> Int) throws -> [Duration] {
            try timedCalls(name, count: perRound, apart: apart, call)
        }
        func timedAsync(_ name: String, _ call: () async throws -> Int) async throws -> [Duration] {
            try await timedCalls(name, count: perRound, apart: apart, call)
        }
        // The blocking ones on a thread of their own, as EngineAPI's workers are: a blocking read
        // on one of Swift's pool threads measured slower here, which would flatter everything
        // against it. The agent calls the engine on the transport's own executor.
        var clients: [(name: String, measure: () async throws -> [Duration])] = [
            ("raw socket (floor)", { try await onOwnThread { try timed("floor") { try raw.request("GET", rawTarget).status } } }),
            ("raw socket, polling \(Transport.defaultBusyPoll.nanoseconds / 1000) µs before it sleeps, as EngineAPI does", {
                try await onOwnThread { try timed("polling floor") { try spinningRaw.request("GET", rawTarget).status } }
            }),
            ("libcurl alone, one reused handle, own thread", { try await onOwnThread { try timed("libcurl") { try curl.request() } } }),
            ("EngineAPI, from Swift's thread pool", { try await timedAsync("EngineAPI") { try await client.transport.send(engineRequest).status } }),
            ("EngineAPI, on its executor (the agent's way)", {
                try await withTaskExecutorPreference(client.transport.executor) {
                    try await timedAsync("EngineAPI") { try await client.transport.send(engineRequest).status }
                }
            }),
            ("EngineAPI, on its executor, sleeping at once (busy poll off)", {
                try await withTaskExecutorPreference(sleepingTransport.executor) {
                    try await timedAsync("EngineAPI") { try await sleepingTransport.send(engineRequest).status }
                }
            }),
        ]
        if let typed {
            clients.append(("EngineAPI, decoded to models", { try await timedAsync("models") { try await typed(); return 200 } }))
        }
        // Warm every connection.
        for _ in 0..<50 {
            _ = try raw.request("GET", rawTarget)
            _ = try spinningRaw.request("GET", rawTarget)
            _ = try curl.request()
            _ = try await client.transport.send(engineRequest)
            _ = try await sleepingTransport.send(engineRequest)
        }
        // Every client once per round, in an order that turns from round to round; a client's
        // ratio is the median of its round medians over the floor's of the same round, so the
        // engine's drift during the run (a tenth or more here) falls out.
        var times = Array(repeating: [Duration](), count: clients.count)
        var roundMedians = Array(repeating: [Duration](), count: clients.count)
        for round in 0..<rounds {
            for index in turnedOrder(clients.count, round: round) {
                let measured = try await clients[index].measure()
                times[index] += measured
                roundMedians[index].append(Stats(measured).median)
            }
        }
        let floor = Stats(times[0])
        for (index, measured) in clients.enumerated() {
            let stats = Stats(times[index])
            table.row([
                index == 0 ? call : "", measured.name, stats.medianText, stats.p90Text,
                index == 0 ? "1.00" : pairedRatio(roundMedians[index], over: roundMedians[0]),
            ])
        }
        if let python, let pythonStats = try? pythonLatency(python) {
            table.row(["", "docker-py", pythonStats.medianText, pythonStats.p90Text, ratio(pythonStats, floor)])
        }
        if let cli, let docker = which("docker") {
            let times = try timedCalls("docker CLI", count: 30, apart: .zero) {
                try runProcess(docker, cli, environment: ["DOCKER_HOST": "unix://\(socket)"])
                return 200
            }
            let cliStats = Stats(times)
            table.row(["", "docker CLI (spawned)", cliStats.medianText, cliStats.p90Text, ratio(cliStats, floor)])
        }
    }

    /// docker-py timed in its own process, so interpreter start-up is not counted against it.
    private func pythonLatency(_ call: String) throws -> Stats? {
        guard let python = which("python3") else { return nil }
        let script = """
            import docker, time, json
            c = docker.DockerClient(base_url='unix://\(socket)')
            for _ in range(50): \(call)
            t = []
            for _ in range(\(min(requests, 1000))):
                s = time.perf_counter_ns(); \(call); t.append(time.perf_counter_ns() - s)
            print(json.dumps(t))
            """
        let output = try runProcess(python, ["-c", script])
        guard let nanos = try? JSONDecoder().decode([Int64].self, from: Data(output.utf8)) else { return nil }
        return Stats(nanos.map { .nanoseconds($0) })
    }

    /// How this run was started, for the results: `make bench` passes `--socket` only.
    private var commandLine: String {
        let arguments = CommandLine.arguments.dropFirst()
        if Array(arguments) == ["--socket", EngineEndpoint.defaultSocketPath] { return "make bench" }
        return (["berth-bench"] + arguments).joined(separator: " ")
    }

    private func machineLine(_ client: DockerClient) async throws -> String {
        let version = try await client.version()
        let info = try await client.info()
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        let memory = ProcessInfo.processInfo.physicalMemory >> 30
        return "\(cpus) cores, \(memory) GiB, kernel \(version.kernelVersion ?? "?"), Docker \(version.version) (API \(version.apiVersion)), cgroup \(info.cgroupVersion ?? "?")"
    }
}

/// `count` timed calls, each checked for a 200, each after `apart` of untimed waiting (spent
/// spinning, so that the waiting does not put the calling thread to sleep).
func timedCalls(_ name: String, count: Int, apart: Duration, _ call: () throws -> Int) throws -> [Duration] {
    let clock = ContinuousClock()
    var times: [Duration] = []
    for _ in 0..<count {
        let idle = clock.now
        while clock.now - idle < apart {}
        let start = clock.now
        let status = try call()
        times.append(clock.now - start)
        guard status == 200 else { throw BenchError("\(name) got \(status)") }
    }
    return times
}

/// `timedCalls` of a call that awaits.
func timedCalls(_ name: String, count: Int, apart: Duration, _ call: () async throws -> Int) async throws -> [Duration] {
    let clock = ContinuousClock()
    var times: [Duration] = []
    for _ in 0..<count {
        let idle = clock.now
        while clock.now - idle < apart {}
        let start = clock.now
        let status = try await call()
        times.append(clock.now - start)
        guard status == 200 else { throw BenchError("\(name) got \(status)") }
    }
    return times
}

func ratio(_ value: Stats, _ floor: Stats) -> String {
    String(format: "%.2f", Double(value.median.nanoseconds) / Double(max(1, floor.median.nanoseconds)))
}

/// The indices 0..<count in the order of one round: it starts at `round` (mod count) and steps
/// through the ways by a stride that changes every `count` rounds, so each way opens as many
/// rounds as the others and comes after different ways from block to block. With a fixed stride
/// of 1 every way came after the same one in nearly every round: whatever that one left the
/// engine doing weighed on it alone.
func turnedOrder(_ count: Int, round: Int) -> [Int] {
    guard count > 1 else { return Array(0..<count) }
    func coprime(_ a: Int, _ b: Int) -> Bool { b == 0 ? a == 1 : coprime(b, a % b) }
    let strides = (1..<count).filter { coprime($0, count) }
    let stride = strides[(round / count) % strides.count]
    return (0..<count).map { (round + $0 * stride) % count }
}

/// A 90 % interval of `statistic` over `count` rounds by the bootstrap: the rounds drawn again
/// with replacement 2,000 times (a fixed seed, so a run's figures can be reproduced from its
/// samples), the 5th and 95th percentiles of what `statistic` makes of each draw. Nil for fewer
/// than 5 rounds.
func bootstrapInterval(rounds count: Int, _ statistic: ([Int]) -> Double) -> (low: Double, high: Double)? {
    guard count >= 5 else { return nil }
    var generator = SeededGenerator(seed: 0x5EED_BE27)
    var values: [Double] = []
    values.reserveCapacity(2000)
    for _ in 0..<2000 {
        values.append(statistic((0..<count).map { _ in Int.random(in: 0..<count, using: &generator) }))
    }
    values.sort()
    return (values[100], values[1899])
}

/// The median as `Stats` takes it (the upper middle), of plain numbers.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// The median over paired samples (the same round of a run) of `values[i] / floors[i]`.
func pairedRatio(_ values: [Duration], over floors: [Duration]) -> String {
    let ratios = zip(values, floors).map { Double($0.nanoseconds) / Double(max(1, $1.nanoseconds)) }.sorted()
    guard !ratios.isEmpty else { return "—" }
    let middle = ratios.count / 2
    let median = ratios.count % 2 == 1 ? ratios[middle] : (ratios[middle - 1] + ratios[middle]) / 2
    return String(format: "%.2f", median)
}

func which(_ name: String) -> String? {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// Runs a program to its end and returns its stdout; a non-zero exit throws with the last line
/// of its stderr. Spawned and reaped directly: Foundation's `Process.waitUntilExit` wakes every
/// 50 ms to look, which put up to 50 ms on every timed command.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:], stdin: Data? = nil) throws -> String {
    // Kept aside, for the error: a pipe could fill while stdout is read.
    let errors = FileManager.default.temporaryDirectory.appendingPathComponent("berth-bench-stderr-\(UUID().uuidString)").path
    defer { unlink(errors) }
    var output: [Int32] = [0, 0], input: [Int32] = [0, 0]
    guard pipe(&output) == 0, pipe(&input) == 0 else { throw BenchError("no pipe: \(String(cString: strerror(errno)))") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, input[0], 0)
    posix_spawn_file_actions_adddup2(&actions, output[1], 1)
    posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    for fd in input + output { posix_spawn_file_actions_addclose(&actions, fd) }
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for pointer in argv + envp { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
    close(input[0])
    close(output[1])
    guard spawned == 0 else {
        close(input[1])
        close(output[0])
        throw BenchError("cannot run \(executable): \(String(cString: strerror(spawned)))")
    }
    if let stdin {
        stdin.withUnsafeBytes { bytes in _ = write(input[1], bytes.baseAddress, bytes.count) }
    }
    close(input[1])
    var collected = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(output[0], &buffer, buffer.count)
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        collected.append(contentsOf: buffer[0..<count])
    }
    close(output[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exited = status & 0x7f == 0
    let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    guard code == 0 else {
        let said = (try? String(contentsOfFile: errors, encoding: .utf8))?.split(separator: "\n").last.map { ": \($0)" } ?? ""
        throw BenchError("\(executable) \(arguments.first ?? "") exited \(code)\(said)")
    }
    return String(decoding: collected, as: UTF8.self)
}
