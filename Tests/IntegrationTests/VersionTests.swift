import BerthAPI
import BerthCore
import BerthVersion
import EngineAPI
import HTTPClient
import Foundation
import Testing

/// Every program says which Berth it is, and daemons of different protocol versions refuse each
/// other in words that name both, rather than misreading a request.
@Suite(.enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
struct VersionTests {
    @Test(arguments: ["berth", "berth-agent", "berth-manager", "berth-unit"])
    func everyProgramPrintsItsVersion(program: String) async throws {
        let result = try await ClusterFixture.run(program, ["--version"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == BerthVersion.description + "\n", "\(result.stdout)")
    }

    @Test func anAgentRefusesAManagerOfAnotherWireVersionNamingBoth() async throws {
        let cluster = try await ClusterFixture(users: [("aaa", [ClusterFixture.hosts[0]])])
        defer { cluster.shutdown() }
        let agent = cluster.agent(ClusterFixture.hosts[0])
        let signer = RequestSigner(secret: cluster.secret)
        let transport = Transport(endpoint: EngineEndpoint(.tcp(host: agent.host, port: agent.port)))
        for sent in ["7.0.0 (wire 7)", nil] {
            var headers = signer.headers(method: "GET", target: "/v1/units", audience: agent.description, body: Data()).filter { $0.name != RequestSigner.versionHeader }
            if let sent { headers.append((name: RequestSigner.versionHeader, value: sent)) }
            let response = try await transport.send(HTTPRequest(method: "GET", path: "/v1/units", headers: headers, timeout: .seconds(5)))
            let text = String(decoding: response.body, as: UTF8.self)
            #expect(response.status == 426)
            #expect(text.contains("this is Berth \(BerthVersion.description) and the sender \(sent.map { "Berth \($0)" } ?? "a Berth older than 0.9.0")"), "\(text)")
        }
    }
}
