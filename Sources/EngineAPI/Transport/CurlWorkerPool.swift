import CCurl
import Foundation

/// Threads that each own one libcurl easy handle (so one kept-alive connection) and run blocking
/// transfers, keeping them off Swift's cooperative pool and any event loop.
///
/// The pool grows when every worker is busy (a followed log stream occupies its worker for as long
/// as it lasts) and shrinks back after workers sit idle.
final class CurlWorkerPool: @unchecked Sendable {
    private static let globalInit: Void = {
        curl_global_init(Int(CURL_GLOBAL_ALL))
    }()

    private let condition = NSCondition()
    private var queue: [Transfer] = []
    private var queueHead = 0
    /// Workers running a transfer; the others are free or about to wait for one.
    private var active = 0
    private var workers = 0
    private let maximumWorkers: Int
    private let minimumWorkers: Int
    private let idleTimeout: TimeInterval

    init(maximumWorkers: Int = 256, minimumWorkers: Int = 2, idleTimeout: TimeInterval = 30) {
        _ = Self.globalInit
        self.maximumWorkers = maximumWorkers
        self.minimumWorkers = minimumWorkers
        self.idleTimeout = idleTimeout
    }

    func submit(_ transfer: Transfer) {
        condition.lock()
        queue.append(transfer)
        let pending = queue.count - queueHead
        if pending > workers - active && workers < maximumWorkers {
            workers += 1
            let thread = Thread { [self] in runWorker() }
            thread.name = "berth-curl"
            thread.stackSize = 512 * 1024
            thread.start()
        }
        condition.signal()
        condition.unlock()
    }

    private func nextTransfer() -> Transfer? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if queueHead < queue.count {
                active += 1
                let transfer = queue[queueHead]
                queueHead += 1
                if queueHead > 64 && queueHead * 2 > queue.count {
                    queue.removeFirst(queueHead)
                    queueHead = 0
                }
                return transfer
            }
            let signalled = condition.wait(until: Date(timeIntervalSinceNow: idleTimeout))
            if !signalled && queueHead == queue.count && workers > minimumWorkers {
                workers -= 1
                return nil
            }
        }
    }

    private func runWorker() {
        guard let handle = curl_easy_init() else {
            condition.lock()
            workers -= 1
            condition.unlock()
            return
        }
        defer { curl_easy_cleanup(handle) }
        while let transfer = nextTransfer() {
            let deliver = transfer.run(on: handle)
            // Count as free before the caller resumes, so its next request reuses this warm
            // connection instead of starting a thread.
            condition.lock()
            active -= 1
            condition.unlock()
            deliver()
        }
    }
}
