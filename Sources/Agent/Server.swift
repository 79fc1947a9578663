import BerthAPI
import BerthCore
import BerthServer
import BerthConfig
import EngineAPI
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Hummingbird
import Logging
import Prometheus

/// The agent's HTTP API, `AgentRoutes`, one method per route, for the manager only: every route
/// needs a signed request, but for `/metrics`, which Prometheus reads.
struct AgentController: Sendable {
    let service: UnitService
    let metrics: AgentMetrics

    static func router(service: UnitService, verifier: RequestVerifier, metrics: AgentMetrics = .shared) -> Router<BerthRequestContext> {
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        AgentController(service: service, metrics: metrics).addRoutes(to: router, verifier: verifier)
        return router
    }

    func addRoutes(to router: Router<BerthRequestContext>, verifier: RequestVerifier) {
        // Prometheus cannot sign, so /metrics comes before the signature check: it shows counts only.
        // Middleware applies to the routes added after it, and to every unknown path.
        router.on(raw: AgentRoutes.metrics, use: scrape)
        router.add(middleware: SignatureMiddleware(verifier: verifier))
        router.add(middleware: TaskExecutorMiddleware(service.docker.transport.executor))
        router.on(AgentRoutes.health, use: health)
        // One path, answered whole or as JSON lines (`startUnitWithProgress`) as the query asks.
        router.on(raw: AgentRoutes.startUnit, use: start)
        router.on(AgentRoutes.stopUnits, use: stop)
        router.on(AgentRoutes.units, use: units)
        router.on(raw: AgentRoutes.unitLogs, use: logs)
        router.on(raw: AgentRoutes.exec, use: exec)
        router.on(raw: AgentRoutes.copyIn, use: copyIn)
        router.on(raw: AgentRoutes.copyOut, use: copyOut)
    }

    @Sendable func scrape(_ request: Request, _ context: BerthRequestContext) async -> Response {
        await metrics.scrape(service)
    }

    @Sendable func health(_ request: Request, _ context: BerthRequestContext) async throws -> AgentHealth {
        do {
            return AgentHealth(host: service.hostLabel, engine: "ok", api: try await service.docker.ping())
        } catch {
            metrics.engineError(error)
            throw APIError(.serviceUnavailable, "host \(service.config.server.host): \(error)")
        }
    }

    @Sendable func start(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let start = try await request.decodeJSON(StartUnitRequest.self, limit: AgentRoutes.startUnit.maxBody, context: context)
        let progress = AgentRoutes.startUnitWithProgress.query.allSatisfy { request.uri.queryParameters[$0.name[...]] == $0.value[...] }
        guard progress else {
            return try jsonResponse(try await startUnit(start))
        }
        let executor = service.docker.transport.executor
        return jsonLinesResponse { (emit: @escaping @Sendable (StartUnitEvent) async throws -> Void) in
            await withTaskExecutorPreference(executor) {
                do {
                    let status = try await startUnit(start) { event in try? await emit(event) }
                    try? await emit(StartUnitEvent(kind: .ready, unit: status))
                } catch let error as APIError {
                    try? await emit(StartUnitEvent(kind: .failed, status: Int(error.status.code), error: error.message))
                } catch {
                    try? await emit(StartUnitEvent(kind: .failed, status: 500, error: "unit \(start.unit): \(error)"))
                }
            }
        }
    }

    @Sendable func stop(_ stop: StopUnitsRequest, _ request: Request, _ context: BerthRequestContext) async throws -> StopUnitsResponse {
        let stopped = try await engineCall { try await service.stop(stop) }
        metrics.unitsRemoved.increment(by: Int64(stopped.removed.count))
        return stopped
    }

    @Sendable func units(_ request: Request, _ context: BerthRequestContext) async throws -> UnitList {
        let query = request.uri.queryParameters
        let user = query["user"].map(String.init)
        return UnitList(units: try await engineCall { try await service.list(user: user, usage: query["usage"] == "1") })
    }

