import ArgumentParser
import BerthCLI
import BerthConfig
import BerthAPI
import BerthCore
import BerthTLS
import BerthServer
import EngineAPI
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
import Dispatch
import Hummingbird
import Logging

/// `berth-agent serve`: the agent daemon.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the manager's requests on <Server> and run unit containers on this host's engine."
    )

    @Option(help: ArgumentHelp("This host's docker_server.xml.", valueName: "file"))
    var config: String

    func run() async throws {
        MallocTuning.apply(mmapThreshold: MallocTuning.daemonThreshold, trimThreshold: nil)
        MallocTuning.trimPeriodically()
        let (server, _) = try loadConfigs(server: config)
        let secret: [UInt8]
        do {
            secret = try server.readSecret()
        } catch {
            throw failure("\(error)")
        }
        var logger = Logger(label: "berth-agent")
        logger.logLevel = .info
        var endpoint: EngineEndpoint
        do {
            endpoint = try EngineEndpoint(parsing: server.docker)
            if let folder = server.dockerCerts {
                // As DOCKER_CERT_PATH: the engine's CA, and the certificate the engine asks of its clients.
                endpoint.tls = ClientTLS(
                    trustedCAs: try PEMFile.read(folder + "/ca.pem"), clientCertificate: try PEMFile.read(folder + "/cert.pem"),
                    clientKey: try PEMFile.read(folder + "/key.pem"))
            }
        } catch {
            throw failure("\(server.file): <Docker>: \(error)")
        }
        // The engine on a Unix socket is the only server the agent reaches through libcurl.
        if endpoint.tls == nil, !Transport.startWithoutTLS() {
            logger.notice("libcurl had started before the agent could start it without TLS: OpenSSL's certificate tables stay loaded")
        }
        // Either way OpenSSL runs no clean-up at exit, which could race a worker thread ending.
        if endpoint.tls != nil { Transport.startWithoutExitCleanup() }
        let docker = DockerClient(endpoint: endpoint, lanes: Transport.Lanes(requests: server.engineWorkers, streams: server.engineStreams))
        let remapsUsers = await engineRemapsUsers(docker, logger: logger)
        let template = try loadTemplate(server, engineRemapsUsers: remapsUsers)
        // Root's own: unit logs that could not be saved in a home safely go here.
        if mkdir(server.logDirectory, 0o700) != 0 && errno != EEXIST {
            throw failure("\(server.file): <LogDir> \(server.logDirectory): \(String(cString: strerror(errno)))")
        }
        let service = UnitService(
            docker: docker, config: server, template: template, policy: server.templatePolicy(engineRemapsUsers: remapsUsers), logger: logger)
        let router = AgentController.router(service: service, verifier: RequestVerifier(secret: secret, audience: server.server.description))
        let sweeping = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(60))
                await service.networks.sweep()
            }
        }
        defer { sweeping.cancel() }
        let tls = try serverTLS(server, clients: .manager, logger: logger)
        let reload = tls.map { [logger] tls in onHangup { reloadTLS(tls, logger: logger) } }
        defer { reload?.cancel() }
        let app = Application(
            router: router,
            server: daemonServer(tls: tls),
            configuration: .init(address: .hostname(server.server.host, port: server.server.port), serverName: "berth-agent"),
            onServerRunning: { _ in SystemdNotifier.ready(status: "serving on \(server.server)") },
            logger: logger)
        logger.info("berth-agent serving", metadata: ["address": "\(server.server)", "tls": "\(tls != nil)", "engine": "\(endpoint)", "template": "\(template.source)"])
        do {
            try await app.runService()
        } catch {
            throw failure("cannot serve on \(server.server): \(error)")
        }
    }

    /// Whether the engine runs containers in a user namespace, from its `/info`. An engine not
    /// answering yet counts as not remapping: the stricter policy.
    private func engineRemapsUsers(_ docker: DockerClient, logger: Logger) async -> Bool {
        do {
            let remaps = try await docker.info().remapsUsers
            if !remaps {
                logger.notice("the engine does not remap users (userns-remap); units run as their users' own accounts, never root")
            }
            return remaps
        } catch {
            // The agent still starts: it reports the engine as down and recovers when it returns.
            logger.warning("Docker engine not answering yet", metadata: ["error": "\(error)"])
            return false
        }
    }
}
