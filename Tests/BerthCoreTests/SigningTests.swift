import BerthAPI
import BerthCore
import BerthPasswords
import Foundation
import Testing

/// Requests between the daemons are signed with the cluster secret; each attack on the signature
/// is refused with its own reason.
@Suite struct SigningTests {
    static let secret = Array("a cluster secret of at least 32 bytes.".utf8)
    static let agent = "192.168.0.77:9001"

    private func headerLookup(_ headers: [(name: String, value: String)]) -> (String) -> String? {
        { name in headers.first { $0.name == name }?.value }
    }

    @Test func aSignedRequestPassesOnceAndItsReplayIsRefused() throws {
        let verifier = RequestVerifier(secret: Self.secret, audience: Self.agent)
        let body = Data(#"{"user":"aaa"}"#.utf8)
        let headers = RequestSigner(secret: Self.secret).headers(method: "POST", target: "/v1/units/start", audience: Self.agent, body: body)
        try verifier.verify(method: "POST", target: "/v1/units/start", body: body, header: headerLookup(headers))
        #expect(throws: RequestVerifier.Refusal.replayed) {
            try verifier.verify(method: "POST", target: "/v1/units/start", body: body, header: headerLookup(headers))
        }
    }

    @Test func anythingChangedBreaksTheSignature() {
        let verifier = RequestVerifier(secret: Self.secret, audience: Self.agent)
        let body = Data(#"{"user":"aaa"}"#.utf8)
        let signed = { RequestSigner(secret: Self.secret).headers(method: "POST", target: "/v1/units/stop", audience: Self.agent, body: body) }
        #expect(throws: RequestVerifier.Refusal.bodyMismatch, "another body") {
            try verifier.verify(method: "POST", target: "/v1/units/stop", body: Data(#"{"user":"bbb"}"#.utf8), header: headerLookup(signed()))
        }
        var otherDigest = signed()
        otherDigest[0].value = RequestSigner.digest(Data(#"{"user":"bbb"}"#.utf8))
        let attacks: [(String, String, Data, [(name: String, value: String)])] = [
            ("another body with its digest", "/v1/units/stop", Data(#"{"user":"bbb"}"#.utf8), otherDigest),
            ("another path", "/v1/units/start", body, signed()),
            ("another key", "/v1/units/stop", body, RequestSigner(secret: Array("another secret, also 32 bytes long".utf8)).headers(method: "POST", target: "/v1/units/stop", audience: Self.agent, body: body)),
        ]
        for (name, target, sentBody, headers) in attacks {
            #expect(throws: RequestVerifier.Refusal.badSignature, "\(name)") {
                try verifier.verify(method: "POST", target: target, body: sentBody, header: headerLookup(headers))
            }
        }
    }

    /// Signed for one agent, sent to another: refused, though both know the secret.
    @Test func aRequestSignedForAnotherDaemonIsRefused() {
        let body = Data("{}".utf8)
        let headers = RequestSigner(secret: Self.secret).headers(method: "POST", target: "/v1/units/stop", audience: "192.168.0.78:9001", body: body)
        #expect(throws: RequestVerifier.Refusal.badSignature) {
            try RequestVerifier(secret: Self.secret, audience: Self.agent, started: Date().addingTimeInterval(-60)).verify(
                method: "POST", target: "/v1/units/stop", body: body, header: headerLookup(headers))
        }
    }

    /// A restart forgets the nonces seen; what was signed before it is refused all the same.
    @Test func aRequestSignedBeforeTheDaemonStartedIsRefused() throws {
        let headers = RequestSigner(secret: Self.secret).headers(method: "GET", target: "/v1/units", audience: Self.agent, body: Data())
        let restarted = RequestVerifier(secret: Self.secret, audience: Self.agent, started: Date().addingTimeInterval(0.01))
        #expect(throws: RequestVerifier.Refusal.expired) {
            try restarted.verify(method: "GET", target: "/v1/units", body: Data(), header: headerLookup(headers), now: Date().addingTimeInterval(1))
        }
    }

    @Test func oldUnsignedAndMalformedRequestsAreRefused() {
        let verifier = RequestVerifier(secret: Self.secret, audience: Self.agent, window: 30, started: Date().addingTimeInterval(-60))
        let old = RequestSigner(secret: Self.secret).headers(method: "GET", target: "/v1/units", audience: Self.agent, body: Data(), now: Date().addingTimeInterval(-31))
        #expect(throws: RequestVerifier.Refusal.expired) {
            try verifier.verify(method: "GET", target: "/v1/units", body: Data(), header: headerLookup(old))
        }
        #expect(throws: RequestVerifier.Refusal.unsigned) {
            try verifier.verify(method: "GET", target: "/v1/units", body: Data(), header: { _ in nil })
        }
        var bad = RequestSigner(secret: Self.secret).headers(method: "GET", target: "/v1/units", audience: Self.agent, body: Data())
        bad[2].value = "not hex"
        #expect(throws: RequestVerifier.Refusal.malformed) {
            try verifier.verify(method: "GET", target: "/v1/units", body: Data(), header: headerLookup(bad))
        }
    }

