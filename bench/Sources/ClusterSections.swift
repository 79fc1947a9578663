import BerthAPI
import CCurl
import BerthCore
import BerthPasswords
import HTTPClient
import NIOTransport
import EngineAPI
import Foundation
import UnitProtocol

/// The cluster tables, each against its floor in the same run: login-to-ready for 1, 2 and 4
/// units (also against the esProc design's docker CLI way) and `berth call` throughput in
/// `cluster.md`, the login storm in `storm.md`, the daemons' memory over many logins in
/// `footprint.md`.
struct ClusterSections {
    let client: DockerClient
    let socket: String
    let version: APIVersion
    let logins: Int
    let callMegabytes: Int
    let storm: StormSection.Settings
    let footprint: FootprintSection.Settings
    /// Which of `login` (with call), `call` (alone), `storm`, `footprint` to run.
    let parts: Set<String>
    let machine: String
    let command: String
    let results: String
    /// Leave each cluster's folder in place, logs and all.
    let keep: Bool

    var binaries: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    func run() async throws {
        // A run cut short leaves its units behind; they would hold the ports.
        try await BenchCluster.removeLeftovers(client: client)
        if parts.contains("login") || parts.contains("call") || parts.contains("copy") {
            var report = Report(title: "Login to ready and berth call throughput")
            report.header(machine: machine)
            try await withCluster(users: ["bench": BenchCluster.hosts, "bench1": [BenchCluster.hosts[0]], "bench4": BenchCluster.hosts + BenchCluster.hosts]) { cluster in
                // The same 2-unit user on a cluster that speaks TLS, side by side.
                try await withCluster(users: ["benchtls": BenchCluster.hosts], tls: true) { tlsCluster in
                    if parts.contains("login") {
                        try await loginToReady(cluster, tls: tlsCluster, into: &report)
                        try await handshakes(plain: cluster, tls: tlsCluster, into: &report)
                    }
                    if parts.contains("login") || parts.contains("call") { try await callThroughput(cluster, tls: tlsCluster, into: &report) }
                    if parts.contains("login") { try await keystrokes(cluster, into: &report) }
                    if parts.contains("login") || parts.contains("copy") { try await copies(cluster, into: &report) }
                    idleMemory(plain: cluster, tls: tlsCluster, into: &report)
                }
            }
            report.command(command)
            try report.write(to: results, name: "cluster.md")
        }
        if parts.contains("storm") {
            var report = Report(title: "Login storm")
            report.header(machine: machine)
            try await StormSection(sections: self, settings: storm).run(into: &report)
            report.command(command)
            try report.write(to: results, name: "storm.md")
        }
        if parts.contains("footprint") {
            var report = Report(title: "Footprint of the daemons")
            report.header(machine: machine)
            try await FootprintSection(sections: self, settings: footprint).run(into: &report)
            report.command(command)
            try report.write(to: results, name: "footprint.md")
        }
    }

    /// A cluster for `body`, shut down and cleaned up after it whatever happens.
    func withCluster(users: [String: [String]], concurrentStarts: Int? = nil, tls: Bool = false, _ body: (BenchCluster) async throws -> Void) async throws {
        let cluster = try await BenchCluster(binaries: binaries, users: users, concurrentStarts: concurrentStarts, tls: tls)
        do {
            try await body(cluster)
        } catch {
            cluster.shutdown(keep: keep)
            try? await BenchCluster.removeLeftovers(client: client)
            throw error
        }
        cluster.shutdown(keep: keep)
        // The agents keep a user's network for a while after logout; these agents are gone.
        try await BenchCluster.removeLeftovers(client: client)
    }

    /// Lets the engine finish what a removal left it doing in the background (the network
    /// sandbox, the port's proxy and rules), so each way starts on a quiet host.
    private func settle() async throws {
        try await Task.sleep(for: .milliseconds(300))
    }

