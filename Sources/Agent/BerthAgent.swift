import ArgumentParser
import BerthVersion
import BerthCLI

/// `berth-agent`: owns one host's Docker engine on behalf of the Berth manager.
@main
struct BerthAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth-agent",
        abstract: "Runs Berth unit containers on this host's Docker engine.",
        version: BerthVersion.description,
        subcommands: [Serve.self, PS.self, APIDump.self]
    )

    static func main() async {
        await mainWithOneLineErrors()
    }
}
