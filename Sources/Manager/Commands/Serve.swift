import ArgumentParser
import BerthCLI
import BerthConfig
import BerthAPI
import BerthCore
import BerthServer
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Hummingbird
import Dispatch
import Logging

/// `berth-manager serve`: the manager daemon.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve logins on <Manager> and coordinate the agents. SIGHUP reloads the user file."
    )

    @Option(help: ArgumentHelp("The entry host's docker_server.xml.", valueName: "file"))
    var config: String

    @Option(help: ArgumentHelp("docker_user.xml.", valueName: "file"))
    var users: String

    @Option(help: ArgumentHelp("Where sessions and the audit log are kept.", valueName: "dir"))
    var stateDir = "/var/lib/berth"

    @Option(help: ArgumentHelp("End sessions whose client has not been seen for this many hours.", valueName: "hours"))
    var idleTimeout: Double = 12

    @Option(help: .hidden)
    var reconcileSeconds: Double = 10

    mutating func validate() throws {
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
    }

    func run() async throws {
        MallocTuning.apply(mmapThreshold: MallocTuning.daemonThreshold, trimThreshold: nil)
        MallocTuning.trimPeriodically()
        // Before any transport: an exit must not race a libcurl worker thread that is ending.
        Transport.startWithoutExitCleanup()
        let (server, loaded) = try loadConfigs(server: config, users: users)
        guard let userList = loaded else { throw ExitCode.failure }
        // The entry host's file is the one whose checks cover <Manager> (TLS, a manager's certificate).
        guard server.isManager else {
            throw failure("\(config) is not the entry host's file: add <NodeType>manager</NodeType>, or give the entry host's docker_server.xml")
        }
        let secret: [UInt8]
        do {
            secret = try server.readSecret()
        } catch {
            throw failure("\(error)")
        }
        var logger = Logger(label: "berth-manager")
        logger.logLevel = .info
        let sessions: SessionStore
        do {
            sessions = try SessionStore(stateDirectory: stateDir)
        } catch {
            throw failure("\(error)")
        }
        let tls = try serverTLS(server, clients: .anyone, logger: logger)
        let planner = Planner(
            communicationPort: server.communicationPort, signer: RequestSigner(secret: secret),
            readyTimeout: .seconds(server.readyTimeoutSeconds), tls: tls.map { agentTLS($0.material) })
        let connections = ConnectionCounter()
        let coordinator = Coordinator(
            users: userList, planner: planner, sessions: sessions, auth: Auth(users: userList), audit: Audit(stateDirectory: stateDir), logger: logger,
            connections: connections)
        let reconciler = Reconciler(
            coordinator: coordinator, interval: .milliseconds(Int(reconcileSeconds * 1000)), grace: reconcileSeconds,
            idleTimeout: idleTimeout * 3600, logger: logger)
        let reconciling = Task { await reconciler.run() }
        defer { reconciling.cancel() }
        let reload = installReload(coordinator: coordinator, server: server, usersPath: users, tls: tls, logger: logger)
        defer { reload.cancel() }

        let app = Application(
            router: ManagerController.router(coordinator: coordinator, verifier: RequestVerifier(secret: secret, audience: server.manager.description)),
            server: daemonServer(tls: tls, counter: connections),
            configuration: .init(address: .hostname(server.manager.host, port: server.manager.port), serverName: "berth-manager"),
            onServerRunning: { _ in SystemdNotifier.ready(status: "serving on \(server.manager)") },
            logger: logger)
        let sessionCount = await sessions.all.count
        logger.info("berth-manager serving", metadata: [
            "address": "\(server.manager)", "tls": "\(tls != nil)", "users": "\(userList.users.count)", "sessions": "\(sessionCount)",
        ])
        do {
            try await app.runService()
        } catch {
            throw failure("cannot serve on \(server.manager): \(error)")
        }
    }

    /// SIGHUP re-reads docker_user.xml and the TLS files; a file with errors is reported and the
    /// old one kept.
    private func installReload(
        coordinator: Coordinator, server: ServerConfig, usersPath: String, tls: ServerTLS?, logger: Logger
    ) -> any DispatchSourceSignal {
        onHangup {
            if let tls, reloadTLS(tls, logger: logger) {
                coordinator.planner.reload(tls: agentTLS(tls.material))
            }
            let (reloaded, problems) = UsersConfig.load(path: usersPath, server: server)
            for problem in problems { logger.warning("\(problem)") }
            if let reloaded {
                coordinator.reload(users: reloaded)
                logger.info("reloaded users", metadata: ["users": "\(reloaded.users.count)"])
            } else {
                logger.error("reload refused: \(usersPath) has errors; keeping the previous users")
            }
        }
    }
}
