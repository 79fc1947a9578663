import HTTPClient
/// A Docker Engine API version such as `1.41`.
public struct APIVersion: Sendable, Comparable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(_ major: Int, _ minor: Int) {
        self.major = major
        self.minor = minor
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ".")
        guard parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]) else { return nil }
        self.init(major, minor)
    }

    public static func < (lhs: APIVersion, rhs: APIVersion) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }

    public var description: String { "\(major).\(minor)" }

    /// Oldest engine API this client speaks: Docker 20.10.
    public static let minimumSupported = APIVersion(1, 41)
    /// Newest engine API this client speaks: every field it uses exists unchanged up to here.
    public static let maximumSupported = APIVersion(1, 47)

    /// The version to use with an engine that reports `engine` in its `Api-Version` header.
    public static func negotiate(engine: String?) throws -> APIVersion {
        guard let engine else { return minimumSupported }
        guard let version = APIVersion(engine) else {
            throw EngineError.invalidResponse("Api-Version header \"\(engine)\" is not a version")
        }
        guard version >= minimumSupported else {
            throw EngineError.unsupportedEngine(engineVersion: engine, minimum: minimumSupported.description)
        }
        return min(version, maximumSupported)
    }
}
