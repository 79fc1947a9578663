import BerthAPI
import BerthTar
import Foundation
import Testing

@testable import Agent

/// `berth cp` into a home a hostile user controls: whatever links the user planted, nothing
/// outside the home is written, and what is written is the user's.
@Suite struct HomeArchiveTests {
    static func archive(_ entries: [(TarEntry, [UInt8])]) -> [Data] {
        var bytes: [UInt8] = []
        for (entry, contents) in entries {
            bytes += TarWriter.header(for: entry) + contents + TarWriter.padding(for: contents.count)
        }
        bytes += TarWriter.end
        // In uneven pieces, as a network delivers them.
        return stride(from: 0, to: bytes.count, by: 777).map { Data(bytes[$0..<min($0 + 777, bytes.count)]) }
    }

    static let tree: [(TarEntry, [UInt8])] = [
        (TarEntry(path: "tree", kind: .directory, mode: 0o750, modified: 1_700_000_000), []),
        (TarEntry(path: "tree/a.txt", kind: .file, mode: 0o4755, size: 5, modified: 1_700_000_100), Array("hello".utf8)),
        (TarEntry(path: "tree/sub/b.bin", kind: .file, mode: 0o600, size: 2000, modified: 1_700_000_200), (0..<2000).map { UInt8($0 % 256) }),
        (TarEntry(path: "tree/up", kind: .symlink(target: "../../etc"), mode: 0o777, modified: 1_700_000_300), []),
    ]

    func unpack(_ box: Sandbox, _ chunks: [Data], to path: String) async throws -> Int {
        let home = try SafeDirectory.trusted(box.home)
        return try await HomeArchive.unpack(chunks.async, to: path, home: home, account: HomeFilesTests.user)
    }

    @Test func aTreeLandsInAFolderWithItsModesTimesAndTheUsersOwnership() async throws {
        let box = try Sandbox()
        _ = try box.makeDirectory("homes/alice/data", owner: HomeFilesTests.user, mode: 0o755)
        #expect(try await unpack(box, Self.archive(Self.tree), to: "/app/data") == 4)
        let file = box.home + "/data/tree/a.txt"
        #expect(try box.contents(file) == Data("hello".utf8))
        // The set-user-ID bit is dropped: a copy never makes a program that runs as someone else.
        #expect(box.entry(file) == Entry(owner: HomeFilesTests.user, mode: S_IFREG | 0o755, size: 5))
        #expect(box.entry(box.home + "/data/tree/sub/b.bin") == Entry(owner: HomeFilesTests.user, mode: S_IFREG | 0o600, size: 2000))
        #expect(box.entry(box.home + "/data/tree")?.owner == HomeFilesTests.user)
        var info = stat()
        lstat(file, &info)
        #expect(info.st_mtim.tv_sec == 1_700_000_100)
        lstat(box.home + "/data/tree", &info)
        #expect(info.st_mtim.tv_sec == 1_700_000_000)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: box.home + "/data/tree/up") == "../../etc")
    }

    @Test func aNewNameIsTakenByTheSingleTreeAsDockerCpDoes() async throws {
        let box = try Sandbox()
        _ = try await unpack(box, Self.archive(Self.tree), to: "/app/copy")
        #expect(try box.contents(box.home + "/copy/a.txt") == Data("hello".utf8))
    }

    /// A file named as the destination is replaced, as `docker cp` does, by a rename: a hard link
    /// to root's file named so is replaced too, never written into.
    @Test func aFileNamedAsTheDestinationIsReplacedNotWrittenInto() async throws {
        let box = try Sandbox()
        _ = try box.makeDirectory("homes/alice/data", owner: HomeFilesTests.user, mode: 0o755)
        let one = Self.archive([(TarEntry(path: "big.bin", kind: .file, mode: 0o644, size: 3, modified: 0), Array("one".utf8))])
        let two = Self.archive([(TarEntry(path: "big.bin", kind: .file, mode: 0o644, size: 3, modified: 0), Array("two".utf8))])
        _ = try await unpack(box, one, to: "/app/data/copy.bin")
        _ = try await unpack(box, two, to: "/app/data/copy.bin")
        #expect(try box.contents(box.home + "/data/copy.bin") == Data("two".utf8))
        let before = box.snapshot(excludingHome: true)
        if link(box.secret, box.home + "/data/hard.bin") == 0 {
            _ = try await unpack(box, two, to: "/app/data/hard.bin")
            #expect(try box.contents(box.home + "/data/hard.bin") == Data("two".utf8))
            #expect(box.snapshot(excludingHome: true) == before)
        }
    }

