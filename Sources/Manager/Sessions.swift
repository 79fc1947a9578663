import BerthAPI
import BerthCore
import BerthTLS
import Crypto
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

/// One user's live login. Only the token's hash is kept.
struct Session: Codable, Sendable {
    var id: String
    var tokenHash: String
    var user: String
    var units: [HostPort]
    var from: String
    var since: Date
    var lastSeen: Date

    var summary: SessionSummary {
        SessionSummary(user: user, since: since, lastSeen: lastSeen, from: from, units: units)
    }

    static func hash(token: String) -> String {
        Data(SHA256.hash(data: Data(token.utf8))).hexString
    }

    /// A fresh 256-bit token, hex encoded.
    static func newToken() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).hexString }
    }
}

/// The sessions, durable in `<state-dir>/sessions.json` (written atomically on every change), so
/// a restarted manager keeps every login.
actor SessionStore {
    private let directory: String
    private let path: String
    private var sessions: [String: Session] = [:]
    /// Users whose login or logout is under way: one at a time per user.
    private var busy: Set<String> = []
    /// Sessions being created: their containers exist before the session is saved.
    private var pending: Set<String> = []

    init(stateDirectory: String) throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        directory = stateDirectory
        path = stateDirectory + "/sessions.json"
        if let data = FileManager.default.contents(atPath: path) {
            do {
                let list = try BerthJSON.decoder.decode([Session].self, from: data)
                sessions = Dictionary(list.map { ($0.user, $0) }, uniquingKeysWith: { _, new in new })
            } catch {
                throw ManagerError("\(path) is unreadable (\(error)); move it aside to start with no sessions")
            }
        }
    }

    var all: [Session] { sessions.values.sorted { $0.user < $1.user } }

    func session(user: String) -> Session? { sessions[user] }

    /// Whether `session` is still its user's session: not ended by a logout or a forced login.
    func isCurrent(_ session: Session) -> Bool { sessions[session.user]?.id == session.id }

    /// The session a bearer token belongs to; marks it seen.
    func session(token: String) throws -> Session? {
        let hash = Session.hash(token: token)
        guard var session = sessions.values.first(where: { constantTimeEqual(Data($0.tokenHash.utf8), Data(hash.utf8)) }) else {
            return nil
        }
        session.lastSeen = Date()
        sessions[session.user] = session
        return session
    }

    /// Changes the sessions in memory only once the change is on disk: what a restarted manager
    /// would find and what answers now stay the same.
    func save(_ session: Session) throws {
        var changed = sessions
        changed[session.user] = session
        try persist(changed)
        sessions = changed
    }

    func remove(user: String) throws {
        var changed = sessions
        changed[user] = nil
        try persist(changed)
        sessions = changed
    }

    /// Claims the user for a login or logout; false if one is already running.
    func claim(_ user: String) -> Bool {
        busy.insert(user).inserted
    }

    func release(_ user: String) {
        busy.remove(user)
    }

    func beginPending(session: String) { pending.insert(session) }
    func endPending(session: String) { pending.remove(session) }
    func isPending(session: String) -> Bool { pending.contains(session) }

    /// Writes every session to a new file (the owner's alone from its first byte), syncs it,
    /// renames it over the last and syncs the folder: a crash leaves the old list or the new one
    /// whole, and a logout, once answered, is not undone by a power cut.
    private func persist(_ sessions: [String: Session]) throws {
        let data = try BerthJSON.encoder.encode(sessions.values.sorted { $0.user < $1.user })
        let temporary = path + ".tmp"
        // Left by a write that was cut short: made anew, never opened through a link.
        unlink(temporary)
        do {
            try NewFiles.write(Array(data), to: temporary, mode: 0o600, sync: true)
        } catch {
            unlink(temporary)
            throw ManagerError("\(error)")
        }
        guard rename(temporary, path) == 0 else {
            let cause = String(cString: strerror(errno))
            unlink(temporary)
            throw ManagerError("cannot replace \(path): \(cause)")
        }
        let folder = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }
}

/// A manager failure worded for the user.
struct ManagerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
