import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A finished exec: its output by stream and its exit code.
public struct ExecResult: Sendable {
    public var stdout: Data
    public var stderr: Data
    public var exitCode: Int
}

extension DockerClient {
    /// `POST /containers/{id}/exec`: returns the exec's id.
    public func createExec(container: String, config: ExecConfig) async throws -> String {
        let response = try await request("POST", "/containers/\(container)/exec", body: try EngineJSON.body(config))
        return try decode(IDResponse.self, from: response).id
    }

    /// `POST /exec/{id}/start`, attached: the output as typed frames until the process ends.
    public func startExec(_ id: String, tty: Bool = false) async throws -> OutputFrames {
        struct Start: Encodable { var detach = false; var tty: Bool }
        return try await stream("POST", "/exec/\(id)/start", body: try EngineJSON.body(Start(tty: tty))).frames(tty: tty)
    }

    /// `GET /exec/{id}/json`.
    public func inspectExec(_ id: String) async throws -> ExecInspect {
        try decode(ExecInspect.self, from: try await request("GET", "/exec/\(id)/json"))
    }

    /// Runs a command in a running container and collects its output and exit code.
    public func exec(container: String, config: ExecConfig) async throws -> ExecResult {
        let id = try await createExec(container: container, config: config)
        var result = ExecResult(stdout: Data(), stderr: Data(), exitCode: 0)
        try await engine {
            for try await frame in try await startExec(id, tty: config.tty) {
                switch frame {
                case .stdout(let data), .console(let data): result.stdout.append(data)
                case .stderr(let data): result.stderr.append(data)
                }
            }
        }
        result.exitCode = try await exitCode(ofExec: id)
        return result
    }

    /// The exit code once the engine has recorded it; the stream can end a moment before.
    public func exitCode(ofExec id: String) async throws -> Int {
        for _ in 0..<200 {
            let state = try await inspectExec(id)
            if !state.running, let code = state.exitCode { return code }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw EngineError.invalidResponse("exec \(id) still running after its output ended")
    }
}
