import BerthAPI
import BerthCore
import Foundation
import Synchronization
import Testing

@testable import Agent

/// Root's work in a home a hostile user controls: whatever the user plants or swaps in, nothing
/// outside the home is written, created or given away. These run as root, as the agent does.
@Suite struct HomeFilesTests {
    static let user = UnixAccount(uid: 4242, gid: 4242)
    static let account = UnixAccount(uid: 2001, gid: 2001)

    // MARK: - prepare

    @Test func linksPlantedForTheHomesDirectoriesLeaveTheirTargetsUntouched() throws {
        let box = try Sandbox()
        let other = try box.makeDirectory("other", owner: UnixAccount(uid: 3000, gid: 3000), mode: 0o700)
        try box.link(box.home + "/script", to: box.victim)
        try box.link(box.home + "/data", to: other)
        let before = box.snapshot(excludingHome: true)

        #expect(try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil) == Self.user)

        #expect(box.snapshot(excludingHome: true) == before)
        #expect(box.entry(box.home + "/script")?.isLink == true)
        #expect(box.entry(box.home + "/data")?.isLink == true)
        #expect(box.entry(box.home + "/config") == Entry(owner: Self.user, mode: S_IFDIR | 0o755))
        #expect(box.entry(box.home + "/logs") == Entry(owner: Self.user, mode: S_IFDIR | 0o755))
    }

