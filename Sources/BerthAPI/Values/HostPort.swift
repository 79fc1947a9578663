#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An `ip:port` (or `hostname:port`) as the configuration files write it: where an agent, the
/// manager or a unit listens.
///
/// Host names are stored in lower case because DNS ignores case, so `Node-A:8281` and
/// `node-a:8281` are the same unit. IPv4 addresses are kept in canonical dotted-quad form.
public struct HostPort: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public var host: String
    public var port: Int

    /// Takes the parts as they are; use `init?(parsing:)` for text from a file or a user.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, e.g. `192.168.0.76:8281`; nil unless the host is an IPv4 dotted quad
    /// or a host name and the port is in 1...65535.
    public init?(parsing text: String) {
        guard let parsed = try? HostPort.parse(text) else { return nil }
        self = parsed
    }

    public var description: String { "\(host):\(port)" }

    /// The address as four octets when the host is an IPv4 address.
    var ipv4Octets: [UInt8]? { HostPort.ipv4Octets(host) }

    /// IPv4 addresses sort numerically (so `.9` comes before `.10`) and before host names; ties
    /// on the host sort by port.
    public static func < (lhs: HostPort, rhs: HostPort) -> Bool {
        switch (lhs.ipv4Octets, rhs.ipv4Octets) {
        case let (left?, right?) where left != right:
            return left.lexicographicallyPrecedes(right)
        case (.some, nil):
            return true
        case (nil, .some):
            return false
        default:
            return (lhs.host, lhs.port) < (rhs.host, rhs.port)
        }
    }

    /// Encoded as the single string `host:port`, the way the files and the labels write it.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do throws(ConfigError) {
            self = try HostPort.parse(text)
        } catch {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "\"\(text)\": \(error.message)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// Parses `host:port`; the error says what is wrong without naming the value, so callers can
    /// put it after their own subject (`unit "…": missing port …`).
    public static func parse(_ text: String) throws(ConfigError) -> HostPort {
        let trimmed = text.trimmed
        guard !trimmed.isEmpty else {
            throw ConfigError("empty; expected ip:port")
        }
        let parts = trimmed.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw ConfigError(parts.count == 1
                ? "missing port; expected ip:port"
                : "expected ip:port with one colon (IPv6 is not supported)")
        }
        let hostText = String(parts[0])
        let portText = String(parts[1])
        guard !hostText.isEmpty else {
            throw ConfigError("missing host; expected ip:port")
        }
        guard !portText.isEmpty else {
            throw ConfigError("missing port; expected ip:port")
        }
        guard ConfigSyntax.isDigits(portText) else {
            throw ConfigError("port \"\(portText)\" is not a number")
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw ConfigError("port \(portText) is out of range 1...65535")
        }
        return HostPort(host: try canonicalHost(hostText), port: port)
    }

    /// A host whose last label is all digits can only be meant as an IPv4 address (top-level
    /// domains are never numeric), so `192.168.0.300` is rejected rather than taken as a name.
    private static func canonicalHost(_ host: String) throws(ConfigError) -> String {
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        if let last = labels.last, ConfigSyntax.isDigits(last) {
            guard let octets = ipv4Octets(host) else {
                throw ConfigError("\"\(host)\" is not an IPv4 address (four numbers 0-255 separated by dots)")
            }
            return octets.map(String.init).joined(separator: ".")
        }
        let isHostName = host.utf8.count <= 253 && labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63
                && label.utf8.allSatisfy { ConfigSyntax.isLetterOrDigit($0) || $0 == UInt8(ascii: "-") }
                && label.first != "-" && label.last != "-"
        }
        guard isHostName else {
            throw ConfigError("\"\(host)\" is neither an IPv4 address nor a host name")
        }
        return host.lowercased()
    }

    /// Leading zeros are refused because some resolvers read `010` as octal.
    private static func ipv4Octets(_ host: String) -> [UInt8]? {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), ConfigSyntax.isDigits(part),
                  part.count == 1 || part.first != "0",
                  let value = UInt8(part) else { return nil }
            octets.append(value)
        }
        return octets
    }
}

extension HostPort {
    /// Whether `host` is this machine's own: 127.0.0.0/8, `::1` or `localhost`. Nobody on the
    /// network reaches such an address.
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".")
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
