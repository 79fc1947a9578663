/// Which Berth this is: the release every program prints for `--version`, and the version of the
/// manager–agent protocol, which two daemons must share to work together.
public enum BerthVersion {
    /// The release, as `--version` prints it.
    public static let release = "0.11.0"
    /// Raised whenever a manager and an agent of different values could misread each other's
    /// requests or answers (a field renamed, a meaning changed); adding an optional field is not such a change.
    public static let wire = 3

    /// `0.11.0 (wire 3)`.
    public static var description: String { "\(release) (wire \(wire))" }

    /// Why a peer that describes itself as `peer` (its `description`, or nil when it said
    /// nothing) cannot be worked with, or nil when it speaks this wire version.
    public static func mismatch(peer: String?) -> String? {
        let theirs = peer.flatMap(wire(of:))
        guard theirs != wire else { return nil }
        // The peer's words, kept short and printable: anyone can send this header.
        let them = peer.map { "Berth \(String($0.unicodeScalars.filter { (0x20..<0x7F).contains($0.value) }.prefix(40)))" } ?? "a Berth older than 0.9.0"
        return "this is Berth \(description) and the sender \(them): upgrade the manager and every agent to one release"
    }

    /// The wire version in a `description`: `0.11.0 (wire 3)` → 3.
    static func wire(of description: String) -> Int? {
        guard description.hasSuffix(")"), let open = description.lastIndex(of: "(") else { return nil }
        let inside = description[description.index(after: open)..<description.index(before: description.endIndex)]
        return inside.hasPrefix("wire ") ? Int(inside.dropFirst(5)) : nil
    }
}
