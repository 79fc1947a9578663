import BerthAPI
import BerthConfig
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
import Synchronization

/// The manager's HTTP API, `ManagerRoutes`, one method per route: `login` for anyone with a
/// password, the user's routes for a session's token, `admin` for holders of the cluster secret.
struct ManagerController: Sendable {
    let coordinator: Coordinator

    static func router(coordinator: Coordinator, verifier: RequestVerifier) -> Router<BerthRequestContext> {
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        ManagerController(coordinator: coordinator).addRoutes(to: router, verifier: verifier)
        return router
    }

    func addRoutes(to router: Router<BerthRequestContext>, verifier: RequestVerifier) {
        router.on(raw: ManagerRoutes.metrics, use: metrics)
        router.group()
            .add(middleware: LoginThrottle(coordinator: coordinator))
            .add(middleware: RequireJSONBody())
            .on(ManagerRoutes.login, check: Self.checkLogin, use: login)
        router.on(ManagerRoutes.logout, use: logout)
        router.on(ManagerRoutes.status, use: status)
        router.on(raw: ManagerRoutes.exec, use: exec)
        router.on(raw: ManagerRoutes.logs, use: logs)
        router.on(raw: ManagerRoutes.copyIn, use: copyIn)
        router.on(raw: ManagerRoutes.copyOut, use: copyOut)
        let admin = router.group().add(middleware: SignatureMiddleware(verifier: verifier))
        admin.on(ManagerRoutes.sessions, use: sessions)
        admin.on(ManagerRoutes.endSession, use: endSession)
    }

    /// For Prometheus, which cannot sign: counts only, no names.
    @Sendable func metrics(_ request: Request, _ context: BerthRequestContext) async -> Response {
        await ManagerMetrics.shared.scrape(coordinator.sessions, streams: coordinator.streams)
    }

    @Sendable func login(
        _ login: LoginRequest, _ request: Request, _ context: BerthRequestContext, emit: @escaping @Sendable (LoginEvent) async throws -> Void
    ) async throws {
        // Past the throttle, a login may wait its turn for a password check: no stranger's
        // deadline for its answer, and its connection is not given to a newer one meanwhile.
        let channel = context.channel
        await channel.answerMayTakeLong()
        // Once the password is right the connection is the user's; a login whose client has
        // gone by then starts nothing.
        let gone = HangUp()
        channel.whenClientHangsUp { gone.happened.store(true, ordering: .relaxed) }
        try await coordinator.login(login, from: context.clientAddress, checked: {
            channel.markAuthenticated(owner: login.user)
            return !gone.happened.load(ordering: .relaxed)
        }, emit: emit)
    }

    /// No user name is longer: refused before any work, which reveals nothing a name's rules do not.
    @Sendable static func checkLogin(_ login: LoginRequest) throws {
        guard login.user.utf8.count <= 64 else {
            throw APIError(.badRequest, "user name is longer than 64 bytes")
        }
    }

    @Sendable func logout(_ request: Request, _ context: BerthRequestContext) async throws -> StopUnitsResponse {
        let session = try await authenticate(request, context)
        do {
            return StopUnitsResponse(removed: try await coordinator.logout(session))
        } catch {
            throw APIError(.badGateway, "logout incomplete: \(error); the session is kept, run berth logout again")
        }
    }

    @Sendable func status(_ request: Request, _ context: BerthRequestContext) async throws -> StatusResponse {
        let session = try await authenticate(request, context)
        let units = await coordinator.status(session, usage: request.uri.queryParameters["usage"] != "0")
        return StatusResponse(user: session.user, since: session.since, from: session.from, units: units)
    }

    @Sendable func exec(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let session = try await authenticate(request, context)
        if request.isFramed { return try await interactiveExec(request, session, context) }
        // The slot first: a user's requests sending their bodies hold memory too.
        try takeStreamSlot(of: session, context, closing: true)
        var slotHandedOver = false
        defer { if !slotHandedOver { giveStreamSlot(of: session, context) } }
        let exec = try await request.decodeJSON(ClientExecRequest.self, limit: ManagerRoutes.exec.maxBody, context: context)
        try await stillCurrent(session)
        guard session.units.contains(exec.unit) else {
            throw APIError(.forbidden, "unit \(exec.unit) is not one of your units (\(session.units.map(\.description).joined(separator: ", ")))")
        }
        let agent = coordinator.planner.agent(for: exec.unit.host)
        await coordinator.audit.record("exec", user: session.user, detail: "\(exec.unit) \(exec.command)")
        ManagerMetrics.shared.execs.increment()
        slotHandedOver = true
        return try await relayStream(of: session, holdingSlot: true, contentType: OutputStream.contentType, context) {
            try await agent.exec(ExecRequest(user: session.user, unit: exec.unit, command: exec.command))
        }
    }

