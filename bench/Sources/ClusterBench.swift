import BerthCore
import EngineAPI
import Foundation
import UnitProtocol

/// A Berth cluster on loopback for benchmarks: agents on 127.0.0.2 and 127.0.0.3 and a manager,
/// from the release binaries, with the berth-unit image and one user per entry of `users`.
final class BenchCluster {
    let root: String
    let manager: HostPort
    let units: [String: [HostPort]]
    let password = "bench-password"
    private var processes: [Process] = []

    static let hosts = ["127.0.0.2", "127.0.0.3"]

    init(binaries: String, users: [String: [String]], memory: String = "128m") async throws {
        root = NSTemporaryDirectory() + "berth-bench-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/share", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: root + "/cluster.key", contents: Data(UUID().uuidString.utf8), attributes: [.posixPermissions: 0o600])
        let communication = try Self.freePortOnHosts()
        manager = HostPort(host: "127.0.0.1", port: try freePort())
        var units: [String: [HostPort]] = [:]
        let hash = try PasswordHash.make(password)
        var xml = "<Users>\n"
        for (user, hosts) in users.sorted(by: { $0.key < $1.key }) {
            units[user] = try hosts.map { HostPort(host: $0, port: try Self.freePortOnHosts()) }
            try FileManager.default.createDirectory(atPath: root + "/home/\(user)/script", withIntermediateDirectories: true)
            xml += "<User><Name>\(user)</Name><PwdHash>\(hash)</PwdHash><Memory>\(memory)</Memory><CPU>1024</CPU>"
            xml += "<Home>\(root)/home/\(user)</Home><Unit>\(units[user]!.map(\.description).joined(separator: ","))</Unit></User>\n"
        }
        self.units = units
        try (xml + "</Users>\n").write(toFile: root + "/users.xml", atomically: true, encoding: .utf8)
        for host in Self.hosts {
            try """
                <Config><Server>\(host):\(communication)</Server><Share>\(root)/share</Share>
                <NodeType>manager</NodeType><Manager>\(manager)</Manager><Secret>\(root)/cluster.key</Secret></Config>
                """.write(toFile: root + "/server-\(host).xml", atomically: true, encoding: .utf8)
            try launch(binaries + "/berth-agent", ["serve", "--config", root + "/server-\(host).xml"], log: "agent-\(host)")
        }
        try launch(binaries + "/berth-manager", [
            "serve", "--config", root + "/server-\(Self.hosts[0]).xml", "--users", root + "/users.xml", "--state-dir", root + "/state",
        ], log: "manager")
        for address in Self.hosts.map({ HostPort(host: $0, port: communication) }) + [manager] {
            try await waitListening(address)
        }
    }

    func home(_ user: String) -> String { root + "/home/" + user }

    /// Logs in through the manager's API, as `berth login` does; returns the session's unit key.
    func login(_ user: String) async throws -> (token: String, unitSecret: String) {
        let client = ServiceClient(address: manager, name: "manager")
        let response = try await client.stream("POST", "/v1/login", body: LoginRequest(user: user, password: password, force: true))
        var lines = LineSplitter()
        for try await chunk in response.body {
            for line in lines.feed(chunk) {
                let event = try BerthJSON.decoder.decode(LoginEvent.self, from: line)
                if event.kind == .failed { throw BenchError("login \(user) failed: \(event.message ?? "")") }
                if event.kind == .done, let token = event.token, let secret = event.unitSecret { return (token, secret) }
            }
        }
        throw BenchError("login \(user) ended without an answer")
    }

    func logout(token: String) async throws {
        let client = ServiceClient(address: manager, name: "manager")
        _ = try await client.call("POST", "/v1/logout", token: token, timeout: .seconds(120), as: StopUnitsResponse.self)
    }

    func shutdown() {
        for process in processes where process.isRunning { process.terminate() }
        for process in processes { process.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: root)
    }

    private func launch(_ path: String, _ arguments: [String], log: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        FileManager.default.createFile(atPath: root + "/\(log).log", contents: nil)
        let output = FileHandle(forWritingAtPath: root + "/\(log).log")
        process.standardOutput = output
        process.standardError = output
        try process.run()
        processes.append(process)
    }

    private func waitListening(_ address: HostPort) async throws {
        for _ in 0..<200 {
            if canConnect(host: address.host, port: address.port, expectBytes: false) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError("nothing listens on \(address)")
    }

    static func freePortOnHosts() throws -> Int {
        for _ in 0..<50 {
            let port = try freePort()
            if hosts.allSatisfy({ !canConnect(host: $0, port: port, expectBytes: false) }) { return port }
        }
        throw BenchError("no port free on the bench hosts")
    }
}

/// The floor for a login: the same unit containers created, started and waited for in parallel
/// with hand-written HTTP, no Berth in between.
struct RawUnitStarter {
    let socketPath: String
    let version: APIVersion
    let image = "berth-unit:latest"

    func startAndWait(units: [HostPort], home: String, memoryBytes: Int64) async throws -> [String] {
        try await withThrowingTaskGroup(of: String.self) { group in
            for unit in units {
                group.addTask {
                    let raw = try RawHTTP(socketPath: socketPath)
                    let spec = "\(unit.port)/tcp"
                    let config = ContainerConfig(
                        image: image, cmd: ["/bin/berth-unit", "serve", "--port", String(unit.port)],
                        env: ["BERTH_UNIT_SECRET=floor"], user: "0:0", workingDir: "/app",
                        labels: [BenchContainers.label: "floor"], exposedPorts: [spec: EmptyObject()],
                        hostConfig: HostConfig(
                            memory: memoryBytes, cpuShares: 1024, binds: ["\(home):/app"],
                            portBindings: [spec: [PortBinding(hostIp: unit.host, hostPort: String(unit.port))]], init: true))
                    let created = try raw.request("POST", "/v\(version)/containers/create", body: try EngineJSON.encoder.encode(config))
                    guard created.status == 201, let id = (try JSONSerialization.jsonObject(with: created.body) as? [String: Any])?["Id"] as? String else {
                        throw BenchError("floor create: \(created.status) \(String(decoding: created.body, as: UTF8.self))")
                    }
                    _ = try raw.request("POST", "/v\(version)/containers/\(id)/start")
                    // The tightest readiness a raw client can have: the unit's own health answer.
                    let deadline = ContinuousClock.now + .seconds(30)
                    while ContinuousClock.now < deadline {
                        if healthAnswers(unit) { return id }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    throw BenchError("floor unit \(unit) never answered")
                }
            }
            var ids: [String] = []
            for try await id in group { ids.append(id) }
            return ids
        }
    }

    private func healthAnswers(_ unit: HostPort) -> Bool {
        guard let fd = connectTCP(host: unit.host, port: unit.port) else { return false }
        defer { close(fd) }
        let request = "GET \(UnitPath.health) HTTP/1.1\r\nHost: unit\r\n\r\n"
        _ = request.withCString { write(fd, $0, strlen($0)) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &buffer, buffer.count)
        return count > 12 && String(decoding: buffer[0..<count], as: UTF8.self).hasPrefix("HTTP/1.1 200")
    }
}
