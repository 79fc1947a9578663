import BerthConfig
import BerthAPI
import BerthCore
import BerthPasswords
import BerthServer
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOPosix

/// Password checks and the limits around them.
/// - Every refusal (unknown name, wrong password, locked name) costs one password hash and is
///   answered at the same time after the request arrived, so neither work nor timing tells
///   which names exist.
/// - Failures lock a name for the address they come from only: an attacker elsewhere cannot keep
///   its owner out. Failures for one name from anywhere drain a bucket of their own; once it is
///   empty, any address that has failed for the name is locked too, so many addresses buy few guesses.
/// - Each address has a bucket of attempts, checked before the body is read (`admit`), which
///   bounds both password spraying and the hashing work one sender can cause.
/// - What is remembered per name and address is bounded, the least recently used forgotten first.
actor Auth {
    struct Policy: Sendable {
        /// Failures for a name from one address within `window` that lock it there.
        var maxFailures = 5
        var window: Duration = .seconds(15 * 60)
        var lockout: Duration = .seconds(5 * 60)
        /// Failures for a name from all addresses: a burst, then one per `nameRefill`.
        var nameBurst = 20
        var nameRefill: Duration = .seconds(30)
        /// Login attempts from one address: a burst (a classroom behind one NAT logging in at
        /// once), then a steady rate. A successful login gives its attempt back.
        var addressBurst = 30
        var addressPerSecond = 0.5
        /// When every refusal is answered, counted from the request's arrival.
        var refusalTime: Duration = .milliseconds(500)
        /// Names, addresses and pairs remembered at most, each.
        var remembered = 10_000
    }

    static let wrongCredentials = "wrong user name or password"

    /// Runs the password hashes, so that a burst of logins cannot take the threads every other
    /// request is served on.
    private static let hashing: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    private let policy: Policy
    private let clock = ContinuousClock()
    private var decoy: String
    /// When refusals are answered: the policy's time, or twice what the decoy took to make if
    /// that is longer, so that a costly hash in the users' file cannot make refusals of unknown
    /// names (which pay the costliest) answer later than others.
    private var refusalTime: Duration
    private var pairs: RecentTable<Pair, [ContinuousClock.Instant]>
    private var names: RecentTable<String, TokenBucket>
    private var addresses: RecentTable<String, Attempts>

    private struct Pair: Hashable, Sendable {
        var name: String
        var address: String
    }

    /// Builds the decoy hash now, with the costliest parameters among `users`' hashes.
    init(users: UsersConfig, policy: Policy = Policy()) {
        self.policy = policy
        (decoy, refusalTime) = Self.decoy(for: users, policy: policy)
        pairs = RecentTable(capacity: policy.remembered)
        names = RecentTable(capacity: policy.remembered)
        addresses = RecentTable(capacity: policy.remembered)
    }

    /// For a reloaded user list: the decoy follows the strongest hash in it.
    func reload(users: UsersConfig) {
        (decoy, refusalTime) = Self.decoy(for: users, policy: policy)
    }

    private static func decoy(for users: UsersConfig, policy: Policy) -> (String, Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        let decoy = PasswordHash.decoy(matching: users.users.compactMap { if case .hash(let hash) = $0.password { hash } else { nil } })
        let cost = clock.now - start
        return (decoy, policy.refusalTime > .zero ? max(policy.refusalTime, cost * 2) : .zero)
    }

    /// Takes one attempt from `address`'s bucket; false when it is empty. `firstRefusal` says the
    /// bucket has just run dry, worth one log line where a flood would write thousands.
    func admit(address: String) -> (admitted: Bool, firstRefusal: Bool) {
        let now = clock.now
        let policy = policy
        return addresses.update(address, make: { Attempts(bucket: TokenBucket(capacity: policy.addressBurst, perSecond: policy.addressPerSecond, now: now)) }) { attempts in
            let admitted = attempts.bucket.take(now: now)
            defer { attempts.refusing = !admitted }
            return (admitted, !admitted && !attempts.refusing)
        }
    }

    /// An address's attempts, and whether the last one was refused.
    private struct Attempts {
        var bucket: TokenBucket
        var refusing = false
    }

    /// Returns the user on success; throws a message for the client otherwise, at the refusal time.
    nonisolated func check(name: String, password: String, from address: String, users: UsersConfig) async throws -> UserConfig {
        let arrived = clock.now
        let (locked, decoy, refusalTime) = await begin(name: name, address: address)
        let user = users.user(named: name)
        // Checked before anything is decided: every path pays one hash.
        let valid = await Self.verify(password, for: locked ? nil : user, decoy: decoy)
        if !locked, valid, let user {
            await recordSuccess(name: name, address: address)
            return user
        }
        // Without a tolerance the system may fire the timer late by a share of the wait.
        try? await Task.sleep(until: arrived + refusalTime, tolerance: .zero, clock: clock)
        if locked {
            throw LoginRefused(.locked, "too many failed logins for this name from \(address); try again later")
        }
        throw LoginRefused(.wrongCredentials, Self.wrongCredentials)
    }

    /// Whether the name is locked for this address, the decoy to hash when no user's hash
    /// applies, and when to answer a refusal.
    private func begin(name: String, address: String) -> (locked: Bool, decoy: String, refusalTime: Duration) {
        let now = clock.now
        let policy = policy
        let recent = pairs.value(for: Pair(name: name, address: address))?.filter { now - $0 < policy.window } ?? []
        var locked = false
        if recent.count >= policy.maxFailures, let last = recent.last, now - last < policy.lockout {
            locked = true
        } else if !recent.isEmpty, var bucket = names.value(for: name), !bucket.hasToken(now: now) {
            // The name is under attack from many addresses: those that failed for it wait.
            locked = true
        }
        // Counted as a failure now, before the hash: attempts made at once all see the ones before
        // them, so a burst cannot slip more guesses past the lock. A success takes it back.
        if !locked { recordFailure(name: name, address: address) }
        return (locked, decoy, refusalTime)
    }

    private func recordFailure(name: String, address: String) {
        let now = clock.now
        let policy = policy
        pairs.update(Pair(name: name, address: address), make: { [] }) { times in
            times = Array((times.filter { now - $0 < policy.window } + [now]).suffix(policy.maxFailures))
        }
        let refill = 1 / (Double(policy.nameRefill.components.seconds) + Double(policy.nameRefill.components.attoseconds) / 1e18)
        names.update(name, make: { TokenBucket(capacity: policy.nameBurst, perSecond: refill, now: now) }) { _ = $0.take(now: now) }
    }

    private func recordSuccess(name: String, address: String) {
        pairs.remove(Pair(name: name, address: address))
        names.modifyIfPresent(name) { $0.giveBack() }
        let policy = policy
        let now = clock.now
        addresses.update(address, make: { Attempts(bucket: TokenBucket(capacity: policy.addressBurst, perSecond: policy.addressPerSecond, now: now)) }) {
            $0.bucket.giveBack()
        }
    }

    /// How many names, addresses and name–address pairs are remembered now.
    var remembered: (names: Int, addresses: Int, pairs: Int) { (names.count, addresses.count, pairs.count) }

    /// The hash runs on the hashing threads even for unknown names and locked ones, so timing
    /// does not reveal which names exist.
    private static func verify(_ password: String, for user: UserConfig?, decoy: String) async -> Bool {
        let work = { @Sendable () -> Bool in
            switch user?.password {
            case .hash(let encoded):
                return PasswordHash.verify(password, against: encoded)
            case .plain(let expected):
                _ = PasswordHash.verify(password, against: decoy)
                return constantTimeEqual(Data(password.utf8), Data(expected.utf8))
            case nil:
                _ = PasswordHash.verify(password, against: decoy)
                return false
            }
        }
        return (try? await hashing.runIfActive(work)) ?? false
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