    /// `berth exec -i` and `-it`: the client's frames go up to the agent as they come, the
    /// output comes down. The audit records the command, never what is typed.
    private func interactiveExec(_ request: Request, _ session: Session, _ context: BerthRequestContext) async throws -> Response {
        // The slot first: a user's requests waiting for their opening frame hold memory too.
        try takeStreamSlot(of: session, context, closing: true)
        var slotHandedOver = false
        defer { if !slotHandedOver { giveStreamSlot(of: session, context) } }
        let (exec, input) = try await FramedInput.open(request, as: ClientExecRequest.self, maxRequestFrame: ManagerRoutes.exec.maxBody, context: context)
        try await stillCurrent(session, closing: true)
        guard session.units.contains(exec.unit) else {
            throw APIError(.forbidden, "unit \(exec.unit) is not one of your units (\(session.units.map(\.description).joined(separator: ", ")))", closing: true)
        }
        let terminal = exec.terminal ?? ExecTerminal(tty: false)
        let agent = coordinator.planner.agent(for: exec.unit.host)
        await coordinator.audit.record("exec", user: session.user, detail: "\(exec.unit) \(exec.command) \(terminal.tty ? "with a terminal" : "with stdin")")
        ManagerMetrics.shared.execs.increment()
        let upload = UploadStream()
        let forward: @Sendable () async throws -> Void = {
            defer { upload.finish() }
            while let frame = try await input.next() {
                if case .request = frame { throw APIError(.badRequest, "an interactive request has one request frame") }
                try await upload.write(frame.encoded)
            }
        }
        slotHandedOver = true
        return try await relayStream(of: session, holdingSlot: true, contentType: OutputStream.contentType, context, alongside: forward) {
            try await agent.execInteractive(ExecRequest(user: session.user, unit: exec.unit, command: exec.command, terminal: terminal), input: upload)
        }
    }

    /// `berth cp` into a unit: the tar stream goes on to the unit's agent as it comes, which
    /// unpacks it in the user's home there. It holds one of the user's stream slots meanwhile.
    @Sendable func copyIn(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let session = try await authenticate(request, context)
        let (user, unit, path) = try copyTarget(request, session)
        try takeStreamSlot(of: session, context, closing: true)
        defer { giveStreamSlot(of: session, context) }
        try await stillCurrent(session, closing: true)
        let agent = coordinator.planner.agent(for: unit.host)
        await coordinator.audit.record("cp", user: session.user, detail: "into \(unit) \(path)")
        context.channel.requestMayLast()
        let upload = UploadStream()
        let answer = Task { try await relay { try await agent.copyIn(user, path: path, input: upload) } }
        do {
            for try await piece in request.body { try await upload.write(Data(piece.readableBytesView)) }
            upload.finish()
        } catch is HTTPClientError {
            // The agent ended the request early, a refusal: its answer says why.
            upload.finish()
        } catch {
            // The client went midway: the agent's request is dropped, not ended, so what was cut
            // short is not taken for the whole.
            answer.cancel()
            throw error
        }
        do {
            return try jsonResponse(try await answer.value)
        } catch var error as APIError {
            // The client's body may be unread still.
            error.closing = true
            throw error
        }
    }

    /// `berth cp` out of a unit: the agent's tar stream, passed on as it comes.
    @Sendable func copyOut(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let session = try await authenticate(request, context)
        let (user, unit, path) = try copyTarget(request, session)
        let agent = coordinator.planner.agent(for: unit.host)
        await coordinator.audit.record("cp", user: session.user, detail: "out of \(unit) \(path)")
        return try await relayStream(of: session, contentType: TarStream.contentType, context) {
            try await agent.copyOut(user, path: path)
        }
    }

    private func copyTarget(_ request: Request, _ session: Session) throws -> (UserConfig, HostPort, String) {
        let query = request.uri.queryParameters
        guard let unitText = query["unit"], let unit = HostPort(parsing: String(unitText)), let path = query["path"].map(String.init) else {
            throw APIError(.badRequest, "a copy needs unit and path", closing: true)
        }
        guard session.units.contains(unit) else { throw APIError(.forbidden, "unit \(unit) is not one of your units", closing: true) }
        guard let user = coordinator.users.user(named: session.user) else {
            throw APIError(.forbidden, "\(session.user) is no longer in the users' file", closing: true)
        }
        return (user, unit, path)
    }

    @Sendable func logs(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let session = try await authenticate(request, context)
        let query = request.uri.queryParameters
        guard let unitText = query["unit"], let unit = HostPort(parsing: String(unitText)) else {
            throw APIError(.badRequest, "logs need a unit")
        }
        guard session.units.contains(unit) else {
            throw APIError(.forbidden, "unit \(unit) is not one of your units")
        }
        let forwarded = ManagerRoutes.logOptions.compactMap { name in query[name[...]].map { (name: name, value: String($0)) } }
        let agent = coordinator.planner.agent(for: unit.host)
        return try await relayStream(of: session, contentType: MultiplexedStream.contentType, context) {
            try await agent.logs(user: session.user, unit: unit, query: forwarded)
        }
    }

