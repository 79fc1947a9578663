import ArgumentParser
import BerthVersion
import BerthCLI

/// `berth`: the user's client.
@main
struct BerthClient: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth",
        abstract: "Log in to a Berth cluster, run scripts on your units, log out.",
        version: BerthVersion.description,
        subcommands: [Login.self, Logout.self, Status.self, Logs.self, Exec.self, Shell.self, Copy.self, Call.self]
    )

    static func main() async {
        MallocTuning.apply()
        await mainWithOneLineErrors()
    }
}
