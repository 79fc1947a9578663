import EngineAPI
import Foundation
import Testing

@Suite(.enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
struct UnitPortTests {
    /// Docker's embedded DNS listens inside every container on a user network at 127.0.0.11, on a
    /// random port of the kernel's ephemeral range. A unit whose port that happens to be (once in
    /// ~28,000 starts there; it failed a `make bench` login) still serves on its published port.
    @Test func aUnitServesWhenItsPortIsTakenOnLoopbackInsideTheContainer() async throws {
        let port = try DockerTestSupport.freePort()
        let portSpec = "\(port)/tcp"
        let config = ContainerConfig(
            image: "berth-unit:latest",
            // busybox httpd stands in for Docker's DNS on the same port.
            cmd: ["/bin/sh", "-c", "httpd -p 127.0.0.11:\(port) -h /tmp && exec /bin/berth-unit serve --port \(port)"],
            env: ["BERTH_USER=test"],
            exposedPorts: [portSpec: EmptyObject()],
            hostConfig: HostConfig(portBindings: [portSpec: [PortBinding(hostIp: "127.0.0.1", hostPort: String(port))]]))
        try await DockerTestSupport.withContainer("taken-port", config: config) { client, id in
            var answer = ""
            for _ in 0..<100 where !answer.contains(#""status":"ok""#) {
                answer = (try? DockerTestSupport.exchange(host: "127.0.0.1", port: port, send: "GET /health HTTP/1.1\r\nHost: unit\r\nConnection: close\r\n\r\n")) ?? ""
                if !answer.contains(#""status":"ok""#) { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(answer.contains(#""status":"ok""#), "\(answer)")
            #expect(try await client.inspectContainer(id).state.running)
        }
    }
}
