import BerthCore
import EngineAPI
import Foundation

/// Waits until a started unit serves on its published `ip:port`, failing early when its container
/// exits and at the latest after the timeout.
struct Readiness {
    let docker: DockerClient
    let timeout: Duration

    enum Failure: Error {
        case exited(code: Int, oomKilled: Bool)
        case timedOut
    }

    func wait(container: String, unit: HostPort) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var attempt = 0
        while true {
            try Task.checkCancellation()
            // The probe is cheap and local; asking the engine whether the container died is not,
            // so that happens every tenth round (about every 200 ms).
            if attempt % 10 == 0 {
                let state = try await docker.inspectContainer(container).state
                if !state.running {
                    throw Failure.exited(code: state.exitCode ?? -1, oomKilled: state.oomKilled ?? false)
                }
            }
            attempt += 1
            let answer = await docker.transport.runBlocking { PortProbe.probe(host: unit.host, port: unit.port) }
            if answer == .serving { return }
            guard clock.now < deadline else { throw Failure.timedOut }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
