import Synchronization
import Testing

@testable import Agent

@Suite struct StartAdmissionTests {
    /// The places a waiting start was told, in order.
    final class Places: Sendable {
        private let heard = Mutex<[Int]>([])
        func add(_ place: Int) { heard.withLock { $0.append(place) } }
        var all: [Int] { heard.withLock { $0 } }
    }

    /// Polls until `condition` holds (the admission is driven by other tasks).
    func eventually(_ condition: () -> Bool) async throws {
        for _ in 0..<500 where !condition() {
            try await Task.sleep(for: .milliseconds(2))
        }
        #expect(condition())
    }

    @Test func startsBeyondTheLimitWaitInLineAndHearTheirPlace() async throws {
        let admission = StartAdmission(limit: 2)
        let first = try await admission.enter { _ in Issue.record("the first start waited") }
        let second = try await admission.enter { _ in Issue.record("the second start waited") }
        #expect(!first.waited && !second.waited)

        let third = Places(), fourth = Places()
        let waiting3 = Task { try await admission.enter { third.add($0) } }
        try await eventually { admission.load.waiting == 1 }
        let waiting4 = Task { try await admission.enter { fourth.add($0) } }
        try await eventually { admission.load.waiting == 2 }
        #expect(admission.load.running == 2)

        first.leave()
        first.leave()  // a second leave of the same slot frees nothing more
        let slot3 = try await waiting3.value
        #expect(slot3.waited)
        try await eventually { fourth.all.last == 1 }
        #expect(third.all == [1])
        #expect(fourth.all == [2, 1])
        #expect(admission.load.running == 2 && admission.load.waiting == 1)

        second.leave()
        let slot4 = try await waiting4.value
        slot3.leave()
        slot4.leave()
        #expect(admission.load.running == 0 && admission.load.waiting == 0)
    }

    @Test func aCancelledWaitGivesUpItsPlace() async throws {
        let admission = StartAdmission(limit: 1)
        let running = try await admission.enter { _ in }
        let first = Task { try await admission.enter { _ in } }
        try await eventually { admission.load.waiting == 1 }
        let behind = Places()
        let second = Task { try await admission.enter { behind.add($0) } }
        try await eventually { behind.all == [2] }

        first.cancel()
        await #expect(throws: CancellationError.self) { _ = try await first.value }
        try await eventually { behind.all == [2, 1] }

        running.leave()
        let slot = try await second.value
        #expect(slot.waited)
        slot.leave()
        #expect(admission.load.running == 0 && admission.load.waiting == 0)
    }
}
