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

    /// `POST /exec/{id}/start` on a connection the engine then takes over (`Upgrade: tcp`): what
    /// is written goes to the process's stdin, its output comes back as frames (one console
    /// stream with `tty`). Create the exec with `attachStdin` for its stdin to be read.
    public func attachExec(_ id: String, tty: Bool) async throws -> AttachedExec {
        struct Start: Encodable { var detach = false; var tty: Bool }
        var request = try await makeRequest("POST", "/exec/\(id)/start", body: try EngineJSON.body(Start(tty: tty)))
        request.headers += [(name: "Connection", value: "Upgrade"), (name: "Upgrade", value: "tcp")]
        let connection: UpgradedConnection
        do {
            connection = try await transport.upgrade(request)
        } catch HTTPClientError.status(let response, let method, let path) {
            throw EngineError.fromResponse(response, method: method, path: path)
        } catch let error as HTTPClientError {
            throw EngineError(error)
        }
        return AttachedExec(id: id, output: OutputFrames(chunks: connection.output, tty: tty), connection: connection)
    }

    /// `POST /exec/{id}/resize`: the size of an exec's terminal, in characters.
    public func resizeExec(_ id: String, rows: Int, columns: Int) async throws {
        var query = Query()
        query.add("h", rows)
        query.add("w", columns)
        try await request("POST", "/exec/\(id)/resize", query: query.items)
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

/// An exec attached both ways; see `DockerClient.attachExec`.
public struct AttachedExec: Sendable {
    public let id: String
    /// The process's output until it ends (or the connection does).
    public let output: OutputFrames
    private let connection: UpgradedConnection

    init(id: String, output: OutputFrames, connection: UpgradedConnection) {
        self.id = id
        self.output = output
        self.connection = connection
    }

    /// Sends `data` to the process's stdin, waiting while the engine takes it in.
    public func write(_ data: Data) async throws {
        do { try await connection.write(data) } catch let error as HTTPClientError { throw EngineError(error) }
    }

    /// Ends the process's stdin (it reads end of file); its output goes on. Over a TLS connection
    /// to a remote engine the stdin stays open until `close`.
    public func closeStdin() async throws {
        do { try await connection.closeWrite() } catch let error as HTTPClientError { throw EngineError(error) }
    }

    /// Lets go of the process: its stdin and output end, and with a TTY it gets SIGHUP.
    public func close() {
        connection.close()
    }
}
