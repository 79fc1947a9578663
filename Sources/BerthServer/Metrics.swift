import Hummingbird
import NIOCore
import Prometheus

/// Makes one daemon's Prometheus metrics, every name under its namespace (`berth_agent_…`).
///
/// Both daemons serve their metrics unsigned at `GET /metrics`, because Prometheus cannot sign
/// requests; so metrics hold counts only, and no label ever carries a user name, a token, a
/// password or a unit.
public struct MetricsFactory: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let namespace: String

    public init(namespace: String) {
        self.namespace = namespace
    }

    public func counter(_ name: String, _ help: String, labels: [(String, String)] = []) -> Counter {
        registry.makeCounter(descriptor: descriptor(name, unit: "total", help), labels: labels)
    }

    public func gauge(_ name: String, _ help: String) -> Gauge {
        registry.makeGauge(descriptor: descriptor(name, unit: "", help))
    }

    /// Durations in seconds, in buckets from 5 ms to 2 min: a unit or a login is ready in tens of
    /// milliseconds to a minute.
    public func secondsHistogram(_ name: String, _ help: String) -> DurationHistogram {
        registry.makeDurationHistogram(descriptor: descriptor(name, unit: "seconds", help), buckets: [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60), .seconds(120),
        ])
    }

    private func descriptor(_ name: String, unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: namespace, metricName: name, unitName: unit, helpText: help)
    }

    /// Seconds until this daemon's TLS certificate expires, set at each scrape (absent without TLS).
    public func certificateExpiry() -> CertificateExpiryGauge {
        CertificateExpiryGauge(gauge: gauge("tls_certificate_expiry_seconds", "Seconds until this host's TLS certificate expires; renew before 0."))
    }

    /// The registry in Prometheus' text exposition format (version 0.0.4).
    public func text() -> ByteBuffer {
        ByteBuffer(bytes: registry.emitToBuffer())
    }
}

/// `/metrics` answered from what was gathered at most `maxAge` ago: anyone may scrape it, and a
/// thousand scrapes a second still cost one refresh (a Docker listing on an agent). Scrapes that
/// arrive during a refresh wait for it rather than start their own.
public actor ScrapeCache {
    private let maxAge: Duration
    private var last: (at: ContinuousClock.Instant, text: ByteBuffer)?
    private var refreshing: Task<ByteBuffer, Never>?

    public init(maxAge: Duration = .seconds(1)) {
        self.maxAge = maxAge
    }

    public func response(_ refresh: @escaping @Sendable () async -> ByteBuffer) async -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: ResponseBody(byteBuffer: await text(refresh)))
    }

    private func text(_ refresh: @escaping @Sendable () async -> ByteBuffer) async -> ByteBuffer {
        if let last, ContinuousClock.now - last.at < maxAge { return last.text }
        if let refreshing { return await refreshing.value }
        let task = Task { await refresh() }
        refreshing = task
        let text = await task.value
        last = (ContinuousClock.now, text)
        refreshing = nil
        return text
    }
}

/// The serving certificate's remaining life, read from the daemon's TLS at each scrape.
public struct CertificateExpiryGauge: Sendable {
    let gauge: Gauge

    public func update() {
        if let tls = ServerTLS.serving { gauge.set(to: tls.secondsToExpiry) }
    }
}
