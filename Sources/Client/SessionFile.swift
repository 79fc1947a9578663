import BerthCLI
import BerthAPI
import BerthCore
import HTTPWire
import NIOTransport
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

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

    static var path: String { path(in: ProcessInfo.processInfo.environment) }

    /// `~` is `$HOME`, as the shell and the XDG base directories read it; the account's home
    /// only when `HOME` is unset or not an absolute path. A relative `XDG_CONFIG_HOME` is
    /// ignored, as the XDG base directories say.
    static func path(in environment: [String: String]) -> String {
        if let path = environment["BERTH_SESSION"], !path.isEmpty { return path }
        let absolute = { (name: String) in environment[name].flatMap { $0.hasPrefix("/") ? $0 : nil } }
        let home = absolute("HOME") ?? FileManager.default.homeDirectoryForCurrentUser.path
        return (absolute("XDG_CONFIG_HOME") ?? (home + "/.config")) + "/berth/session.json"
    }

    /// The saved session, or an error that says to log in. Like ssh with a private key, a file
    /// others could read (or one another user owns) is refused: its token opens the user's units.
    static func load(from path: String = Self.path) throws -> SessionFile {
        do {
            return try read(path)
        } catch {
            throw failure(error.description)
        }
    }

    static func read(_ path: String) throws(SessionFileProblem) -> SessionFile {
        let failure = SessionFileProblem.init
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else {
            if errno == ENOENT {
                throw failure("not logged in (no session in \(path)); run berth login --server HOST:PORT --user NAME")
            }
            throw failure("cannot read the session in \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            throw failure("\(path) is not a regular file; remove it and run berth login again")
        }
        guard status.st_uid == getuid() else {
            throw failure("\(path) belongs to another user (uid \(status.st_uid)); remove it and run berth login again")
        }
        guard status.st_mode & 0o077 == 0 else {
            throw failure(
                "\(path) is readable by others (mode \(String(status.st_mode & 0o777, radix: 8))); its token is as good as your password: "
                    + "remove it and run berth login again")
        }
        let data = readAll(descriptor, limit: 1 << 20)
        do {
            return try BerthJSON.decoder.decode(SessionFile.self, from: data)
        } catch {
            throw failure("\(path) is damaged; run berth login again")
        }
    }

    /// Writes the session through a new file that is 0600 from its creation, under a random
    /// name no one could have prepared, then renames it into place.
    func save(to path: String = Self.path) throws {
        let directory = try Self.makeFolder(for: path)
        let data = try BerthJSON.encoder.encode(self)
        let temporary = directory + "/.session-\(String(UInt64.random(in: .min ... .max), radix: 16)).tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw failure("cannot write the session to \(path): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == data.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw failure("cannot write the session to \(path)")
        }
    }

    /// The session file's folder, made (0700) if missing: at the start of a login too, so that a
    /// path that cannot hold the session fails before any unit starts.
    @discardableResult
    static func makeFolder(for path: String = Self.path) throws -> String {
        let directory = folder(of: path)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw failure("cannot make \(directory), the folder of the session file \(path); set BERTH_SESSION to a file in a folder you can write")
        }
        return directory
    }

    static func remove() {
        unlink(path)
    }

    var manager: ServiceClient {
        ServiceClient(address: server, name: "the Berth manager at \(server)", tls: trust?.clientTLS, transport: NIOTransport.self)
    }
}

/// Why the session file cannot be used, in a line that says what to do.
struct SessionFileProblem: Error, CustomStringConvertible {
    let description: String
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
