/// The numeric `uid:gid` a unit runs as and its home's files belong to: `<Uid>` in
/// `docker_user.xml`, or a home's owner. Always both numbers: Docker runs a bare uid unknown to
/// the image with gid 0.
public struct UnixAccount: Hashable, Sendable, Codable, CustomStringConvertible {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    /// `uid:gid` as Docker's `User` field and `chown` write it.
    public var description: String { "\(uid):\(gid)" }

    /// Either number is 0: root's user or root's group.
    public var isRoot: Bool { uid == 0 || gid == 0 }

    /// Parses `2001:2001`; both parts decimal, below 2^32 - 1 (the kernel's "no id").
    public static func parse(_ text: String) throws(ConfigError) -> UnixAccount {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2,
            let uid = id(parts[0]), let gid = id(parts[1])
        else {
            throw ConfigError("\"\(text)\": must be uid:gid, two numbers (e.g. 2001:2001)")
        }
        return UnixAccount(uid: uid, gid: gid)
    }

    private static func id(_ text: Substring) -> UInt32? {
        guard !text.isEmpty, text.count <= 10, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let value = UInt32(text), value != .max
        else { return nil }
        return value
    }

    /// Encoded as the single string `uid:gid`, the way the files write it.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do throws(ConfigError) {
            self = try UnixAccount.parse(text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.message)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