    @Test func aLinkOnTheHomesPathIsRefusedAndNamed() throws {
        let box = try Sandbox()
        try box.link(box.homes + "/aaa", to: box.victim)
        let before = box.snapshot(excludingHome: false)
        let error = #expect(throws: AgentError.self) {
            try HomeFiles.prepare(home: box.homes + "/aaa/bob", homeRoot: box.homes, account: Self.account)
        }
        #expect(error?.description.contains("\(box.homes)/aaa is a symbolic link") == true)
        #expect(box.snapshot(excludingHome: false) == before)
    }

    @Test func aHomeThatIsALinkIsRefusedWithOrWithoutAnAccount() throws {
        let box = try Sandbox()
        try box.link(box.homes + "/bob", to: box.victim)
        let before = box.snapshot(excludingHome: false)
        for account in [nil, Self.account] {
            let error = #expect(throws: AgentError.self) {
                try HomeFiles.prepare(home: box.homes + "/bob", homeRoot: box.homes, account: account)
            }
            #expect(error?.description.contains("\(box.homes)/bob is a symbolic link") == true)
        }
        #expect(box.snapshot(excludingHome: false) == before)
    }

    @Test func aLinkAboveTheHomeIsRefusedWhenNoHomeRootIsTrusted() throws {
        let box = try Sandbox()
        try box.link(box.root + "/via", to: box.homes)
        let error = #expect(throws: AgentError.self) {
            try HomeFiles.prepare(home: box.root + "/via/alice", homeRoot: nil, account: nil)
        }
        #expect(error?.description.contains("\(box.root)/via is a symbolic link") == true)
        #expect(try HomeFiles.prepare(home: box.home, homeRoot: nil, account: nil) == Self.user)
    }

    @Test(arguments: ["/", "//", "/./", "relative/alice", "/x/../alice", "/x/./alice", "/x/a\0b"])
    func pathsThatAreNotAHomeBelowSlashAreRefused(home: String) throws {
        #expect(throws: AgentError.self) { try HomeFiles.prepare(home: home, homeRoot: nil, account: Self.account) }
        #expect(throws: AgentError.self) { try HomeFiles.prepare(home: home, homeRoot: "/", account: Self.account) }
    }

    @Test func aHomeOutsideTheHomeRootIsRefusedNameByName() throws {
        let box = try Sandbox()
        _ = try box.makeDirectory("homes2", owner: UnixAccount(uid: 0, gid: 0), mode: 0o755)
        for home in [box.root + "/homes2/alice", box.root + "/victim/alice", box.homes] {
            let error = #expect(throws: AgentError.self) {
                try HomeFiles.prepare(home: home, homeRoot: box.homes, account: Self.account)
            }
            #expect(error?.description.contains("is not below the home root") == true)
        }
        #expect(box.entry(box.root + "/homes2/alice") == nil)
    }

    @Test func aHomeRootReachedThroughALinkIsTheAdminsAndFollowed() throws {
        let box = try Sandbox()
        try box.link(box.root + "/homelink", to: box.homes)
        #expect(try HomeFiles.prepare(home: box.root + "/homelink/alice", homeRoot: box.root + "/homelink", account: nil) == Self.user)
        #expect(try HomeFiles.prepare(home: box.home, homeRoot: box.root + "/homelink", account: nil) == Self.user)
        #expect(try HomeFiles.prepare(home: box.home, homeRoot: box.homes + "/", account: nil) == Self.user)
    }

    @Test func aMissingHomeIsMadeForAGivenAccount() throws {
        let box = try Sandbox()
        let home = box.homes + "/bob"
        #expect(try HomeFiles.prepare(home: home, homeRoot: box.homes, account: Self.account) == Self.account)
        #expect(box.entry(home) == Entry(owner: Self.account, mode: S_IFDIR | 0o750))
        for name in HomeFiles.directories {
            #expect(box.entry(home + "/" + name) == Entry(owner: Self.account, mode: S_IFDIR | 0o755))
        }
    }

    @Test func aMissingHomeWithoutAnAccountIsRefusedAndNotMade() throws {
        let box = try Sandbox()
        let error = #expect(throws: AgentError.self) {
            try HomeFiles.prepare(home: box.homes + "/bob", homeRoot: box.homes, account: nil)
        }
        #expect(error?.description.contains("\(box.homes)/bob does not exist") == true)
        #expect(error?.description.contains("<Uid>") == true)
        #expect(box.entry(box.homes + "/bob") == nil)
    }

    @Test func aMissingDirectoryAboveTheHomeIsNotMade() throws {
        let box = try Sandbox()
        let error = #expect(throws: AgentError.self) {
            try HomeFiles.prepare(home: box.homes + "/group/bob", homeRoot: box.homes, account: Self.account)
        }
        #expect(error?.description.contains("\(box.homes)/group does not exist") == true)
        #expect(box.entry(box.homes + "/group") == nil)
    }

    @Test func aRootOwnedHomeNeedsAnAccountAndThenBelongsToIt() throws {
        let box = try Sandbox()
        let home = try box.makeDirectory("homes/shared", owner: UnixAccount(uid: 0, gid: 0), mode: 0o755)
        let error = #expect(throws: AgentError.self) { try HomeFiles.prepare(home: home, homeRoot: box.homes, account: nil) }
        #expect(error?.description.contains("is owned by root (0:0)") == true)
        #expect(error?.description.contains("chown") == true)
        #expect(box.entry(home + "/script") == nil)

        #expect(try HomeFiles.prepare(home: home, homeRoot: box.homes, account: Self.account) == Self.account)
        for name in HomeFiles.directories {
            #expect(box.entry(home + "/" + name) == Entry(owner: Self.account, mode: S_IFDIR | 0o755))
        }
    }

    @Test func aHomeInRootsGroupAndARootAccountAreRefused() throws {
        let box = try Sandbox()
        let home = try box.makeDirectory("homes/grouped", owner: UnixAccount(uid: 2001, gid: 0), mode: 0o755)
        let error = #expect(throws: AgentError.self) { try HomeFiles.prepare(home: home, homeRoot: box.homes, account: nil) }
        #expect(error?.description.contains("in root's group (2001:0)") == true)
        #expect(throws: AgentError.self) {
            try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: UnixAccount(uid: 0, gid: 2001))
        }
        #expect(box.entry(box.home + "/script") == nil)
    }

    @Test func preparingAgainLeavesWhatIsThere() throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        chmod(box.home + "/data", 0o700)
        #expect(try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: Self.account) == Self.account)
        #expect(box.entry(box.home + "/data") == Entry(owner: Self.user, mode: S_IFDIR | 0o700))
    }

    // MARK: - saveLog

    @Test func aLogIsSavedInTheHomeAndBelongsToItsOwner() async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        let saved = try await box.save("unit.log", Pattern(total: 5000, chunk: 100))
        #expect(saved.path == box.home + "/logs/unit.log")
        #expect(saved.fallbackReason == nil)
        #expect(saved.bytes == 5000 && saved.droppedBytes == 0)
        #expect(box.entry(saved.path) == Entry(owner: Self.user, mode: S_IFREG | 0o640, size: 5000))
        #expect(try box.contents(saved.path) == Pattern(total: 5000, chunk: 100).bytes(0..<5000))
    }

    @Test func logsThatIsALinkSendsTheLogToTheFallback() async throws {
        let box = try Sandbox()
        try box.link(box.home + "/logs", to: box.victim)
        let before = box.snapshot(excludingHome: true)
        let saved = try await box.save("unit.log", Pattern(total: 100, chunk: 10))
        #expect(box.snapshot(excludingHome: true) == before)
        #expect(saved.fallbackReason?.contains("\(box.home)/logs is a symbolic link") == true)
        try box.expectInFallback(saved)
    }

    @Test func logsThatIsAFileSendsTheLogToTheFallback() async throws {
        let box = try Sandbox()
        try Data("mine".utf8).write(to: URL(fileURLWithPath: box.home + "/logs"))
        let saved = try await box.save("unit.log", Pattern(total: 100, chunk: 10))
        #expect(saved.fallbackReason?.contains("\(box.home)/logs is not a directory") == true)
        #expect(try box.contents(box.home + "/logs") == Data("mine".utf8))
        try box.expectInFallback(saved)
    }

    @Test func aLinkPlantedAtTheLogsNameIsNotWrittenThrough() async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        try box.link(box.home + "/logs/unit.log", to: box.secret)
        try box.link(box.home + "/logs/new.log", to: box.victim + "/new.log")
        let before = box.snapshot(excludingHome: true)
        for name in ["unit.log", "new.log"] {
            let saved = try await box.save(name, Pattern(total: 100, chunk: 10))
            #expect(saved.fallbackReason?.contains("\(box.home)/logs/\(name) is a symbolic link") == true)
            try box.expectInFallback(saved)
        }
        #expect(box.snapshot(excludingHome: true) == before)
    }

    @Test func aHomeThatIsALinkSendsTheLogToTheFallback() async throws {
        let box = try Sandbox()
        try FileManager.default.createDirectory(atPath: box.victim + "/logs", withIntermediateDirectories: false)
        try box.link(box.homes + "/bob", to: box.victim)
        let before = box.snapshot(excludingHome: true)
        let saved = try await HomeFiles.saveLog(
            home: box.homes + "/bob", homeRoot: box.homes, user: "bob", fileName: "unit.log", owner: Self.user,
            fallbackDirectory: box.fallback, cap: 1000, chunks: Pattern(total: 10, chunk: 10))
        #expect(saved.fallbackReason?.contains("is a symbolic link") == true)
        #expect(saved.path == box.fallback + "/bob/unit.log")
        #expect(box.snapshot(excludingHome: true) == before)
    }

    @Test func savesWithTheSameNameInTheFallbackAreNumbered() async throws {
        let box = try Sandbox()
        var paths: [String] = []
        for _ in 0..<3 { paths.append(try await box.save("unit.log", Pattern(total: 10, chunk: 10)).path) }
        #expect(paths == ["unit.log", "unit-1.log", "unit-2.log"].map { box.fallback + "/alice/" + $0 })
    }

    /// Two sessions ended within one second name their logs alike: both stay in the home.
    @Test func savesWithTheSameNameInTheHomeAreNumbered() async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        var saved: [SavedLog] = []
        for _ in 0..<3 { saved.append(try await box.save("unit.log", Pattern(total: 10, chunk: 10))) }
        #expect(saved.map(\.path) == ["unit.log", "unit-1.log", "unit-2.log"].map { box.home + "/logs/" + $0 })
        #expect(saved.allSatisfy { $0.fallbackReason == nil })
        #expect(HomeFiles.numbered("plain", 3) == "plain-3" && HomeFiles.numbered(".hidden", 1) == ".hidden-1")
    }

    /// Saves within one second share their time and reuse numbers pruning freed: the log just
    /// saved is never the one pruned.
    @Test func theFallbackKeepsOnlyAUsersNewestLogs() async throws {
        let box = try Sandbox()
        for _ in 0..<(HomeFiles.fallbackLogsKept + 4) {
            let saved = try await box.save("unit.log", Pattern(total: 10, chunk: 10))
            #expect(try box.contents(saved.path) == Pattern(total: 10, chunk: 10).bytes(0..<10), "\(saved.path) was pruned")
        }
        let kept = try FileManager.default.contentsOfDirectory(atPath: box.fallback + "/alice")
        #expect(kept.count == HomeFiles.fallbackLogsKept)
    }

    /// A link planted at the next free number is not written through either.
    @Test func aLinkAmongTheNumberedNamesSendsTheLogToTheFallback() async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        try Data("earlier".utf8).write(to: URL(fileURLWithPath: box.home + "/logs/unit.log"))
        try box.link(box.home + "/logs/unit-1.log", to: box.victim + "/planted.log")
        let before = box.snapshot(excludingHome: true)
        let saved = try await box.save("unit.log", Pattern(total: 100, chunk: 10))
        #expect(saved.fallbackReason?.contains("\(box.home)/logs/unit-1.log is a symbolic link") == true)
        try box.expectInFallback(saved)
        #expect(box.snapshot(excludingHome: true) == before)
        #expect(try box.contents(box.home + "/logs/unit.log") == Data("earlier".utf8))
    }

    /// A root unit's log (where the host allows root units) is the home owner's to read.
    @Test func aLogWithNoAccountBelongsToTheHomesOwner() async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        let saved = try await HomeFiles.saveLog(
            home: box.home, homeRoot: box.homes, user: "alice", fileName: "root.log", owner: nil,
            fallbackDirectory: box.fallback, cap: 1000, chunks: Pattern(total: 10, chunk: 10))
        #expect(box.entry(saved.path)?.owner == Self.user)
    }

    /// The engine mounts a home by its path: a folder on it that someone else could change would
    /// let them swap the home for a link before the mount.
    @Test func aHomeInAFolderOthersCanChangeIsRefused() throws {
        let box = try Sandbox()
        _ = try box.makeDirectory("homes/team", owner: Self.user, mode: 0o755)
        _ = try box.makeDirectory("homes/open", owner: UnixAccount(uid: 0, gid: 0), mode: 0o777)
        _ = try box.makeDirectory("homes/sticky", owner: UnixAccount(uid: 0, gid: 0), mode: 0o1777)
        _ = try box.makeDirectory("homes/sticky/bob", owner: Self.user, mode: 0o755)
        for home in ["team/bob", "open/bob", "sticky/bob/carol"].map({ box.homes + "/" + $0 }) {
            let error = #expect(throws: AgentError.self) { try HomeFiles.prepare(home: home, homeRoot: box.homes, account: Self.account) }
            #expect(error?.description.contains("homes must lie in folders only root can change") == true, "\(home)")
        }
        // In a sticky folder, others cannot rename what root owns.
        _ = try box.makeDirectory("homes/sticky/dave", owner: UnixAccount(uid: 0, gid: 0), mode: 0o755)
        #expect(try HomeFiles.prepare(home: box.homes + "/sticky/dave", homeRoot: box.homes, account: Self.account) == Self.account)
    }

    @Test(arguments: ["", ".", "..", "../x", "a/b"])
    func fileNamesThatStepElsewhereAreRefused(name: String) async throws {
        let box = try Sandbox()
        await #expect(throws: AgentError.self) { try await box.save(name, Pattern(total: 10, chunk: 10)) }
    }

    /// A user flips `logs` between a directory and a link to a victim directory, whose entries
    /// are links named like the logs to a victim file, as fast as a thread can, while logs are saved.
    @Test func flippingLogsWhileLogsAreSavedReachesNothingOutside() async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        try box.link(box.home + "/logs.flip", to: box.victim)
        for index in stride(from: 0, to: 300, by: 2) { try box.link(box.victim + "/unit-\(index).log", to: box.secret) }
        let before = box.snapshot(excludingHome: true)
        let flipper = try Flipper(box.home + "/logs", box.home + "/logs.flip")

        var saved: [SavedLog] = []
        // At least 300 saves, and more on a loaded machine until the race has shown both sides.
        var index = 0
        while index < 300 || (index < 3000 && !(saved.contains { $0.fallbackReason == nil } && saved.contains { $0.fallbackReason != nil })) {
            saved.append(try await box.save("unit-\(index).log", Pattern(total: 64, chunk: 32)))
            index += 1
        }
        let flips = flipper.stop()

        #expect(box.snapshot(excludingHome: true) == before)
        #expect(box.owned(by: Self.user, in: box.root, skipping: [box.home]).isEmpty)
        // The log directory ends under one of the two names; the other is the link, not looked through.
        let logs = [box.home + "/logs", box.home + "/logs.flip"].first { box.entry($0)?.isLink == false }
        for log in saved where log.fallbackReason == nil {
            let name = URL(fileURLWithPath: log.path).lastPathComponent
            #expect(logs.flatMap { box.entry($0 + "/" + name) } == Entry(owner: Self.user, mode: S_IFREG | 0o640, size: 64))
        }
        // Some saves met the directory and some the link: the race was live.
        #expect(flips > 0)
        #expect(saved.contains { $0.fallbackReason == nil } && saved.contains { $0.fallbackReason != nil })
    }

    // MARK: - The cap

    @Test(arguments: [
        (total: 5 * 1024 * 1024, chunk: 1024, cap: 1024 * 1024),
        (total: 1010, chunk: 7, cap: 1000),  // the tail moves onto itself, towards the end
        (total: 100_000, chunk: 333, cap: 1000),
        (total: 300_000, chunk: 70_000, cap: 65_537),
        (total: 2001, chunk: 2001, cap: 1000),
        (total: 2000, chunk: 10, cap: 1000),  // exactly twice the cap: no cut until the end
    ])
    func aLogOverTheCapKeepsItsNewestBytesBehindAMarker(total: Int, chunk: Int, cap: Int) async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        let pattern = Pattern(total: total, chunk: chunk)
        let saved = try await box.save("unit.log", pattern, cap: cap)
        let marker = Data("[berth: \(total - cap) earlier bytes dropped]\n".utf8)
        #expect(saved.bytes == cap && saved.droppedBytes == total - cap)
        #expect(try box.contents(saved.path) == marker + pattern.bytes(total - cap..<total))
    }

    @Test(arguments: [(total: 999, cap: 1000), (total: 1000, cap: 1000), (total: 0, cap: 1)])
    func aLogWithinTheCapIsWrittenWhole(total: Int, cap: Int) async throws {
        let box = try Sandbox()
        _ = try HomeFiles.prepare(home: box.home, homeRoot: box.homes, account: nil)
        let pattern = Pattern(total: total, chunk: 10)
        let saved = try await box.save("unit.log", pattern, cap: cap)
        #expect(saved.bytes == total && saved.droppedBytes == 0)
        #expect(try box.contents(saved.path) == pattern.bytes(0..<total))
    }
}

