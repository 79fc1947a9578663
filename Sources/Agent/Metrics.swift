import BerthAPI
import BerthCore
import BerthServer
import EngineAPI
import HTTPClient
import Hummingbird
import Prometheus

/// What Prometheus sees of an agent at `GET /metrics`: its units, how long they take to start,
/// and how its engine answers. Counts only.
final class AgentMetrics: Sendable {
    /// One per process, like the engine it watches, so a hook in the request path is one line.
    static let shared = AgentMetrics()

    private let factory = MetricsFactory(namespace: "berth_agent")
    private let unitsRunning: Gauge
    /// Logs and execs streaming to the manager now.
    let streamsOpen: Gauge
    private let engineUp: Gauge
    let unitsStarted: Counter
    let unitStartFailures: Counter
    let unitsRemoved: Counter
    /// From the start request to the unit's port serving, for units that started.
    let unitStartDuration: DurationHistogram
    private let engineErrors: [String: Counter]
    private let certificateExpiry: CertificateExpiryGauge
    private let cache = ScrapeCache()

    /// The `kind` label of `berth_agent_engine_errors_total`.
    static let engineErrorKinds = ["unreachable", "timeout", "not_found", "conflict", "status", "invalid_response", "other"]

    init() {
        unitsRunning = factory.gauge("units_running", "Unit containers of this agent that are running, as Docker reports them.")
        engineUp = factory.gauge("engine_up", "1 when the Docker engine answered the last scrape, else 0.")
        streamsOpen = factory.gauge("streams_open", "Logs and execs streaming from this agent now.")
        certificateExpiry = factory.certificateExpiry()
        unitsStarted = factory.counter("units_started", "Units started and serving their port.")
        unitStartFailures = factory.counter("unit_start_failures", "Unit starts that failed (port taken, image missing, exited, timed out, engine down).")
        unitsRemoved = factory.counter("units_removed", "Unit containers removed (logout, rollback, reconciler).")
        unitStartDuration = factory.secondsHistogram("unit_start_duration", "Time from a unit's start request to its port serving.")
        let factory = factory
        engineErrors = Dictionary(uniqueKeysWithValues: Self.engineErrorKinds.map { kind in
            (kind, factory.counter("engine_errors", "Docker Engine API calls that failed, by kind.", labels: [("kind", kind)]))
        })
    }

    /// Counts the error if it is the engine's; anything else is not.
    func engineError(_ error: any Error) {
        guard let error = error as? EngineError, error != .cancelled else { return }
        let kind: String =
            switch error {
            case .unreachable: "unreachable"
            case .timeout: "timeout"
            case .notFound: "not_found"
            case .conflict: "conflict"
            case .status: "status"
            case .invalidResponse, .streamError: "invalid_response"
            case .cancelled, .unsupportedEngine, .invalidEndpoint, .transport: "other"
            }
        engineErrors[kind]?.increment()
    }

    /// Running units are counted from Docker's labels at each scrape, their one source of truth;
    /// an engine that does not answer within 3 s leaves the last count and sets `engine_up` to 0.
    /// Scrapes within a second of the last share its listing.
    func scrape(_ service: UnitService) async -> Response {
        await cache.response { [self] in await refresh(service) }
    }

    private func refresh(_ service: UnitService) async -> ByteBuffer {
        do {
            let running = try await withDeadline(.seconds(3)) {
                try await service.docker.listContainers(labels: ["\(UnitLabel.host)=\(service.hostLabel)"]).count
            }
            unitsRunning.set(to: Double(running))
            engineUp.set(to: 1)
        } catch {
            engineError(error)
            engineUp.set(to: 0)
        }
        certificateExpiry.update()
        return factory.text()
    }
}

/// `body`'s result, or `EngineError.timeout` once `limit` has passed.
private func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask(operation: body)
        group.addTask {
            try await Task.sleep(for: limit)
            throw EngineError.timeout(method: "GET", path: "/containers/json", after: limit)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
