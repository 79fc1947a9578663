import BerthCore
import EngineAPI
import Foundation
import Synchronization

/// The manager's line to one host's agent: signed JSON over TCP, every call with a timeout.
struct AgentClient: Sendable {
    private let client: ServiceClient
    let readyTimeout: Duration

    init(host: String, communicationPort: Int, signer: RequestSigner, readyTimeout: Duration) {
        self.readyTimeout = readyTimeout
        client = ServiceClient(address: HostPort(host: host, port: communicationPort), name: "agent \(host):\(communicationPort)", signer: signer)
    }

    func start(_ request: StartUnitRequest) async throws -> UnitStatus {
        // Creating and starting take seconds at most; the port may take the whole ready timeout.
        try await client.call("POST", "/v1/units/start", body: request, timeout: readyTimeout + .seconds(60))
    }

    func stop(_ request: StopUnitsRequest) async throws -> [HostPort] {
        try await client.call("POST", "/v1/units/stop", body: request, timeout: .seconds(120), as: StopUnitsResponse.self).removed
    }

    func list(user: String?) async throws -> [UnitStatus] {
        var query: [(name: String, value: String)] = []
        if let user { query.append((name: "user", value: user)) }
        return try await client.call("GET", "/v1/units", query: query, timeout: .seconds(15), as: UnitList.self).units
    }

    func exec(_ request: ExecRequest) async throws -> ExecResponse {
        try await client.call("POST", "/v1/units/exec", body: request, timeout: .seconds(3600))
    }

    func logs(user: String, unit: HostPort, query: [(name: String, value: String)]) async throws -> HTTPStreamingResponse {
        try await client.stream("GET", "/v1/units/logs", query: [(name: "user", value: user), (name: "unit", value: unit.description)] + query)
    }
}

/// Which agent serves which unit: a unit `ip:port` is served by the agent at `ip:<communication port>`.
/// One client per agent for the manager's lifetime: its kept-alive connections and worker
/// threads serve every login, instead of each call opening (and leaving) its own.
final class Planner: Sendable {
    let communicationPort: Int
    let signer: RequestSigner
    let readyTimeout: Duration
    private let clients = Mutex<[String: AgentClient]>([:])

    init(communicationPort: Int, signer: RequestSigner, readyTimeout: Duration) {
        self.communicationPort = communicationPort
        self.signer = signer
        self.readyTimeout = readyTimeout
    }

    func agent(for host: String) -> AgentClient {
        clients.withLock { clients in
            if let client = clients[host] { return client }
            let client = AgentClient(host: host, communicationPort: communicationPort, signer: signer, readyTimeout: readyTimeout)
            clients[host] = client
            return client
        }
    }

    /// The units grouped by host, hosts in order of first appearance.
    func byHost(_ units: [HostPort]) -> [(agent: AgentClient, units: [HostPort])] {
        var order: [String] = []
        var groups: [String: [HostPort]] = [:]
        for unit in units {
            if groups[unit.host] == nil { order.append(unit.host) }
            groups[unit.host, default: []].append(unit)
        }
        return order.map { (agent: agent(for: $0), units: groups[$0]!) }
    }
}
