#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The SHA-256 of a public key (its DER SubjectPublicKeyInfo), as ssh shows keys: `SHA256:` and
/// 64 hex digits. Of the key, not the certificate, so a certificate renewed with the same key
/// keeps its fingerprint; the same hash libcurl pins with `CURLOPT_PINNEDPUBLICKEY`.
public struct KeyFingerprint: Hashable, Sendable, Codable, CustomStringConvertible {
    public let digest: [UInt8]

    /// `digest`: the 32 bytes of the SHA-256.
    public init(digest: [UInt8]) {
        self.digest = digest
    }

    /// `SHA256:HEX`; the hex in either case, colons between bytes allowed (as openssl prints them).
    public init?(parsing text: String) {
        guard text.uppercased().hasPrefix("SHA256:") else { return nil }
        let hex = String(text.dropFirst(7).filter { $0 != ":" })
        guard hex.count == 64, let bytes = Data(hex: hex) else { return nil }
        digest = Array(bytes)
    }

    public var description: String {
        "SHA256:" + Data(digest).hexString
    }

    /// libcurl's `CURLOPT_PINNEDPUBLICKEY` form: `sha256//BASE64`.
    public var curlPin: String { "sha256//" + Data(digest).base64EncodedString() }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = KeyFingerprint(parsing: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(text) is not SHA256:HEX"))
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
