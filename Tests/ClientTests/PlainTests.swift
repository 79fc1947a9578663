import Foundation
import Testing
@testable import Client

/// The path and text helpers `berth` uses in place of NSString's and CharacterSet's give what
/// those gave for the paths `berth cp` is handed.
@Suite struct PlainTests {
    /// What NSString gave, where it gave anything: its `deletingLastPathComponent` traps on a
    /// one-letter name such as "a", "a/" or "." (swift-corelibs-foundation); the parent is empty here.
    @Test(arguments: [
        ("/a/b/c", "c", "/a/b"), ("/a/b/c/", "c", "/a/b"), ("a/b", "b", "a"), ("a", "a", ""), ("a/", "a", ""), ("/", "/", "/"),
        ("/a", "a", "/"), ("./x", "x", "."), ("../x", "x", ".."), ("a//b", "b", "a"), ("", "", ""), (".", ".", ""), ("..", "..", ""),
        ("/a/b//", "b", "/a"), ("dir/file.txt", "file.txt", "dir"),
    ])
    func lastAndParentAsNSStringGaveThem(path: String, last: String, parent: String) {
        #expect(lastPathComponent(path) == last, "\(path)")
        #expect(parentPath(path) == parent, "\(path)")
    }

    @Test func theFolderOfABareNameIsHere() {
        #expect(folder(of: "session.json") == ".")
        #expect(folder(of: "a/") == ".")
        #expect(folder(of: "/a") == "/")
        #expect(folder(of: "x/y/z") == "x/y")
    }

    @Test func trimmingDropsOnlyTheEnds() {
        #expect(" \n a b \t\n".trimmed(\.isWhitespace) == "a b")
        #expect("\n\nrow\n".trimmed(\.isNewline) == "row")
        #expect(" \n ".trimmed(\.isWhitespace) == "")
        #expect("x".trimmed(\.isWhitespace) == "x")
    }

    @Test func readAllStopsAtTheLimitOrTheEnd() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let bytes = [UInt8](repeating: 7, count: 100_000)
        #expect(write(fds[1], bytes, 50_000) == 50_000)
        close(fds[1])
        #expect(readAll(fds[0], limit: 1 << 20).count == 50_000)
        close(fds[0])
        #expect(pipe(&fds) == 0)
        #expect(write(fds[1], bytes, 60_000) == 60_000)
        #expect(readAll(fds[0], limit: 10_000).count == 10_000)
        close(fds[0]); close(fds[1])
    }
}
