import BerthAPI
import BerthCore
import EngineAPI
import Foundation
import Testing

@testable import Agent

@Suite(.enabled(if: ProcessInfo.processInfo.environment["CI"] == "true" || FileManager.default.fileExists(atPath: EngineEndpoint.defaultSocketPath)))
struct UserNetworksTests {
    @Test func aNetworkOutlivesItsLastUnitOnlyForTheIdleTime() async throws {
        let docker = DockerClient()
        let agent = HostPort(host: "127.0.0.9", port: Int.random(in: 20000...60000))
        let user = "net\(UInt32.random(in: 0...UInt32.max))"
        let keeping = UserNetworks(docker: docker, agent: agent, keepIdle: 3600)
        let name = try await keeping.ensure(user: user)
        #expect(name == "berth-\(user)-127.0.0.9-\(agent.port)")
        #expect(try await docker.inspectNetwork(name).labels?[UnitLabel.user] == user)

        // Released but within the idle time: kept for the next login.
        await keeping.released(user: user)
        await keeping.sweep()
        #expect((try? await docker.inspectNetwork(name)) != nil)
        #expect(try await keeping.ensure(user: user) == name)

        // Past the idle time: removed.
        let strict = UserNetworks(docker: docker, agent: agent, keepIdle: 0)
        await strict.released(user: user)
        await strict.sweep()
        do {
            _ = try await docker.inspectNetwork(name)
            try? await docker.removeNetwork(name)
            Issue.record("an idle network was kept past its idle time")
        } catch EngineError.notFound {}
    }
}