    private func loginToReady(_ cluster: BenchCluster, tls tlsCluster: BenchCluster, into report: inout Report) async throws {
        let clock = ContinuousClock()
        let starter = RawUnitStarter(socketPath: socket, version: version, share: cluster.share)
        var bareStarter = starter
        bareStarter.bare = true
        let cli = which("docker").map { CLIUnitStarter(docker: $0, socketPath: socket, share: cluster.share) }
        var table = Table(columns: ["login of a user with N units on 2 agents", "median", "p90", "× floor"])
        var allChecks: [Duration] = []
        var parts: Table?
        var own = Table(columns: ["each login timed from outside", "the manager and agents beyond the engine's create and start", "the `berth` process beyond the manager's work"])
        for (user, count) in [("bench1", 1), ("bench", 2), ("bench4", 4)] {
            let units = cluster.benchUnits(user)
            var floor: [Duration] = []
            var bare: [Duration] = []
            var berth: [Duration] = []
            var dockerRuns: [Duration] = []
            var berthTLS: [Duration] = []
            var outside: [Duration] = []
            var outsideTLS: [Duration] = []
            var floorParts: [StartParts] = []
            // Each measured floor round's engine part: its longest create + start.
            var floorEngine: [Duration] = []
            var tlsOrder: [(outside: Bool, measured: Bool)] = []
            // Which of the two ways logged in, in order: the manager logs a check for each.
            var berthOrder: [(outside: Bool, measured: Bool)] = []
            enum Way: CaseIterable { case berth, floor, cli, berthTLS, outside, outsideTLS, bare }
            for round in 0...logins {
                // Each way once per round, each on a quiet engine; the order turns from round to
                // round, and no way always follows the same one. Berth comes first in the warm-up
                // round: its first login creates the user's networks, which the other two use.
                let ways = Way.allCases
                for way in turnedOrder(ways.count, round: round).map({ ways[$0] }) {
                    try await settle()
                    let start = clock.now
                    switch way {
                    case .berth:
                        let session = try await cluster.login(user)
                        let time = clock.now - start
                        try await cluster.logout(token: session.token)
                        if round > 0 { berth.append(time) }
                        berthOrder.append((false, round > 0))
                    case .outside:
                        // The `berth` process as a user runs it, timed from here until it exits.
                        let token = try loginProcess(cluster, user: user)
                        let time = clock.now - start
                        try await cluster.logout(token: token)
                        if round > 0 { outside.append(time) }
                        berthOrder.append((true, round > 0))
                    case .floor:
                        let started = try await starter.startAndWait(units, memoryBytes: 128 << 20)
                        let time = clock.now - start
                        for one in started { try await client.removeContainer(one.id, force: true) }
                        if round > 0 {
                            floor.append(time)
                            floorParts += started.map(\.parts)
                            floorEngine.append(started.map { $0.parts.create + $0.parts.start }.max() ?? .zero)
                        }
                    case .bare:
                        let started = try await bareStarter.startAndWait(units, memoryBytes: 128 << 20)
                        let time = clock.now - start
                        for one in started { try await client.removeContainer(one.id, force: true) }
                        if round > 0 { bare.append(time) }
                    case .berthTLS:
                        // The 2-unit user of the TLS cluster: one unit per agent, as `bench`.
                        guard count == 2 else { continue }
                        let session = try await tlsCluster.login("benchtls")
                        let time = clock.now - start
                        try await tlsCluster.logout(token: session.token)
                        if round > 0 { berthTLS.append(time) }
                        tlsOrder.append((false, round > 0))
                    case .outsideTLS:
                        guard count == 2 else { continue }
                        let token = try loginProcess(tlsCluster, user: "benchtls", extra: ["--ca", tlsCluster.caFile])
                        let time = clock.now - start
                        try await tlsCluster.logout(token: token)
                        if round > 0 { outsideTLS.append(time) }
                        tlsOrder.append((true, round > 0))
                    case .cli:
                        guard let cli else { continue }
                        let ids = try await cli.startAndWait(units, memory: "128m")
                        let time = clock.now - start
                        for id in ids { try await client.removeContainer(id, force: true) }
                        // The first round warms the engine, the page cache and the user's networks for all.
                        if round > 0 { dockerRuns.append(time) }
                    }
                }
            }
            // The manager's own check of each of these logins, in the order they were made.
            let logged = Array(cluster.passwordChecks(of: user).suffix(berthOrder.count))
            guard logged.count == berthOrder.count else {
                throw BenchError("the manager's log has \(logged.count) password checks of \(user) for \(berthOrder.count) logins")
            }
            let checks = zip(berthOrder, logged).filter { $0.0.measured && !$0.0.outside }.map(\.1)
            let outsideChecks = zip(berthOrder, logged).filter { $0.0.measured && $0.0.outside }.map(\.1)
            allChecks += checks + outsideChecks
            // What the daemons logged of these logins, read once for every table that uses it.
            let starts = cluster.unitStarts(of: user)
            let engine = cluster.engineTimes(of: user, logins: berthOrder.count)
            own.row(["\(count) unit\(count == 1 ? "" : "s")"] + ownParts(outside, order: berthOrder, checks: logged, managerStarts: starts.logins, engine: engine))
            if count == 1 {
                parts = try startParts(starts, order: berthOrder, checks: logged, outside: outside, floor: floorParts)
            }
            let floorStats = Stats(floor), berthStats = Stats(berth)
            let label = "\(count) unit\(count == 1 ? "" : "s")"
            table.row(["\(label): raw HTTP create + start + health, in parallel (floor)", floorStats.medianText, floorStats.p90Text, "1.00"])
            let withoutKDF = zip(berth, checks).map { $0 - $1 }
            table.row(["\(label): berth login → every unit ready", berthStats.medianText, berthStats.p90Text,
                       "\(pairedRatio(berth, over: floor)) (\(pairedRatio(withoutKDF, over: floor)) less the password check)"])
            /// Berth's own share: what is left of the process's time once the floor and the
            /// login's own password check are taken off, over the floor; median of the rounds.
            func overhead(_ times: [Duration], _ checks: [Duration]) -> String {
                let shares = zip(zip(times, checks), floor).map { pair, floor in
                    Double((pair.0 - pair.1 - floor).nanoseconds) / Double(max(1, floor.nanoseconds))
                }
                guard !shares.isEmpty else { return "—" }
                return shareText(median(shares), bootstrapInterval(rounds: shares.count) { picks in median(picks.map { shares[$0] }) })
            }
            /// The same share with each side's engine part (its longest create + start, as the
            /// agents log it or the floor times it) taken off first: one start differs from the
            /// next by tens of milliseconds, which the share above carries round by round and
            /// this does not. `engine` holds every login of the way, in order.
            func netOverhead(_ times: [Duration], _ checks: [Duration], _ order: [(outside: Bool, measured: Bool)], _ engine: [Duration]?) -> String {
                guard let engine, engine.count == order.count, !times.isEmpty, floor.count == floorEngine.count else { return "—" }
                let own = zip(order, engine).filter { $0.0.measured && $0.0.outside }.map(\.1)
                guard own.count == times.count else { return "—" }
                // Round by round: the logins and the floors of the measured rounds line up.
                let berthRest = zip(zip(times, checks), own).map { Double(($0.0 - $0.1 - $1).nanoseconds) }
                let floorRest = zip(floor, floorEngine).map { Double(($0 - $1).nanoseconds) }
                let floors = floor.map { Double($0.nanoseconds) }
                let rounds = min(berthRest.count, floorRest.count)
                func share(_ picks: [Int]) -> Double {
                    (median(picks.map { berthRest[$0] }) - median(picks.map { floorRest[$0] })) / max(1, median(picks.map { floors[$0] }))
                }
                return shareText(share(Array(0..<rounds)), bootstrapInterval(rounds: rounds, share))
            }
            /// A share with its 90 % interval: `+3.2 % (+1.0 to +5.1 %)`.
            func shareText(_ share: Double, _ interval: (low: Double, high: Double)?) -> String {
                let text = String(format: "%+.1f %%", 100 * share)
                guard let interval else { return text }
                return text + String(format: " (%+.1f to %+.1f %%)", 100 * interval.low, 100 * interval.high)
            }
            if !outside.isEmpty {
                let outsideStats = Stats(outside)
                table.row(["\(label): berth login, the process from start to exit, timed from outside", outsideStats.medianText, outsideStats.p90Text,
                           "\(pairedRatio(outside, over: floor)); Berth's overhead \(overhead(outside, outsideChecks)) of the floor, "
                           + "\(netOverhead(outside, outsideChecks, berthOrder, engine)) net of the engine"])
            }
            if !berthTLS.isEmpty {
                let logged = Array(tlsCluster.passwordChecks(of: "benchtls").suffix(tlsOrder.count))
                let complete = logged.count == tlsOrder.count
                let tlsChecks = zip(tlsOrder, logged).filter { $0.0.measured && !$0.0.outside }.map(\.1)
                let outsideTLSChecks = zip(tlsOrder, logged).filter { $0.0.measured && $0.0.outside }.map(\.1)
                let tlsStats = Stats(berthTLS)
                let lessCheck = complete ? " (\(pairedRatio(zip(berthTLS, tlsChecks).map { $0 - $1 }, over: floor)) less the password check)" : ""
                table.row(["\(label): berth login with TLS (manager, agents, units) → every unit ready", tlsStats.medianText, tlsStats.p90Text,
                           "\(pairedRatio(berthTLS, over: floor))\(lessCheck)"])
                if !outsideTLS.isEmpty {
                    let tlsEngine = tlsCluster.engineTimes(of: "benchtls", logins: tlsOrder.count)
                    own.row(["\(label) with TLS (`--ca`)"] + ownParts(
                        outsideTLS, order: tlsOrder, checks: logged, managerStarts: tlsCluster.unitStarts(of: "benchtls").logins, engine: tlsEngine))
                    let stats = Stats(outsideTLS)
                    let net = netOverhead(outsideTLS, outsideTLSChecks, tlsOrder, tlsEngine)
                    let share = complete ? "; Berth's overhead \(overhead(outsideTLS, outsideTLSChecks)) of the floor, \(net) net of the engine" : ""
                    table.row(["\(label): berth login --ca with TLS, the process from start to exit, timed from outside", stats.medianText, stats.p90Text,
                               "\(pairedRatio(outsideTLS, over: floor))\(share)"])
                }
            }
            if !bare.isEmpty {
                let bareStats = Stats(bare)
                table.row(["\(label): the floor on the engine's default bridge, no network of the user's (bare floor)", bareStats.medianText, bareStats.p90Text,
                           "\(pairedRatio(bare, over: floor)); Berth from outside \(pairedRatio(outside, over: bare)) of it"])
            }
            if !dockerRuns.isEmpty {
                let cliStats = Stats(dockerRuns)
                table.row(["\(label): docker run -d per unit, one after another, then wait (the esProc design's raq_start.sh)", cliStats.medianText, cliStats.p90Text, pairedRatio(dockerRuns, over: floor)])
            }
        }
        if let parts {
            report.section(parts, note: """
                The 1-unit logins above, part by part: the floor's own create, start and wait for the health answer, \
                against what the agent logs of each start (`create_ms`, `start_ms`, `ready_ms`); the manager's part \
                is its logged `start_ms` less the agent's three; the `berth` process's part is its time from outside \
                less the manager's `check_ms` and `start_ms` of the same login. Medians of the measured rounds.
                """)
        }
        report.section(own, note: """
            Where Berth's own time goes in each login timed from outside, medians of the measured rounds: the \
            manager's logged `start_ms` less the engine's part (the longest create + start among the login's units, \
            as the agents log them; readiness probes, requests and answers stay in), and the process's time less the \
            manager's `check_ms` and `start_ms` of the same login (start, connection, TLS, session file, exit).
            """)
        let checkStats = Stats(allChecks)
        table.row(["the manager's password check in these logins (Argon2id m=19 MiB, t=2, p=1)", checkStats.medianText, checkStats.p90Text, "—"])
        // The two kinds of <PwdHash> side by side, in this process: what moving to Argon2id cost.
        let argon2 = try PasswordHash.make("bench-password"), scrypt = try PasswordHash.make("bench-password", .scrypt(rounds: 1 << 14, blockSize: 8, parallelism: 1))
        var argonTimes: [Duration] = [], scryptTimes: [Duration] = []
        for _ in 0..<11 {
            argonTimes.append(ContinuousClock().measure { _ = PasswordHash.verify("bench-password", against: argon2) })
            scryptTimes.append(ContinuousClock().measure { _ = PasswordHash.verify("bench-password", against: scrypt) })
        }
        let argonStats = Stats(argonTimes), scryptStats = Stats(scryptTimes)
        table.row(["one Argon2id check (m=19 MiB, t=2, p=1; new hashes), in this process", argonStats.medianText, argonStats.p90Text, "—"])
        table.row(["one scrypt check (N=2^14, r=8, p=1; older hashes), in this process", scryptStats.medianText, scryptStats.p90Text, "—"])
        report.section(table, note: """
            \(logins) logins per row after one warm-up round. Each round runs every way once, each after a 300 ms \
            pause that lets the engine finish the previous removal, in an order that turns from round to round; \
            "× floor" is the median of each round's time over that round's floor, so a drift of the engine's speed \
            during the run cancels out. 2 units are one per agent, \
            4 units two per agent. "Less the password check" takes each login's own check, as the manager logs it \
            (`check_ms`), off that login's time. "Timed from outside" runs `berth login --password-stdin` as a user \
            would and waits for it to exit (process start, TLS or not, the session file written); Berth's overhead is \
            (that time − the floor − the login's own password check) / the floor, the median over the rounds. Net of the \
            engine, each login's engine part (its longest create + start, as the agents log them) and each floor's (as \
            it times them) comes off first, since one start differs from the next by tens of milliseconds: (the median \
            of Berth's rest − the median of the floor's rest) / the median floor. In brackets, each share's 90 % interval: \
            the rounds drawn again with replacement 2,000 times, the 5th and 95th percentiles of the share so made. Berth's time runs from the login request to the manager's `done`: password check, \
            home folders, port checks, create, start, and the agents' readiness probes, for all units in parallel. \
            The floor and the docker CLI create the same containers as Berth (image, command, limits, mounts, port \
            binding, the user's network, PIDs limit, no-new-privileges, no capabilities, the user's account); the floor waits for each unit's health \
            answer. The bare floor is the same on the engine's default bridge, shared by every container: what \
            the user's own network costs the engine. The CLI is `docker run -d --init -m 128m --cpu-shares 1024 -v share:/share:ro -v home:/app \
            -p ip:port:port --network … …` per unit, one after another as the esProc design's raq_start.sh is run, then a \
            wait until every unit answers.
            """)
    }

