import BerthAPI
import Foundation
import Testing

@testable import Manager

/// The sessions file: what a restarted manager finds, and what another local user can see or
/// redirect of it while it is written.
struct SessionStoreTests {
    static func session(_ user: String) -> Session {
        Session(id: UUID().uuidString, tokenHash: Session.hash(token: Session.newToken()), user: user,
                units: [HostPort(host: "127.0.0.2", port: 8301)], from: "127.0.0.1", since: Date(), lastSeen: Date())
    }

    static func withStateDirectory(_ body: (String) async throws -> Void) async throws {
        let state = NSTemporaryDirectory() + "berth-sessions-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        try await body(state)
    }

    @Test func aRestartedManagerFindsEverySession() async throws {
        try await Self.withStateDirectory { state in
            let store = try SessionStore(stateDirectory: state)
            try await store.save(Self.session("alice"))
            try await store.save(Self.session("bob"))
            try await store.remove(user: "alice")
            let again = try SessionStore(stateDirectory: state)
            #expect(await again.all.map(\.user) == ["bob"])
        }
    }

    /// A change that cannot be written changes nothing: what answers now is what a restarted
    /// manager would find.
    @Test func aChangeThatCannotBeWrittenChangesNothing() async throws {
        try await Self.withStateDirectory { state in
            let store = try SessionStore(stateDirectory: state)
            try await store.save(Self.session("alice"))
            // A folder where the new list is written first: it can be neither removed nor replaced.
            try FileManager.default.createDirectory(atPath: state + "/sessions.json.tmp/x", withIntermediateDirectories: true)
            await #expect(throws: ManagerError.self) { try await store.save(Self.session("bob")) }
            await #expect(throws: ManagerError.self) { try await store.remove(user: "alice") }
            #expect(await store.all.map(\.user) == ["alice"])
            try FileManager.default.removeItem(atPath: state + "/sessions.json.tmp")
            let again = try SessionStore(stateDirectory: state)
            #expect(await again.all.map(\.user) == ["alice"])
        }
    }

    /// An admin's state folder may be readable by others (0755): the file is the manager's alone.
    @Test func theFileIsReadableByItsOwnerAloneInAnOpenFolder() async throws {
        try await Self.withStateDirectory { state in
            chmod(state, 0o755)
            try await SessionStore(stateDirectory: state).save(Self.session("alice"))
            var info = stat()
            #expect(lstat(state + "/sessions.json", &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600)
            #expect(!FileManager.default.fileExists(atPath: state + "/sessions.json.tmp"))
        }
    }

    /// A link left where the file is written first is replaced, never written through.
    @Test func aLinkAtTheTemporaryNameIsNotWrittenThrough() async throws {
        try await Self.withStateDirectory { state in
            let victim = state + "/victim"
            try Data("untouched".utf8).write(to: URL(fileURLWithPath: victim))
            try FileManager.default.createSymbolicLink(atPath: state + "/sessions.json.tmp", withDestinationPath: victim)
            try await SessionStore(stateDirectory: state).save(Self.session("alice"))
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "untouched")
            let again = try SessionStore(stateDirectory: state)
            #expect(await again.all.map(\.user) == ["alice"])
        }
    }
}
