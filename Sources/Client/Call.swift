import ArgumentParser
import BerthCLI
import BerthAPI
import BerthCore
import HTTPWire
import NIOTransport
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
import Dispatch
#else
import Foundation
#endif
import UnitProtocol

/// `berth call`: the esProc design's callx. Runs a script on units in parallel and prints the
/// outputs merged in unit order as they stream.
struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Run /app/script/SCRIPT on your units in parallel; print the outputs in unit order.",
        discussion: """
            Examples (the esProc design's Employee query):
              berth call Employee.sh "New York" --unit 192.168.0.76:8281
              berth call Emp.sh "New York" --split --header
            With --split, unit i of n sees BERTH_PART=i and BERTH_PARTS=n and reads only its share.
            """
    )

    @Argument(help: "The script, a name inside /app/script.")
    var script: String

    @Argument(help: "Arguments for the script (put -- before arguments that start with -).")
    var arguments: [String] = []

    @Option(name: .customLong("unit"), help: ArgumentHelp("Run on this unit only (repeatable; default: every unit of the session).", valueName: "ip:port"))
    var units: [String] = []

    @Flag(help: "Give unit i of n BERTH_PART=i and BERTH_PARTS=n.")
    var split = false

    @Flag(help: "The first line of each output is a header: print it once (headers must agree).")
    var header = false

    func run() async throws {
        if let problem = ScriptName.problem(with: script) { throw failure(problem) }
        let session = try SessionFile.load()
        let chosen = try chooseUnits(session)
        let task = Task { try await CallMerger(session: session, units: chosen, header: header).run(script: script, arguments: arguments, split: split) }
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        signal(SIGINT, SIG_IGN)
        interrupt.setEventHandler { task.cancel() }
        interrupt.resume()
        defer { interrupt.cancel() }
        do {
            try await task.value
        } catch is CancellationError {
            throw failure("cancelled; every unit's run was stopped")
        } catch let error as CallError {
            throw failure(error.message)
        }
    }

    private func chooseUnits(_ session: SessionFile) throws -> [HostPort] {
        guard !units.isEmpty else { return session.units }
        return try units.map { text in
            guard let unit = HostPort(parsing: text), session.units.contains(unit) else {
                throw failure("--unit \(text) is not one of your units: \(session.units.map(\.description).joined(separator: ", "))")
            }
            return unit
        }
    }
}

struct CallError: Error {
    let message: String
}
