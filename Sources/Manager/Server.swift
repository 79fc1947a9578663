import BerthCore
import BerthServer
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import Logging
import Prometheus

/// The manager's HTTP API: `login` for anyone with a password, the rest for a session's token,
/// `admin/` for holders of the cluster secret.
enum ManagerServer {
    static func router(coordinator: Coordinator, verifier: RequestVerifier) -> Router<BerthRequestContext> {
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        // For Prometheus, which cannot sign: counts only, no names.
        router.get("metrics") { _, _ in await ManagerMetrics.shared.scrape(coordinator.sessions) }
        let api = router.group("v1")

        api.post("login") { request, context in
            let login = try await request.decodeJSON(LoginRequest.self)
            let address = context.clientAddress
            return jsonLinesResponse { (emit: @escaping @Sendable (LoginEvent) async throws -> Void) in
                try await coordinator.login(login, from: address, emit: emit)
            }
        }
        api.post("logout") { request, _ in
            let session = try await authenticate(request, coordinator)
            do {
                return try jsonResponse(StopUnitsResponse(removed: try await coordinator.logout(session)))
            } catch {
                throw APIError(.badGateway, "logout incomplete: \(error); the session is kept, run berth logout again")
            }
        }
        api.get("status") { request, _ in
            let session = try await authenticate(request, coordinator)
            let units = await coordinator.status(session)
            return try jsonResponse(StatusResponse(user: session.user, since: session.since, from: session.from, units: units))
        }
        api.post("exec") { request, _ in
            let session = try await authenticate(request, coordinator)
            let exec = try await request.decodeJSON(ClientExecRequest.self)
            guard session.units.contains(exec.unit) else {
                throw APIError(.forbidden, "unit \(exec.unit) is not one of your units (\(session.units.map(\.description).joined(separator: ", ")))")
            }
            let agent = coordinator.planner.agent(for: exec.unit.host)
            await coordinator.audit.record("exec", user: session.user, detail: "\(exec.unit) \(exec.command)")
            ManagerMetrics.shared.execs.increment()
            return try jsonResponse(try await relay { try await agent.exec(ExecRequest(user: session.user, unit: exec.unit, command: exec.command)) })
        }
        api.get("logs") { request, _ in
            let session = try await authenticate(request, coordinator)
            let query = request.uri.queryParameters
            guard let unitText = query["unit"], let unit = HostPort(parsing: String(unitText)) else {
                throw APIError(.badRequest, "logs need a unit")
            }
            guard session.units.contains(unit) else {
                throw APIError(.forbidden, "unit \(unit) is not one of your units")
            }
            var forwarded: [(name: String, value: String)] = []
            for name in ["follow", "since", "until", "tail", "timestamps"] {
                if let value = query[name[...]] { forwarded.append((name: name, value: String(value))) }
            }
            let agent = coordinator.planner.agent(for: unit.host)
            let upstream = try await relay { try await agent.logs(user: session.user, unit: unit, query: forwarded) }
            return Response(
                status: .ok, headers: [.contentType: "application/vnd.docker.multiplexed-stream"],
                body: ResponseBody { writer in
                    for try await chunk in upstream.body { try await writer.write(ByteBuffer(bytes: chunk)) }
                    try await writer.finish(nil)
                })
        }

        let admin = api.group("admin")
        admin.add(middleware: SignatureMiddleware(verifier: verifier))
        admin.get("sessions") { _, _ in
            try jsonResponse(await coordinator.sessions.all.map(\.summary))
        }
        admin.post("sessions/end") { request, _ in
            struct End: Decodable { var user: String }
            let end = try await request.decodeJSON(End.self)
            guard let session = await coordinator.sessions.session(user: end.user) else {
                throw APIError(.notFound, "\(end.user) has no session")
            }
            await coordinator.audit.record("admin.end_session", user: end.user)
            return try jsonResponse(StopUnitsResponse(removed: try await relay { try await coordinator.logout(session) }))
        }
        return router
    }

    private static func authenticate(_ request: Request, _ coordinator: Coordinator) async throws -> Session {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, "not logged in; run berth login")
        }
        guard let session = try await coordinator.sessions.session(token: String(header.dropFirst(7))) else {
            throw APIError(.unauthorized, "your session has ended; run berth login again")
        }
        return session
    }

    /// Agent failures pass on with their message; an unreachable agent is a 502 naming it.
    private static func relay<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch ServiceError.refused(let status, let message) {
            throw APIError(HTTPResponse.Status(code: status), message)
        } catch let error as ServiceError {
            throw APIError(.badGateway, error.description)
        } catch let error as ManagerError {
            throw APIError(.badGateway, error.description)
        }
    }
}
