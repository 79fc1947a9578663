import BerthAPI
import BerthConfig
import BerthCore
import BerthTLS
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// The manager's line to one host's agent: signed JSON over TCP, every call with a timeout.
struct AgentClient: Sendable {
    private let client: ServiceClient
    let readyTimeout: Duration

    init(host: String, communicationPort: Int, signer: RequestSigner, readyTimeout: Duration, tls: ClientTLS? = nil) {
        self.readyTimeout = readyTimeout
        client = ServiceClient(
            address: HostPort(host: host, port: communicationPort), name: "agent \(host):\(communicationPort)", signer: signer, tls: tls, transport: Transport.self)
    }

    /// Starts a unit and returns once it serves. `progress` hears the agent's `queued` and
    /// `starting` events. The agent is given `readyTimeout` and a minute more between events: a
    /// start that waits in line hears again each time the line moves.
    func start(_ request: StartUnitRequest, progress: @escaping @Sendable (StartUnitEvent) async -> Void) async throws -> UnitStatus {
        let silence = readyTimeout + .seconds(60)
        let lastHeard = LastHeard()
        return try await withThrowingTaskGroup(of: UnitStatus.self) { group in
            group.addTask {
                let response = try await client.stream(AgentRoutes.startUnitWithProgress, request)
                var lines = LineSplitter()
                var chunks = response.body.makeAsyncIterator()
                while true {
                    let chunk: Data
                    do {
                        guard let next = try await chunks.next() else { break }
                        chunk = next
                    } catch let error as HTTPClientError {
                        // The agent went away mid-start (killed, restarted, its host down).
                        throw ServiceError.unreachable(what: client.name, reason: "the connection broke while \(request.unit) was starting (\(error))")
                    }
                    lastHeard.now()
                    for line in lines.feed(chunk) {
                        let event: StartUnitEvent
                        do {
                            event = try BerthJSON.decoder.decode(StartUnitEvent.self, from: line)
                        } catch {
                            throw ServiceError.invalidAnswer(what: client.name, detail: "\(error)")
                        }
                        switch event.kind {
                        case .queued, .starting: await progress(event)
                        case .ready:
                            guard let unit = event.unit else { throw ServiceError.invalidAnswer(what: client.name, detail: "ready without the unit") }
                            return unit
                        case .failed:
                            throw ServiceError.refused(status: event.status ?? 500, message: event.error ?? "unit \(request.unit) failed to start")
                        }
                    }
                }
                throw ServiceError.invalidAnswer(what: client.name, detail: "the start of \(request.unit) ended without an outcome")
            }
            group.addTask {
                while true {
                    let deadline = lastHeard.time + silence
                    if ContinuousClock.now >= deadline { throw ServiceError.timeout(what: client.name, after: silence) }
                    try await Task.sleep(until: deadline, clock: .continuous)
                }
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    func stop(_ request: StopUnitsRequest) async throws -> StopUnitsResponse {
        try await client.call(AgentRoutes.stopUnits, request, timeout: .seconds(120))
    }

    func list(user: String?, usage: Bool = false) async throws -> [UnitStatus] {
        var query: [(name: String, value: String)] = []
        if let user { query.append((name: "user", value: user)) }
        if usage { query.append((name: "usage", value: "1")) }
        return try await client.call(AgentRoutes.units, query: query, timeout: .seconds(15)).units
    }

    func exec(_ request: ExecRequest) async throws -> HTTPStreamingResponse {
        try await client.stream(AgentRoutes.exec, request)
    }

    /// `berth cp` into `user`'s home on this agent's host: the tar stream written to `input`.
    func copyIn(_ user: UserConfig, path: String, input: UploadStream) async throws -> CopyResult {
        try await client.upload(AgentRoutes.copyIn, query: Self.copyQuery(user, path: path), input: input, contentType: TarStream.contentType)
    }

    /// `berth cp` out of `user`'s home on this agent's host, as a tar stream.
    func copyOut(_ user: UserConfig, path: String) async throws -> HTTPStreamingResponse {
        try await client.stream(AgentRoutes.copyOut, query: Self.copyQuery(user, path: path))
    }

    private static func copyQuery(_ user: UserConfig, path: String) -> [(name: String, value: String)] {
        var query = [(name: "user", value: user.name), (name: "home", value: user.home), (name: "path", value: path)]
        if let account = user.account { query += [(name: "uid", value: String(account.uid)), (name: "gid", value: String(account.gid))] }
        return query
    }

    /// An exec with stdin: `request` opens it, what is written to `input` (framed) follows.
    func execInteractive(_ request: ExecRequest, input: UploadStream) async throws -> HTTPStreamingResponse {
        try await client.duplex(AgentRoutes.exec, opening: request, input: input)
    }

    func logs(user: String, unit: HostPort, query: [(name: String, value: String)]) async throws -> HTTPStreamingResponse {
        try await client.stream(AgentRoutes.unitLogs, query: [(name: "user", value: user), (name: "unit", value: unit.description)] + query)
    }
}

/// When an agent was last heard from during a start.
private final class LastHeard: Sendable {
    private let instant = Mutex(ContinuousClock.now)

    var time: ContinuousClock.Instant { instant.withLock { $0 } }

    func now() { instant.withLock { $0 = .now } }
}

/// Which agent serves which unit: a unit `ip:port` is served by the agent at `ip:<communication port>`.
/// One client per agent for the manager's lifetime: its kept-alive connections and worker
/// threads serve every login, instead of each call opening (and leaving) its own.
final class Planner: Sendable {
    let communicationPort: Int
    let signer: RequestSigner
    let readyTimeout: Duration
    private let clients = Mutex<(tls: ClientTLS?, byHost: [String: AgentClient])>((nil, [:]))

    /// `tls`: how agents are reached over TLS (the manager's certificate, the cluster's CA).
    init(communicationPort: Int, signer: RequestSigner, readyTimeout: Duration, tls: ClientTLS? = nil) {
        self.communicationPort = communicationPort
        self.signer = signer
        self.readyTimeout = readyTimeout
        clients.withLock { $0.tls = tls }
    }

    func agent(for host: String) -> AgentClient {
        clients.withLock { clients in
            if let client = clients.byHost[host] { return client }
            let client = AgentClient(
                host: host, communicationPort: communicationPort, signer: signer, readyTimeout: readyTimeout, tls: clients.tls)
            clients.byHost[host] = client
            return client
        }
    }

    /// New TLS files (SIGHUP): later calls connect with them; calls under way finish on theirs.
    func reload(tls: ClientTLS) {
        clients.withLock { $0 = (tls, [:]) }
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

/// How the manager reaches agents over TLS: trusting only the cluster's CA, each agent's
/// certificate naming the address connected to, and presenting its own certificate.
func agentTLS(_ material: TLSMaterial) -> ClientTLS {
    ClientTLS(trustedCAs: material.caPEM, clientCertificate: material.certificatePEM, clientKey: material.keyPEM)
}
