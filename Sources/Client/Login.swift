import ArgumentParser
import BerthCLI
import BerthAPI
import BerthCore
import BerthTLS
import HTTPWire
import NIOTransport
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

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

    @Option(help: ArgumentHelp("Trust the manager's certificate if this CA signed it (default: $BERTH_CA).", valueName: "file"))
    var ca: String?

    @Option(help: ArgumentHelp("Trust the manager whose key has this fingerprint (as the manager's admin or a refused login shows it).", valueName: "SHA256:hex"))
    var fingerprint: String?

    @Flag(help: "Allow a manager that speaks plain HTTP on a network address: your password would cross it in clear.")
    var insecure = false

    func validate() throws {
        guard HostPort(parsing: server) != nil else {
            throw ValidationError("--server must be HOST:PORT, e.g. 192.168.0.76:9000")
        }
        if let fingerprint, KeyFingerprint(parsing: fingerprint) == nil {
            throw ValidationError("--fingerprint must be SHA256: and 64 hex digits, e.g. SHA256:3fbd01c7…")
        }
        if ca != nil && fingerprint != nil {
            throw ValidationError("give --ca or --fingerprint, not both")
        }
    }

    func run() async throws {
        let address = HostPort(parsing: server)!
        try SessionFile.makeFolder()
        let trust = try await trustOfManager(at: address)
        let manager = ServiceClient(address: address, name: "the Berth manager at \(address)", tls: trust?.clientTLS, transport: NIOTransport.self)
        if trust == nil { try await checkPlainHTTP(manager) }
        let password = try readPassword()
        let response: HTTPStreamingResponse
        do {
            response = try await manager.stream(ManagerRoutes.login, LoginRequest(user: user, password: password, force: force))
        } catch ServiceError.untrusted(let what, let reason) {
            throw failure("\(what) is not trusted: \(reason)\(await fingerprintHint(address))")
        } catch let error as ServiceError {
            throw failure(error.description)
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
        try SessionFile(server: address, user: user, token: token, units: units, unitSecret: unitSecret, since: Date(), trust: trust,
            unitKeys: outcome.unitKeys).save()
        print(terminalSafe("logged in as \(user): \(outcome.message ?? "\(units.count) units ready")"))
    }

    /// What the manager is trusted by, before any password is sent; nil for plain HTTP, which
    /// only a loopback address or `--insecure` allows.
    private func trustOfManager(at address: HostPort) async throws -> ManagerTrust? {
        // What the command line says wins over the environment.
        if let fingerprint {
            return ManagerTrust(fingerprint: KeyFingerprint(parsing: fingerprint))
        }
        let fromEnvironment = ProcessInfo.processInfo.environment["BERTH_CA"].flatMap { $0.isEmpty ? nil : $0 }
        if let path = ca ?? fromEnvironment {
            let source = ca != nil ? "--ca" : "BERTH_CA"
            let pem: String
            do {
                pem = try PEMFile.read(path)
            } catch {
                throw failure("\(source) \(path): \(error)")
            }
            guard NIOTransport.holdsCertificate(pem: pem) else { throw failure("\(source) \(path): holds no PEM certificate") }
            return ManagerTrust(caPEM: pem)
        }
        guard address.isLoopback || insecure else {
            try await refuseIfTLS(address)
            throw failure("the manager at \(address) speaks plain HTTP: your password would cross the network in clear; ask your admin for TLS, or add --insecure on a network you trust")
        }
        return nil
    }

    /// Plain HTTP only to a server that answers as a Berth manager does: asked for the status
    /// without a token, it says 401 with Berth's error body. Anything else (a TLS front's "plain
    /// HTTP to an HTTPS port" 400, no HTTP at all) is refused before the password is read, with
    /// the key to pin when TLS answers. One plain round trip; a TLS handshake to find out would
    /// cost a thread and the TLS library's start on every login.
    private func checkPlainHTTP(_ manager: ServiceClient) async throws {
        let answer: (status: Int, body: Data)
        do {
            // The password follows at once from stdin, on this connection; a person at the prompt
            // may take a while, and a connection held meanwhile would count against the manager's
            // limit of connections per address that have not logged in (a class behind one NAT).
            answer = try await manager.plainAnswer(to: ManagerRoutes.status.path, keepingConnection: passwordStdin)
        } catch let error as ServiceError {
            try await refuseIfTLS(manager.address)
            if case .invalidAnswer(let what, let detail) = error {
                throw failure("\(what) does not answer as a Berth manager does (\(detail)); check --server")
            }
            throw failure(error.description)
        }
        guard answer.status == 401, (try? BerthJSON.decoder.decode(ErrorBody.self, from: answer.body)) != nil else {
            try await refuseIfTLS(manager.address)
            throw failure("\(manager.name) does not answer as a Berth manager does (HTTP \(answer.status) to a plain GET \(ManagerRoutes.status.path)); check --server")
        }
    }

    private func refuseIfTLS(_ address: HostPort) async throws {
        guard let pem = await TLSProbe.certificate(host: address.host, port: address.port) else { return }
        let shown = (try? KeyFingerprint(certificatePEM: pem)).map { "\($0)" } ?? "unreadable"
        throw failure(
            "the manager at \(address) speaks TLS, and nothing says to trust it: its key is \(shown); if your admin confirms it, run berth login --fingerprint \(shown) (or --ca with the cluster's ca.crt)")
    }

    /// The key a refused manager presents, for the message.
    private func fingerprintHint(_ address: HostPort) async -> String {
        guard let pem = await TLSProbe.certificate(host: address.host, port: address.port),
              let fingerprint = try? KeyFingerprint(certificatePEM: pem) else { return "" }
        return "; its key is \(fingerprint): check it with your admin"
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
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show your session, the real state of each unit and what each running one uses.")

    @Flag(help: ArgumentHelp(
        "Print JSON: {\"user\", \"since\", \"from\", \"units\": [{\"unit\", \"state\", \"cpu_percent\", \"memory_bytes\", \"memory_limit_bytes\", …}]}.",
        discussion: "With --watch, one line of JSON per refresh."))
    var json = false

    @Flag(help: "Refresh until Ctrl-C, in place on a terminal.")
    var watch = false

    @Option(help: ArgumentHelp("Seconds between refreshes with --watch.", valueName: "seconds"))
    var interval: Double = 2

    func validate() throws {
        guard interval >= 0.5, interval <= 3600 else { throw ValidationError("--interval must be between 0.5 and 3600 seconds") }
    }

    func run() async throws {
        let session = try SessionFile.load()
        let onTerminal = isatty(STDOUT_FILENO) == 1
        repeat {
            let status: StatusResponse = try await managerCall {
                try await session.manager.call(ManagerRoutes.status, token: session.token)
            }
            if json {
                try watch ? printJSONLine(status) : printJSON(status)
            } else {
                // Home and clear, so each refresh replaces the last one instead of scrolling.
                if watch && onTerminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                print(Self.table(status))
                if watch && !onTerminal { print() }
            }
            if watch { try await Task.sleep(for: .seconds(interval)) }
        } while watch
    }

    static func table(_ status: StatusResponse) -> String {
        let rows = status.units.map { unit in
            [unit.unit.description, unit.state.rawValue, unit.cpuPercent.map { oneDecimal($0) + "%" } ?? "",
             memory(unit), unit.detail ?? ""]
        }
        return terminalSafe("\(status.user), logged in since \(status.since.iso8601) from \(status.from)\n"
            + formatTable(["UNIT", "STATE", "CPU", "MEMORY", "DETAIL"], rows))
    }

    /// `12.3MiB / 64MiB (19%)`, as `docker stats` shows it.
    static func memory(_ unit: UnitStatus) -> String {
        guard let used = unit.memoryBytes else { return "" }
        guard let limit = unit.memoryLimitBytes, limit > 0 else { return byteCount(used) }
        return "\(byteCount(used)) / \(byteCount(limit)) (\(Int((Double(used) / Double(limit) * 100).rounded()))%)"
    }
}
