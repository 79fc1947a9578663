import ArgumentParser
import BerthCLI
import BerthCore
import EngineAPI
import Foundation
import UnitProtocol

/// `berth call`: the seeds' callx. Runs a script on units in parallel and prints the outputs
/// merged in unit order as they stream.
struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run /app/script/SCRIPT on your units in parallel; print the outputs in unit order.",
        discussion: """
            Examples (the seeds' Employee query):
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

/// Starts the call on every unit at once and prints each unit's output in turn. Units not yet
/// printed are held back by flow control (a few MB each), not buffered whole.
struct CallMerger {
    let session: SessionFile
    let units: [HostPort]
    let header: Bool

    func run(script: String, arguments: [String], split: Bool) async throws {
        let streams = units.enumerated().map { index, unit in
            let request = CallRequest(
                script: script, arguments: arguments,
                part: split ? index + 1 : nil, parts: split ? units.count : nil)
            let client = ServiceClient(address: unit, name: "unit \(unit)")
            return Task { try await client.stream("POST", UnitPath.call, body: request, token: session.unitSecret) }
        }
        defer { for stream in streams { stream.cancel() } }
        var expectedHeader: Data?
        for (index, unit) in units.enumerated() {
            let response: HTTPStreamingResponse
            do {
                response = try await streams[index].value
            } catch let error as ServiceError {
                throw CallError(message: "unit \(unit): \(Self.reason(error))")
            }
            var decoder = UnitFrameDecoder()
            var headerLine = header ? Data() : nil
            var stderrTail = Data()
            var status: Int32?
            for try await chunk in response.body {
                for frame in decoder.feed(chunk) {
                    switch frame {
                    case .stdout(let bytes):
                        var data = Data(bytes)
                        if var pending = headerLine {
                            // Hold the first line until it is complete, then print or compare it.
                            guard let newline = data.firstIndex(of: UInt8(ascii: "\n")) else {
                                pending.append(data)
                                headerLine = pending
                                continue
                            }
                            pending.append(data[..<(newline + 1)])
                            data = Data(data[(newline + 1)...])
                            headerLine = nil
                            if let expected = expectedHeader {
                                guard expected == pending else {
                                    throw CallError(message: "unit \(unit): its header differs from unit \(units[0])'s:\n  \(Self.line(pending))\n  \(Self.line(expected))")
                                }
                            } else {
                                expectedHeader = pending
                                FileHandle.standardOutput.write(pending)
                            }
                        }
                        if !data.isEmpty { FileHandle.standardOutput.write(data) }
                    case .stderr(let bytes):
                        FileHandle.standardError.write(Data(bytes))
                        stderrTail.append(contentsOf: bytes)
                        if stderrTail.count > 4096 { stderrTail = stderrTail.suffix(4096) }
                    case .exit(let code):
                        status = code
                    }
                }
            }
            // Ctrl-C ends the streams quietly; say so rather than blame the connection.
            try Task.checkCancellation()
            guard let status else {
                throw CallError(message: "unit \(unit): the connection ended before \(script) finished")
            }
            guard status == 0 else {
                let detail = String(decoding: stderrTail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                throw CallError(message: "unit \(unit): \(script) exited with status \(status)\(detail.isEmpty ? "" : ": \(detail)")")
            }
            if let partial = headerLine, !partial.isEmpty, expectedHeader == nil {
                FileHandle.standardOutput.write(partial)
            }
        }
    }

    private static func line(_ data: Data) -> String {
        String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
    }

    private static func reason(_ error: ServiceError) -> String {
        if case .refused(401, _) = error { return "refused: your session's key does not match (log in again)" }
        return error.description
    }
}
