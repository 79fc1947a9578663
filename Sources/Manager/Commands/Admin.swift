import ArgumentParser
import BerthCLI
import BerthConfig
import BerthAPI
import BerthCore
import BerthPasswords
import HTTPClient
import BerthTLS
import BerthServer
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `berth-manager check-config`: every problem of both files, then a summary.
struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate docker_server.xml, docker_user.xml and the unit template; print every problem as FILE:LINE: message (FILE: FIELD: message for the template)."
    )

    @Option(help: ArgumentHelp("docker_server.xml.", valueName: "file"))
    var config: String

    @Option(help: ArgumentHelp("docker_user.xml.", valueName: "file"))
    var users: String

    func run() async throws {
        let (server, loaded) = try loadConfigs(server: config, users: users)
        guard let userList = loaded else { throw ExitCode.failure }
        // The engines' user remapping is each agent's to see; the check here is the stricter one.
        _ = try loadTemplate(server, homes: userList.users.map(\.home))
        let units = userList.users.reduce(0) { $0 + $1.units.count }
        let hosts = Set(userList.users.flatMap { $0.units.map(\.host) })
        print("ok: \(userList.users.count) users, \(units) units on \(hosts.count) hosts; agents on port \(server.communicationPort), manager on \(server.manager)")
    }
}

/// `berth-manager hash-password`: a `<PwdHash>` value for a password read on stdin.
struct HashPassword: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-password",
        abstract: "Read a password on stdin and print its <PwdHash> value (Argon2id)."
    )

    func run() async throws {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw failure("no password on stdin; e.g. printf '%s' 'secret' | berth-manager hash-password")
        }
        print(try PasswordHash.make(line))
    }
}

/// `berth-manager sessions`: who is logged in, asked of the running manager.
struct Sessions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List the sessions of the running manager (or end one with --end USER)."
    )

    @Option(help: ArgumentHelp("The entry host's docker_server.xml (for <Manager> and <Secret>).", valueName: "file"))
    var config: String

    @Flag(help: "Print JSON.")
    var json = false

    @Option(help: ArgumentHelp("End this user's session: remove their units and forget the session.", valueName: "user"))
    var end: String?

    func run() async throws {
        let (server, _) = try loadConfigs(server: config)
        let client: ServiceClient
        do {
            // With TLS the manager is checked against the cluster's CA, as any client checks it.
            let tls = try server.tls.map { ClientTLS(trustedCAs: try PEMFile.read($0.ca)) }
            client = ServiceClient(
                address: server.manager, name: "the Berth manager at \(server.manager)", signer: RequestSigner(secret: try server.readSecret()),
                tls: tls, transport: Transport.self)
        } catch {
            throw failure("\(error)")
        }
        do {
            if let end {
                let removed = try await client.call(ManagerRoutes.endSession, EndSessionRequest(user: end)).removed
                print("ended \(end)'s session; removed \(removed.count) unit container\(removed.count == 1 ? "" : "s")")
                return
            }
            let sessions = try await client.call(ManagerRoutes.sessions)
            if json {
                try printJSON(sessions)
                return
            }
            print(formatTable(["USER", "SINCE", "FROM", "LAST SEEN", "UNITS"], sessions.map {
                [$0.user, $0.since.iso8601, $0.from, $0.lastSeen.iso8601, $0.units.map(\.description).joined(separator: ",")]
            }))
        } catch {
            throw failure("\(error)")
        }
    }
}
