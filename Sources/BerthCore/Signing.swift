import BerthAPI
import BerthVersion
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// Proves knowledge of the cluster secret on a request without sending it: an HMAC-SHA256 over
/// the method, target, the daemon it is meant for (its `host:port`), body digest, a timestamp in
/// milliseconds and a nonce. The digest travels in a header, so a daemon checks the signature on
/// the request's head and reads no byte of a stranger's body. The verifier accepts each nonce once within a short window, nothing
/// signed before it started (a restart forgets the nonces it saw), and nothing meant for another
/// daemon, so a captured request can be replayed neither later nor elsewhere.
public struct RequestSigner: Sendable {
    public static let timestampHeader = "X-Berth-Timestamp"
    public static let nonceHeader = "X-Berth-Nonce"
    public static let signatureHeader = "X-Berth-Signature"
    /// The body's SHA-256 in hex, covered by the signature.
    public static let digestHeader = "X-Berth-Content-SHA256"
    /// The sender's release and wire version (`0.11.0 (wire 3)`): a daemon of another wire version
    /// refuses the request, naming both.
    public static let versionHeader = "X-Berth-Version"

    private let secret: [UInt8]

    public init(secret: [UInt8]) {
        self.secret = secret
    }

    private var key: SymmetricKey { SymmetricKey(data: secret) }

    /// The headers to add to a request for `method target` with `body`, sent to the daemon at
    /// `audience` (`host:port`).
    public func headers(method: String, target: String, audience: String, body: Data, now: Date = Date()) -> [(name: String, value: String)] {
        let timestamp = String(Int64((now.timeIntervalSince1970 * 1000).rounded(.down)))
        let nonce = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0).hexString }
        let digest = Self.digest(body)
        let signature = sign(method: method, target: target, audience: audience, digest: digest, timestamp: timestamp, nonce: nonce)
        return [
            (name: Self.digestHeader, value: digest),
            (name: Self.timestampHeader, value: timestamp),
            (name: Self.nonceHeader, value: nonce),
            (name: Self.signatureHeader, value: signature.hexString),
            (name: Self.versionHeader, value: BerthVersion.description),
        ]
    }

    /// The digest a body is signed by.
    public static func digest(_ body: Data) -> String {
        Data(SHA256.hash(data: body)).hexString
    }

    func sign(method: String, target: String, audience: String, digest: String, timestamp: String, nonce: String) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: canonical(method, target, audience, digest, timestamp, nonce), using: key))
    }

    func isValid(signature: Data, method: String, target: String, audience: String, digest: String, timestamp: String, nonce: String) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: canonical(method, target, audience, digest, timestamp, nonce), using: key)
    }

    private func canonical(_ method: String, _ target: String, _ audience: String, _ digest: String, _ timestamp: String, _ nonce: String) -> Data {
        Data([method.uppercased(), target, audience, timestamp, nonce, digest].joined(separator: "\n").utf8)
    }
}

/// Checks signed requests and remembers nonces for the validity window.
public final class RequestVerifier: Sendable {
    /// Why a request was refused; the server answers 401 and logs this.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case unsigned
        case malformed
        case expired
        case replayed
        case badSignature
        case bodyMismatch

        public var description: String {
            switch self {
            case .unsigned: "request is not signed"
            case .malformed: "signature headers are malformed"
            case .expired: "request timestamp is outside the validity window (or before this daemon started)"
            case .replayed: "request was already seen (replay)"
            case .badSignature: "signature does not match the cluster secret"
            case .bodyMismatch: "request body does not match its signed digest"
            }
        }
    }

    private let signer: RequestSigner
    private let window: TimeInterval
    /// This daemon's `host:port`, which a request must have been signed for.
    private let audience: String
    /// In milliseconds since 1970: requests signed earlier were meant for a process that is gone.
    private let started: Int64
    private let seen = Mutex<[String: TimeInterval]>([:])

    public init(secret: [UInt8], audience: String, window: TimeInterval = 30, started: Date = Date()) {
        signer = RequestSigner(secret: secret)
        self.audience = audience
        self.window = window
        self.started = Int64((started.timeIntervalSince1970 * 1000).rounded(.down))
    }

    /// Checks a whole request: its head, then its body against the signed digest.
    public func verify(
        method: String, target: String, body: Data, header: (String) -> String?, now: Date = Date()
    ) throws(Refusal) {
        let digest = try verifyHead(method: method, target: target, header: header, now: now)
        guard Self.body(body, matches: digest) else { throw .bodyMismatch }
    }

    /// Checks a request's head; returns the body's signed digest, for `body(_:matches:)` once the
    /// body is read.
    public func verifyHead(method: String, target: String, header: (String) -> String?, now: Date = Date()) throws(Refusal) -> String {
        guard let timestamp = header(RequestSigner.timestampHeader),
              let nonce = header(RequestSigner.nonceHeader),
              let signatureText = header(RequestSigner.signatureHeader),
              let digest = header(RequestSigner.digestHeader)
        else { throw .unsigned }
        guard let milliseconds = Int64(timestamp), nonce.count == 32, let signature = Data(hex: signatureText),
              digest.utf8.count == 64, Data(hex: digest) != nil
        else {
            throw .malformed
        }
        let current = now.timeIntervalSince1970
        guard abs(current - Double(milliseconds) / 1000) <= window, milliseconds >= started else { throw .expired }
        guard signer.isValid(
            signature: signature, method: method, target: target, audience: audience, digest: digest, timestamp: timestamp, nonce: nonce)
        else {
            throw .badSignature
        }
        let fresh = seen.withLock { seen -> Bool in
            if seen.count > 4096 { seen = seen.filter { $0.value > current } }
            if let expiry = seen[nonce], expiry > current { return false }
            seen[nonce] = current + 2 * window
            return true
        }
        guard fresh else { throw .replayed }
        return digest
    }

    /// Whether `body` is the one a verified head signed for.
    public static func body(_ body: Data, matches digest: String) -> Bool {
        constantTimeEqual(Data(RequestSigner.digest(body).utf8), Data(digest.lowercased().utf8))
    }
}
