import ArgumentParser
import BerthCLI
import BerthAPI
import BerthCore
import HTTPClient
import Foundation

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Log in: start every one of your units and wait until each serves.",
        discussion: "The password is asked for without echo, or read from stdin with --password-stdin."
    )

    @Option(help: ArgumentHelp("The manager's address.", valueName: "host:port"))
    var server: String

    @Option(help: ArgumentHelp("Your user name.", valueName: "name"))
    var user: String

    @Flag(help: "Read the password from stdin (first line).")
    var passwordStdin = false

    @Flag(help: "End a session of yours that is still open elsewhere first.")
    var force = false

    func validate() throws {
        guard HostPort(parsing: server) != nil else {
            throw ValidationError("--server must be HOST:PORT, e.g. 192.168.0.76:9000")
        }
    }

    func run() async throws {
        let address = HostPort(parsing: server)!
        let password = try readPassword()
        let manager = ServiceClient(address: address, name: "the Berth manager at \(address)")
        let response = try await managerCall {
            try await manager.stream(ManagerRoutes.login, LoginRequest(user: user, password: password, force: force))
        }
        var lines = LineSplitter()
        var outcome: LoginEvent?
        do {
            for try await chunk in response.body {
                for line in lines.feed(chunk) {
                    guard let event = try? BerthJSON.decoder.decode(LoginEvent.self, from: line) else { continue }
                    switch event.kind {
                    case .unit:
                        let detail = event.message.map { " (\($0.split(separator: "\n").first ?? ""))" } ?? ""
                        note("  unit \(event.unit?.description ?? "?")  \(event.state?.rawValue ?? "")\(detail)")
                    case .notice:
                        note(event.message ?? "")
                    case .done, .failed:
                        outcome = event
                    }
                }
            }
        } catch {
            throw failure("the connection to \(address) broke during login (\(error)); run berth status, or log in again with --force")
        }
        guard let outcome else { throw failure("the manager at \(address) ended the login without an answer; try again") }
        guard outcome.kind == .done, let token = outcome.token, let unitSecret = outcome.unitSecret else {
            throw failure(outcome.message ?? "login failed")
        }
        let units = outcome.units ?? []
        try SessionFile(server: address, user: user, token: token, units: units, unitSecret: unitSecret, since: Date()).save()
        print("logged in as \(user): \(outcome.message ?? "\(units.count) units ready")")
    }

    private func readPassword() throws -> String {
        if passwordStdin {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                throw failure("--password-stdin: no password on stdin")
            }
            return line
        }
        guard isatty(STDIN_FILENO) != 0, let pointer = getpass("Password for \(user): ") else {
            throw failure("no terminal to ask for the password; use --password-stdin")
        }
        return String(cString: pointer)
    }
}

struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logout", abstract: "Log out: remove your unit containers; your files stay.")

    func run() async throws {
        let session = try SessionFile.load()
        let removed: StopUnitsResponse
        do {
            removed = try await session.manager.call(ManagerRoutes.logout, token: session.token, timeout: .seconds(180))
        } catch ServiceError.refused(401, _) {
            SessionFile.remove()
            print("the session had already ended; logged out")
            return
        } catch let error as ServiceError {
            throw failure(error.description)
        }
        SessionFile.remove()
        print("logged out \(session.user): removed \(removed.removed.count) unit container\(removed.removed.count == 1 ? "" : "s"); your files stay")
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show your session and the real state of each unit.")

    @Flag(help: "Print JSON: {\"user\", \"since\", \"from\", \"units\": [{\"unit\", \"state\", …}]}.")
    var json = false

    func run() async throws {
        let session = try SessionFile.load()
        let status: StatusResponse = try await managerCall {
            try await session.manager.call(ManagerRoutes.status, token: session.token)
        }
        if json {
            try printJSON(status)
            return
        }
        print("\(status.user), logged in since \(status.since.iso8601) from \(status.from)")
        print(formatTable(["UNIT", "STATE", "DETAIL"], status.units.map { [$0.unit.description, $0.state.rawValue, $0.detail ?? ""] }))
    }
}