// MARK: - Helpers

/// What an attacker could change about an entry: who owns it and its type and mode.
struct Entry: Equatable {
    var owner: UnixAccount
    var mode: mode_t
    var size = 0
    var isLink: Bool { mode & S_IFMT == S_IFLNK }

    init(owner: UnixAccount, mode: mode_t, size: Int = 0) {
        self.owner = owner
        self.mode = mode
        self.size = size
    }

    /// Compared without size for directories, whose size the file system chooses.
    static func == (left: Entry, right: Entry) -> Bool {
        left.owner == right.owner && left.mode == right.mode && (left.mode & S_IFMT == S_IFDIR || left.size == right.size)
    }
}

/// A scratch tree for one test, removed afterwards: `homes/` (the home root, root's),
/// `homes/alice` (4242:4242), `victim/` (root's) holding `secret`, and `fallback/` (made by the agent).
final class Sandbox {
    let root: String
    var homes: String { root + "/homes" }
    var home: String { homes + "/alice" }
    var victim: String { root + "/victim" }
    var secret: String { victim + "/secret" }
    var fallback: String { root + "/fallback" }

    /// In a new folder of `base` (/tmp by default: a small disk of a test's own, say).
    init(under base: String = "/tmp") throws {
        var template = Array("\(base)/berth-homefiles-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw AgentError("mkdtemp: \(errno)") }
        root = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        chmod(root, 0o755)
        _ = try makeDirectory("homes", owner: UnixAccount(uid: 0, gid: 0), mode: 0o755)
        _ = try makeDirectory("homes/alice", owner: HomeFilesTests.user, mode: 0o750)
        _ = try makeDirectory("victim", owner: UnixAccount(uid: 0, gid: 0), mode: 0o755)
        try Data("root's secret\n".utf8).write(to: URL(fileURLWithPath: secret))
        chmod(secret, 0o600)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func makeDirectory(_ name: String, owner: UnixAccount, mode: mode_t) throws -> String {
        let path = root + "/" + name
        guard mkdir(path, mode) == 0, chown(path, owner.uid, owner.gid) == 0, chmod(path, mode) == 0 else {
            throw AgentError("cannot make \(path): \(errno)")
        }
        return path
    }

    func link(_ path: String, to target: String) throws {
        guard symlink(target, path) == 0 else { throw AgentError("cannot link \(path): \(errno)") }
    }

    func entry(_ path: String) -> Entry? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return Entry(owner: UnixAccount(uid: info.st_uid, gid: info.st_gid), mode: info.st_mode, size: Int(info.st_size))
    }

    func contents(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// Every entry under the sandbox but the fallback (and the home), with the secret's contents:
    /// all that an attack through the home could change.
    func snapshot(excludingHome: Bool) -> Snapshot {
        var entries: [String: Entry] = [:]
        walk(root, skipping: excludingHome ? [home, fallback] : [fallback]) { entries[$0] = $1 }
        return Snapshot(entries: entries, secret: try? contents(secret))
    }

    struct Snapshot: Equatable {
        var entries: [String: Entry]
        var secret: Data?
    }

    /// Entries owned by `account` under `path`, not looking inside `skipping`.
    func owned(by account: UnixAccount, in path: String, skipping: [String]) -> [String] {
        var found: [String] = []
        walk(path, skipping: skipping) { if $1.owner.uid == account.uid || $1.owner.gid == account.gid { found.append($0) } }
        return found
    }

    private func walk(_ path: String, skipping: [String], _ visit: (String, Entry) -> Void) {
        guard !skipping.contains(path), let entry = entry(path) else { return }
        visit(path, entry)
        guard entry.mode & S_IFMT == S_IFDIR else { return }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            walk(path + "/" + name, skipping: skipping, visit)
        }
    }

    func save(_ name: String, _ chunks: Pattern, cap: Int = 1 << 20) async throws -> SavedLog {
        try await HomeFiles.saveLog(
            home: home, homeRoot: homes, user: "alice", fileName: name, owner: HomeFilesTests.user,
            fallbackDirectory: fallback, cap: cap, chunks: chunks)
    }

    /// A log in the fallback is root's, in a directory of root's only, whole.
    func expectInFallback(_ saved: SavedLog) throws {
        #expect(saved.path.hasPrefix(fallback + "/alice/"))
        #expect(entry(fallback + "/alice") == Entry(owner: UnixAccount(uid: 0, gid: 0), mode: S_IFDIR | 0o700))
        #expect(entry(saved.path) == Entry(owner: UnixAccount(uid: 0, gid: 0), mode: S_IFREG | 0o640, size: saved.bytes))
    }
}

/// `total` bytes in chunks of `chunk`, made one chunk at a time so that nothing holds the whole
/// log; the byte at offset `n` is `n % 251`, so a misplaced piece shows.
struct Pattern: AsyncSequence, AsyncIteratorProtocol {
    let total: Int
    let chunk: Int
    var offset = 0

