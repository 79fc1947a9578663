import Foundation

/// Median, 90th percentile and any other percentile of a set of timings.
struct Stats {
    let sorted: [Duration]
    let median: Duration
    let p90: Duration

    init(_ samples: [Duration]) {
        sorted = samples.sorted()
        median = sorted.isEmpty ? .zero : sorted[sorted.count / 2]
        p90 = sorted.isEmpty ? .zero : sorted[min(sorted.count - 1, sorted.count * 9 / 10)]
    }

    /// The nearest-rank percentile, `fraction` in 0...1.
    func percentile(_ fraction: Double) -> Duration {
        guard !sorted.isEmpty else { return .zero }
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }

    var medianText: String { format(median) }
    var p90Text: String { format(p90) }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}

func format(_ duration: Duration) -> String {
    let nanos = Double(duration.nanoseconds)
    if nanos < 1_000_000 { return String(format: "%.1f µs", nanos / 1000) }
    if nanos < 10_000_000_000 { return String(format: "%.1f ms", nanos / 1_000_000) }
    return String(format: "%.2f s", nanos / 1_000_000_000)
}

/// A Markdown table.
struct Table {
    let columns: [String]
    private(set) var rows: [[String]] = []

    init(columns: [String]) {
        self.columns = columns
    }

    mutating func row(_ cells: [String]) {
        rows.append(cells)
    }

    var markdown: String {
        var lines = ["| " + columns.joined(separator: " | ") + " |"]
        lines.append("|" + columns.map { _ in "---" }.joined(separator: "|") + "|")
        for row in rows { lines.append("| " + row.joined(separator: " | ") + " |") }
        return lines.joined(separator: "\n")
    }
}

/// One results file: machine, date, tables, and the command that produced them.
struct Report {
    private var text: String

    init(title: String) {
        text = "# \(title)\n\n"
    }

    mutating func header(machine: String) {
        let date = ISO8601DateFormatter().string(from: Date())
        text += "Measured \(date) on \(machine).\n\n"
    }

    mutating func section(_ table: Table, note: String) {
        text += table.markdown + "\n\n" + note + "\n\n"
        print(table.markdown + "\n")
    }

    mutating func command(_ command: String) {
        text += "Produced by `\(command)`.\n"
    }

    func write(to directory: String, name: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        print("Written to \(path)")
    }
}