    /// Where a 1-unit login's time goes next to the floor's, from the daemons' logs: `order` says
    /// which logins were measured and which ran as a `berth` process, `checks` their password checks.
    private func startParts(
        _ logged: (units: [StartParts], logins: [Duration]), order: [(outside: Bool, measured: Bool)], checks: [Duration],
        outside: [Duration], floor: [StartParts]
    ) throws -> Table {
        guard logged.units.count >= order.count, logged.logins.count >= order.count else {
            throw BenchError("the daemons' logs have \(logged.units.count) unit starts and \(logged.logins.count) logins for \(order.count) logins")
        }
        let units = Array(logged.units.suffix(order.count)), logins = Array(logged.logins.suffix(order.count))
        let measured = order.indices.filter { order[$0].measured }
        let berth = measured.map { units[$0] }
        let manager = measured.map { logins[$0] - units[$0].create - units[$0].start - units[$0].ready }
        let process = processParts(outside, at: measured.filter { order[$0].outside }, checks: checks, starts: logins)
        func median(_ values: [Duration]) -> String { values.isEmpty ? "—" : Stats(values).medianText }
        func difference(_ berth: [Duration], _ floor: [Duration]) -> String {
            guard !berth.isEmpty, !floor.isEmpty else { return "—" }
            let ms = Double((Stats(berth).median - Stats(floor).median).nanoseconds) / 1e6
            return String(format: "%+.1f ms", ms)
        }
        var table = Table(columns: ["a 1-unit login, part by part", "floor", "Berth", "Berth − floor"])
        table.row(["the engine's create", median(floor.map(\.create)), median(berth.map(\.create)), difference(berth.map(\.create), floor.map(\.create))])
        table.row(["the engine's start", median(floor.map(\.start)), median(berth.map(\.start)), difference(berth.map(\.start), floor.map(\.start))])
        table.row(["until the unit serves (the floor's health polls every 5 ms; the agent's probes)", median(floor.map(\.ready)), median(berth.map(\.ready)),
                   difference(berth.map(\.ready), floor.map(\.ready))])
        table.row(["the manager and the agent around the engine (request, checks, session, answer)", "—", median(manager), "+" + median(manager)])
        table.row(["the `berth` process beyond the manager's work (start, connection, session file, exit)", "—", median(process), "+" + median(process)])
        return table
    }

