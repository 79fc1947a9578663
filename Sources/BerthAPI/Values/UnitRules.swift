/// The rules for a user's values that both the configuration reader and the agent apply: the
/// agent checks every start again, since a request may come from a manager of another build.
public enum UnitRules {
    /// Docker's `CpuShares` from its floor to its own limit.
    public static let cpuShares = 2...262_144

    /// Names become Docker label values, container and network names, which allow only these
    /// characters; the length keeps derived names within Docker's limits.
    public static func isValidUserName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, (1...32).contains(bytes.count), ConfigSyntax.isLetterOrDigit(first) else {
            return false
        }
        return bytes.allSatisfy { ConfigSyntax.isLetterOrDigit($0) || "_.-".utf8.contains($0) }
    }
}
