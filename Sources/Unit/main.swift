#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NIOCore
import NIOHTTP1
import NIOPosix

// berth-unit: the default payload of a unit container. It serves one port and runs the session
// owner's scripts from /app/script on request.

var environment: [String: String] = [:]
var pointer = environ
while let entry = pointer.pointee {
    let text = String(cString: entry)
    if let equals = text.firstIndex(of: "=") {
        environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
    }
    pointer += 1
}

let settings: UnitSettings
do {
    settings = try UnitSettings.parse(CommandLine.arguments, environment: environment)
} catch {
    writeError(error.message)
    exit(2)
}

let state = UnitState(settings: settings)
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 256)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline().flatMap {
            channel.pipeline.addHandler(UnitHandler(state: state))
        }
    }

let server: any Channel
do {
    server = try bootstrap.bind(host: "0.0.0.0", port: settings.port).wait()
} catch {
    writeError("cannot serve on port \(settings.port): \(error)")
    exit(1)
}
logLine("berth-unit serving port \(settings.port) for \(settings.user): up to \(settings.maxCalls) calls at once, \(settings.callTimeoutSeconds) s each\(settings.secret == nil ? "; no session secret, so no calls" : "")")

// SIGTERM (docker stop): stop accepting, give running calls a moment, then stop them.
signal(SIGTERM, SIG_IGN)
signal(SIGPIPE, SIG_IGN)
let terminate = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
terminate.setEventHandler { @Sendable in
    logLine("stopping: \(state.runningCount) call(s) running")
    server.close(promise: nil)
}
terminate.resume()

try? server.closeFuture.wait()
for _ in 0..<50 where state.runningCount > 0 { usleep(100_000) }
state.cancelAll()
for _ in 0..<30 where state.runningCount > 0 { usleep(100_000) }
try? group.syncShutdownGracefully()
exit(0)
