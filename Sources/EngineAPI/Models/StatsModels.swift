#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One sample of a container's use, as `GET /containers/{id}/stats` reports it (snake_case keys,
/// unlike the rest of the engine's JSON).
public struct ContainerStats: Decodable, Sendable, Equatable {
    public var cpuStats: CPUStats
    /// The engine's previous sample, a second earlier; empty in a one-shot sample.
    public var precpuStats: CPUStats
    public var memoryStats: MemoryStats

    enum CodingKeys: String, CodingKey {
        case cpuStats = "cpu_stats"
        case precpuStats = "precpu_stats"
        case memoryStats = "memory_stats"
    }

    public init(cpuStats: CPUStats, precpuStats: CPUStats = CPUStats(), memoryStats: MemoryStats) {
        self.cpuStats = cpuStats
        self.precpuStats = precpuStats
        self.memoryStats = memoryStats
    }

    public struct CPUStats: Decodable, Sendable, Equatable {
        /// Nanoseconds of CPU the container has used since it started.
        public var totalUsage: UInt64
        /// Nanoseconds of CPU the whole host has used, all cores together; absent in an empty sample.
        public var systemUsage: UInt64?
        public var onlineCPUs: Int?

        enum CodingKeys: String, CodingKey {
            case cpuUsage = "cpu_usage"
            case systemUsage = "system_cpu_usage"
            case onlineCPUs = "online_cpus"
        }

        enum UsageKeys: String, CodingKey {
            case totalUsage = "total_usage"
        }

        public init(totalUsage: UInt64 = 0, systemUsage: UInt64? = nil, onlineCPUs: Int? = nil) {
            self.totalUsage = totalUsage
            self.systemUsage = systemUsage
            self.onlineCPUs = onlineCPUs
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let usage = try? container.nestedContainer(keyedBy: UsageKeys.self, forKey: .cpuUsage)
            totalUsage = try usage?.decodeIfPresent(UInt64.self, forKey: .totalUsage) ?? 0
            systemUsage = try container.decodeIfPresent(UInt64.self, forKey: .systemUsage)
            onlineCPUs = try container.decodeIfPresent(Int.self, forKey: .onlineCPUs)
        }

        /// The container's share of the host between `earlier` and this sample, where 100 is one
        /// whole core (as `docker stats` counts); nil when the two cannot be compared.
        public func percent(since earlier: CPUStats) -> Double? {
            guard let system = systemUsage, let earlierSystem = earlier.systemUsage, system > earlierSystem,
                totalUsage >= earlier.totalUsage, let cores = onlineCPUs, cores > 0
            else { return nil }
            return Double(totalUsage - earlier.totalUsage) / Double(system - earlierSystem) * Double(cores) * 100
        }
    }

    public struct MemoryStats: Decodable, Sendable, Equatable {
        public var usage: UInt64?
        public var limit: UInt64?
        /// The kernel's counters (`inactive_file`, …), which differ between cgroup v1 and v2.
        public var stats: [String: UInt64]?

        public init(usage: UInt64? = nil, limit: UInt64? = nil, stats: [String: UInt64]? = nil) {
            self.usage = usage
            self.limit = limit
            self.stats = stats
        }

        /// What the container uses, without the page cache the kernel can drop at once, as
        /// `docker stats` shows it.
        public var used: UInt64? {
            guard let usage else { return nil }
            let cache = stats?["inactive_file"] ?? stats?["total_inactive_file"] ?? 0
            return usage > cache ? usage - cache : 0
        }
    }
}
