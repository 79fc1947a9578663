import BerthCore
import BerthServer
import EngineAPI
import Foundation
import Hummingbird
import Logging

/// The agent's HTTP API, for the manager only: every route needs a signed request.
enum AgentServer {
    static func router(service: UnitService, verifier: RequestVerifier) -> Router<BerthRequestContext> {
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: SignatureMiddleware(verifier: verifier))
        router.add(middleware: TaskExecutorMiddleware(service.docker.transport.executor))

        let units = router.group("v1")
        units.get("health") { _, _ in
            do {
                let version = try await service.docker.ping()
                return try jsonResponse(["host": service.hostLabel, "engine": "ok", "api": version])
            } catch {
                throw APIError(.serviceUnavailable, "host \(service.config.server.host): \(error)")
            }
        }
        units.post("units/start") { request, _ in
            let start = try await request.decodeJSON(StartUnitRequest.self)
            do {
                return try jsonResponse(try await service.start(start))
            } catch let error as AgentError {
                throw APIError(.conflict, error.description)
            } catch let error as EngineError {
                throw APIError(.serviceUnavailable, "unit \(start.unit): \(error)")
            }
        }
        units.post("units/stop") { request, _ in
            let stop = try await request.decodeJSON(StopUnitsRequest.self)
            return try jsonResponse(StopUnitsResponse(removed: try await engineCall(service) { try await service.stop(stop) }))
        }
        units.get("units") { request, _ in
            let user = request.uri.queryParameters["user"].map(String.init)
            return try jsonResponse(UnitList(units: try await engineCall(service) { try await service.list(user: user) }))
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
            let frames: OutputFrames
            do {
                frames = try await service.logs(user: user, unit: unit, options: options)
            } catch let error as AgentError {
                throw APIError(.notFound, error.description)
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
            do {
                return try jsonResponse(try await service.exec(exec))
            } catch let error as AgentError {
                throw APIError(.notFound, error.description)
            }
        }
        return router
    }

    /// Engine failures become 503 naming this host, so the manager can tell the user which host is down.
    private static func engineCall<T>(_ service: UnitService, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as EngineError {
            throw APIError(.serviceUnavailable, "host \(service.config.server.host): \(error)")
        } catch let error as AgentError {
            throw APIError(.conflict, error.description)
        }
    }
}
