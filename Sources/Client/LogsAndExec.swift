import ArgumentParser
import BerthCLI
import BerthAPI
import BerthCore
import HTTPClient
import Foundation
import UnitProtocol

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Show your units' output (all units in order, or one with --unit).")

    @Option(help: ArgumentHelp("Only this unit.", valueName: "ip:port"))
    var unit: String?

    @Flag(name: [.short, .long], help: "Keep printing new output (needs --unit when you have several units).")
    var follow = false

    @Option(help: ArgumentHelp("Only output since this time: RFC 3339, Unix seconds, or a duration like 10m.", valueName: "when"))
    var since: String?

    @Option(help: ArgumentHelp("Only the last N lines of each unit.", valueName: "n"))
    var tail: Int?

    @Flag(name: [.short, .long], help: "Prefix each line with its time.")
    var timestamps = false

    func run() async throws {
        let session = try SessionFile.load()
        var units = session.units
        if let unit {
            guard let chosen = HostPort(parsing: unit), session.units.contains(chosen) else {
                throw failure("--unit \(unit) is not one of your units: \(session.units.map(\.description).joined(separator: ", "))")
            }
            units = [chosen]
        }
        if follow && units.count > 1 {
            throw failure("--follow needs --unit: you have \(units.count) units (\(units.map(\.description).joined(separator: ", ")))")
        }
        var query: [(name: String, value: String)] = []
        if follow { query.append((name: "follow", value: "1")) }
        if let since { query.append((name: "since", value: try Self.dockerTime(since))) }
        if let tail { query.append((name: "tail", value: String(tail))) }
        if timestamps { query.append((name: "timestamps", value: "1")) }
        for unit in units {
            if units.count > 1 { FileHandle.standardOutput.write(Data("==> \(unit) <==\n".utf8)) }
            let response = try await managerCall {
                try await session.manager.stream(ManagerRoutes.logs, query: [(name: "unit", value: unit.description)] + query, token: session.token)
            }
            var demux = StreamDemux(tty: false)
            for try await chunk in response.body {
                let frames: [OutputFrame]
                do {
                    frames = try demux.feed(chunk)
                } catch {
                    throw failure("the log of \(unit) is damaged: \(error)")
                }
                for frame in frames {
                    switch frame {
                    case .stderr(let data): FileHandle.standardError.write(data)
                    case .stdout(let data), .console(let data): FileHandle.standardOutput.write(data)
                    }
                }
            }
        }
    }

    /// Docker takes Unix seconds or RFC 3339; a duration like `10m` means that long ago.
    static func dockerTime(_ text: String) throws -> String {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let last = text.last, let scale = units[last], let amount = Double(text.dropLast()), amount >= 0 {
            return String(Int(Date().timeIntervalSince1970 - amount * scale))
        }
        if Double(text) != nil || Date(iso8601: text) != nil { return text }
        throw failure("--since \(text): use RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, or a duration like 10m")
    }
}

struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in one of your units; its output and exit status pass through.")

    @Option(help: ArgumentHelp("The unit.", valueName: "ip:port"))
    var unit: String

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    func run() async throws {
        let session = try SessionFile.load()
        guard let target = HostPort(parsing: unit) else { throw failure("--unit \(unit) is not IP:PORT") }
        var command = self.command
        if command.first == "--" { command.removeFirst() }
        guard !command.isEmpty else { throw failure("no command; e.g. berth exec --unit \(unit) -- ls /app") }
        let response = try await managerCall {
            try await session.manager.stream(ManagerRoutes.exec, ClientExecRequest(unit: target, command: command), token: session.token)
        }
        // Output passes through as it comes: a command that prints gigabytes needs no memory here.
        var decoder = UnitFrameDecoder()
        var status: Int32?
        do {
            for try await chunk in response.body {
                try chunk.withUnsafeBytes { bytes in
                    try decoder.feed(bytes) { frame in
                        switch frame {
                        case .stdout(let payload): try writeAll(STDOUT_FILENO, payload)
                        case .stderr(let payload): try writeAll(STDERR_FILENO, payload)
                        case .exit(let code): status = code
                        }
                    }
                }
            }
        } catch let error as CallError {
            throw failure(error.message)
        } catch let error as UnitFrameTooLarge {
            throw failure("the output of \(target) is damaged: \(error)")
        } catch let error as HTTPClientError {
            throw failure("the manager's answer was cut short: \(error)")
        }
        guard let status else { throw failure("the output of \(target) ended before the command's exit status; the connection was lost") }
        if status != 0 { throw ExitCode(status) }
    }
}
