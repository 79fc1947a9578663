import BerthAPI
import Foundation
import Testing

/// `berth cp` both ways through a real login: what a user sends arrives whole, with its modes
/// and times, owned by the unit's user; nothing outside /app is reached either way.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
final class CopyTests {
    let cluster: ClusterFixture
    let local: String

    init() async throws {
        cluster = try await ClusterFixture(users: [("aaa", [ClusterFixture.hosts[0]])])
        try cluster.handHomeToUser("aaa")
        try await cluster.expectLogin("aaa")
        local = cluster.root + "/local"
        try FileManager.default.createDirectory(atPath: local, withIntermediateDirectories: true)
    }

    deinit {
        cluster.shutdown()
    }

    var unit: String { cluster.units["aaa"]![0].description }

    func md5(_ path: String) throws -> String {
        String(try DockerTestSupport.run("/usr/bin/md5sum", [path]).prefix(32))
    }

    @Test func aBigFileAndAFolderGoInAndComeBackWhole() async throws {
        // 50 MB, not all alike.
        let big = local + "/big.bin"
        FileManager.default.createFile(atPath: big, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: big))
        for block in 0..<50 { handle.write(Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ block) })) }
        try handle.close()
        chmod(big, 0o640)
        var past = [timespec(tv_sec: 1_600_000_000, tv_nsec: 0), timespec(tv_sec: 1_600_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, big, &past, 0)
        let tree = local + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/sub", withIntermediateDirectories: true)
        try Data("#!/bin/sh\necho run\n".utf8).write(to: URL(fileURLWithPath: tree + "/run.sh"))
        chmod(tree + "/run.sh", 0o755)
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: tree + "/sub/x.txt"))

        let sent = try await cluster.berth(["cp", big, "\(unit):/app/data/"], user: "aaa")
        #expect(sent.status == 0, "\(sent.stderr)")
        let copy = cluster.home("aaa") + "/data/big.bin"
        #expect(try md5(copy) == md5(big))
        var info = stat()
        lstat(copy, &info)
        #expect(info.st_mode & 0o777 == 0o640)
        #expect(info.st_mtim.tv_sec == 1_600_000_000)
        var owner = stat()
        lstat(cluster.home("aaa"), &owner)
        #expect(info.st_uid == owner.st_uid)
        let tree2 = try await cluster.berth(["cp", tree, "\(unit):/app/script/tree"], user: "aaa")
        #expect(tree2.status == 0, "\(tree2.stderr)")
        // The unit sees it and runs it.
        let run = try await cluster.berth(["exec", "--unit", unit, "--", "/app/script/tree/run.sh"], user: "aaa")
        #expect(run.stdout == "run\n", "\(run.stderr)")

        let back = local + "/back"
        try FileManager.default.createDirectory(atPath: back, withIntermediateDirectories: true)
        let got = try await cluster.berth(["cp", "\(unit):/app/data/big.bin", back], user: "aaa")
        #expect(got.status == 0, "\(got.stderr)")
        #expect(try md5(back + "/big.bin") == md5(big))
        lstat(back + "/big.bin", &info)
        #expect(info.st_mode & 0o777 == 0o640 && info.st_mtim.tv_sec == 1_600_000_000)
        let gotTree = try await cluster.berth(["cp", "\(unit):/app/script/tree", back + "/tree"], user: "aaa")
        #expect(gotTree.status == 0, "\(gotTree.stderr)")
        #expect(try String(contentsOfFile: back + "/tree/sub/x.txt", encoding: .utf8) == "x\n")
        lstat(back + "/tree/run.sh", &info)
        #expect(info.st_mode & 0o777 == 0o755)
        // A tar stream on stdout.
        let streamed = try await cluster.berth(["cp", "\(unit):/app/script/tree/sub", "-"], user: "aaa")
        #expect(streamed.status == 0 && streamed.stdout.contains("sub/x.txt"), "\(streamed.stderr)")
    }

    /// Bare names, as typed in the folder they are in: `berth cp notes UNIT:/app/data/` and back
    /// into a name that is not there yet. With the whole of Foundation's path code, a one-letter
    /// name crashed `berth` with a stack trace instead of copying.
    @Test func bareNamesInTheWorkingFolderGoBothWays() async throws {
        try Data("plain\n".utf8).write(to: URL(fileURLWithPath: local + "/notes"))
        let sent = try await cluster.berth(["cp", "notes", "\(unit):/app/data/"], user: "aaa", in: local)
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(try String(contentsOfFile: cluster.home("aaa") + "/data/notes", encoding: .utf8) == "plain\n")
        for name in ["again", "n"] {
            let got = try await cluster.berth(["cp", "\(unit):/app/data/notes", name], user: "aaa", in: local)
            #expect(got.status == 0, "\(got.stderr)")
            #expect(try String(contentsOfFile: local + "/" + name, encoding: .utf8) == "plain\n")
        }
        let here = try await cluster.berth(["cp", "\(unit):/app/data/notes", "."], user: "aaa", in: local + "/..")
        #expect(here.status == 0, "\(here.stderr)")
        #expect(FileManager.default.fileExists(atPath: cluster.root + "/notes"))
        let intoMissing = try await cluster.berth(["cp", "\(unit):/app/data/notes", "missing/"], user: "aaa", in: local)
        #expect(intoMissing.status != 0 && intoMissing.stderr.hasPrefix("error: "), "\(intoMissing.stderr)")
    }

    @Test(arguments: ["/share/x", "/app/../etc", "/etc"])
    func placesOutsideAppAreRefused(path: String) async throws {
        try Data("data\n".utf8).write(to: URL(fileURLWithPath: local + "/f.txt"))
        let sent = try await cluster.berth(["cp", local + "/f.txt", "\(unit):\(path)"], user: "aaa")
        #expect(sent.status != 0)
        #expect(sent.stderr.hasPrefix("error: "), "\(sent.stderr)")
        #expect(sent.stderr.contains("/app"), "\(sent.stderr)")
        let got = try await cluster.berth(["cp", "\(unit):\(path)", local + "/out"], user: "aaa")
        #expect(got.status != 0)
        #expect(!FileManager.default.fileExists(atPath: local + "/out"))
    }

    /// A link in /app that points out (made in the unit, as a user would) leads nowhere.
    @Test func aLinkInAppThatPointsOutIsRefusedBothWays() async throws {
        let made = try await cluster.berth(["exec", "--unit", unit, "--", "ln", "-s", "/etc", "/app/out"], user: "aaa")
        #expect(made.status == 0, "\(made.stderr)")
        try Data("data\n".utf8).write(to: URL(fileURLWithPath: local + "/passwd"))
        let sent = try await cluster.berth(["cp", local + "/passwd", "\(unit):/app/out/"], user: "aaa")
        #expect(sent.status != 0)
        #expect(sent.stderr.contains("is a symbolic link"), "\(sent.stderr)")
        let got = try await cluster.berth(["cp", "\(unit):/app/out/passwd", local + "/stolen"], user: "aaa")
        #expect(got.status != 0)
        #expect(got.stderr.contains("is a symbolic link"), "\(got.stderr)")
        #expect(!FileManager.default.fileExists(atPath: local + "/stolen"))
    }

    /// A tar stream on stdin, as `tar -c … | berth cp - UNIT:/app/…`.
    @Test func aTarStreamOnStdinIsUnpacked() async throws {
        try FileManager.default.createDirectory(atPath: local + "/in/data", withIntermediateDirectories: true)
        try Data("1,Smith\n".utf8).write(to: URL(fileURLWithPath: local + "/in/data/EMPLOYEE.txt"))
        let output = try await pipeIntoCopy("tar -C '\(local)/in' -c data", to: "/app")
        #expect(output.contains("status 0"), "\(output)")
        #expect(try String(contentsOfFile: cluster.home("aaa") + "/data/EMPLOYEE.txt", encoding: .utf8) == "1,Smith\n")
    }

    /// Tar streams made to escape, sent whole through client, manager and agent: a member with
    /// `..`, an absolute one, and a link followed by a member through it. Each is refused with a
    /// line naming it, and nothing lands outside the home.
    @Test(arguments: [
        ("dotdot", "tar -C '$L' -c -P f --transform 's,^f,../../escaped,'"),
        ("absolute", "tar -C '$L' -c -P f --transform 's,^f,/tmp/escaped,'"),
        ("through a link", "ln -sfn '$OUT' '$L/l' && mkdir -p '$L/d' && cp '$L/f' '$L/d/escaped' && tar -C '$L' -c l d/escaped --transform 's,^d/,l/,'"),
    ])
    func tarStreamsThatEscapeAreRefused(name: String, command: String) async throws {
        let outside = cluster.root + "/outside-" + name.replacingOccurrences(of: " ", with: "-")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: local + "/f"))
        let script = command.replacingOccurrences(of: "$L", with: local).replacingOccurrences(of: "$OUT", with: outside)
        let output = try await pipeIntoCopy(script, to: "/app/data")
        #expect(!output.contains("status 0"), "\(output)")
        #expect(output.contains("error: "), "\(output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/escaped"))
        #expect(!FileManager.default.fileExists(atPath: cluster.home("aaa") + "/escaped"))
    }

    /// Runs `producer | berth cp - UNIT:path`; what it printed, then "status N".
    private func pipeIntoCopy(_ producer: String, to path: String) async throws -> String {
        try await Background.run { [cluster, unit] in
            try DockerTestSupport.run("/bin/sh", ["-c", """
                (\(producer)) | BERTH_SESSION='\(cluster.root)/session-aaa.json' '\(ClusterFixture.binaries)/berth' cp - \(unit):\(path) 2>&1; echo "status $?"
                """])
        }
    }
}
