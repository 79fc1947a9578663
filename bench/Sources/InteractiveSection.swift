import BerthAPI
import EngineAPI
import Foundation
import TestSupport

extension ClusterSections {
    /// One keystroke's round trip in an interactive exec (a byte typed, its echo shown), through
    /// `berth exec -it` and through `docker exec -it` on the same engine and container, each on a
    /// real pseudo-terminal, alternating keystroke by keystroke.
    func keystrokes(_ cluster: BenchCluster, into report: inout Report) async throws {
        try await withSession(cluster, user: "bench1") { session in
            let sessionFile = try writeSession(cluster, user: "bench1", session)
            let unit = cluster.units["bench1"]![0]
            let (container, docker) = try await bench1Container()
            let berthTerminal = try PseudoTerminal(rows: 24, columns: 80)
            let berth = try berthTerminal.run(binaries + "/berth", ["exec", "-it", "--unit", unit.description, "--", "cat"], environment: ["BERTH_SESSION": sessionFile])
            let dockerTerminal = try PseudoTerminal(rows: 24, columns: 80)
            let cli = try dockerTerminal.run(docker, ["exec", "-it", container, "cat"], environment: ["DOCKER_HOST": "unix://\(socket)"])
            defer {
                for process in [berth, cli] where process.isRunning { process.terminate() }
            }
            let clock = ContinuousClock()
            /// A letter typed until its echo, then DEL to take it back (and its echo), so the line
            /// stays short. Letters turn, so an echo that comes late is never taken for the next's.
            func keystroke(_ terminal: PseudoTerminal, _ round: Int) throws -> Duration {
                let letter = UInt8(ascii: "a") + UInt8(round % 26)
                terminal.drain()
                let start = clock.now
                try terminal.type(String(UnicodeScalar(letter)))
                guard terminal.awaitByte(letter, timeout: .seconds(10)) else { throw BenchError("no echo of a keystroke within 10 s") }
                let elapsed = clock.now - start
                try terminal.type("\u{7F}")
                guard terminal.awaitByte(0x08, timeout: .seconds(10)) else { throw BenchError("no echo of DEL within 10 s") }
                return elapsed
            }
            // Both sessions up, their terminals raw (before that, the local terminal echoes), answering.
            try await Task.sleep(for: .seconds(2))
            for round in 0..<5 {
                _ = try keystroke(berthTerminal, round)
                _ = try keystroke(dockerTerminal, round)
            }
            var floorTimes: [Duration] = [], berthTimes: [Duration] = []
            let rounds = 200
            for round in 0..<rounds {
                if round % 2 == 0 {
                    floorTimes.append(try keystroke(dockerTerminal, round))
                    berthTimes.append(try keystroke(berthTerminal, round))
                } else {
                    berthTimes.append(try keystroke(berthTerminal, round))
                    floorTimes.append(try keystroke(dockerTerminal, round))
                }
            }
            try? berthTerminal.type("\u{4}")
            try? dockerTerminal.type("\u{4}")
            let floor = Stats(floorTimes), measured = Stats(berthTimes)
            var table = Table(columns: ["one keystroke in an interactive exec, typed to echoed", "median", "p90", "× floor"])
            table.row(["docker exec -it CONTAINER cat, on a pseudo-terminal (floor)", floor.medianText, floor.p90Text, "1.00"])
            table.row(["berth exec -it --unit UNIT -- cat (client → manager → agent → engine)", measured.medianText, measured.p90Text,
                       String(format: "%.2f", Double(measured.median.nanoseconds) / Double(max(1, floor.median.nanoseconds)))])
            report.section(table, note: "\(rounds) keystrokes each after 5 of warm-up, alternating, on one unit's container; plain HTTP. The echo is the remote terminal's own; each letter is taken back with DEL before the next.")
        }
    }
}