    /// The medians of the manager's part beyond the engine and of the `berth` process's part
    /// beyond the manager, over the measured outside logins of a way; `order` says which of
    /// `checks`, `managerStarts` and `engine` (every login of the user, in order) those were.
    private func ownParts(_ outside: [Duration], order: [(outside: Bool, measured: Bool)], checks: [Duration], managerStarts: [Duration], engine: [Duration]?) -> [String] {
        guard !outside.isEmpty, checks.count == order.count, managerStarts.count >= order.count, let engine, engine.count == order.count else { return ["—", "—"] }
        let starts = Array(managerStarts.suffix(order.count))
        let picked = order.indices.filter { order[$0].measured && order[$0].outside }
        guard picked.count == outside.count else { return ["—", "—"] }
        let manager = picked.map { starts[$0] - engine[$0] }
        return [Stats(manager).medianText, Stats(processParts(outside, at: picked, checks: checks, starts: starts)).medianText]
    }

    /// The `berth` process's part of each login timed from outside: its time less what the
    /// manager logged of the same login, the check and the start. `logins` are the outside
    /// logins' places in `checks` and `starts`, in the order of `outside`.
    private func processParts(_ outside: [Duration], at logins: [Int], checks: [Duration], starts: [Duration]) -> [Duration] {
        zip(outside, logins).map { time, index in time - checks[index] - starts[index] }
    }

