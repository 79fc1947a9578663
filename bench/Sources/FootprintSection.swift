import BerthAPI
import BerthCore
import EngineAPI
import Foundation

/// The resident memory of the agents and the manager: idle, after a warm-up, and after many
/// login/logout cycles, read from `/proc/PID/status` (and `smaps_rollup` for the shared part).
struct FootprintSection {
    struct Settings {
        var cycles = 1000
        /// Users logging in and out side by side (alternating agents): enough to keep the engine
        /// busy, so the cycles take minutes, not a quarter hour.
        var users = 8
        var warmUp = 20
        /// The wait before a reading after cycles: longer than the transport's worker threads
        /// stay idle (30 s), so a reading shows what the daemon keeps, not what it is finishing.
        var settle = Duration.seconds(32)
    }

    let sections: ClusterSections
    let settings: Settings

    /// One reading of a process's memory, in kB.
    struct Memory {
        var rss = 0, anon = 0, file = 0, hwm = 0, pss = 0, threads = 0

        init(pid: Int32) {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let rollup = (try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)) ?? ""
            func field(_ text: String, _ name: String) -> Int {
                guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
                return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
            }
            rss = field(status, "VmRSS")
            anon = field(status, "RssAnon")
            file = field(status, "RssFile")
            hwm = field(status, "VmHWM")
            threads = field(status, "Threads")
            pss = field(rollup, "Pss")
        }

        var summary: String { "\(mb(rss)) (\(mb(anon)) + \(mb(file)))" }
    }

    func run(into report: inout Report) async throws {
        let names = (1...settings.users).map { "benchcycle\($0)" }
        let users = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, [BenchCluster.hosts[$0 % BenchCluster.hosts.count]]) })
        var table = Table(columns: [
            "process", "idle", "after \(settings.warmUp) cycles", "after \(settings.cycles) more", "growth", "PSS after", "peak (VmHWM)", "threads", "goal",
        ])
        var elapsed = Duration.zero
        // With TLS, as a cluster is deployed: the TLS library's code and sessions count too.
        try await sections.withCluster(users: users, tls: true) { cluster in
            let processes = cluster.agentPIDs.enumerated().map { ("berth-agent (\(BenchCluster.hosts[$0]))", $1, 30) }
                + [("berth-manager", cluster.managerPID, 40)]
            try await Task.sleep(for: .seconds(2))
            let idle = processes.map { Memory(pid: $0.1) }
            try await cycle(cluster, users: names, count: settings.warmUp)
            try await Task.sleep(for: settings.settle)
            let warm = processes.map { Memory(pid: $0.1) }
            let clock = ContinuousClock()
            let start = clock.now
            try await cycle(cluster, users: names, count: settings.cycles)
            elapsed = clock.now - start
            try await Task.sleep(for: settings.settle)
            let after = processes.map { Memory(pid: $0.1) }
            for (index, process) in processes.enumerated() {
                let growth = Double(after[index].rss - warm[index].rss) / Double(max(1, warm[index].rss)) * 100
                table.row([
                    process.0, idle[index].summary, warm[index].summary, after[index].summary,
                    String(format: "%+.1f %%", growth), mb(after[index].pss), mb(after[index].hwm),
                    "\(idle[index].threads) → \(after[index].threads)", "≤ \(process.2) MB",
                ])
            }
        }
        report.section(table, note: """
            Resident memory as `VmRSS (RssAnon + RssFile)` from /proc/PID/status; PSS from /proc/PID/smaps_rollup \
            counts each shared page once across the processes that map it. Idle is 2 s after start; then \(settings.warmUp) \
            login/logout cycles (1 unit each) warm every code path, then \(settings.cycles) more, \(settings.users) users side \
            by side on the two agents (\(format(elapsed)) in all, \(format(elapsed / max(1, settings.cycles) * settings.users)) \
            per cycle and user); the readings after cycles are taken \(format(settings.settle)) after the last one, once \
            worker threads left idle have exited. Growth compares the last reading with the one after the warm-up. The daemons run as `make bench` starts them, without systemd, with TLS (manager, agents and units) and a CA made for the run.
            """)
    }

    /// `count` login/logout cycles, shared out among the users, who cycle side by side.
    private func cycle(_ cluster: BenchCluster, users: [String], count: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, user) in users.enumerated() {
                let mine = count / users.count + (index < count % users.count ? 1 : 0)
                group.addTask {
                    for _ in 0..<mine {
                        let login = try await cluster.login(user)
                        try await cluster.logout(token: login.token)
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

private func mb(_ kilobytes: Int) -> String {
    String(format: "%.1f MB", Double(kilobytes) / 1024)
}
