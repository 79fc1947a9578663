import EngineAPI
import TestSupport
import Foundation

/// The containers a benchmark creates, all labelled `berth.bench` so leftovers can be found.
struct BenchContainers {
    static let label = "berth.bench"

    let client: DockerClient
    let image: String

    func removeLeftovers() async throws {
        for container in try await client.listContainers(all: true, labels: [Self.label]) {
            try await client.removeContainer(container.id, force: true)
        }
    }

    func createIdle(count: Int) async throws -> [String] {
        var ids: [String] = []
        for index in 0..<count {
            let config = ContainerConfig(image: image, cmd: ["sleep", "600"], labels: [Self.label: "idle-\(index)"])
            ids.append(try await client.createContainer(config: config).id)
        }
        return ids
    }

    func remove(_ ids: [String]) async throws {
        for id in ids { try await client.removeContainer(id, force: true) }
    }

    private func unitConfig(port: Int) -> ContainerConfig {
        let spec = "\(port)/tcp"
        return ContainerConfig(
            image: image, cmd: ["nc", "-ll", "-p", String(port), "-e", "echo", "ok"],
            labels: [Self.label: "lifecycle"], exposedPorts: [spec: EmptyObject()],
            hostConfig: HostConfig(
                memory: 64 << 20, cpuShares: 512,
                portBindings: [spec: [PortBinding(hostIp: "127.0.0.1", hostPort: String(port))]], init: true))
    }

    /// The same lifecycle with the hand-written floor client.
    func rawLifecycle(raw: RawHTTP, version: APIVersion) async throws -> Duration {
        let port = try freePort()
        let body = try EngineJSON.encoder.encode(unitConfig(port: port))
        let clock = ContinuousClock()
        let start = clock.now
        let created = try raw.request("POST", "/v\(version)/containers/create", body: body)
        guard created.status == 201, let id = (try JSONSerialization.jsonObject(with: created.body) as? [String: Any])?["Id"] as? String else {
            throw BenchError("floor create failed: \(created.status) \(String(decoding: created.body, as: UTF8.self))")
        }
        _ = try raw.request("POST", "/v\(version)/containers/\(id)/start")
        try await waitForPort(port)
        _ = try raw.request("POST", "/v\(version)/containers/\(id)/stop?t=1")
        _ = try raw.request("DELETE", "/v\(version)/containers/\(id)")
        return clock.now - start
    }

    func engineLifecycle() async throws -> Duration {
        let port = try freePort()
        let clock = ContinuousClock()
        let start = clock.now
        let id = try await client.createContainer(config: unitConfig(port: port)).id
        try await client.startContainer(id)
        try await waitForPort(port)
        try await client.stopContainer(id, timeout: 1)
        try await client.removeContainer(id)
        return clock.now - start
    }

    private func waitForPort(_ port: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if canConnect(port: port) { return }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw BenchError("port \(port) never accepted a connection")
    }
}

/// A TCP connection to host:port with a 1 s receive timeout, or nil. The caller closes it.
func connectTCP(host: String, port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr(host)
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard result == 0 else {
        close(fd)
        return nil
    }
    var timeout = timeval(tv_sec: 1, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Whether something accepts TCP connections on host:port (and, with `expectBytes`, says something).
func canConnect(host: String = "127.0.0.1", port: Int, expectBytes: Bool = true) -> Bool {
    guard let fd = connectTCP(host: host, port: port) else { return false }
    defer { close(fd) }
    guard expectBytes else { return true }
    // docker-proxy accepts before the container listens; a reply proves the unit is serving.
    var byte: UInt8 = 0
    return read(fd, &byte, 1) == 1
}

