import BerthAPI
import BerthTar
import Foundation
import Testing

@testable import Agent

/// Root writes into homes a hostile user controls, on a disk that user can fill: what root writes
/// there stops where the room left to users ends, so the blocks the disk keeps for root stay free
/// for the host's own services; and what root holds in memory for one home's copies is bounded.
@Suite(.serialized) struct HomeLimitsTests {
    // MARK: - The disk's blocks kept for root

    /// A copy of many folders into a home whose disk the user has all but filled.
    @Test(.enabled(if: getuid() == 0)) func aCopyOfFoldersStopsWhereTheUsersRoomEnds() async throws {
        let disk = try SmallDisk()
        let box = try Sandbox(under: disk.mountPoint)
        try disk.leaveUsers(64 * 1024)
        let folders = (0..<500).map { (TarEntry(path: "f\($0)", kind: .directory, mode: 0o755, modified: 1_700_000_000), [UInt8]()) }
        await #expect {
            try await HomeArchive.unpack(HomeArchiveTests.archive(folders).async, to: "/app", home: try SafeDirectory.trusted(box.home), account: HomeFilesTests.user)
        } throws: { "\($0)".contains("no room left for f") && "\($0)".contains("kept for root") }
        #expect(disk.reservedForRootIsFree)
    }

    /// Links take a block each too.
    @Test(.enabled(if: getuid() == 0)) func aCopyOfLinksStopsWhereTheUsersRoomEnds() async throws {
        let disk = try SmallDisk()
        let box = try Sandbox(under: disk.mountPoint)
        try disk.leaveUsers(32 * 1024)
        // Targets too long to fit in the inode: each takes a block of its own.
        let target = String(repeating: "t", count: 200)
        let links = (0..<500).map { (TarEntry(path: "l\($0)", kind: .symlink(target: target), mode: 0o777, modified: 1_700_000_000), [UInt8]()) }
        await #expect {
            try await HomeArchive.unpack(HomeArchiveTests.archive(links).async, to: "/app", home: try SafeDirectory.trusted(box.home), account: HomeFilesTests.user)
        } throws: { "\($0)".contains("no room left for l") }
        #expect(disk.reservedForRootIsFree)
    }

    /// Empty files take no data block but grow their folder: many of them with long names need
    /// room too.
    @Test(.enabled(if: getuid() == 0)) func aCopyOfEmptyFilesStopsWhereTheUsersRoomEnds() async throws {
        let disk = try SmallDisk()
        let box = try Sandbox(under: disk.mountPoint)
        try disk.leaveUsers(16 * 1024)
        let name = String(repeating: "n", count: 240)
        let files = [(TarEntry(path: "many", kind: .directory, mode: 0o755, modified: 1_700_000_000), [UInt8]())]
            + (0..<3000).map { (TarEntry(path: "many/\(name)\($0)", kind: .file, mode: 0o644, size: 0, modified: 1_700_000_000), [UInt8]()) }
        await #expect {
            try await HomeArchive.unpack(HomeArchiveTests.archive(files).async, to: "/app", home: try SafeDirectory.trusted(box.home), account: HomeFilesTests.user)
        } throws: { "\($0)".contains("no room left for many/") }
        #expect(disk.reservedForRootIsFree)
    }

    /// Two copies whose files each fit when they begin, written piece by piece in turn: together
    /// they do not get past the room left to users.
    @Test(.enabled(if: getuid() == 0)) func copiesAtOnceCannotBothSpendTheSameRoom() throws {
        let disk = try SmallDisk()
        let box = try Sandbox(under: disk.mountPoint)
        try disk.leaveUsers(600 * 1024)
        let home = try SafeDirectory.trusted(box.home)
        let size = 500 * 1024
        var writers = ["a", "b"].map { _ in HomeArchive.Unpacker(base: home, rename: nil, account: HomeFilesTests.user, shown: "/app", home: box.home) }
        var readers = [TarReader(), TarReader()]
        let streams = ["a", "b"].map { name in
            TarWriter.header(for: TarEntry(path: name, kind: .file, mode: 0o644, size: size, modified: 1_700_000_000))
                + [UInt8](repeating: 7, count: size) + TarWriter.padding(for: size) + TarWriter.end
        }
        var failures: [String] = []
        var done = [false, false]
        // Both headers first (each file fits as it begins), then the data in turns of 16 KB.
        var offsets = [0, 0]
        var piece = 512
        while done.contains(false) {
            for index in 0..<2 where !done[index] {
                let end = min(offsets[index] + piece, streams[index].count)
                do {
                    try streams[index][offsets[index]..<end].withUnsafeBytes { bytes in
                        try readers[index].feed(bytes) { try writers[index].take($0) }
                    }
                    offsets[index] = end
                    if end == streams[index].count {
                        try readers[index].finish()
                        try writers[index].finish()
                        done[index] = true
                    }
                } catch {
                    failures.append("\(error)")
                    try? writers[index].finish()
                    done[index] = true
                }
            }
            piece = 16 * 1024
        }
        #expect(failures.count == 1)
        #expect(failures.first?.contains("no room left for") == true)
        #expect(disk.reservedForRootIsFree)
    }

    /// A unit that wrote more log than the user's room holds: the saved log stops there, says so
    /// at its end, and the answer counts what was not saved.
    @Test(.enabled(if: getuid() == 0)) func aSavedLogStopsWhereTheUsersRoomEnds() async throws {
        let disk = try SmallDisk()
        let box = try Sandbox(under: disk.mountPoint)
        _ = try box.makeDirectory("homes/alice/logs", owner: HomeFilesTests.user, mode: 0o755)
        try disk.leaveUsers(1 << 20)
        let chunk = Data(repeating: UInt8(ascii: "x"), count: 64 * 1024)
        let saved = try await HomeFiles.saveLog(
            home: box.home, homeRoot: box.homes, user: "alice", fileName: "unit.log", owner: HomeFilesTests.user,
            fallbackDirectory: box.fallback, cap: 16 << 20, chunks: Array(repeating: chunk, count: 64).async)
        #expect(saved.fallbackReason == nil)
        #expect(saved.unsavedBytes > 0)
        #expect(saved.bytes + saved.unsavedBytes >= 64 * chunk.count)
        #expect(disk.reservedForRootIsFree)
        let text = String(decoding: try box.contents(saved.path).suffix(200), as: UTF8.self)
        #expect(text.contains("bytes were not saved: the disk has no room left for users"))
    }

    // MARK: - Root's memory for one home's copies

    /// One folder listing more names than the home's share is refused, and nothing stays held.
    @Test func aFolderOfMoreNamesThanTheHomesShareIsRefused() async throws {
        let box = try Sandbox()
        let folder = try box.makeDirectory("homes/alice/many", owner: HomeFilesTests.user, mode: 0o755)
        for index in 0..<200 { FileManager.default.createFile(atPath: folder + "/name-\(index)-abcdefghijklmnopqrstuvwxyz", contents: nil) }
        let memory = CopyMemory(perHome: 8_000)
        await #expect {
            try await HomeArchive.pack("/app/many", home: try SafeDirectory.trusted(box.home), account: HomeFilesTests.user, memory: memory) { _ in }
        } throws: { "\($0)".contains("hold more names than the agent keeps for one home") }
        #expect(memory.room(for: box.home) == 8_000)
    }

    /// Copies out that stall (a reader that stops reading) hold their folders' names: together
    /// they hold no more than the home's share, and another home's copies are not refused for it.
    @Test func stalledCopiesOutHoldNoMoreThanTheHomesShare() async throws {
        let box = try Sandbox()
        let bob = try box.makeDirectory("homes/bob", owner: HomeFilesTests.user, mode: 0o750)
        // Four levels of 40 names each, a file of 300 KB at the bottom, sorted first everywhere:
        // the walk is four folders deep, holding four listings, when its first piece goes out.
        var level = try box.makeDirectory("homes/alice/deep", owner: HomeFilesTests.user, mode: 0o755)
        for depth in 0..<4 {
            for index in 0..<40 { FileManager.default.createFile(atPath: level + "/name-\(index)-abcdefghijklmnopqrstuvwxyz", contents: nil) }
            if depth < 3 {
                level += "/0sub"
                mkdir(level, 0o755)
            }
        }
        FileManager.default.createFile(atPath: level + "/0big", contents: Data(count: 300 * 1024))
        for home in [box.home, bob] {
            try FileManager.default.createDirectory(atPath: home + "/wide", withIntermediateDirectories: true)
            for index in 0..<100 { FileManager.default.createFile(atPath: home + "/wide/name-\(index)-abcdefghijklmnopqrstuvwxyz", contents: nil) }
        }
        let memory = CopyMemory(perHome: 20_000)
        let gate = Gate()
        let alice = box.home
        let stalled = Task { [memory, gate] in
            try await HomeArchive.pack("/app/deep", home: try SafeDirectory.trusted(alice), account: HomeFilesTests.user, memory: memory) { _ in
                await gate.wait()
            }
        }
        for _ in 0..<500 where memory.room(for: box.home) == 20_000 { try await Task.sleep(for: .milliseconds(10)) }
        let held = 20_000 - memory.room(for: box.home)
        #expect(held > 4 * 40 * 60)
        // The same home's next copy would go past the share: refused, in one line.
        await #expect {
            try await HomeArchive.pack("/app/wide", home: try SafeDirectory.trusted(box.home), account: HomeFilesTests.user, memory: memory) { _ in }
        } throws: { "\($0)".contains("hold more names than the agent keeps for one home") }
        // Another home's copy is not.
        var copied = 0
        try await HomeArchive.pack("/app/wide", home: try SafeDirectory.trusted(bob), account: HomeFilesTests.user, memory: memory) { copied += $0.count }
        #expect(copied > 100 * 512)
        await gate.open()
        try await stalled.value
        #expect(memory.room(for: box.home) == 20_000)
        #expect(memory.room(for: bob) == 20_000)
    }
}