    /// Runs `berth login` for `user` as a user would, the password on stdin; returns the token
    /// from the session file it wrote.
    private func loginProcess(_ cluster: BenchCluster, user: String, extra: [String] = []) throws -> String {
        let sessionFile = cluster.root + "/session-outside-\(user).json"
        try runProcess(binaries + "/berth", ["login", "--server", cluster.manager.description, "--user", user, "--password-stdin", "--force"] + extra,
                       environment: ["BERTH_SESSION": sessionFile], stdin: Data((cluster.password + "\n").utf8))
        let data = try Data(contentsOf: URL(fileURLWithPath: sessionFile))
        guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any], let token = json["token"] as? String else {
            throw BenchError("berth login \(user) wrote no token to \(sessionFile)")
        }
        return token
    }

    /// What a TLS handshake with the manager costs against a TCP connection alone.
    private func handshakes(plain: BenchCluster, tls: BenchCluster, into report: inout Report) async throws {
        let clock = ContinuousClock()
        var connects: [Duration] = []
        var handshakes: [Duration] = []
        for _ in 0..<30 {
            var start = clock.now
            guard canConnect(host: plain.manager.host, port: plain.manager.port, expectBytes: false) else { throw BenchError("no manager at \(plain.manager)") }
            connects.append(clock.now - start)
            start = clock.now
            guard await TLSProbe.certificate(host: tls.manager.host, port: tls.manager.port) != nil else { throw BenchError("no TLS manager at \(tls.manager)") }
            handshakes.append(clock.now - start)
        }
        var table = Table(columns: ["a new connection to the manager", "median", "p90"])
        let tcp = Stats(connects), handshake = Stats(handshakes)
        table.row(["TCP connect", tcp.medianText, tcp.p90Text])
        table.row(["TCP connect and TLS 1.3 handshake (ECDSA P-256), libcurl on a thread of its own", handshake.medianText, handshake.p90Text])
        report.section(table, note: "30 of each, alternating. A login pays one handshake with the manager; the manager keeps its connections to the agents open between logins, so a login pays none there once they are made.")
    }

    /// The daemons' resident memory once the rows above are done, plain and with TLS.
    private func idleMemory(plain: BenchCluster, tls: BenchCluster, into report: inout Report) {
        func megabytes(_ pid: Int32) -> String {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let kilobytes = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
            return String(format: "%.1f MB", Double(kilobytes) / 1024)
        }
        var table = Table(columns: ["resident memory after the rows above, idle", "agent 127.0.0.2 (with the manager's host)", "agent 127.0.0.3", "manager"])
        for (name, cluster) in [("plain HTTP", plain), ("TLS", tls)] {
            table.row([name] + cluster.agentPIDs.map(megabytes) + [megabytes(cluster.managerPID)])
        }
        report.section(table, note: "VmRSS of each daemon, read once after its logins, calls and logouts. The plain cluster served more logins (three users).")
    }

    private func callThroughput(_ cluster: BenchCluster, tls tlsCluster: BenchCluster, into report: inout Report) async throws {
        try writeBigScript(home: tlsCluster.home("benchtls"))
        let home = cluster.home("bench")
        try writeBigScript(home: home)
        let perUnit = callMegabytes << 19

        let session = try await cluster.login("bench")
        let units = cluster.units["bench"]!
        let sessionFile = try writeSession(cluster, user: "bench", session)
        let tlsSession = try await tlsCluster.login("benchtls")
        let tlsSessionFile = try writeSession(tlsCluster, user: "benchtls", tlsSession)

        var peakKB = 0
        var peakAnonKB = 0
        // A run lasts about 70 ms, so many are cheap; the order turns from round to round and each
        // round's ratio is taken, as for logins: seven runs in a fixed order gave 0.77 to 0.92×
        // over TLS within minutes.
        let callRuns = 21
        /// The call's time and the CPU the `berth` process used.
        func berthCall(_ script: String, _ session: String, _ what: String, watchingMemory: Bool = false) throws -> (time: Duration, cpu: Duration) {
            let run = try spawnMeasured(binaries + "/berth", ["call", script, "--split"], environment: ["BERTH_SESSION=\(session)"], watchingMemory: watchingMemory)
            guard run.status == 0 else { throw BenchError("\(what) failed with status \(run.status)") }
            peakKB = max(peakKB, run.maxRSSKB)
            peakAnonKB = max(peakAnonKB, run.maxAnonKB)
            return (run.elapsed, run.cpu)
        }
        // The peak memory from runs of their own, untimed.
        for _ in 0..<3 {
            _ = try berthCall("big.sh", sessionFile, "berth call", watchingMemory: true)
            _ = try berthCall("big.sh", tlsSessionFile, "berth call over TLS", watchingMemory: true)
        }
        /// Each way's times over the rounds (the floor, berth, berth over TLS) and the CPU each
        /// way's reader spent: the floor's two reading threads, the `berth` process.
        struct Ways {
            var floor: [Duration] = [], berth: [Duration] = [], tls: [Duration] = [], tlsFloor: [Duration] = []
            var floorCPU: [Duration] = [], berthCPU: [Duration] = [], tlsCPU: [Duration] = [], tlsFloorCPU: [Duration] = []
        }
        let tlsUnits = tlsCluster.units["benchtls"]!
        curl_global_init(Int(CURL_GLOBAL_ALL))
        /// Both units' answers read in parallel, by `read`; the time and the readers' CPU.
        func rawRead(
            _ units: [HostPort], least: Int, _ what: String, _ read: @escaping @Sendable (HostPort) throws -> (bytes: Int, cpu: Duration)
        ) async throws -> (Duration, Duration) {
            let clock = ContinuousClock()
            let start = clock.now
            let (bytes, cpu) = try await withThrowingTaskGroup(of: (bytes: Int, cpu: Duration).self) { group in
                for unit in units { group.addTask { try read(unit) } }
                var total = (0, Duration.zero)
                for try await answer in group { total = (total.0 + answer.bytes, total.1 + answer.cpu) }
                return total
            }
            guard bytes >= least else { throw BenchError("\(what) read \(bytes) bytes, expected \(least)") }
            return (clock.now - start, cpu)
        }
        func rounds(_ script: String, expecting least: Int) async throws -> Ways {
            var ways = Ways()
            let secret = session.unitSecret, tlsSecret = tlsSession.unitSecret
            for round in 0...callRuns {
                var floor = (Duration.zero, Duration.zero), berth = floor, tls = floor, tlsFloor = floor
                for way in turnedOrder(4, round: round) {
                    switch way {
                    case 0:
                        floor = try await rawRead(units, least: least, "the floor") { try rawCall($0, script: script, secret: secret) }
                    case 1:
                        berth = try berthCall(script, sessionFile, "berth call")
                    case 2:
                        tls = try berthCall(script, tlsSessionFile, "berth call over TLS")
                    default:
                        tlsFloor = try await rawRead(tlsUnits, least: least, "the TLS floor") { try rawTLSCall($0, script: script, secret: tlsSecret) }
                    }
                }
                if round > 0 {
                    ways.floor.append(floor.0)
                    ways.berth.append(berth.0)
                    ways.tls.append(tls.0)
                    ways.tlsFloor.append(tlsFloor.0)
                    ways.floorCPU.append(floor.1)
                    ways.berthCPU.append(berth.1)
                    ways.tlsCPU.append(tls.1)
                    ways.tlsFloorCPU.append(tlsFloor.1)
                }
            }
            return ways
        }
        let big = try await rounds("big.sh", expecting: 2 * perUnit)
        let line = try await rounds("line.sh", expecting: 2)
        let megabytes = Double(2 * perUnit) / 1_048_576
        func throughput(_ stats: Stats) -> String {
            String(format: "%.0f MB/s", megabytes / (Double(stats.median.nanoseconds) / 1e9))
        }
        try await cluster.logout(token: session.token)
        try await tlsCluster.logout(token: tlsSession.token)
        let floor = Stats(big.floor), berth = Stats(big.berth), overTLS = Stats(big.tls)
        var table = Table(columns: ["\(Int(megabytes)) MB of script output from 2 units", "median", "throughput", "× floor throughput", "reader's CPU", "peak RSS"])
        table.row(["raw HTTP: POST /call on both units, frames read and dropped (floor)", floor.medianText, throughput(floor), "1.00", Stats(big.floorCPU).medianText, "—"])
        // Each round's floor time over the way's: its throughput as a share of the floor's.
        table.row(["berth call big.sh --split > /dev/null", berth.medianText, throughput(berth), pairedRatio(big.floor, over: big.berth), Stats(big.berthCPU).medianText, "\(peakKB / 1024) MB (own \(peakAnonKB / 1024) MB)"])
        table.row(["the same over TLS to units with session keys", overTLS.medianText, throughput(overTLS), pairedRatio(big.floor, over: big.tls), Stats(big.tlsCPU).medianText, "—"])
        let tlsFloor = Stats(big.tlsFloor)
        table.row(["raw HTTPS: POST /call on both TLS units with libcurl (OpenSSL, AES-128-GCM, no certificate check), frames read and dropped (a floor that decrypts)", tlsFloor.medianText, throughput(tlsFloor), pairedRatio(big.floor, over: big.tlsFloor), Stats(big.tlsFloorCPU).medianText, "—"])
        report.section(table, note: "\(callRuns) runs each after a warm-up round, in rounds whose order turns; \"× floor throughput\" is the median of each round's floor time over the way's. The floor reads both units' answers in parallel over plain TCP and keeps nothing; berth merges them in unit order, writing to /dev/null; the second unit's output spools to a temporary file until its turn. \"berth call\" over TLS is \(pairedRatio(big.tlsFloor, over: big.tls))× the throughput of the floor that decrypts, round by round. The reader's CPU is what the floors' two reading threads used (CLOCK_THREAD_CPUTIME_ID) and what the berth process used, start to exit (wait4's user and system time): the units and the engine's port proxy share the same two cores. Peak RSS is the largest berth process's maximum resident set (VmHWM) over three untimed runs each way, \"own\" its largest anonymous part (RssAnon): the rest is pages of the binary and libraries.")

        // What a call costs whatever its output: starting `berth`, reading the session, connecting.
        var fixed = Table(columns: ["a script printing one line, on 2 units", "median", "more than the floor (median of each round's difference)", "reader's CPU"])
        func more(_ times: [Duration]) -> String {
            let differences = zip(times, line.floor).map { $0 - $1 }
            return Stats(differences).medianText
        }
        fixed.row(["raw HTTP: POST /call on both units (floor)", Stats(line.floor).medianText, "—", Stats(line.floorCPU).medianText])
        fixed.row(["berth call line.sh --split > /dev/null", Stats(line.berth).medianText, more(line.berth), Stats(line.berthCPU).medianText])
        fixed.row(["the same over TLS", Stats(line.tls).medianText, more(line.tls), Stats(line.tlsCPU).medianText])
        fixed.row(["raw HTTPS with libcurl on both TLS units (the floor that decrypts)", Stats(line.tlsFloor).medianText, more(line.tlsFloor), Stats(line.tlsFloorCPU).medianText])
        report.section(fixed, note: "\(callRuns) rounds after a warm-up round, as above: what a call costs beyond the floor whatever the size of its output (the berth process's start and exit, its session, the connections and TLS handshakes), to set beside the rows above.")
    }

    /// `script/big.sh` printing `data/big.txt` of `callMegabytes / 2` MB, written a block at a time.
    private func writeBigScript(home: String) throws {
        try FileManager.default.createDirectory(atPath: home + "/data", withIntermediateDirectories: true)
        let perUnit = callMegabytes << 19
        // Written a block at a time, so this process stays small.
        let line = Array("0123456789 the quick brown fox jumps over the lazy dog, New York, 2026-11-22, 12345.67\n".utf8)
        let block = Data((0..<(1 << 20) / line.count).flatMap { _ in line })
        FileManager.default.createFile(atPath: home + "/data/big.txt", contents: nil)
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: home + "/data/big.txt"))
        var written = 0
        while written < perUnit {
            let piece = block.prefix(perUnit - written)
            try file.write(contentsOf: piece)
            written += piece.count
        }
        try file.close()
        try "cat /app/data/big.txt\n".write(toFile: home + "/script/big.sh", atomically: true, encoding: .utf8)
        try "echo one line\n".write(toFile: home + "/script/line.sh", atomically: true, encoding: .utf8)
        chown(home + "/data", BenchCluster.account.uid, BenchCluster.account.gid)
    }

    /// A session file for `berth`, as `berth login` writes it.
    /// bench1's one unit container, and the docker CLI, for the rows set against the CLI.
    func bench1Container() async throws -> (container: String, docker: String) {
        guard let container = try await client.listContainers(labels: ["\(UnitLabel.user)=bench1"]).first?.id else {
            throw BenchError("bench1's unit has no container")
        }
        guard let docker = ["/usr/bin/docker", "/usr/local/bin/docker"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchError("the docker CLI is missing (scripts/ensure-engine.sh installs docker.io)")
        }
        return (container, docker)
    }

    /// Runs `body` logged in as `user`, and logs out after, before the cluster may go.
    func withSession(_ cluster: BenchCluster, user: String, _ body: (BenchCluster.Login) async throws -> Void) async throws {
        let session = try await cluster.login(user)
        do {
            try await body(session)
        } catch {
            try? await cluster.logout(token: session.token)
            throw error
        }
        try await cluster.logout(token: session.token)
    }

    func writeSession(_ cluster: BenchCluster, user: String, _ session: BenchCluster.Login) throws -> String {
        let file = cluster.root + "/session-\(user).json"
        var payload: [String: Any] = [
            "server": cluster.manager.description, "user": user, "token": session.token,
            "units": cluster.units[user]!.map(\.description), "unitSecret": session.unitSecret, "since": ISO8601DateFormatter().string(from: Date()),
        ]
        if cluster.tls {
            payload["trust"] = ["caPEM": try String(contentsOfFile: cluster.caFile, encoding: .utf8)]
            payload["unitKeys"] = session.unitKeys.map { ["unit": $0.unit.description, "fingerprint": $0.fingerprint.description] }
        }
        try JSONSerialization.data(withJSONObject: payload).write(to: URL(fileURLWithPath: file))
        // As `berth login` makes it: `berth` refuses a session file others can read.
        chmod(file, 0o600)
        return file
    }
}