    /// Root writes only where the unit's account could: a root-owned folder in the home gets
    /// nothing.
    @Test func aFolderTheAccountCannotWriteGetsNothing() async throws {
        let box = try Sandbox()
        _ = try box.makeDirectory("homes/alice/rootsdir", owner: UnixAccount(uid: 0, gid: 0), mode: 0o755)
        let error = await #expect(throws: AgentError.self) {
            try await unpack(box, Self.archive([(TarEntry(path: "x", kind: .file, mode: 0o644, size: 1, modified: 0), [1])]), to: "/app/rootsdir")
        }
        #expect(error?.description.contains("cannot be written by the unit's account") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/rootsdir/x"))
    }

    /// A link the user planted on the way, or as the file's own name, is never written through.
    @Test func plantedLinksAreNeitherFollowedNorWrittenThrough() async throws {
        let box = try Sandbox()
        try box.link(box.home + "/out", to: box.victim)
        let before = box.snapshot(excludingHome: true)
        let through = await #expect(throws: AgentError.self) {
            try await unpack(box, Self.archive([(TarEntry(path: "secret", kind: .file, mode: 0o644, size: 3, modified: 0), Array("own".utf8))]), to: "/app/out")
        }
        #expect(through?.description.contains("/app/out: is a symbolic link") == true, "\(String(describing: through))")
        let onTheWay = await #expect(throws: AgentError.self) {
            try await unpack(box, Self.archive([(TarEntry(path: "out/secret", kind: .file, mode: 0o644, size: 3, modified: 0), Array("own".utf8))]), to: "/app")
        }
        #expect(onTheWay?.description.contains("is a symbolic link") == true, "\(String(describing: onTheWay))")
        // The file's own name a link to root's secret: the name is replaced, the secret untouched.
        try box.link(box.home + "/secret", to: box.secret)
        _ = try await unpack(box, Self.archive([(TarEntry(path: "secret", kind: .file, mode: 0o644, size: 3, modified: 0), Array("own".utf8))]), to: "/app")
        #expect(box.entry(box.home + "/secret")?.isLink == false)
        #expect(box.snapshot(excludingHome: true) == before)
        // A hard link to root's secret, made where the kernel allows it: renamed over, not written into.
        if link(box.secret, box.home + "/hard") == 0 {
            _ = try await unpack(box, Self.archive([(TarEntry(path: "hard", kind: .file, mode: 0o644, size: 3, modified: 0), Array("own".utf8))]), to: "/app")
            #expect(box.snapshot(excludingHome: true) == before)
        }
    }

    @Test(arguments: ["/share/x", "/etc", "/app/../etc", "/app/./data", "/apps", "app/data"])
    func pathsOutsideAppAreRefused(path: String) async throws {
        let box = try Sandbox()
        let error = await #expect(throws: AgentError.self) { try await unpack(box, Self.archive(Self.tree), to: path) }
        #expect(error?.description.hasPrefix(path) == true, "\(String(describing: error))")
    }

    @Test(arguments: ["../escape", "/etc/passwd", "a/../../b", "./."])
    func membersThatStepOutAreRefused(member: String) async throws {
        let box = try Sandbox()
        let before = box.snapshot(excludingHome: true)
        let error = await #expect(throws: AgentError.self) {
            try await unpack(box, Self.archive([(TarEntry(path: member, kind: .file, mode: 0o644, size: 1, modified: 0), [1])]), to: "/app")
        }
        #expect(error?.description.contains("is absolute or has . or ..") == true, "\(String(describing: error))")
        #expect(box.snapshot(excludingHome: true) == before)
    }

    @Test func devicesAndHardLinksAreRefused() async throws {
        let box = try Sandbox()
        for flag in [UInt8(ascii: "1"), UInt8(ascii: "3"), UInt8(ascii: "6")] {
            let error = await #expect(throws: AgentError.self) {
                try await unpack(box, Self.archive([(TarEntry(path: "x", kind: .other(flag), mode: 0o644, modified: 0), [])]), to: "/app")
            }
            #expect(error?.description.contains("only files, folders and links are copied") == true)
        }
    }
}

