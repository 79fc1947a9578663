import Foundation
import Testing

@testable import EngineAPI

/// Reading the engine's stats sample, as a cgroup v2 host and a cgroup v1 host write it.
@Suite struct StatsTests {
    static let sample = Data(#"""
        {"read":"2026-12-05T02:49:20.02Z","cpu_stats":{"cpu_usage":{"total_usage":3000000000,"usage_in_kernelmode":1},
         "system_cpu_usage":58128400000000,"online_cpus":2},
         "precpu_stats":{"cpu_usage":{"total_usage":2000000000},"system_cpu_usage":58126400000000,"online_cpus":2},
         "memory_stats":{"usage":10485760,"limit":67108864,"stats":{"inactive_file":2097152,"anon":8388608}}}
        """#.utf8)

    @Test func aFullSampleGivesCPUAgainstItsPreviousAndMemoryWithoutCache() throws {
        let stats = try EngineJSON.decoder.decode(ContainerStats.self, from: Self.sample)
        // 1 s of CPU in 2 s of host time on 2 cores: one whole core.
        #expect(stats.cpuStats.percent(since: stats.precpuStats) == 100)
        #expect(stats.memoryStats.used == 8 << 20)
        #expect(stats.memoryStats.limit == 64 << 20)
    }

    @Test func aOneShotSampleHasNoPreviousAndCgroupV1NamesItsCacheOtherwise() throws {
        let json = Data(#"""
            {"cpu_stats":{"cpu_usage":{"total_usage":5},"system_cpu_usage":10,"online_cpus":1},
             "precpu_stats":{"cpu_usage":{"total_usage":0},"throttling_data":{}},
             "memory_stats":{"usage":4096,"limit":8192,"stats":{"total_inactive_file":1024}}}
            """#.utf8)
        let stats = try EngineJSON.decoder.decode(ContainerStats.self, from: json)
        #expect(stats.precpuStats.systemUsage == nil)
        #expect(stats.cpuStats.percent(since: stats.precpuStats) == nil)
        #expect(stats.memoryStats.used == 3072)
    }

    @Test func anEmptySampleOfAStoppedContainerGivesNothing() throws {
        let json = Data(#"{"cpu_stats":{"cpu_usage":{"total_usage":0}},"precpu_stats":{"cpu_usage":{"total_usage":0}},"memory_stats":{}}"#.utf8)
        let stats = try EngineJSON.decoder.decode(ContainerStats.self, from: json)
        #expect(stats.cpuStats.percent(since: stats.precpuStats) == nil)
        #expect(stats.memoryStats.used == nil)
    }

    /// A container restarted between two samples counts from zero again: no negative share.
    @Test func aCounterThatWentBackGivesNoShare() {
        let before = ContainerStats.CPUStats(totalUsage: 500, systemUsage: 1000, onlineCPUs: 2)
        let after = ContainerStats.CPUStats(totalUsage: 100, systemUsage: 2000, onlineCPUs: 2)
        #expect(after.percent(since: before) == nil)
    }
}