    /// Takes one of the user's stream slots for this connection, which closes if the session
    /// ends meanwhile; or refuses with a 429. `closing` when the request's body is left unread.
    private func takeStreamSlot(of session: Session, _ context: BerthRequestContext, closing: Bool) throws {
        let streams = coordinator.streams
        guard streams.take(session, on: context.channel) else {
            throw APIError(.tooManyRequests, "you have \(streams.perUser) logs, execs or copies open already; end one (Ctrl-C) and try again", closing: closing)
        }
    }

    private func giveStreamSlot(of session: Session, _ context: BerthRequestContext) {
        coordinator.streams.give(session, on: context.channel)
    }

    /// Refuses a stream whose session ended after its request's head was let in: a logout or a
    /// forced login while its body came, or before its slot was taken (the slot's connection
    /// would not have been closed with the session).
    private func stillCurrent(_ session: Session, closing: Bool = false) async throws {
        guard await coordinator.sessions.isCurrent(session) else {
            throw APIError(.unauthorized, "your session has ended; run berth login again", closing: closing)
        }
    }

    /// Passes an agent's stream on to the user as it comes, holding one of the user's stream
    /// slots until it ends; a client that hangs up ends the agent's stream too. `alongside` runs
    /// while it lasts (an interactive exec's input on its way up). `holdingSlot`: the caller took
    /// the slot already; it is this call's to give back from here on, as when it takes it.
    private func relayStream(
        of session: Session, holdingSlot: Bool = false, contentType: String, _ context: BerthRequestContext,
        alongside: (@Sendable () async throws -> Void)? = nil, _ open: () async throws -> HTTPStreamingResponse
    ) async throws -> Response {
        let streams = coordinator.streams
        let channel = context.channel
        if !holdingSlot {
            try takeStreamSlot(of: session, context, closing: false)
            do {
                try await stillCurrent(session)
            } catch {
                streams.give(session, on: channel)
                throw error
            }
        }
        let upstream: HTTPStreamingResponse
        do {
            upstream = try await relay(open)
        } catch {
            streams.give(session, on: channel)
            throw error
        }
        return streamingResponse(contentType: contentType, channel: channel, ended: { streams.give(session, on: channel) }) { send in
            try await withThrowingTaskGroup(of: Void.self) { group in
                if let alongside { group.addTask(operation: alongside) }
                for try await chunk in upstream.body { try await send(ByteBuffer(bytes: chunk)) }
                group.cancelAll()
            }
        }
    }

    @Sendable func sessions(_ request: Request, _ context: BerthRequestContext) async throws -> [SessionSummary] {
        await coordinator.sessions.all.map(\.summary)
    }

    @Sendable func endSession(_ end: EndSessionRequest, _ request: Request, _ context: BerthRequestContext) async throws -> StopUnitsResponse {
        guard let session = await coordinator.sessions.session(user: end.user) else {
            throw APIError(.notFound, "\(end.user) has no session")
        }
        await coordinator.audit.record("admin.end_session", user: end.user)
        return StopUnitsResponse(removed: try await relay { try await coordinator.logout(session) })
    }

    private func authenticate(_ request: Request, _ context: BerthRequestContext) async throws -> Session {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, "not logged in; run berth login")
        }
        guard let session = try await coordinator.sessions.session(token: String(header.dropFirst(7))) else {
            throw APIError(.unauthorized, "your session has ended; run berth login again")
        }
        context.channel.markAuthenticated(owner: session.user)
        return session
    }

    /// Agent failures pass on with their message; an unreachable agent is a 502 naming it.
    private func relay<T>(_ body: () async throws -> T) async throws -> T {
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

/// Refuses (415) a request whose body is not declared JSON, before it is read: a browser's form
/// or a stray script cannot make the manager work on it.
struct RequireJSONBody<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") else {
            throw APIError(.unsupportedMediaType, "send the request as JSON, with Content-Type: application/json")
        }
        return try await next(request, context)
    }
}

/// Each address's bucket of login attempts, taken before the body is read: an empty one is a 429
/// at no cost, whatever the sender floods with.
struct LoginThrottle: RouterMiddleware {
    let coordinator: Coordinator

    func handle(_ request: Request, context: BerthRequestContext, next: (Request, BerthRequestContext) async throws -> Response) async throws -> Response {
        let address = context.clientAddress
        let (admitted, firstRefusal) = await coordinator.auth.admit(address: address)
        guard admitted else {
            ManagerMetrics.shared.login(.throttled)
            if firstRefusal {
                context.logger.notice("login attempts throttled", metadata: ["from": "\(address)"])
                await coordinator.audit.record("login.throttled", user: "", from: address, detail: "too many login attempts from this address")
            }
            throw APIError(.tooManyRequests, "too many login attempts from \(address); wait a minute and try again")
        }
        return try await next(request, context)
    }
}

/// Set once a client has hung up.
final class HangUp: Sendable {
    let happened = Atomic<Bool>(false)
}
