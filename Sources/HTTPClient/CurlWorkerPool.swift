import CCurl
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Threads that each own libcurl handles (so one kept-alive connection) and run blocking
/// transfers, keeping them off Swift's cooperative pool and any event loop.
///
/// The pool is also a `TaskExecutor`. A task that prefers it (`withTaskExecutorPreference`) runs
/// on these threads, and its requests are then made right there on the thread's own handle: no
/// hand-off to a worker and no resume on another thread, the two hops that otherwise cost more
/// than a local engine takes to answer `_ping`.
///
/// The pool grows when every worker is busy (a followed log stream occupies its worker for as long
/// as it lasts) and shrinks back after workers sit idle. Once its owner lets go (`shutDown`), every
/// worker leaves as soon as nothing is queued, and the threads and connections go with them.
final class CurlWorkerPool: TaskExecutor, @unchecked Sendable {
    static let globalInit: Void = {
        CurlStart.state.withLock { $0.started = true }
        curl_global_init(Int(CURL_GLOBAL_ALL))
    }()

    /// What a worker does next: a transfer handed over by a caller elsewhere, or a piece of a task
    /// that prefers this executor.
    private enum Work {
        case transfer(Transfer)
        case job(UnownedJob)
    }

    private let condition = ConditionLock()
    private var queue: [Work] = []
    private var queueHead = 0
    /// Workers running something; the others are free or about to wait for work.
    private var active = 0
    private var workers = 0
    private var shuttingDown = false
    private let maximumWorkers: Int
    private let minimumWorkers: Int
    private let idleTimeout: Duration

    /// What every worker's handles share: the TLS sessions of the transport's server.
    private let sessions: TLSSessions?

    init(maximumWorkers: Int = 256, minimumWorkers: Int = 2, idleTimeout: Duration = .seconds(30), sessions: TLSSessions? = nil) {
        self.sessions = sessions
        _ = Self.globalInit
        self.maximumWorkers = maximumWorkers
        self.minimumWorkers = minimumWorkers
        self.idleTimeout = idleTimeout
    }

    /// Queues `transfer`; true when it waits for a busy worker to come free (every worker busy,
    /// and no more allowed), so its caller should watch its timeout.
    @discardableResult
    func submit(_ transfer: Transfer) -> Bool {
        submit(.transfer(transfer))
    }

    func enqueue(_ job: consuming ExecutorJob) {
        submit(.job(UnownedJob(job)))
    }

    /// Lets every worker go once the queue is empty; work submitted later still runs, on a worker
    /// started for it that leaves straight after.
    func shutDown() {
        condition.lock()
        shuttingDown = true
        condition.broadcast()
        condition.unlock()
    }

    /// The handles of the worker thread this is called on, when it is one of this pool's.
    func handlesOfCurrentThread() -> CurlHandles? {
        guard let worker = WorkerThread.current, worker.pool === self else { return nil }
        return worker.handles
    }

    @discardableResult
    private func submit(_ work: Work) -> Bool {
        condition.lock()
        queue.append(work)
        let pending = queue.count - queueHead
        let waits = pending > workers - active && workers >= maximumWorkers
        if pending > workers - active && workers < maximumWorkers {
            workers += 1
            // With no thread to be had, the work waits for a worker that is busy now (or the
            // next submit tries again).
            if !startThread(name: "berth-curl", stackSize: 512 * 1024, { [self] in runWorker() }) {
                workers -= 1
            }
        }
        condition.signal()
        condition.unlock()
        return waits
    }

    private func nextWork() -> Work? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if queueHead < queue.count {
                active += 1
                let work = queue[queueHead]
                queueHead += 1
                if queueHead > 64 && queueHead * 2 > queue.count {
                    queue.removeFirst(queueHead)
                    queueHead = 0
                }
                return work
            }
            if shuttingDown {
                workers -= 1
                return nil
            }
            let signalled = condition.wait(timeout: idleTimeout)
            if !signalled && queueHead == queue.count && workers > minimumWorkers {
                workers -= 1
                return nil
            }
        }
    }

    private func markFree() {
        condition.lock()
        active -= 1
        condition.unlock()
    }

    private func runWorker() {
        guard let handles = CurlHandles(sessions: sessions) else {
            condition.lock()
            workers -= 1
            condition.unlock()
            return
        }
        defer { handles.cleanup() }
        let worker = WorkerThread(pool: self, handles: handles)
        WorkerThread.current = worker
        defer { WorkerThread.current = nil }
        while let work = nextWork() {
            switch work {
            case .transfer(let transfer):
                let deliver = transfer.run(on: handles)
                // Count as free before the caller resumes, so its next request reuses this warm
                // connection instead of starting a thread.
                markFree()
                deliver()
            case .job(let job):
                job.runSynchronously(on: asUnownedTaskExecutor())
                markFree()
            }
        }
    }
}

/// The pool and handles of a worker thread, found again from code running on it.
private final class WorkerThread {
    unowned let pool: CurlWorkerPool
    let handles: CurlHandles

    init(pool: CurlWorkerPool, handles: CurlHandles) {
        self.pool = pool
        self.handles = handles
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static var current: WorkerThread? {
        get {
            guard let raw = pthread_getspecific(key) else { return nil }
            return Unmanaged<WorkerThread>.fromOpaque(raw).takeUnretainedValue()
        }
        set {
            if let old = pthread_getspecific(key) { Unmanaged<WorkerThread>.fromOpaque(old).release() }
            pthread_setspecific(key, newValue.map { Unmanaged.passRetained($0).toOpaque() })
        }
    }
}
