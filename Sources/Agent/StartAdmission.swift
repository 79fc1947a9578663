import Synchronization

/// How many unit starts the agent lets its engine work on at once (`<ConcurrentStarts>`); the
/// others wait in line, first come first served, and each waiting start is told its place
/// whenever it changes. A start holds its slot while the engine creates and starts its
/// container, not while the unit's program comes up. A small host's engine finishes a burst of logins sooner this way than
/// when it is handed every start at once, and the last user in line waits least.
final class StartAdmission: Sendable {
    let limit: Int

    private struct Waiter {
        let id: UInt64
        let places: AsyncStream<Int>.Continuation
    }

    private struct State {
        var running = 0
        var line: [Waiter] = []
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    init(limit: Int) {
        precondition(limit >= 1, "a start limit below 1 would admit nothing")
        self.limit = limit
    }

    /// Starts running now plus those waiting: what a new start would find.
    var load: (running: Int, waiting: Int) {
        state.withLock { ($0.running, $0.line.count) }
    }

    /// Returns once this start may run, holding one of the slots until the returned `Slot` is
    /// left (ready or failed). While it waits, `queued` gets its place in line (1: next) each
    /// time it changes. A cancelled wait gives up its place and throws `CancellationError`.
    func enter(queued: (_ place: Int) async -> Void) async throws -> Slot {
        let (places, continuation) = AsyncStream<Int>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id: UInt64? = state.withLock { state in
            if state.running < limit && state.line.isEmpty {
                state.running += 1
                return nil
            }
            state.nextID += 1
            state.line.append(Waiter(id: state.nextID, places: continuation))
            continuation.yield(state.line.count)
            return state.nextID
        }
        guard let id else { return Slot(admission: self, waited: false) }
        // Ends when `leave()` hands this start a slot, or when the task is cancelled.
        for await place in places {
            await queued(place)
        }
        let stillWaiting = state.withLock { state in
            guard let index = state.line.firstIndex(where: { $0.id == id }) else { return false }
            state.line.remove(at: index)
            Self.tellPlaces(state.line, from: index)
            return true
        }
        if stillWaiting { throw CancellationError() }
        return Slot(admission: self, waited: true)
    }

    /// One admitted start's hold on a slot.
    final class Slot: Sendable {
        private let admission: StartAdmission
        private let held = Mutex(true)
        /// Whether the start waited in line first.
        let waited: Bool

        fileprivate init(admission: StartAdmission, waited: Bool) {
            self.admission = admission
            self.waited = waited
        }

        /// Frees the slot for the next start; only the first call counts.
        func leave() {
            guard held.withLock({ held in defer { held = false }; return held }) else { return }
            admission.leave()
        }
    }

    /// Gives the slot to the first start in line, or frees it.
    private func leave() {
        state.withLock { state in
            guard !state.line.isEmpty else {
                state.running -= 1
                return
            }
            state.line.removeFirst().places.finish()
            Self.tellPlaces(state.line, from: 0)
        }
    }

    private static func tellPlaces(_ line: [Waiter], from index: Int) {
        for place in index..<line.count {
            line[place].places.yield(place + 1)
        }
    }
}
