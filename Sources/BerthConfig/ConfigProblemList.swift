import BerthAPI
import BerthCore

/// The problems of one file, gathered while validation walks it.
struct ConfigProblemList {
    let file: String
    private var found: [ConfigProblem] = []

    init(file: String) {
        self.file = file
    }

    var hasErrors: Bool { found.contains(where: \.isError) }

    mutating func error(line: Int, _ message: String) {
        found.append(ConfigProblem(file: file, line: line, message: message, severity: .error))
    }

    mutating func warning(line: Int, _ message: String) {
        found.append(ConfigProblem(file: file, line: line, message: message, severity: .warning))
    }

    /// In file order, so the list reads top to bottom like the file; problems found on the same
    /// line keep the order in which validation found them.
    var inFileOrder: [ConfigProblem] {
        found.enumerated()
            .sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }
            .map(\.element)
    }
}
