import BerthConfig
import BerthAPI
import BerthCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Password checks: slow hash, constant-time comparison, the same answer for an unknown name
/// and a wrong password, and a name locked for a while after repeated failures.
actor Auth {
    struct Policy {
        /// Failures within `window` before the name is locked.
        var maxFailures = 5
        var window: TimeInterval = 15 * 60
        var lockout: TimeInterval = 5 * 60
        /// How many names' failures are remembered at most: junk names sent by the thousand must
        /// not grow the manager without bound. The longest unused go first.
        var rememberedNames = 10_000
    }

    static let wrongCredentials = "wrong user name or password"

    private let policy: Policy
    private var failures: [String: [Date]] = [:]

    init(policy: Policy = Policy()) {
        self.policy = policy
    }

    /// Returns the user on success; throws a message for the client otherwise. The slow hash runs
    /// outside the actor, so logins of different users do not queue behind each other.
    nonisolated func check(name: String, password: String, users: UsersConfig) async throws -> UserConfig {
        let previousFailures = try await admit(name)
        let user = users.user(named: name)
        // Checked before the name is looked at: an unknown name pays the same hash as a known one.
        let valid = Self.verify(password, for: user)
        guard let user, valid else {
            await recordFailure(name)
            // Each failure in a row costs a little more time.
            try? await Task.sleep(for: .milliseconds(200 * min(previousFailures + 1, 5)))
            throw LoginRefused(.wrongCredentials, Self.wrongCredentials)
        }
        await recordSuccess(name)
        return user
    }

    /// Refuses a locked name; returns its recent failure count.
    private func admit(_ name: String) throws -> Int {
        let now = Date()
        let recent = (failures[name] ?? []).filter { now.timeIntervalSince($0) < policy.window }
        failures[name] = recent
        if recent.count >= policy.maxFailures, let last = recent.last, now.timeIntervalSince(last) < policy.lockout {
            let minutes = Int((policy.lockout - now.timeIntervalSince(last)) / 60) + 1
            throw LoginRefused(.locked, "too many failed logins for \(name); the name is locked, try again in \(minutes) min")
        }
        return recent.count
    }

    private func recordFailure(_ name: String) {
        let now = Date()
        failures[name, default: []].append(now)
        guard failures.count > policy.rememberedNames else { return }
        failures = failures.filter { $0.value.contains { now.timeIntervalSince($0) < policy.window } }
        while failures.count > policy.rememberedNames, let oldest = failures.min(by: { ($0.value.last ?? now) < ($1.value.last ?? now) }) {
            failures[oldest.key] = nil
        }
    }

    /// How many names' failures are remembered now.
    var rememberedNames: Int { failures.count }

    private func recordSuccess(_ name: String) {
        failures[name] = nil
    }

    /// The scrypt check runs even for unknown names, so timing does not reveal which names exist.
    static func verify(_ password: String, for user: UserConfig?) -> Bool {
        switch user?.password {
        case .hash(let encoded):
            return PasswordHash.verify(password, against: encoded)
        case .plain(let expected):
            _ = PasswordHash.verify(password, against: PasswordHash.decoy)
            return constantTimeEqual(Data(password.utf8), Data(expected.utf8))
        case nil:
            _ = PasswordHash.verify(password, against: PasswordHash.decoy)
            return false
        }
    }
}

/// Why a password check refused a login, worded for the user.
struct LoginRefused: Error, CustomStringConvertible {
    enum Reason {
        /// A wrong password or an unknown name: the user is told the same for both.
        case wrongCredentials
        case locked
    }

    let reason: Reason
    let description: String

    init(_ reason: Reason, _ description: String) {
        self.reason = reason
        self.description = description
    }
}
