import BerthCLI
import BerthAPI
import BerthCore
import HTTPClient
import Foundation

/// The client's login, kept in `$BERTH_SESSION`, else `$XDG_CONFIG_HOME/berth/session.json`,
/// else `~/.config/berth/session.json`, readable by its owner only.
struct SessionFile: Codable {
    var server: HostPort
    var user: String
    var token: String
    var units: [HostPort]
    /// Presented to the units by `berth call`.
    var unitSecret: String
    var since: Date
    /// How the manager was trusted at login; later commands check the same. Nil: plain HTTP.
    var trust: ManagerTrust?
    /// The key each unit serves TLS with; `berth call` accepts no other. Nil: plain units.
    var unitKeys: [UnitKey]?

    /// How `berth call` reaches `unit`: over TLS pinned to its key, where the login gave one.
    func unitTLS(_ unit: HostPort) -> ClientTLS? {
        unitKeys?.first { $0.unit == unit }.map { ClientTLS(pinnedKey: $0.fingerprint.curlPin) }
    }

    static var path: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["BERTH_SESSION"], !path.isEmpty { return path }
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() + "/.config")
        return base + "/berth/session.json"
    }

    /// The saved session, or an error that says to log in.
    static func load() throws -> SessionFile {
        let path = Self.path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw failure("not logged in (no session in \(path)); run berth login --server HOST:PORT --user NAME")
        }
        do {
            return try BerthJSON.decoder.decode(SessionFile.self, from: data)
        } catch {
            throw failure("\(path) is damaged; run berth login again")
        }
    }

    func save() throws {
        let path = Self.path
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: try BerthJSON.encoder.encode(self), attributes: [.posixPermissions: 0o600]),
              rename(temporary, path) == 0
        else { throw failure("cannot write the session to \(path)") }
    }

    static func remove() {
        unlink(path)
    }

    var manager: ServiceClient {
        ServiceClient(address: server, name: "the Berth manager at \(server)", tls: trust?.clientTLS)
    }
}

/// What `berth` trusts a TLS manager by: the cluster's CA (`--ca`), or its key's fingerprint
/// (`--fingerprint`), as given at login.
struct ManagerTrust: Codable, Equatable {
    var caPEM: String?
    var fingerprint: KeyFingerprint?

    var clientTLS: ClientTLS {
        ClientTLS(trustedCAs: caPEM, pinnedKey: fingerprint?.curlPin)
    }
}

/// Runs a manager call, turning its failure into the one-line error and exit status.
func managerCall<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch ServiceError.refused(401, let message) {
        throw failure(message)
    } catch let error as ServiceError {
        throw failure(error.description)
    }
}
