import BerthAPI
import BerthCore
import EngineAPI
import Foundation
import Testing

/// An agent starts at most `<ConcurrentStarts>` units at once; the others wait in line and their
/// users see where they wait.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
final class StartAdmissionIntegrationTests {
    let cluster: ClusterFixture
    let host = ClusterFixture.hosts[0]

    init() async throws {
        // One start at a time, and units that take a second to serve: the second login must wait.
        cluster = try await ClusterFixture(
            payload: .slowBannerTemplate(seconds: 1), users: [("aaa", [ClusterFixture.hosts[0]]), ("bbb", [ClusterFixture.hosts[0]])],
            concurrentStarts: 1)
    }

    deinit {
        cluster.shutdown()
    }

    @Test func twoLoginsAtOnceOnAOneSlotAgentBothSucceedAndTheSecondShowsItsPlaceInLine() async throws {
        let cluster = cluster
        async let first = cluster.login("aaa")
        async let second = cluster.login("bbb")
        let logins = try await [first, second]
        for login in logins {
            #expect(login.status == 0, "\(login.stderr)")
            #expect(login.stdout.contains("1 unit ready"), "\(login.stdout)")
        }

        let waited = logins.filter { $0.stderr.contains("queued") }
        #expect(waited.count == 1, "exactly one login should have waited: \(logins.map(\.stderr))")
        if let waited = waited.first {
            let lines = waited.stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            let queued = lines.firstIndex { $0.hasSuffix("queued (next in line on \(host), which starts 1 unit at a time)") }
            let ready = lines.firstIndex { $0.contains("ready") }
            #expect(queued != nil, "\(lines)")
            #expect(lines.filter { $0.hasSuffix("starting") }.count == 2, "starting, then starting again once admitted: \(lines)")
            if let queued, let ready { #expect(queued < ready) }
        }

        for user in ["aaa", "bbb"] {
            let containers = try await cluster.containers(of: user)
            #expect(containers.count == 1)
            #expect(containers.first?.state.running == true)
        }
    }
}
