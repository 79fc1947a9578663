import EngineAPI
import Foundation
import Synchronization
import Testing

/// The real engine the integration tests run against, and the busybox image they use.
enum DockerTestSupport {
    static let socketPath = ProcessInfo.processInfo.environment["BERTH_TEST_SOCKET"] ?? EngineEndpoint.defaultSocketPath
    static let image = "berth-test-busybox:latest"
    static let testLabel = "berth.test"

    /// In CI the Docker tests always run, so a missing engine fails them; elsewhere they run
    /// when a socket exists.
    static var shouldRun: Bool {
        ProcessInfo.processInfo.environment["CI"] == "true" || FileManager.default.fileExists(atPath: socketPath)
    }

    static let client = DockerClient(endpoint: .unix(socketPath))

    private static let imageReady = Task { try await importBusyboxImage() }

    /// The client, once the engine answers and the test image exists (imported once per run).
    static func ready() async throws -> DockerClient {
        try await client.ping()
        try await imageReady.value
        return client
    }

    /// Imports `scripts/busybox-rootfs.sh`'s tarball through the Engine API (no registry here).
    private static func importBusyboxImage() async throws {
        if (try? await client.inspectImage(image)) != nil { return }
        let tarball = NSTemporaryDirectory() + "berth-rootfs-\(UUID().uuidString.prefix(8)).tar"
        defer { try? FileManager.default.removeItem(atPath: tarball) }
        try run("/bin/sh", [repositoryRoot + "/scripts/busybox-rootfs.sh", tarball])
        try await client.importImage(tarball: tarball, repository: "berth-test-busybox", tag: "latest", changes: ["CMD [\"/bin/sh\"]"])
    }

    /// The checkout this test file belongs to.
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestSetupError("\(executable) \(arguments) exited \(process.terminationStatus)") }
        return String(decoding: output, as: UTF8.self)
    }

    /// A port nothing listens on right now, below the kernel's ephemeral range. A port from that
    /// range (what binding port 0 hands out) can be taken a moment later as the source port of
    /// any outgoing connection on the machine, and a daemon told to listen there then cannot: a
    /// cluster whose manager never came up failed CI that way. No port is handed out twice in a
    /// run: two units of one test cluster once drew the same one, which its users file refuses.
    static func freePort(host: String = "127.0.0.1") throws -> Int {
        for _ in 0..<500 {
            let port = Int.random(in: 10_000..<max(10_001, firstEphemeralPort))
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if canBind(host: host, port: port) { return port }
        }
        throw TestSetupError("cannot find a free port on \(host) below \(firstEphemeralPort)")
    }

    private static let handedOut = Mutex<Set<Int>>([])

    /// The first port of /proc/sys/net/ipv4/ip_local_port_range (32768 unless changed).
    static let firstEphemeralPort: Int = {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        return range.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32768
    }()

    /// Connects to `host:port` and returns what the server sends first, retrying until `deadline`.
    static func readBanner(host: String, port: Int, within deadline: Duration = .seconds(10)) async throws -> String {
        let clock = ContinuousClock()
        let end = clock.now + deadline
        while clock.now < end {
            if let fd = TestSocket.open(host: host, port: port, connect: true, receiveTimeout: 2) {
                let text = String(decoding: TestSocket.read(fd, limit: 256), as: UTF8.self)
                close(fd)
                if !text.isEmpty { return text }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSetupError("nothing answered on \(host):\(port)")
    }

    static func canBind(host: String, port: Int) -> Bool {
        guard let fd = TestSocket.open(host: host, port: port, connect: false) else { return false }
        close(fd)
        return true
    }

    static func canConnect(host: String, port: Int) -> Bool {
        guard let fd = TestSocket.open(host: host, port: port, connect: true) else { return false }
        close(fd)
        return true
    }

    /// Sends raw bytes to host:port and returns what comes back before the server closes or 3 s pass.
    static func exchange(host: String, port: Int, send: String) throws -> String {
        guard let fd = TestSocket.open(host: host, port: port, connect: true, receiveTimeout: 3) else {
            throw TestSetupError("cannot connect to \(host):\(port)")
        }
        defer { close(fd) }
        _ = send.withCString { write(fd, $0, strlen($0)) }
        return String(decoding: TestSocket.read(fd, limit: 1 << 20), as: UTF8.self)
    }

    /// One blocking request to the engine with curl, for cleanup code that must not await.
    @discardableResult
    static func curlSync(_ arguments: [String]) -> String {
        (try? run("/usr/bin/curl", ["-s", "--max-time", "30", "--unix-socket", socketPath] + arguments)) ?? ""
    }

    /// Ids of the containers carrying `label` (`key=value`), blocking.
    /// `docker inspect` as the engine writes it, every field, for fields Berth has no model of.
    static func inspectRaw(_ id: String) async throws -> [String: Any] {
        let text = try await Background.run { curlSync(["http://docker/containers/\(id)/json"]) }
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    static func containerIDsSync(label: String) -> [String] {
        let filters = EngineJSONFilters.encode(["label": [label]])
        let answer = curlSync(["-G", "http://docker/containers/json", "--data-urlencode", "all=1", "--data-urlencode", "filters=\(filters)"])
        guard let list = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [[String: Any]] else { return [] }
        return list.compactMap { $0["Id"] as? String }
    }

    /// A unique container name for one test.
    static func uniqueName(_ purpose: String) -> String {
        "berth-test-\(purpose)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// Runs `body` with a created container, then force-removes it whatever happened.
    static func withContainer<T>(
        _ purpose: String, config: ContainerConfig, start: Bool = true,
        _ body: (DockerClient, String) async throws -> T
    ) async throws -> T {
        let client = try await ready()
        var config = config
        config.image = config.image ?? image
        config.labels = (config.labels ?? [:]).merging([testLabel: "1"]) { a, _ in a }
        let created = try await client.createContainer(name: uniqueName(purpose), config: config)
        do {
            if start { try await client.startContainer(created.id) }
            let result = try await body(client, created.id)
            try await client.removeContainer(created.id, force: true)
            return result
        } catch {
            try? await client.removeContainer(created.id, force: true)
            throw error
        }
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum EngineJSONFilters {
    static func encode(_ filters: [String: [String]]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: filters)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

/// TCP sockets for tests, the address set up in one place.
enum TestSocket {
    /// A socket bound to (`connect: false`) or connected to `host:port`, or nil. The caller closes it.
    static func open(host: String, port: Int, connect shouldConnect: Bool, receiveTimeout seconds: Int? = nil) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        if let seconds {
            var timeout = timeval(tv_sec: seconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                shouldConnect
                    ? connect(fd, pointer, socklen_t(MemoryLayout<sockaddr_in>.size))
                    : bind(fd, pointer, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Everything until the peer closes, the timeout passes, or `limit` bytes.
    static func read(_ fd: Int32, limit: Int) -> Data {
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < limit {
            let count = Glibc.read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        return received
    }
}
