import BerthServer
import Hummingbird
import Prometheus

/// What Prometheus sees of the manager at `GET /metrics`: sessions and logins, counts only.
final class ManagerMetrics: Sendable {
    /// One per process, like the sessions it counts, so a hook in the login path is one line.
    static let shared = ManagerMetrics()

    /// How a login ended; the `outcome` label of `berth_manager_logins_total`.
    enum LoginOutcome: String, CaseIterable {
        case ok
        /// A wrong password or an unknown name.
        case badPassword = "bad_password"
        case locked
        /// Too many attempts from one address: refused before the password was read.
        case throttled
        case alreadyLoggedIn = "already_logged_in"
        /// Another login or logout of the same user was under way.
        case busy
        /// A unit did not start: the login was rolled back.
        case failed
    }

    private let factory = MetricsFactory(namespace: "berth_manager")
    private let sessions: Gauge
    private let streamsOpen: Gauge
    private let logins: [LoginOutcome: Counter]
    let logouts: Counter
    let execs: Counter
    let sessionsExpired: Counter
    let orphanUnitsRemoved: Counter
    private let certificateExpiry: CertificateExpiryGauge
    private let cache = ScrapeCache()

    init() {
        sessions = factory.gauge("sessions", "Users logged in now.")
        streamsOpen = factory.gauge("streams_open", "Logs and execs streaming through the manager now.")
        let factory = factory
        logins = Dictionary(uniqueKeysWithValues: LoginOutcome.allCases.map { outcome in
            (outcome, factory.counter("logins", "Logins by how they ended.", labels: [("outcome", outcome.rawValue)]))
        })
        logouts = factory.counter("logouts", "Sessions ended by logout, --force, an admin or the idle timeout.")
        execs = factory.counter("execs", "berth exec commands relayed to a unit.")
        sessionsExpired = factory.counter("sessions_expired", "Sessions ended by the idle timeout.")
        certificateExpiry = factory.certificateExpiry()
        orphanUnitsRemoved = factory.counter("orphan_units_removed", "Unit containers of no live session removed by the reconciler.")
    }

    func login(_ outcome: LoginOutcome) {
        logins[outcome]?.increment()
    }

    /// A login the password check refused.
    func loginRefused(_ error: any Error) {
        switch (error as? LoginRefused)?.reason {
        case .wrongCredentials: login(.badPassword)
        case .locked: login(.locked)
        case nil: login(.failed)
        }
    }

    /// The sessions gauge is read from the session store at each scrape, its one source of truth.
    func scrape(_ store: SessionStore, streams: StreamSlots) async -> Response {
        await cache.response { [self] in
            sessions.set(to: Double(await store.all.count))
            streamsOpen.set(to: Double(streams.total))
            certificateExpiry.update()
            return factory.text()
        }
    }
}