    @Sendable func logs(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        guard let user = query["user"].map(String.init), let unitText = query["unit"], let unit = HostPort(parsing: String(unitText)) else {
            throw APIError(.badRequest, "logs need user and unit")
        }
        var options = LogOptions(
            follow: query["follow"] == "1", since: query["since"].map(String.init),
            tail: query["tail"].flatMap { Int(String($0)) }, timestamps: query["timestamps"] == "1")
        options.until = query["until"].map(String.init)
        let frames = try await engineCall(refusal: .notFound) { try await service.logs(user: user, unit: unit, options: options) }
        return streamingResponse(contentType: MultiplexedStream.contentType, channel: context.channel, ended: streamEnded()) { send in
            for try await frame in frames { try await send(ByteBuffer(bytes: frame.multiplexed)) }
        }
    }

    /// The command's output as it comes, then its exit status (see `sendOutput`).
    @Sendable func exec(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        if request.isFramed { return try await interactiveExec(request, context) }
        let exec = try await request.decodeJSON(ExecRequest.self, limit: AgentRoutes.exec.maxBody, context: context)
        let (id, output) = try await engineCall(refusal: .notFound) { try await service.startExec(exec) }
        return streamingResponse(contentType: OutputStream.contentType, channel: context.channel, ended: streamEnded()) { [self] send in
            try await sendOutput(of: id, output, send)
        }
    }

    /// An exec's output as frames, then its exit status; an engine failure midway becomes a last
    /// line on stderr and status 125, as `docker exec` reports its own failures. A reader that
    /// goes first (this task cancelled) has the process sent SIGHUP: the engine would leave it
    /// running.
    private func sendOutput(of id: String, _ output: OutputFrames, _ send: @Sendable (ByteBuffer) async throws -> Void) async throws {
        var ended = false
        defer {
            if !ended { Task { [service] in await service.hangUp(exec: id) } }
        }
        var status: Int32
        do {
            for try await frame in output {
                switch frame {
                case .stdout(let data), .console(let data): try await send(OutputFrame.encoded(kind: 1, data))
                case .stderr(let data): try await send(OutputFrame.encoded(kind: 2, data))
                }
            }
            // A cancelled reader sees the output end as if the process had.
            try Task.checkCancellation()
            ended = true
            status = Int32(clamping: try await service.docker.exitCode(ofExec: id))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            try await send(OutputFrame.encoded(kind: 2, Data("berth: the engine failed during exec: \(error)\n".utf8)))
            status = 125
        }
        try await send(OutputFrame.encoded(kind: 3, Data(String(status).utf8)))
    }

