/// A value in a configuration file that cannot be used, with the sentence that says what is wrong
/// with it; made where the cause is known so the message can name the value.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }

    public init(_ message: String) {
        self.message = message
    }
}

/// One finding of configuration validation, pointing at the line an administrator has to fix.
///
/// Validation reports every problem of a file in one pass, so that one edit fixes them all.
/// Line 0 stands for the file as a whole (for example when it cannot be read at all).
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    /// Errors stop a configuration from loading; warnings are shown and then ignored.
    public enum Severity: Sendable {
        case error, warning
    }

    public var file: String
    public var line: Int
    public var message: String
    public var severity: Severity

    /// `message` may quote values from the file; it is kept to one line of bounded length.
    public init(file: String, line: Int, message: String, severity: Severity = .error) {
        self.file = file
        self.line = line
        self.message = message.asOneLine()
        self.severity = severity
    }

    /// Whether this problem stops the file from loading.
    public var isError: Bool { severity == .error }

    /// `FILE:LINE: message`, or `FILE:LINE: warning: message`: the shape compilers use, so
    /// editors and terminals can jump to the line.
    public var description: String {
        let location = line > 0 ? "\(file):\(line)" : file
        switch severity {
        case .error: return "\(location): \(message)"
        case .warning: return "\(location): warning: \(message)"
        }
    }
}

/// Lexical checks shared by the configuration parsers, in ASCII only: a full-width digit or a
/// letter with an accent is never a valid number or name in these files.
public enum ConfigSyntax {
    public static func isDigits<Text: StringProtocol>(_ text: Text) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(isDigit)
    }

    public static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    public static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        isDigit(byte)
            || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }
}

extension String {
    /// This text fit for a one-line message that may quote values from outside: control
    /// characters escaped (a value holding a newline cannot break the line) and, past `limit`
    /// characters, the middle left out, so both the value's start and the explanation after it stay.
    public func asOneLine(limit: Int = 300) -> String {
        var escaped = ""
        for scalar in unicodeScalars {
            switch scalar {
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .lineSeparator
                || scalar.properties.generalCategory == .paragraphSeparator:
                escaped += scalar.escaped(asASCII: true)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        guard escaped.count > limit else { return escaped }
        let kept = limit - 40
        return "\(escaped.prefix(kept * 3 / 5))…(\(escaped.count - kept) characters left out)…\(escaped.suffix(kept * 2 / 5))"
    }
}
