import BerthAPI
import BerthCLI
import Foundation
import Testing
@testable import Client

/// What `berth status` prints: each running unit's CPU and memory beside its state.
@Suite struct StatusTableTests {
    @Test func runningUnitsShowTheirUseAndOthersLeaveItBlank() {
        var running = UnitStatus(unit: HostPort(host: "127.0.0.2", port: 8281), user: "aaa", session: "s", state: .running, detail: "Up 3 minutes")
        running.cpuPercent = 99.96
        running.memoryBytes = 12_897_485
        running.memoryLimitBytes = 64 << 20
        let exited = UnitStatus(unit: HostPort(host: "127.0.0.3", port: 8282), user: "aaa", session: "s", state: .exited, detail: "Exited (137)")
        let status = StatusResponse(user: "aaa", since: Date(timeIntervalSince1970: 1_796_225_733), from: "127.0.0.1", units: [running, exited])
        #expect(Status.table(status) == """
            aaa, logged in since 2026-12-02T15:35:33Z from 127.0.0.1
            UNIT            STATE    CPU   MEMORY                 DETAIL
            127.0.0.2:8281  running  100%  12.3MiB / 64MiB (19%)  Up 3 minutes
            127.0.0.3:8282  exited                                Exited (137)
            """)
    }

    @Test func byteCountsUseTheLargestWholeUnit() {
        #expect(byteCount(0) == "0B")
        #expect(byteCount(1023) == "1023B")
        #expect(byteCount(1536) == "1.5KiB")
        #expect(byteCount(500 << 20) == "500MiB")
        #expect(byteCount(2 << 30) == "2GiB")
    }

    @Test func theJSONNamesUseAsScriptsExpect() throws {
        var unit = UnitStatus(unit: HostPort(host: "127.0.0.2", port: 8281), user: "aaa", session: "s", state: .running)
        unit.cpuPercent = 0.5
        unit.memoryBytes = 1
        unit.memoryLimitBytes = 2
        let json = String(decoding: try BerthJSON.encoder.encode(unit), as: UTF8.self)
        #expect(json.contains(#""cpu_percent":0.5"#) && json.contains(#""memory_bytes":1"#) && json.contains(#""memory_limit_bytes":2"#))
        #expect(try BerthJSON.decoder.decode(UnitStatus.self, from: Data(json.utf8)) == unit)
    }
}
