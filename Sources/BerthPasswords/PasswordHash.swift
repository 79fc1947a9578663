import BerthCore
import CSodium
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import _CryptoExtras

/// `<PwdHash>` values. New ones are Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane), in the
/// standard `$argon2id$v=19$m=19456,t=2,p=1$salt$hash` form; the scrypt ones Berth wrote before
/// (`scrypt$N$r$p$salt$hash`, base64) keep working.
public enum PasswordHash {
    /// A hash's kind and cost, read from its text.
    public enum Parameters: Equatable, Sendable {
        /// Memory in KiB, passes, lanes.
        case argon2id(memoryKiB: Int, passes: Int, lanes: Int)
        case scrypt(rounds: Int, blockSize: Int, parallelism: Int)

        public static let current = Parameters.argon2id(memoryKiB: 19 * 1024, passes: 2, lanes: 1)

        /// Bytes of memory written over the whole check, which is what its time follows.
        var work: Int {
            switch self {
            case let .argon2id(memory, passes, lanes): memory * 1024 * passes * lanes
            case let .scrypt(rounds, blockSize, parallelism): 2 * 128 * blockSize * rounds * parallelism
            }
        }
    }

    /// A new hash of `password` for docker_user.xml.
    public static func make(_ password: String, _ parameters: Parameters = .current) throws -> String {
        switch parameters {
        case let .argon2id(memory, passes, _):
            try ready()
            var text = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
            let status = withBytes(of: password) { bytes, count in
                crypto_pwhash_str_alg(&text, bytes, count, UInt64(passes), memory * 1024, crypto_pwhash_ALG_ARGON2ID13)
            }
            guard status == 0 else { throw PasswordHashError("libsodium could not hash the password (out of memory?)") }
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        case let .scrypt(rounds, blockSize, parallelism):
            let salt = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) }
            let hash = try scrypt(password, salt: salt, rounds: rounds, blockSize: blockSize, parallelism: parallelism)
            return "scrypt$\(rounds)$\(blockSize)$\(parallelism)$\(salt.base64EncodedString())$\(hash.base64EncodedString())"
        }
    }

    /// The kind and cost of `encoded`; nil when it is neither kind, or costs more than a login
    /// may (up to 1 GiB and 16 passes): a hash could otherwise make one login take minutes.
    public static func parameters(of encoded: String) -> Parameters? {
        if encoded.hasPrefix("$argon2id$") {
            // $argon2id$v=19$m=19456,t=2,p=1$salt$hash
            let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
            guard parts.count == 6, parts[2] == "v=19" else { return nil }
            var values: [Substring: Int] = [:]
            for field in parts[3].split(separator: ",") {
                let pair = field.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, let value = Int(pair[1]) else { return nil }
                values[pair[0]] = value
            }
            guard let memory = values["m"], let passes = values["t"], let lanes = values["p"],
                  memory >= 8, memory <= 1 << 20, passes >= 1, passes <= 16, lanes == 1
            else { return nil }
            return .argon2id(memoryKiB: memory, passes: passes, lanes: lanes)
        }
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "scrypt",
              let rounds = Int(parts[1]), let blockSize = Int(parts[2]), let parallelism = Int(parts[3]),
              rounds >= 2, rounds <= 1 << 20, blockSize >= 1, blockSize <= 32, parallelism >= 1, parallelism <= 16
        else { return nil }
        return .scrypt(rounds: rounds, blockSize: blockSize, parallelism: parallelism)
    }

    /// Whether `password` matches `encoded`, comparing in constant time. A malformed hash never matches.
    public static func verify(_ password: String, against encoded: String) -> Bool {
        switch parameters(of: encoded) {
        case .argon2id:
            guard (try? ready()) != nil else { return false }
            return encoded.withCString { hash in
                withBytes(of: password) { crypto_pwhash_str_verify(hash, $0, $1) == 0 }
            }
        case let .scrypt(rounds, blockSize, parallelism):
            let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
            guard let salt = Data(base64Encoded: String(parts[4])), let expected = Data(base64Encoded: String(parts[5])),
                  let actual = try? scrypt(password, salt: salt, rounds: rounds, blockSize: blockSize, parallelism: parallelism)
            else { return false }
            return constantTimeEqual(actual, expected)
        case nil:
            return false
        }
    }

    /// A hash of a password nobody has, checked in place of a missing user's: made with the
    /// costliest parameters among `hashes` (the current ones at least), so that refusing an
    /// unknown name costs as much work as refusing any known one.
    public static func decoy(matching hashes: [String]) -> String {
        let strongest = hashes.compactMap(parameters(of:)).max { $0.work < $1.work }
        let chosen = strongest.map { $0.work > Parameters.current.work ? $0 : .current } ?? .current
        let secret = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
        return (try? make(secret, chosen)) ?? (try? make(secret)) ?? ""
    }

    /// The password's UTF-8 bytes, all of them (a NUL inside included), as libsodium takes them.
    private static func withBytes<T>(of password: String, _ body: (UnsafePointer<CChar>, UInt64) -> T) -> T {
        let bytes = Array(password.utf8) + [0]
        return bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { body($0.baseAddress!, UInt64(bytes.count - 1)) }
        }
    }

    /// libsodium's one-time start; safe to call again.
    private static func ready() throws {
        guard sodium_init() >= 0 else { throw PasswordHashError("libsodium failed to start") }
    }

    private static func scrypt(_ password: String, salt: Data, rounds: Int, blockSize: Int, parallelism: Int) throws -> Data {
        let key = try KDF.Scrypt.deriveKey(
            from: Data(password.utf8), salt: salt, outputByteCount: 32,
            rounds: rounds, blockSize: blockSize, parallelism: parallelism)
        return key.withUnsafeBytes { Data($0) }
    }
}

public struct PasswordHashError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
