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
            if units.count > 1 { writeUnbuffered("==> \(unit) <==\n", to: STDOUT_FILENO) }
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
                    case .stderr(let data): writeUnbuffered(data, to: STDERR_FILENO)
                    case .stdout(let data), .console(let data): writeUnbuffered(data, to: STDOUT_FILENO)
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
        abstract: "Run a command in one of your units; its output and exit status pass through.",
        discussion: """
            Examples:
              berth exec --unit 127.0.0.2:8281 -- ls -l /app/data
              berth exec -i --unit 127.0.0.2:8281 -- sh -c 'cat > /app/script/run.sh' < run.sh
              berth exec -it --unit 127.0.0.2:8281 -- sh        (an interactive shell; exit to leave)
            """)

    @Option(help: ArgumentHelp("The unit.", valueName: "ip:port"))
    var unit: String

    @Flag(name: [.customShort("i"), .long], help: "Pass stdin to the command; its end closes the command's stdin.")
    var interactive = false

    @Flag(name: [.customShort("t"), .long], help: "Give the command a terminal (with -i: an interactive session, keys sent as typed).")
    var tty = false

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    func run() async throws {
        let session = try SessionFile.load()
        guard let target = HostPort(parsing: unit) else { throw failure("--unit \(unit) is not IP:PORT") }
        var command = self.command
        if command.first == "--" { command.removeFirst() }
        guard !command.isEmpty else { throw failure("no command; e.g. berth exec --unit \(unit) -- ls /app") }
        let status: Int32
        if interactive || tty {
            status = try await InteractiveExec(session: session, unit: target, command: command, stdin: interactive, tty: tty).run()
        } else {
            let response = try await managerCall {
                try await session.manager.stream(ManagerRoutes.exec, ClientExecRequest(unit: target, command: command), token: session.token)
            }
            status = try await printOutput(response.body, of: target)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

struct Shell: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell", abstract: "Open a shell in one of your units (berth exec -it -- sh).")

    @Option(help: ArgumentHelp("The unit; your first unit if left out.", valueName: "ip:port"))
    var unit: String?

    func run() async throws {
        let session = try SessionFile.load()
        let target: HostPort
        if let unit {
            guard let parsed = HostPort(parsing: unit) else { throw failure("--unit \(unit) is not IP:PORT") }
            target = parsed
        } else {
            guard let first = session.units.first else { throw failure("your session has no units") }
            target = first
        }
        let status = try await InteractiveExec(session: session, unit: target, command: ["sh"], stdin: true, tty: true).run()
        if status != 0 { throw ExitCode(status) }
    }
}

/// Output frames to stdout and stderr as they come; returns the command's exit status.
func printOutput(_ body: some AsyncSequence<Data, any Error>, of target: HostPort) async throws -> Int32 {
    // Output passes through as it comes: a command that prints gigabytes needs no memory here.
    var decoder = UnitFrameDecoder()
    var status: Int32?
    do {
        for try await chunk in body {
            try chunk.withUnsafeBytes { bytes in
                try decoder.feed(bytes) { frame in
                    switch frame {
                    case .stdout(let payload): try writeAll(STDOUT_FILENO, payload)
                    case .stderr(let payload): try writeAll(STDERR_FILENO, payload)
                    case .exit(let code): status = code
                    }
                }
            }
            if status != nil { break }
        }
    } catch let error as CallError {
        throw failure(error.message)
    } catch let error as UnitFrameTooLarge {
        throw failure("the output of \(target) is damaged: \(error)")
    } catch let error as HTTPClientError {
        throw failure("the manager's answer was cut short: \(error)")
    }
    guard let status else { throw failure("the output of \(target) ended before the command's exit status; the connection was lost") }
    return status
}

/// `berth exec -i` / `-it`: stdin (and the terminal's size) up as frames while the output
/// comes down; with a terminal, the local one is raw until the end.
struct InteractiveExec {
    let session: SessionFile
    let unit: HostPort
    let command: [String]
    let stdin: Bool
    let tty: Bool

    func run() async throws -> Int32 {
        // Keys go through only from a terminal; -t alone just gives the command one for its output.
        if tty && stdin && isatty(STDIN_FILENO) != 1 {
            throw failure("-t needs a terminal on stdin; leave it out to pipe input (berth exec -i)")
        }
        let size = tty ? LocalTerminal.size() : nil
        let terminal = ExecTerminal(tty: tty, rows: size?.rows, columns: size?.columns, term: tty ? ProcessInfo.processInfo.environment["TERM"] : nil)
        let upload = UploadStream()
        let response = try await managerCall {
            try await session.manager.duplex(
                ManagerRoutes.exec, opening: ClientExecRequest(unit: unit, command: command, terminal: terminal), input: upload, token: session.token)
        }
        if tty && stdin { try LocalTerminal.makeRaw() }
        defer { LocalTerminal.restore() }
        let resizes = tty ? Self.watchResizes(upload) : nil
        defer { resizes?.cancel() }
        let sender = Task { await Self.send(stdin ? STDIN_FILENO : nil, to: upload) }
        defer { sender.cancel() }
        return try await printOutput(response.body, of: unit)
    }

    /// Stdin up as it comes, then its end; without stdin, only the end.
    private static func send(_ fd: Int32?, to upload: UploadStream) async {
        let reader = DispatchQueue(label: "berth-stdin")
        do {
            if let fd {
                while !Task.isCancelled {
                    let chunk: Data? = await withCheckedContinuation { done in
                        reader.async {
                            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                            var count: Int
                            repeat { count = read(fd, &buffer, buffer.count) } while count < 0 && errno == EINTR
                            done.resume(returning: count > 0 ? Data(buffer[0..<count]) : nil)
                        }
                    }
                    guard let chunk else { break }
                    try await upload.write(ExecInput.stdin(chunk).encoded)
                }
            }
            try await upload.write(ExecInput.endOfInput.encoded)
            upload.finish()
        } catch {
            // The exec has ended; what was still to send has nowhere to go.
        }
    }

    /// Each SIGWINCH becomes the remote terminal's new size.
    private static func watchResizes(_ upload: UploadStream) -> any DispatchSourceSignal {
        signal(SIGWINCH, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGWINCH)
        source.setEventHandler {
            guard let size = LocalTerminal.size() else { return }
            Task { try? await upload.write(ExecInput.resize(rows: size.rows, columns: size.columns).encoded) }
        }
        source.resume()
        return source
    }
}
