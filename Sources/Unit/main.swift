#if canImport(Glibc)
import Glibc
#endif
import BerthVersion
import Dispatch
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

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

if CommandLine.arguments.dropFirst().first == "--version" {
    print(BerthVersion.description)
    exit(0)
}

let settings: UnitSettings
do {
    settings = try UnitSettings.parse(CommandLine.arguments, environment: environment)
} catch {
    writeError(error.message)
    exit(2)
}

// On a host with TLS the agent gives the unit a key made for this session; then the unit speaks
// only TLS, and `berth call` accepts only that key.
let tls: NIOSSLContext?
do {
    tls = try unitTLSContext(environment)
} catch {
    writeError("BERTH_UNIT_TLS_CERT/BERTH_UNIT_TLS_KEY: \(error)")
    exit(2)
}

let state = UnitState(settings: settings)
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
// Connections held open at once, all senders together: each costs memory in a unit whose limit
// may be tens of MB. Not per address: through Docker's port proxy every client may share one;
// a stranger's connection gives way to a new one when all are taken.
let connections = ConnectionCap(limit: 128)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 256)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        guard connections.admit(channel) else { return channel.close() }
        return channel.eventLoop.makeCompletedFuture {
            if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
        }.flatMap {
            channel.pipeline.configureHTTPServerPipeline()
        }.flatMap {
            channel.pipeline.addHandler(UnitHandler(state: state, connections: connections))
        }
    }

/// Listens on every address, or, when the port is taken on one of them, on the container's own
/// addresses. Docker's embedded DNS listens inside every container on a user network at 127.0.0.11,
/// on a random port of the kernel's ephemeral range (32768–60999): a unit given that same port
/// cannot take it on every address, but the published port and the agent's readiness probes reach
/// it on the container's address all the same.
@MainActor func listen() throws -> [any Channel] {
    do {
        return [try bootstrap.bind(host: "0.0.0.0", port: settings.port).wait()]
    } catch let error as IOError where error.errnoCode == EADDRINUSE {
        let own = ((try? System.enumerateDevices()) ?? []).compactMap { device -> String? in
            guard let address = device.address, case .v4 = address, let ip = address.ipAddress, !ip.hasPrefix("127.") else { return nil }
            return ip
        }
        guard !own.isEmpty else { throw error }
        let channels = try own.map { try bootstrap.bind(host: $0, port: settings.port).wait() }
        logLine("port \(settings.port) is taken on another address of this container (Docker's DNS on 127.0.0.11?); serving on \(own.joined(separator: ", ")) only")
        return channels
    }
}

let servers: [any Channel]
do {
    servers = try listen()
} catch {
    writeError("cannot serve on port \(settings.port): \(error)")
    exit(1)
}
logLine("berth-unit serving port \(settings.port)\(tls == nil ? "" : " (TLS)") for \(settings.user): up to \(settings.maxCalls) calls at once, \(settings.callTimeoutSeconds) s each\(settings.secret == nil ? "; no session secret, so no calls" : "")")

// SIGTERM (docker stop): stop accepting, give running calls a moment, then stop them.
signal(SIGTERM, SIG_IGN)
signal(SIGPIPE, SIG_IGN)
let terminate = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
terminate.setEventHandler { @Sendable in
    logLine("stopping: \(state.runningCount) call(s) running")
    for server in servers { server.close(promise: nil) }
}
terminate.resume()

for server in servers { try? server.closeFuture.wait() }
for _ in 0..<50 where state.runningCount > 0 { usleep(100_000) }
state.cancelAll()
for _ in 0..<30 where state.runningCount > 0 { usleep(100_000) }
try? group.syncShutdownGracefully()
exit(0)

/// The TLS context of the session's key, or nil when the environment gives none.
func unitTLSContext(_ environment: [String: String]) throws -> NIOSSLContext? {
    guard let certificate = environment["BERTH_UNIT_TLS_CERT"], let key = environment["BERTH_UNIT_TLS_KEY"],
          !certificate.isEmpty, !key.isEmpty else { return nil }
    var configuration = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem)))
    configuration.minimumTLSVersion = .tlsv12
    return try NIOSSLContext(configuration: configuration)
}
