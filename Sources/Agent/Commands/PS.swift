import ArgumentParser
import BerthCLI
import BerthConfig
import BerthAPI
import BerthCore
import BerthServer
import EngineAPI
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `berth-agent ps`: the unit containers on this host, straight from the engine's labels.
struct PS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps",
        abstract: "List the Berth unit containers on this host."
    )

    @Option(help: ArgumentHelp("This host's docker_server.xml.", valueName: "file"))
    var config: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let (server, _) = try loadConfigs(server: config)
        let docker = DockerClient(endpoint: try EngineEndpoint(parsing: server.docker))
        let containers: [ContainerSummary]
        do {
            containers = try await docker.listContainers(all: true, labels: [UnitLabel.user])
        } catch {
            throw failure("\(error)")
        }
        let rows = containers.map { container in
            UnitStatus(
                unit: HostPort(parsing: container.labels?[UnitLabel.unit] ?? "") ?? HostPort(host: "?", port: 0),
                user: container.labels?[UnitLabel.user] ?? "", session: String((container.labels?[UnitLabel.session] ?? "").prefix(8)),
                state: container.state.map(UnitState.init(rawValue:)) ?? .unknown, container: String(container.id.prefix(12)), detail: container.status)
        }.sorted { ($0.user, $0.unit) < ($1.user, $1.unit) }
        if json {
            try printJSON(rows)
            return
        }
        print(formatTable(["UNIT", "USER", "STATE", "STATUS", "CONTAINER"],
                          rows.map { [$0.unit.description, $0.user, $0.state.rawValue, $0.detail ?? "", $0.container ?? ""] }))
    }
}