extension Array where Element == Data {
    /// The pieces as the async sequence a request body is.
    var async: AsyncStream<Data> {
        AsyncStream { continuation in
            for piece in self { continuation.yield(piece) }
            continuation.finish()
        }
    }
}

/// `berth cp` out of a home: the same tree back, links as links, nothing outside reached.
@Suite struct HomeArchivePackTests {
    func pack(_ box: Sandbox, _ path: String) async throws -> [(TarEntry, [UInt8])] {
        let home = try SafeDirectory.trusted(box.home)
        var bytes: [UInt8] = []
        try await HomeArchive.pack(path, home: home, account: HomeFilesTests.user) { bytes += $0 }
        var reader = TarReader()
        var read: [(TarEntry, [UInt8])] = []
        try bytes.withUnsafeBytes { chunk in
            try reader.feed(chunk) { event in
                switch event {
                case .begin(let entry): read.append((entry, []))
                case .data(let data): read[read.count - 1].1 += data
                case .end: break
                }
            }
        }
        #expect(reader.isFinished)
        return read
    }

    @Test func whatWasUnpackedPacksBack() async throws {
        let box = try Sandbox()
        let home = try SafeDirectory.trusted(box.home)
        _ = try await HomeArchive.unpack(HomeArchiveTests.archive(HomeArchiveTests.tree).async, to: "/app", home: home, account: HomeFilesTests.user)
        let packed = try await pack(box, "/app/tree")
        #expect(packed.map(\.0.path) == ["tree", "tree/a.txt", "tree/sub", "tree/sub/b.bin", "tree/up"])
        #expect(packed.first { $0.0.path == "tree/sub/b.bin" }?.1 == HomeArchiveTests.tree[2].1)
        #expect(packed.first { $0.0.path == "tree/up" }?.0.kind == .symlink(target: "../../etc"))
        #expect(packed.first { $0.0.path == "tree/a.txt" }?.0.modified == 1_700_000_100)
    }

    @Test func linksOnTheWayAreRefusedAndLinksInsideArePackedAsLinks() async throws {
        let box = try Sandbox()
        try box.link(box.home + "/out", to: box.victim)
        let error = await #expect(throws: AgentError.self) { try await pack(box, "/app/out/secret") }
        #expect(error?.description.contains("is a symbolic link") == true, "\(String(describing: error))")
        let packed = try await pack(box, "/app/out")
        #expect(packed.count == 1 && packed[0].0.kind == .symlink(target: box.victim))
        #expect(!packed.contains { $0.1 == Array("root's secret\n".utf8) })
    }

    /// Root packs only what the unit's account could read: a root-owned 0600 file in the home (a
    /// hard link to root's secret where the kernel allows one, or a file an admin left) and a
    /// folder the account cannot list are refused by name.
    @Test func whatTheAccountCannotReadIsNotPacked() async throws {
        let box = try Sandbox()
        try Data("admin's\n".utf8).write(to: URL(fileURLWithPath: box.home + "/admin.txt"))
        chmod(box.home + "/admin.txt", 0o600)
        let file = await #expect(throws: AgentError.self) { try await pack(box, "/app/admin.txt") }
        #expect(file?.description.contains("cannot be read by the unit's account") == true, "\(String(describing: file))")
        _ = try box.makeDirectory("homes/alice/closed", owner: UnixAccount(uid: 0, gid: 0), mode: 0o700)
        let folder = await #expect(throws: AgentError.self) { try await pack(box, "/app/closed") }
        #expect(folder?.description.contains("cannot be read by the unit's account") == true, "\(String(describing: folder))")
        if link(box.secret, box.home + "/hard") == 0 {
            await #expect(throws: AgentError.self) { try await pack(box, "/app/hard") }
        }
    }

    /// A folder of more entries than a listing holds is refused by name, not listed whole in
    /// root's memory.
    @Test func aFolderOfTooManyEntriesIsRefused() async throws {
        let box = try Sandbox()
        let folder = box.home + "/many"
        mkdir(folder, 0o755)
        chown(folder, HomeFilesTests.user.uid, HomeFilesTests.user.gid)
        for index in 0...SafeDirectory.maxEntries { close(open(folder + "/\(index)", O_CREAT | O_WRONLY, 0o644)) }
        let error = await #expect(throws: AgentError.self) { try await pack(box, "/app/many") }
        #expect(error?.description.contains("holds more than 100000 entries") == true, "\(String(describing: error))")
    }

