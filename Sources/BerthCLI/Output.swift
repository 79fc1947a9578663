import ArgumentParser
import BerthAPI
import BerthCore
import HTTPWire
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

/// Prints a one-line `error: …` to stderr and returns the exit status to throw.
public func failure(_ message: String) -> ExitCode {
    writeToStandardError("error: \(terminalSafe(message))\n")
    return ExitCode.failure
}

/// Writes a line to stderr (progress, warnings), leaving stdout to results.
public func note(_ line: String) {
    writeToStandardError(terminalSafe(line) + "\n")
}

/// `text` with every control character but newline and tab shown escaped (`\u{1B}`): messages
/// quote what servers sent, and a server must not be able to drive the user's terminal (retitle
/// it, clear it, paint a fake prompt). A unit's own output, which `exec`, `logs` and `call`
/// pass through as bytes, is not text of this kind.
public func terminalSafe(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: isEscaped) else { return text }
    var safe = ""
    for scalar in text.unicodeScalars {
        if isEscaped(scalar) { safe += scalar.escaped(asASCII: true) } else { safe.unicodeScalars.append(scalar) }
    }
    return safe
}

private func isEscaped(_ scalar: Unicode.Scalar) -> Bool {
    if scalar == "\n" || scalar == "\t" { return false }
    // Controls, and the marks that reorder text around them (a message shown backwards).
    return scalar.properties.generalCategory == .control || bidiControls.contains(scalar.value)
}

private let bidiControls: Set<UInt32> = [0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069]

/// All of `text` to stderr, unbuffered.
public func writeToStandardError(_ text: String) {
    writeUnbuffered(text, to: STDERR_FILENO)
}

/// All of `text` to a file descriptor at once, as `FileHandle.standardError` and `.standardOutput`
/// would (they live in the part of Foundation the daemons do not link).
public func writeUnbuffered(_ text: String, to descriptor: Int32) {
    writeUnbuffered(Data(text.utf8), to: descriptor)
}

/// All of `data` to a file descriptor at once. Output that cannot be written (a full disk, a
/// closed descriptor) ends the process with a one-line error and status 1, so that a command
/// whose output was cut short never reports success; stderr failing is left unsaid.
public func writeUnbuffered(_ data: Data, to descriptor: Int32) {
    let failure = data.withUnsafeBytes { writeEvery(byteOf: $0, to: descriptor) }
    guard let failure, descriptor != STDERR_FILENO else { return }
    writeToStandardError("error: cannot write the output: \(failure)\n")
    exit(1)
}

/// Writes every byte of `buffer`, retrying short and interrupted writes; nil when all went out,
/// else why not (see `writeMayGoOn` for the failures it gets past).
public func writeEvery(byteOf buffer: UnsafeRawBufferPointer, to descriptor: Int32) -> String? {
    var done = 0
    while done < buffer.count {
        let written = write(descriptor, buffer.baseAddress! + done, buffer.count - done)
        if written < 0 {
            let error = errno
            if writeMayGoOn(to: descriptor, after: error) { continue }
            return String(cString: strerror(error))
        }
        guard written > 0 else { return "nothing written" }
        done += written
    }
    return nil
}

/// What a write of output (`write`, `sendfile`) that failed with `error` calls for: true to try
/// again, after an interruption or once an output left non-blocking by whoever started the
/// command has room (as a blocking write would wait, as long as it takes); false for a failure
/// to report. A pipe whose reader has gone ends the process as it ends any writer in a pipeline
/// (`berth call … | head`), but for stderr, whose failing is left unsaid: a daemon's stderr is
/// the journal's stream, which a restart of the journal breaks.
public func writeMayGoOn(to descriptor: Int32, after error: Int32) -> Bool {
    switch error {
    case EINTR:
        return true
    case EAGAIN, EWOULDBLOCK:
        var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        while poll(&entry, 1, -1) < 0 && errno == EINTR {}
        return true
    case EPIPE where descriptor != STDERR_FILENO:
        endAsAClosedPipeEnds()
    default:
        return false
    }
}

/// Ends the process by SIGPIPE, quietly, as a writer to a pipe whose reader has gone ends. SwiftNIO
/// ignores the signal for its sockets' sake, so a write to such a pipe fails with EPIPE instead,
/// which a command would otherwise report as an error the user did not make.
func endAsAClosedPipeEnds() -> Never {
    signal(SIGPIPE, SIG_DFL)
    raise(SIGPIPE)
    _exit(128 + SIGPIPE)
}

/// Output that `print` buffered and could not write (a full disk, a closed descriptor) turns
/// the exit status to 1 with one line on stderr, whichever way the program ends: a hash or a
/// table lost on the way must not look like success.
func failAtExitIfOutputWasLost() {
    atexit {
        // Every output stream: stdout is the one there is, and naming it is not concurrency-safe.
        guard fflush(nil) != 0 else { return }
        writeToStandardError("error: cannot write the output: \(String(cString: strerror(errno)))\n")
        _exit(1)
    }
}

/// Columns padded to their widest cell.
public func formatTable(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[index] - cell.count))
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

/// Bytes in the largest binary unit that keeps the number at 1 or more: `512B`, `12.3MiB`, `2GiB`.
public func byteCount(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var index = 0
    while value >= 1024, index < units.count - 1 {
        value /= 1024
        index += 1
    }
    let number = index == 0 || value >= 100 ? String(Int(value.rounded())) : oneDecimal(value)
    return number + units[index]
}

/// `12.3`, or `12` for a whole number.
public func oneDecimal(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return tenths % 10 == 0 ? String(tenths / 10) : "\(tenths / 10).\(abs(tenths % 10))"
}

/// Compact, sorted JSON on one line, for output read line by line.
public func printJSONLine<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601WithoutICU
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
    fflush(nil)
}

/// Pretty, sorted JSON for `--json` flags.
public func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601WithoutICU
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension AsyncParsableCommand {
    /// Like `main()`, but every failure ends as one line, `error: …`, on stderr (usage mistakes
    /// included, with a pointer to `--help`); help and version still print as usual.
    public static func mainWithOneLineErrors() async {
        failAtExitIfOutputWasLost()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            let message = self.message(for: error).trimmed
            if code == .success || error is ExitCode || message.isEmpty {
                // Help, version, or a failure already reported by `failure(_:)`.
                exit(withError: error)
            }
            let line = message.split(separator: "\n").first.map(String.init) ?? message
            let lowered = line.hasPrefix("Error: ") ? String(line.dropFirst(7)) : line
            writeToStandardError("error: \(lowered) (see \(configuration.commandName ?? "the command") --help)\n")
            exit(withError: code)
        }
    }
}
