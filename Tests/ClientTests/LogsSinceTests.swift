import Foundation
import Testing
@testable import Client

/// `berth logs --since` passes what Docker understands and refuses the rest on one line.
@Suite struct LogsSinceTests {
    @Test(arguments: ["2026-12-02T15:35:33Z", "2026-12-02T15:35:33.25Z", "2026-12-02T16:35:33+01:00", "1796225733", "1796225733.5"])
    func timesPassAsWritten(text: String) throws {
        #expect(try Logs.dockerTime(text) == text)
    }

    @Test func durationsBecomeUnixSecondsThatLongAgo() throws {
        let now = Int(Date().timeIntervalSince1970)
        let since = try #require(Int(try Logs.dockerTime("10m")))
        #expect(abs(since - (now - 600)) <= 2)
    }

    @Test(arguments: ["yesterday", "2026-12-02", "2026-12-02 15:35", "10 minutes", "-5m"])
    func anythingElseIsRefused(text: String) {
        #expect(throws: (any Error).self) { try Logs.dockerTime(text) }
    }
}