    /// An exec with stdin (and a terminal with `tty`): the request's frames go to the process as
    /// they come over the engine's taken-over connection, its output comes back as for any exec.
    func interactiveExec(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let (exec, input) = try await FramedInput.open(request, as: ExecRequest.self, maxRequestFrame: AgentRoutes.exec.maxBody, context: context)
        let terminal = exec.terminal ?? ExecTerminal(tty: false)
        let attached = try await engineCall(refusal: .notFound) { try await service.attachExec(exec, terminal: terminal) }
        let docker = service.docker
        return streamingResponse(contentType: OutputStream.contentType, channel: context.channel, ended: streamEnded()) { [self] send in
            defer { attached.close() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while let frame = try await input.next() {
                        switch frame {
                        case .stdin(let bytes): try await attached.write(bytes)
                        case .resize(let rows, let columns): try? await docker.resizeExec(attached.id, rows: rows, columns: columns)
                        case .endOfInput: try await attached.closeStdin()
                        case .request: throw APIError(.badRequest, "an interactive request has one request frame")
                        }
                    }
                }
                try await sendOutput(of: attached.id, attached.output, send)
                // The input may still be open (a terminal's): it has nothing left to reach.
                group.cancelAll()
            }
        }
    }

    /// `berth cp` into a unit: the tar stream unpacked into the user's home as it comes (see
    /// `HomeArchive`). The body is not covered by the signature (the query, which says whose home
    /// and where, is): TLS keeps it whole on its way.
    @Sendable func copyIn(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        // Refused before the body's end, the rest of it is never read: the connection closes.
        try await refusedClosing {
            let (home, account, path) = try copyTarget(request)
            context.channel.requestMayLast()
            let (directory, owner) = try HomeFiles.open(home: home, homeRoot: service.config.homeRoot, account: account)
            let written = try await HomeArchive.unpack(request.body.map { Data($0.readableBytesView) }, to: path, home: directory, account: owner)
            return try jsonResponse(CopyResult(written: written))
        }
    }

    /// `berth cp` out of a unit: a tar stream of what is at the path in the user's home. A path
    /// that is missing, or has a link on the way, is refused before the stream begins.
    @Sendable func copyOut(_ request: Request, _ context: BerthRequestContext) async throws -> Response {
        let (home, account, path) = try copyTarget(request)
        let (directory, owner) = try await refusedClosing {
            let (directory, owner) = try HomeFiles.open(home: home, homeRoot: service.config.homeRoot, account: account)
            _ = try HomeArchive.locate(path, home: directory)
            return (directory, owner)
        }
        return streamingResponse(contentType: TarStream.contentType, channel: context.channel, ended: streamEnded()) { send in
            try await withoutActuallyEscaping(send) { send in
                try await HomeArchive.pack(path, home: directory, account: owner) { try await send(ByteBuffer(bytes: $0)) }
            }
        }
    }

    /// The agent's refusals of a copy, as 400s that close the connection.
    private func refusedClosing<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as AgentError {
            throw APIError(.badRequest, error.description, closing: true)
        } catch var error as APIError {
            error.closing = true
            throw error
        }
    }

    private func copyTarget(_ request: Request) throws -> (home: String, account: UnixAccount?, path: String) {
        let query = request.uri.queryParameters
        guard let home = query["home"].map(String.init), let path = query["path"].map(String.init) else {
            throw APIError(.badRequest, "a copy needs home and path", closing: true)
        }
        var account: UnixAccount?
        if let uid = query["uid"].flatMap({ UInt32(String($0)) }), let gid = query["gid"].flatMap({ UInt32(String($0)) }) {
            account = UnixAccount(uid: uid, gid: gid)
        }
        return (home, account, path)
    }

    /// Counts a stream as open until the returned closure runs.
    private func streamEnded() -> @Sendable () -> Void {
        metrics.streamsOpen.increment()
        return { [metrics] in metrics.streamsOpen.decrement() }
    }

    /// Starts one unit, counting it; failures become the APIError the manager relays.
    private func startUnit(
        _ start: StartUnitRequest,
        progress: (StartUnitEvent) async -> Void = { _ in }
    ) async throws -> UnitStatus {
        let clock = ContinuousClock()
        let begun = clock.now
        do {
            let status = try await service.start(start, progress: progress)
            metrics.unitStartDuration.record(clock.now - begun)
            metrics.unitsStarted.increment()
            return status
        } catch {
            metrics.unitStartFailures.increment()
            metrics.engineError(error)
            if let error = error as? EngineError {
                throw APIError(.serviceUnavailable, "unit \(start.unit): \(error)")
            }
            throw error is AgentError ? APIError(.conflict, "\(error)") : error
        }
    }

    /// Engine failures become 503 naming this host, so the manager can tell the user which host
    /// is down; the agent's own refusals get `refusal`.
    private func engineCall<T>(
        refusal: HTTPResponse.Status = .conflict, _ body: () async throws -> T
    ) async throws -> T {
        do {
            return try await body()
        } catch let error as EngineError {
            metrics.engineError(error)
            throw APIError(.serviceUnavailable, "host \(service.config.server.host): \(error)")
        } catch let error as HTTPClientError {
            // A stream that broke after it began: still the engine's failure.
            throw APIError(.serviceUnavailable, "host \(service.config.server.host): \(EngineError(error))")
        } catch let error as AgentError {
            throw APIError(refusal, error.description)
        }
    }
}

extension OutputFrame {
    /// One frame of an `OutputStream` answer.
    static func encoded(kind: UInt8, _ payload: Data) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(8 + payload.count)
        buffer.writeBytes([kind, 0, 0, 0])
        buffer.writeInteger(UInt32(payload.count))
        buffer.writeBytes(payload)
        return buffer
    }
}
