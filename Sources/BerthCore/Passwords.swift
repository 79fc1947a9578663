import BerthAPI
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import _CryptoExtras

/// `<PwdHash>` values: scrypt with a random salt, written `scrypt$N$r$p$salt$hash` (base64).
public enum PasswordHash {
    public static let rounds = 1 << 14
    public static let blockSize = 8
    public static let parallelism = 1
    static let outputBytes = 32

    /// A new hash of `password` for docker_user.xml.
    public static func make(_ password: String) throws -> String {
        let salt = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) }
        let hash = try derive(password, salt: salt, rounds: rounds, blockSize: blockSize, parallelism: parallelism)
        return "scrypt$\(rounds)$\(blockSize)$\(parallelism)$\(salt.base64EncodedString())$\(hash.base64EncodedString())"
    }

    /// Whether `password` matches `encoded`, comparing in constant time. A malformed hash never matches.
    public static func verify(_ password: String, against encoded: String) -> Bool {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "scrypt",
              let rounds = Int(parts[1]), let blockSize = Int(parts[2]), let parallelism = Int(parts[3]),
              rounds >= 2, rounds <= 1 << 20, blockSize >= 1, blockSize <= 32, parallelism >= 1, parallelism <= 16,
              let salt = Data(base64Encoded: String(parts[4])), let expected = Data(base64Encoded: String(parts[5])),
              let actual = try? derive(password, salt: salt, rounds: rounds, blockSize: blockSize, parallelism: parallelism)
        else { return false }
        return constantTimeEqual(actual, expected)
    }

    /// Spends the same time as a real check, for names that do not exist.
    public static let decoy: String = (try? make("berth-decoy-password")) ?? "scrypt$16384$8$1$AAAA$AAAA"

    private static func derive(_ password: String, salt: Data, rounds: Int, blockSize: Int, parallelism: Int) throws -> Data {
        let key = try KDF.Scrypt.deriveKey(
            from: Data(password.utf8), salt: salt, outputByteCount: outputBytes,
            rounds: rounds, blockSize: blockSize, parallelism: parallelism)
        return key.withUnsafeBytes { Data($0) }
    }
}

/// Compares without returning early, so timing says nothing about where two values differ.
public func constantTimeEqual(_ lhs: Data, _ rhs: Data) -> Bool {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    for (a, b) in zip(lhs, rhs) { difference |= a ^ b }
    return difference == 0
}
