import BerthAPI
import BerthCore
import EngineAPI
import HTTPClient
import Foundation
import Testing

/// What Prometheus reads from both daemons at `GET /metrics`, unsigned: counts of what users did,
/// never who they are.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
final class MetricsTests {
    let cluster: ClusterFixture

    init() async throws {
        cluster = try await ClusterFixture()
    }

    deinit {
        cluster.shutdown()
    }

    @Test func metricsCountLoginsSessionsAndUnitStartsAndNameNobody() async throws {
        let manager = cluster.managerAddress
        let agents = ClusterFixture.hosts.map(cluster.agent)
        var text = try await Metrics.scrape(manager)
        #expect(Metrics.value("berth_manager_sessions", in: text) == 0, "\(text)")
        #expect(Metrics.value(#"berth_manager_logins_total{outcome="ok"}"#, in: text) == 0)

        #expect(try await cluster.login("ccc", password: "not-it").status != 0)
        try await cluster.expectLogin("aaa")
        let token = try #require(try Metrics.sessionToken(cluster.root + "/session-aaa.json"))

        text = try await Metrics.scrape(manager)
        #expect(Metrics.value("berth_manager_sessions", in: text) == 1, "\(text)")
        #expect(Metrics.value(#"berth_manager_logins_total{outcome="ok"}"#, in: text) == 1)
        #expect(Metrics.value(#"berth_manager_logins_total{outcome="bad_password"}"#, in: text) == 1)
        #expect(Metrics.value(#"berth_manager_logins_total{outcome="locked"}"#, in: text) == 0)
        for secret in ["aaa", "ccc", "not-it", ClusterFixture.password, token] {
            #expect(!text.contains(secret), "the manager's metrics show \(secret)")
        }

        // aaa has one unit on each agent: each started one, and timed it.
        for agent in agents {
            let text = try await Metrics.scrape(agent)
            #expect(Metrics.value("berth_agent_unit_start_duration_seconds_count", in: text) == 1, "\(agent): \(text)")
            let seconds = try #require(Metrics.value("berth_agent_unit_start_duration_seconds_sum", in: text))
            #expect(seconds > 0 && seconds < 20)
            #expect(Metrics.value(#"berth_agent_unit_start_duration_seconds_bucket{le="+Inf"}"#, in: text) == 1)
            #expect(Metrics.value("berth_agent_units_started_total", in: text) == 1)
            #expect(Metrics.value("berth_agent_units_running", in: text) == 1)
            #expect(Metrics.value("berth_agent_engine_up", in: text) == 1)
            #expect(Metrics.value(#"berth_agent_engine_errors_total{kind="unreachable"}"#, in: text) == 0)
            #expect(!text.contains("aaa") && !text.contains(cluster.root), "the agent's metrics name the user or a path")
        }

        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)
        // Scrapes are answered from a cache of at most 1 s: the next one after that sees the logout.
        try await Task.sleep(for: .milliseconds(1100))
        text = try await Metrics.scrape(manager)
        #expect(Metrics.value("berth_manager_sessions", in: text) == 0)
        #expect(Metrics.value("berth_manager_logouts_total", in: text) == 1)
        for agent in agents {
            let text = try await Metrics.scrape(agent)
            #expect(Metrics.value("berth_agent_units_running", in: text) == 0, "\(agent)")
            #expect(Metrics.value("berth_agent_units_removed_total", in: text) == 1, "\(agent)")
        }
    }

    @Test func onlyMetricsAreOpenOnTheAgent() async throws {
        let transport = Transport(endpoint: EngineEndpoint(.tcp(host: ClusterFixture.hosts[0], port: cluster.communicationPort)))
        for path in ["/v1/units", "/v1/health", "/nothing-here"] {
            let answer = try await transport.send(HTTPRequest(method: "GET", path: path, timeout: .seconds(5)))
            #expect(answer.status == 401, "GET \(path) unsigned: \(answer.status)")
        }
        let metrics = try await transport.send(HTTPRequest(method: "GET", path: "/metrics", timeout: .seconds(5)))
        #expect(metrics.status == 200)
        #expect(metrics.head.headers.contains { $0.name.lowercased() == "content-type" && $0.value.hasPrefix("text/plain; version=0.0.4") })
    }
}

/// Reading the Prometheus text format the way a scraper does.
enum Metrics {
    /// `GET /metrics`, unsigned, as Prometheus sends it.
    static func scrape(_ address: HostPort) async throws -> String {
        let transport = Transport(endpoint: EngineEndpoint(.tcp(host: address.host, port: address.port)))
        let response = try await transport.send(HTTPRequest(method: "GET", path: "/metrics", timeout: .seconds(5)))
        guard response.status == 200 else { throw TestSetupError("GET /metrics on \(address): \(response.status)") }
        return String(decoding: response.body, as: UTF8.self)
    }

    /// The value of one sample, `name{labels}` exactly as exposed, or nil when absent.
    static func value(_ sample: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(sample + " ") {
            return Double(line.dropFirst(sample.count + 1))
        }
        return nil
    }

    static func sessionToken(_ path: String) throws -> String? {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["token"] as? String
    }
}
