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

/// The agent's HTTP API, for the manager only: every route needs a signed request, but for
/// `/metrics`, which Prometheus reads.
enum AgentServer {
    static func router(service: UnitService, verifier: RequestVerifier, metrics: AgentMetrics = .shared) -> Router<BerthRequestContext> {
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        // Prometheus cannot sign, so /metrics comes before the signature check: it shows counts only.
        // Middleware applies to the routes added after it, and to every unknown path.
        router.get("metrics") { _, _ in await metrics.scrape(service) }
        router.add(middleware: SignatureMiddleware(verifier: verifier))
        router.add(middleware: TaskExecutorMiddleware(service.docker.transport.executor))

        let units = router.group("v1")
        units.get("health") { _, _ in
            do {
                let version = try await service.docker.ping()
                return try jsonResponse(["host": service.hostLabel, "engine": "ok", "api": version])
            } catch {
                metrics.engineError(error)
                throw APIError(.serviceUnavailable, "host \(service.config.server.host): \(error)")
            }
        }
        units.post("units/start") { request, _ in
            let start = try await request.decodeJSON(StartUnitRequest.self)
            guard request.uri.queryParameters["progress"] == "1" else {
                return try jsonResponse(try await startUnit(start, service, metrics))
            }
            // JSON lines: the start's place in line while it waits for a slot, then its outcome.
            let executor = service.docker.transport.executor
            return jsonLinesResponse { (emit: @escaping @Sendable (StartUnitEvent) async throws -> Void) in
                await withTaskExecutorPreference(executor) {
                    do {
                        let status = try await startUnit(start, service, metrics) { event in try? await emit(event) }
                        try? await emit(StartUnitEvent(kind: .ready, unit: status))
                    } catch let error as APIError {
                        try? await emit(StartUnitEvent(kind: .failed, status: Int(error.status.code), error: error.message))
                    } catch {
                        try? await emit(StartUnitEvent(kind: .failed, status: 500, error: "unit \(start.unit): \(error)"))
                    }
                }
            }
        }
        units.post("units/stop") { request, _ in
            let stop = try await request.decodeJSON(StopUnitsRequest.self)
            let stopped = try await engineCall(service, metrics) { try await service.stop(stop) }
            metrics.unitsRemoved.increment(by: Int64(stopped.removed.count))
            return try jsonResponse(stopped)
        }
        units.get("units") { request, _ in
            let user = request.uri.queryParameters["user"].map(String.init)
            return try jsonResponse(UnitList(units: try await engineCall(service, metrics) { try await service.list(user: user) }))
        }
        units.get("units/logs") { request, _ in
            let query = request.uri.queryParameters
            guard let user = query["user"].map(String.init), let unitText = query["unit"], let unit = HostPort(parsing: String(unitText)) else {
                throw APIError(.badRequest, "logs need user and unit")
            }
            var options = LogOptions(
                follow: query["follow"] == "1", since: query["since"].map(String.init),
                tail: query["tail"].flatMap { Int(String($0)) }, timestamps: query["timestamps"] == "1")
            options.until = query["until"].map(String.init)
            let frames = try await engineCall(service, metrics, refusal: .notFound) {
                try await service.logs(user: user, unit: unit, options: options)
            }
            return Response(
                status: .ok, headers: [.contentType: "application/vnd.docker.multiplexed-stream"],
                body: ResponseBody { writer in
                    for try await frame in frames { try await writer.write(ByteBuffer(bytes: frame.multiplexed)) }
                    try await writer.finish(nil)
                })
        }
        units.post("units/exec") { request, _ in
            let exec = try await request.decodeJSON(ExecRequest.self)
            return try jsonResponse(try await engineCall(service, metrics, refusal: .notFound) { try await service.exec(exec) })
        }
        return router
    }

    /// Starts one unit, counting it; failures become the APIError the manager relays.
    private static func startUnit(
        _ start: StartUnitRequest, _ service: UnitService, _ metrics: AgentMetrics,
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
    private static func engineCall<T>(
        _ service: UnitService, _ metrics: AgentMetrics, refusal: HTTPResponse.Status = .conflict, _ body: () async throws -> T
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
