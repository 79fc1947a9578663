import BerthConfig
import BerthAPI
import BerthCore
import BerthPasswords
import BerthServer
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
@testable import Manager

/// Run alone, after every other suite (see the Makefile): the medians it compares are a few
/// milliseconds apart, which the rest of the suite's load would drown.
@Suite struct RefusalTimingTests {
    /// An attacker timing refusals must not learn which names exist, nor which are locked: an
    /// unknown name pays the same password hash as a wrong password for a known one, and every
    /// refusal is answered at the same time after the request arrived.
    @Test func everyRefusalTakesTheSameTime() async throws {
        let hash = try PasswordHash.make(ManagerRoutesTests.password)
        let known = (1...7).map { "known\($0)" }
        let users = UsersConfig(users: try (known + ["locked"]).map { name in
            UserConfig(
                name: name, password: .hash(hash), memory: try MemorySpec(parsing: "64m"), cpu: 512, home: "/opt/app/\(name)",
                units: [HostPort(host: FakeAgent.host, port: 8281)])
        })
        // Long enough that a hash finishes before it even on two cores the rest of the suite loads:
        // a hash that outlasts the refusal time is answered when it ends.
        let auth = Auth(users: users, policy: Auth.Policy(refusalTime: .seconds(1)))
        for _ in 0..<5 { _ = try? await auth.check(name: "locked", password: "wrong", from: "127.0.0.9", users: users) }
        let clock = ContinuousClock()
        func timed(_ name: String) async -> Duration {
            let start = clock.now
            _ = try? await auth.check(name: name, password: "wrong", from: "127.0.0.9", users: users)
            return clock.now - start
        }
        // Side by side, in an order that turns from round to round, so a change in the machine's
        // load (the rest of the suite hashing in bursts) weighs on all three alike.
        var knownTimes: [Duration] = [], unknownTimes: [Duration] = [], lockedTimes: [Duration] = []
        for index in 0..<7 {
            for kind in (0..<3).map({ ($0 + index) % 3 }) {
                switch kind {
                case 0: knownTimes.append(await timed(known[index]))
                case 1: unknownTimes.append(await timed("unknown\(index)"))
                default: lockedTimes.append(await timed("locked"))
                }
            }
        }
        let median = { (times: [Duration]) in times.sorted()[times.count / 2] }
        let medians = [median(knownTimes), median(unknownTimes), median(lockedTimes)]
        // A few ms: what the scheduler adds to a wake-up on two cores the rest of the suite loads.
        #expect(medians.max()! - medians.min()! < .milliseconds(10), "known, unknown, locked: \(medians)")
        #expect(medians.min()! >= .seconds(1))
        print("figures: refusal medians (known name, unknown name, locked name): \(medians)")
    }
}
