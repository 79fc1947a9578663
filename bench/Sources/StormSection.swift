import BerthConfig
import BerthAPI
import BerthCore
import EngineAPI
import Foundation

/// Many users logging in at once, one unit each, spread over the two agents: the time until all
/// are ready against as many raw starts at once, and each login's own time, for each agent start
/// limit (`<ConcurrentStarts>`) asked for.
struct StormSection {
    struct Settings {
        var users = 20
        var rounds = 3
        /// The agents' `<ConcurrentStarts>` to compare.
        var limits = [ServerConfig.defaultConcurrentStarts, ServerConfig.concurrentStartsRange.upperBound]
    }

    let sections: ClusterSections
    let settings: Settings

    private struct Round {
        var total: Duration
        var logins: [Duration]
        var queued = 0
        var failures: [String] = []
    }

    func run(into report: inout Report) async throws {
        let names = (1...settings.users).map { String(format: "benchstorm%02d", $0) }
        let users = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, [BenchCluster.hosts[$0 % BenchCluster.hosts.count]]) })
        var floorRounds: [Round] = []
        var cappedFloorRounds: [Int: [Round]] = [:]
        var berthRounds: [Int: [Round]] = [:]
        let perAgent = (settings.users + BenchCluster.hosts.count - 1) / BenchCluster.hosts.count
        for limit in settings.limits {
            try await sections.withCluster(users: users, concurrentStarts: limit) { cluster in
                let starter = RawUnitStarter(socketPath: sections.socket, version: sections.version, share: cluster.share)
                let units = names.flatMap { cluster.benchUnits($0) }
                // The first round creates every user's network on its agent (kept after logout,
                // and used by the floor too) and warms the engine.
                for round in 0...settings.rounds {
                    let berth = try await loginRound(cluster, users: names)
                    let floor = try await floorRound(starter, units: units)
                    let capped = limit < perAgent ? try await floorRound(starter, units: units, perHost: limit) : nil
                    if round > 0 {
                        floorRounds.append(floor)
                        if let capped { cappedFloorRounds[limit, default: []].append(capped) }
                        berthRounds[limit, default: []].append(berth)
                    }
                    print("storm, limit \(limit), round \(round): floor \(format(floor.total)), berth \(format(berth.total)), \(berth.failures.count) failed")
                }
            }
        }

        let floorTotal = Stats(floorRounds.map(\.total))
        let floorEach = Stats(floorRounds.flatMap(\.logins))
        var table = Table(columns: [
            "\(settings.users) users × 1 unit at once, \(settings.users / 2) per agent", "all ready (median)", "× floor",
            "each: p50", "each: p99", "queued", "failed",
        ])
        table.row([
            "raw HTTP: \(settings.users) create + start + health at once (floor)", floorTotal.medianText, "1.00",
            format(floorEach.percentile(0.5)), format(floorEach.percentile(0.99)), "—", "0",
        ])
        for limit in settings.limits {
            if let capped = cappedFloorRounds[limit] {
                let total = Stats(capped.map(\.total))
                let each = Stats(capped.flatMap(\.logins))
                table.row([
                    "raw HTTP, at most \(limit) at once per host", total.medianText, ratio(total, floorTotal),
                    format(each.percentile(0.5)), format(each.percentile(0.99)), "—", "0",
                ])
            }
            let rounds = berthRounds[limit] ?? []
            let total = Stats(rounds.map(\.total))
            let each = Stats(rounds.flatMap(\.logins))
            let failures = rounds.flatMap(\.failures)
            let name = limit >= settings.users ? "no limit (\(limit))" : "\(limit)"
            let marker = limit == ServerConfig.defaultConcurrentStarts ? " (the default)" : ""
            table.row([
                "berth login, ConcurrentStarts \(name)\(marker)", total.medianText, ratio(total, floorTotal),
                format(each.percentile(0.5)), format(each.percentile(0.99)),
                "\(rounds.map(\.queued).reduce(0, +)) of \(rounds.count * settings.users)", "\(failures.count)",
            ])
            for failure in Set(failures).sorted() { print("storm failure (limit \(limit)): \(failure)") }
        }
        report.section(table, note: """
            \(settings.rounds) rounds per row after one warm-up round (which creates each user's network); every round \
            of Berth is followed by a round of each floor, and the first floor row pools all of them. The floors \
            create the same containers as Berth, on the users' networks. "All ready" is the time \
            from sending every request at once until the last unit serves; "each" is one login's time (request to \
            `done`) or one raw unit's (create to health answer), over all rounds. Berth's logins include the password \
            check (Argon2id, about 40 ms of CPU each). "Queued" counts logins whose unit waited for one of its agent's \
            start slots. Each raw start runs on a thread of its own; the capped floor rows let at most that many \
            run at once per host, as the agents' start slots do.
            """)
    }

    private func floorRound(_ starter: RawUnitStarter, units: [BenchUnit], perHost: Int? = nil) async throws -> Round {
        let clock = ContinuousClock()
        let start = clock.now
        let started = try await starter.startAndWait(units, memoryBytes: 128 << 20, perHost: perHost)
        let round = Round(total: clock.now - start, logins: started.map(\.elapsed))
        let client = sections.client
        try await withThrowingTaskGroup(of: Void.self) { group in
            for one in started {
                group.addTask { try await client.removeContainer(one.id, force: true) }
            }
            try await group.waitForAll()
        }
        return round
    }

    private func loginRound(_ cluster: BenchCluster, users: [String]) async throws -> Round {
        let clock = ContinuousClock()
        let start = clock.now
        let outcomes = await withTaskGroup(of: Result<(BenchCluster.Login, Duration), any Error>.self) { group in
            for user in users {
                group.addTask {
                    do {
                        let login = try await cluster.login(user)
                        return .success((login, clock.now - start))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var all: [Result<(BenchCluster.Login, Duration), any Error>] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        var round = Round(total: clock.now - start, logins: [])
        var tokens: [String] = []
        for outcome in outcomes {
            switch outcome {
            case .success(let (login, elapsed)):
                round.logins.append(elapsed)
                if login.queued { round.queued += 1 }
                tokens.append(login.token)
            case .failure(let error):
                round.failures.append("\(error)")
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for token in tokens {
                group.addTask { try await cluster.logout(token: token) }
            }
            try await group.waitForAll()
        }
        return round
    }
}