    @Test func hexIsTwoLowercaseDigitsAByte() {
        #expect(Data([0x00, 0x0f, 0xa0, 0xff]).hexString == "000fa0ff")
        #expect(Data().hexString == "")
        #expect(Data(hex: Data((0...255).map { UInt8($0) }).hexString) == Data((0...255).map { UInt8($0) }))
    }
}

/// The stored password hashes of the users file.
@Suite struct PasswordHashTests {
    @Test func aNewHashIsArgon2idAtTheMinimumCostAndVerifiesItsPasswordOnly() throws {
        let hash = try PasswordHash.make("s3cret pass")
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(PasswordHash.parameters(of: hash) == .argon2id(memoryKiB: 19456, passes: 2, lanes: 1))
        #expect(PasswordHash.verify("s3cret pass", against: hash))
        #expect(!PasswordHash.verify("s3cret pasS", against: hash))
        #expect(!PasswordHash.verify("s3cret pass\u{0}", against: hash), "every byte counts, a NUL too")
        #expect(try PasswordHash.make("s3cret pass") != hash, "each hash has its own salt")
    }

    /// Users' files written before Argon2id keep working.
    @Test func anScryptHashStillVerifies() throws {
        let hash = try PasswordHash.make("old pass", .scrypt(rounds: 1 << 14, blockSize: 8, parallelism: 1))
        #expect(hash.hasPrefix("scrypt$16384$8$1$"))
        #expect(PasswordHash.verify("old pass", against: hash))
        #expect(!PasswordHash.verify("old pasS", against: hash))
    }

    /// A hash with absurd parameters could make one login cost minutes or gigabytes.
    @Test func malformedOrCostlyHashesNeverMatch() {
        for encoded in [
            "", "scrypt$16384$8$1$AAAA", "bcrypt$x$y$z$AAAA$AAAA", "scrypt$4194304$8$1$AAAA$AAAA", "scrypt$16384$64$1$AAAA$AAAA",
            "scrypt$16384$8$1$!!$AAAA", "$argon2id$v=19$m=4194304,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=19456,t=99,p=1$AAAA$AAAA", "$argon2id$v=19$m=19456,t=2,p=1$AAAA", "$argon2i$v=19$m=19456,t=2,p=1$AAAA$AAAA",
            "$argon2id$v=19$m=19456,t=2,p=1$!!$!!",
        ] {
            #expect(!PasswordHash.verify("anything", against: encoded), "\(encoded)")
        }
    }

    /// The hash checked for unknown names costs what the dearest known one does.
    @Test func theDecoyTakesTheStrongestParametersInUse() throws {
        // Argon2id for the strong one: libsodium is built optimised, where a debug build's scrypt
        // of the same cost would hold a test thread for seconds.
        let weak = try PasswordHash.make("x", .scrypt(rounds: 1 << 10, blockSize: 8, parallelism: 1))
        let strong = try PasswordHash.make("x", .argon2id(memoryKiB: 32 * 1024, passes: 2, lanes: 1))
        #expect(PasswordHash.parameters(of: PasswordHash.decoy(matching: [])) == .current)
        #expect(PasswordHash.parameters(of: PasswordHash.decoy(matching: [weak])) == .current)
        #expect(PasswordHash.parameters(of: PasswordHash.decoy(matching: [weak, strong, "junk"])) == .argon2id(memoryKiB: 32 * 1024, passes: 2, lanes: 1))
    }

    @Test func constantTimeEqualComparesWholeValues() {
        #expect(constantTimeEqual(Data([1, 2, 3]), Data([1, 2, 3])))
        #expect(!constantTimeEqual(Data([1, 2, 3]), Data([1, 2, 4])))
        #expect(!constantTimeEqual(Data([1, 2, 3]), Data([1, 2])))
    }
}