/// POST /call over TLS with libcurl, its body counted and dropped: a floor that decrypts, as
/// `berth call` over TLS must, with the cipher `berth` and the unit agree on. It checks no
/// certificate (the least a TLS client can do); a new handle per call, as `berth` is a new process.
private func rawTLSCall(_ unit: HostPort, script: String, secret: String) throws -> (bytes: Int, cpu: Duration) {
    let cpuAtStart = threadCPUTime()
    guard let handle = curl_easy_init() else { throw BenchError("curl_easy_init failed") }
    defer { curl_easy_cleanup(handle) }
    berth_setopt_string(handle, CURLOPT_URL, "https://\(unit.host):\(unit.port)\(UnitPath.call)")
    berth_setopt_string(handle, CURLOPT_PROXY, "")
    berth_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
    // Reads as large as libcurl takes: fewer calls than its 16 KiB.
    berth_setopt_long(handle, CURLOPT_BUFFERSIZE, 512 << 10)
    berth_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0)
    berth_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0)
    berth_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_3))
    berth_setopt_string(handle, CURLOPT_TLS13_CIPHERS, "TLS_AES_128_GCM_SHA256")
    berth_setopt_string(handle, CURLOPT_COPYPOSTFIELDS, #"{"script":"\#(script)","arguments":[]}"#)
    var headers = curl_slist_append(nil, "Authorization: Bearer \(secret)")
    headers = curl_slist_append(headers, "Content-Type: application/json")
    defer { curl_slist_free_all(headers) }
    berth_setopt_slist(handle, CURLOPT_HTTPHEADER, headers)
    var total = 0
    let code = withUnsafeMutablePointer(to: &total) { counter in
        berth_setopt_pointer(handle, CURLOPT_WRITEDATA, counter)
        berth_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION) { _, size, count, data in
            data!.assumingMemoryBound(to: Int.self).pointee += size * count
            return size * count
        }
        return curl_easy_perform(handle)
    }
    guard code == CURLE_OK else { throw BenchError("libcurl to \(unit): \(String(cString: curl_easy_strerror(code)))") }
    return (total, threadCPUTime() - cpuAtStart)
}

