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
        var delay = Duration.milliseconds(10)
        while true {
            try Task.checkCancellation()
            let state = try await docker.inspectContainer(container).state
            if !state.running {
                throw Failure.exited(code: state.exitCode ?? -1, oomKilled: state.oomKilled ?? false)
            }
            let answer = await onBlockingThread { PortProbe.probe(host: unit.host, port: unit.port) }
            if answer == .serving { return }
            guard clock.now < deadline else { throw Failure.timedOut }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(100))
        }
    }
}