    init(total: Int, chunk: Int) {
        self.total = total
        self.chunk = chunk
    }

    func bytes(_ range: Range<Int>) -> Data { Data(range.map { UInt8($0 % 251) }) }

    func makeAsyncIterator() -> Pattern { self }

    mutating func next() async -> Data? {
        guard offset < total else { return nil }
        let end = Swift.min(offset + chunk, total)
        defer { offset = end }
        return bytes(offset..<end)
    }
}

/// A thread (not a task: it must run while the test's task is busy) that swaps two entries as
/// fast as it can with renameat2's RENAME_EXCHANGE, so one name is always there, a directory or a link.
final class Flipper: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let flips = Atomic<Int>(0)
    private let done = DispatchSemaphore(value: 0)

    typealias Renameat2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32

    init(_ first: String, _ second: String) throws {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "renameat2") else { throw AgentError("no renameat2 in this libc") }
        let exchange = unsafeBitCast(symbol, to: Renameat2.self)
        Thread.detachNewThread { [self] in
            while !stopping.load(ordering: .relaxed) {
                // RENAME_EXCHANGE: the kernel swaps both names at once.
                if exchange(AT_FDCWD, first, AT_FDCWD, second, 2) == 0 { flips.add(1, ordering: .relaxed) }
            }
            done.signal()
        }
    }

    /// Stops the thread and returns how many swaps it made.
    func stop() -> Int {
        stopping.store(true, ordering: .relaxed)
        done.wait()
        return flips.load(ordering: .relaxed)
    }
}