/// POST /call with a raw socket; returns the bytes received and the CPU time the reading thread
/// spent, which blocks in its reads and so runs nothing else meanwhile.
private func rawCall(_ unit: HostPort, script: String, secret: String) throws -> (bytes: Int, cpu: Duration) {
    let cpuAtStart = threadCPUTime()
    guard let fd = connectTCP(host: unit.host, port: unit.port) else { throw BenchError("cannot connect to \(unit)") }
    defer { close(fd) }
    let body = #"{"script":"\#(script)","arguments":[]}"#
    let request = "POST \(UnitPath.call) HTTP/1.1\r\nHost: unit\r\nAuthorization: Bearer \(secret)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    _ = request.withCString { write(fd, $0, strlen($0)) }
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    var total = 0
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { break }
        total += count
    }
    return (total, threadCPUTime() - cpuAtStart)
}

/// Runs a program and returns its status, wall time and, when `watchingMemory`, peak RSS. The
/// peak is the child's own `VmHWM`, polled every 2 ms while it runs: wait4's `ru_maxrss` would
/// include this (much larger) benchmark process, whose memory a spawned child shares until it
/// execs. Timed runs do not watch: the polls' wake-ups and reads of /proc took CPU from the
/// process timed, and its end was seen up to 2 ms late.
/// `cpu` is the child's user and system time, from `wait4` (zero when watching).
func spawnMeasured(_ path: String, _ arguments: [String], environment extra: [String], watchingMemory: Bool) throws -> (status: Int32, elapsed: Duration, cpu: Duration, maxRSSKB: Int, maxAnonKB: Int) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let env = (ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" } + extra).map { strdup($0) } + [nil]
    defer { (argv + env).forEach { free($0) } }
    let clock = ContinuousClock()
    let start = clock.now
    var pid: pid_t = 0
    guard posix_spawn(&pid, path, &actions, nil, argv, env) == 0 else { throw BenchError("cannot start \(path)") }
    var status: Int32 = 0
    var peakKB = 0
    var peakAnonKB = 0
    if !watchingMemory {
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let elapsed = clock.now - start
        return ((status >> 8) & 0xFF, elapsed, usage.ru_utime.duration + usage.ru_stime.duration, 0, 0)
    }
    while true {
        if let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
            func field(_ name: String) -> Int? {
                text.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") }
            }
            peakKB = max(peakKB, field("VmHWM:") ?? 0)
            peakAnonKB = max(peakAnonKB, field("RssAnon:") ?? 0)
        }
        let done = waitpid(pid, &status, WNOHANG)
        if done == pid || (done < 0 && errno != EINTR) { break }
        usleep(2000)
    }
    return ((status >> 8) & 0xFF, clock.now - start, .zero, peakKB, peakAnonKB)
}

extension timeval {
    var duration: Duration { .seconds(Int64(tv_sec)) + .microseconds(Int64(tv_usec)) }
}

/// The CPU time the calling thread has used.
func threadCPUTime() -> Duration {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return .seconds(Int64(now.tv_sec)) + .nanoseconds(Int64(now.tv_nsec))
}
