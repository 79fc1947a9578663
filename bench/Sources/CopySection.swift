import BerthAPI
import Foundation

extension ClusterSections {
    /// `berth cp` of a 50 MB file into a unit's `/app` and back out, against `docker cp` of the
    /// same file into and out of the same container, alternating round by round.
    func copies(_ cluster: BenchCluster, into report: inout Report) async throws {
        try await withSession(cluster, user: "bench1") { session in
            let sessionFile = try writeSession(cluster, user: "bench1", session)
            let unit = cluster.units["bench1"]![0]
            let (container, docker) = try await bench1Container()
            let work = cluster.root + "/copies"
            try FileManager.default.createDirectory(atPath: work + "/out", withIntermediateDirectories: true)
            let file = work + "/big.bin"
            let size = 50 << 20
            // Not all alike, so nothing on the way can make light of it.
            var bytes = [UInt8](repeating: 0, count: size)
            for index in stride(from: 0, to: size, by: 8) { bytes[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 7) }
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            let clock = ContinuousClock()
            func timed(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> Duration {
                let start = clock.now
                try runProcess(executable, arguments, environment: environment)
                return clock.now - start
            }
            let berthEnvironment = ["BERTH_SESSION": sessionFile]
            let dockerEnvironment = ["DOCKER_HOST": "unix://\(socket)"]
            func berthIn() throws -> Duration { try timed(binaries + "/berth", ["cp", file, "\(unit):/app/data/berth.bin"], environment: berthEnvironment) }
            func dockerIn() throws -> Duration { try timed(docker, ["cp", file, "\(container):/app/data/docker.bin"], environment: dockerEnvironment) }
            func berthOut() throws -> Duration {
                try? FileManager.default.removeItem(atPath: work + "/out/berth.bin")
                return try timed(binaries + "/berth", ["cp", "\(unit):/app/data/berth.bin", work + "/out/"], environment: berthEnvironment)
            }
            func dockerOut() throws -> Duration {
                try? FileManager.default.removeItem(atPath: work + "/out/docker.bin")
                return try timed(docker, ["cp", "\(container):/app/data/docker.bin", work + "/out/"], environment: dockerEnvironment)
            }
            // One of each first: the page cache and both paths warm.
            _ = try (berthIn(), dockerIn(), berthOut(), dockerOut())
            var times: [String: [Duration]] = [:]
            let rounds = 7
            for round in 0..<rounds {
                let order: [(String, () throws -> Duration)] = [("berth in", berthIn), ("docker in", dockerIn), ("berth out", berthOut), ("docker out", dockerOut)]
                for (name, run) in round % 2 == 0 ? order : order.reversed() { times[name, default: []].append(try run()) }
            }
            guard (try? Data(contentsOf: URL(fileURLWithPath: work + "/out/berth.bin"))) == Data(bytes) else {
                throw BenchError("berth cp brought back something else than it sent")
            }
            var table = Table(columns: ["50 MB copied, whole command", "median", "p90", "MB/s", "speed × floor"])
            for direction in ["in", "out"] {
                let floor = Stats(times["docker \(direction)"]!), measured = Stats(times["berth \(direction)"]!)
                func rate(_ stats: Stats) -> String { String(format: "%.0f", 50 / (Double(stats.median.nanoseconds) / 1e9)) }
                table.row(["docker cp, \(direction) (floor)", floor.medianText, floor.p90Text, rate(floor), "1.00"])
                table.row(["berth cp, \(direction) (client → manager → agent → home)", measured.medianText, measured.p90Text, rate(measured),
                           String(format: "%.2f", Double(floor.median.nanoseconds) / Double(max(1, measured.median.nanoseconds)))])
            }
            report.section(table, note: "\(rounds) rounds after one of warm-up, alternating order; one 50 MB file to and from bench1's unit (/app/data); plain HTTP. docker cp goes through the engine's archive API into the container; berth cp through manager and agent into the home that is the unit's /app. Above 1.00, berth cp is the faster.")
        }
    }
}
