import BerthAPI
import Foundation
import Testing
@testable import Client

/// The session file holds a token as good as the user's password.
@Suite struct SessionFileTests {
    let directory = NSTemporaryDirectory() + "berth-session-tests-\(UUID().uuidString.prefix(8))"
    var path: String { directory + "/berth/session.json" }

    func session() -> SessionFile {
        SessionFile(
            server: HostPort(host: "127.0.0.1", port: 9000), user: "aaa", token: "token", units: [], unitSecret: "secret",
            since: Date(timeIntervalSince1970: 1_800_000_000), trust: nil, unitKeys: nil)
    }

    @Test func itIsWrittenForItsOwnerOnlyAndNothingIsLeftBeside() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A umask that would let everyone read what it creates must not matter.
        let previous = umask(0)
        defer { umask(previous) }
        try session().save(to: path)
        try session().save(to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let folder = try FileManager.default.attributesOfItem(atPath: (path as NSString).deletingLastPathComponent)
        #expect((folder[.posixPermissions] as? Int) == 0o700)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/berth") == ["session.json"])
        #expect(try SessionFile.load(from: path).token == "token")
    }

    /// Where the session lives: `$BERTH_SESSION`, then the XDG folder under `$HOME`, as the
    /// shell reads `~`; the account's home only when `HOME` is unusable.
    @Test func theSessionPathFollowsTheEnvironment() {
        #expect(SessionFile.path(in: ["BERTH_SESSION": "/s.json", "HOME": "/h"]) == "/s.json")
        #expect(SessionFile.path(in: ["XDG_CONFIG_HOME": "/x", "HOME": "/h"]) == "/x/berth/session.json")
        #expect(SessionFile.path(in: ["HOME": "/h", "XDG_CONFIG_HOME": "", "BERTH_SESSION": ""]) == "/h/.config/berth/session.json")
        #expect(SessionFile.path(in: ["HOME": "/h", "XDG_CONFIG_HOME": "x"]) == "/h/.config/berth/session.json")
        let account = FileManager.default.homeDirectoryForCurrentUser.path + "/.config/berth/session.json"
        #expect(SessionFile.path(in: [:]) == account)
        #expect(SessionFile.path(in: ["HOME": "relative"]) == account)
    }

    /// As ssh refuses a private key others can read: the user learns, and fixes it.
    @Test func aFileOthersCanReadIsRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try session().save(to: path)
        for mode in [0o640, 0o604, 0o644] {
            chmod(path, mode_t(mode))
            do {
                _ = try SessionFile.read(path)
                Issue.record("a session file of mode \(String(mode, radix: 8)) was accepted")
            } catch {
                #expect("\(error)".contains("\(path) is readable by others (mode \(String(mode, radix: 8)))"), "\(error)")
            }
        }
    }

    /// A link planted where the session goes is not followed.
    @Test func aSymlinkInItsPlaceIsRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try session().save(to: directory + "/elsewhere.json")
        try FileManager.default.createDirectory(atPath: directory + "/berth", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: directory + "/elsewhere.json")
        #expect(throws: SessionFileProblem.self) { try SessionFile.read(path) }
    }
}
