import BerthAPI
import EngineAPI
import Synchronization

/// Each running unit's CPU and memory use, for `berth status`. The engine answers a stats call
/// at its next collection, up to a second on; a full sample (which also holds the engine's
/// previous one, for the CPU share) takes up to two. So each unit's last sample is kept: a
/// status within a minute of the last needs only a quick one-shot sample and compares the two.
final class UnitUsage: Sendable {
    private struct Sample {
        var cpu: ContainerStats.CPUStats
        var taken: ContinuousClock.Instant
    }

    private let docker: DockerClient
    private let clock = ContinuousClock()
    private let samples = Mutex<[String: Sample]>([:])
    /// How long a sample stays a fair base for the next: a CPU share over minutes says little.
    private let keepFor: Duration = .seconds(60)
    /// Bounds the memory whatever the number of containers seen.
    private let capacity = 4096

    init(docker: DockerClient) {
        self.docker = docker
    }

    /// `units` with the use of each running one filled in; a unit whose sample fails keeps its
    /// state and shows no use.
    func fill(_ units: [UnitStatus]) async -> [UnitStatus] {
        await withTaskGroup(of: (Int, UnitStatus).self) { group in
            for (index, unit) in units.enumerated() {
                guard unit.state == .running, let id = unit.container else { continue }
                group.addTask { (index, await self.measure(unit, id: id)) }
            }
            var filled = units
            for await (index, unit) in group { filled[index] = unit }
            return filled
        }
    }

    private func measure(_ unit: UnitStatus, id: String) async -> UnitStatus {
        let earlier = samples.withLock { $0[id] }.flatMap { clock.now - $0.taken < keepFor ? $0.cpu : nil }
        guard let stats = try? await docker.stats(id, oneShot: earlier != nil) else { return unit }
        remember(stats.cpuStats, for: id)
        var unit = unit
        unit.cpuPercent = stats.cpuStats.percent(since: earlier ?? stats.precpuStats).map { ($0 * 10).rounded() / 10 }
        unit.memoryBytes = stats.memoryStats.used
        unit.memoryLimitBytes = stats.memoryStats.limit
        return unit
    }

    private func remember(_ cpu: ContainerStats.CPUStats, for id: String) {
        let now = clock.now
        samples.withLock { samples in
            samples[id] = Sample(cpu: cpu, taken: now)
            if samples.count > capacity {
                samples = samples.filter { now - $0.value.taken < keepFor }
            }
            // Still full of fresh samples: forget the oldest half.
            if samples.count > capacity {
                let cut = samples.values.map(\.taken).sorted()[samples.count / 2]
                samples = samples.filter { $0.value.taken > cut }
            }
        }
    }
}
