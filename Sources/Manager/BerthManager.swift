import ArgumentParser
import BerthVersion
import BerthCLI

/// `berth-manager`: the entry host's service: authenticates users and coordinates the agents.
@main
struct BerthManager: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth-manager",
        abstract: "Authenticates Berth users and starts their units on the agents.",
        version: BerthVersion.description,
        subcommands: [Serve.self, CheckConfig.self, HashPassword.self, Sessions.self, TLS.self]
    )

    static func main() async {
        await mainWithOneLineErrors()
    }
}
