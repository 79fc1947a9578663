import ArgumentParser
import BerthCore
import Foundation

/// Prints a one-line `error: …` to stderr and returns the exit status to throw.
public func failure(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode.failure
}

/// Writes a line to stderr (progress, warnings), leaving stdout to results.
public func note(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Columns padded to their widest cell.
public func formatTable(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
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
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            let message = self.message(for: error).trimmingCharacters(in: .whitespacesAndNewlines)
            if code == .success || error is ExitCode || message.isEmpty {
                // Help, version, or a failure already reported by `failure(_:)`.
                exit(withError: error)
            }
            let line = message.split(separator: "\n").first.map(String.init) ?? message
            let lowered = line.hasPrefix("Error: ") ? String(line.dropFirst(7)) : line
            FileHandle.standardError.write(Data("error: \(lowered) (see \(configuration.commandName ?? "the command") --help)\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}