    /// A folder nested deeper than the packer goes is refused, not followed down for ever.
    @Test func aTreeTooDeepIsRefused() async throws {
        let box = try Sandbox()
        var path = box.home + "/deep"
        for _ in 0...HomeArchive.Packer.maxDepth {
            mkdir(path, 0o755)
            chown(path, HomeFilesTests.user.uid, HomeFilesTests.user.gid)
            path += "/d"
        }
        let error = await #expect(throws: AgentError.self) { try await pack(box, "/app/deep") }
        #expect(error?.description.contains("folders deep") == true, "\(String(describing: error))")
    }
}

@Suite struct HomeArchiveStreamTests {
    /// An archive cut short (no end blocks) is not taken for whole; links made by a copy belong
    /// to the account; the same folder a thousand times over is one folder.
    @Test func aCutArchiveFailsAndLinksAndFoldersBelongToTheAccount() async throws {
        let box = try Sandbox()
        let home = try SafeDirectory.trusted(box.home)
        var whole = HomeArchiveTests.archive(HomeArchiveTests.tree).flatMap { Array($0) }
        let cut = Array(whole.dropLast(1024))
        await #expect(throws: AgentError.self) {
            _ = try await HomeArchive.unpack([Data(cut)].async, to: "/app", home: home, account: HomeFilesTests.user)
        }
        var repeated: [UInt8] = []
        for _ in 0..<1000 { repeated += TarWriter.header(for: TarEntry(path: "same", kind: .directory, mode: 0o755, modified: 1_700_000_000)) }
        whole = repeated + whole
        let written = try await HomeArchive.unpack([Data(whole)].async, to: "/app", home: home, account: HomeFilesTests.user)
        #expect(written == 5)
        #expect(box.entry(box.home + "/tree/up")?.owner == HomeFilesTests.user)
        var info = stat()
        lstat(box.home + "/same", &info)
        #expect(info.st_mtim.tv_sec == 1_700_000_000)
    }

    /// A stream of folders cannot grow root's memory without bound: folders past the budget for
    /// remembered times are still made, with the time of their making.
    @Test func foldersPastTheTimesBudgetAreMadeWithoutTheirTimes() throws {
        let box = try Sandbox()
        let home = try SafeDirectory.trusted(box.home)
        var writer = HomeArchive.Unpacker(base: home, rename: nil, account: HomeFilesTests.user, shown: "/app", memory: CopyMemory(perHome: 400), home: box.home)
        var reader = TarReader()
        var stream: [UInt8] = []
        for index in 0..<10 { stream += TarWriter.header(for: TarEntry(path: "folder\(index)", kind: .directory, mode: 0o755, modified: 1_600_000_000)) }
        stream += TarWriter.end
        try stream.withUnsafeBytes { bytes in try reader.feed(bytes) { try writer.take($0) } }
        try reader.finish()
        try writer.finish()
        let times = (0..<10).map { index -> Int in
            var info = stat()
            lstat(box.home + "/folder\(index)", &info)
            return info.st_mtim.tv_sec
        }
        #expect(times.first == 1_600_000_000)
        #expect(times.last! > 1_600_000_000, "the budget of 400 bytes kept every time: \(times)")
        #expect(writer.written == 10)
    }

    /// Deeper than a pack goes is refused before a folder is made for it.
    @Test func aMemberTooDeepIsRefused() async throws {
        let box = try Sandbox()
        let home = try SafeDirectory.trusted(box.home)
        let deep = Array(repeating: "d", count: HomeArchive.Packer.maxDepth + 1).joined(separator: "/")
        let stream = TarWriter.header(for: TarEntry(path: deep, kind: .directory, mode: 0o755, modified: 1)) + TarWriter.end
        await #expect(throws: AgentError.self) {
            _ = try await HomeArchive.unpack([Data(stream)].async, to: "/app", home: home, account: HomeFilesTests.user)
        }
        #expect(box.entry(box.home + "/d") == nil)
    }
}