/// Holds whoever waits until it is opened.
actor Gate {
    private var isOpen = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        guard !isOpen else { return }
        await withCheckedContinuation { waiting.append($0) }
    }

    func open() {
        isOpen = true
        for waiter in waiting { waiter.resume() }
        waiting = []
    }
}

/// A small ext4 disk of a test's own, a quarter of it kept for root, mounted by loop.
final class SmallDisk {
    let folder: String
    var mountPoint: String { folder + "/mnt" }
    /// Free blocks users may not take: free minus available, as the disk starts.
    private(set) var reservedBlocks: UInt64 = 0

    init() throws {
        var template = Array("/tmp/berth-smalldisk-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw AgentError("mkdtemp: \(errno)") }
        folder = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        mkdir(mountPoint, 0o755)
        FileManager.default.createFile(atPath: folder + "/disk.img", contents: nil)
        guard truncate(folder + "/disk.img", 32 << 20) == 0 else { throw AgentError("truncate: \(errno)") }
        try Self.run("/usr/sbin/mkfs.ext4", ["-q", "-F", "-b", "1024", "-m", "25", folder + "/disk.img"])
        try Self.run("/usr/bin/mount", ["-o", "loop,nosuid,nodev", folder + "/disk.img", mountPoint])
        chmod(mountPoint, 0o755)
        let disk = status()
        reservedBlocks = UInt64(disk.f_bfree) - UInt64(disk.f_bavail)
    }

    deinit {
        try? Self.run("/usr/bin/umount", [mountPoint])
        try? FileManager.default.removeItem(atPath: folder)
    }

    func status() -> statvfs {
        var disk = statvfs()
        statvfs(mountPoint, &disk)
        return disk
    }

    /// Fills the disk as root with a file, until users may write only about `bytes` more.
    func leaveUsers(_ bytes: UInt64) throws {
        let disk = status()
        let available = UInt64(disk.f_bavail) * UInt64(disk.f_frsize)
        guard available > bytes else { throw AgentError("the small disk has only \(available) bytes for users") }
        let fd = open(folder + "/mnt/filler", O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw AgentError("filler: \(errno)") }
        defer { close(fd) }
        // Less a margin for the filler's own extent blocks.
        guard posix_fallocate(fd, 0, off_t(available - bytes - 16 * 1024)) == 0 else { throw AgentError("fallocate failed") }
    }

    /// No write has gone into the blocks kept for root.
    var reservedForRootIsFree: Bool {
        UInt64(status().f_bfree) >= reservedBlocks
    }

    private static func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw AgentError("\(tool) \(arguments.joined(separator: " ")) failed with status \(process.terminationStatus)") }
    }
}
