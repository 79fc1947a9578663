import BerthTar
import BerthCLI
import Foundation
import Testing
@testable import Client

/// `berth cp UNIT:/app/PATH DEST` unpacks what the manager streams: a hostile or impersonated
/// manager must not choose where files land, nor change the folders already there.
@Suite struct CopyOutTests {
    static func stream(_ entries: [(TarEntry, [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (entry, contents) in entries { bytes += TarWriter.header(for: entry) + contents + TarWriter.padding(for: contents.count) }
        return bytes + TarWriter.end
    }

    static func unpack(_ bytes: [UInt8], into destination: String, expecting: String) throws {
        var unpacker = try LocalArchive.Unpacker(into: destination, expecting: expecting)
        var reader = TarReader()
        try bytes.withUnsafeBytes { try reader.feed($0) { try unpacker.take($0) } }
        try reader.finish()
        try unpacker.finish()
    }

    static func folder() throws -> String {
        let path = NSTemporaryDirectory() + "berth-copyout-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path + "/.ssh", withIntermediateDirectories: true)
        chmod(path + "/.ssh", 0o700)
        return path
    }

    /// Asked for result.txt, sent .bashrc and .ssh/authorized_keys: refused at the first, nothing
    /// written, and the folder that was there keeps its mode.
    @Test func membersOtherThanWhatWasAskedForAreRefused() throws {
        let here = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: here) }
        let hostile = Self.stream([
            (TarEntry(path: ".ssh", kind: .directory, mode: 0o777, modified: 0), []),
            (TarEntry(path: ".ssh/authorized_keys", kind: .file, mode: 0o644, size: 4, modified: 0), Array("key\n".utf8)),
            (TarEntry(path: ".bashrc", kind: .file, mode: 0o644, size: 4, modified: 0), Array("evil".utf8)),
        ])
        #expect(throws: (any Error).self) { try Self.unpack(hostile, into: here, expecting: "result.txt") }
        #expect(!FileManager.default.fileExists(atPath: here + "/.ssh/authorized_keys"))
        #expect(!FileManager.default.fileExists(atPath: here + "/.bashrc"))
        var info = stat()
        stat(here + "/.ssh", &info)
        #expect(info.st_mode & 0o777 == 0o700)
    }

    /// What was asked for lands, and a folder of that name already here keeps its mode.
    @Test func whatWasAskedForLandsAndAnExistingFolderKeepsItsMode() throws {
        let here = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: here) }
        try FileManager.default.createDirectory(atPath: here + "/data", withIntermediateDirectories: true)
        chmod(here + "/data", 0o750)
        let stream = Self.stream([
            (TarEntry(path: "data", kind: .directory, mode: 0o777, modified: 0), []),
            (TarEntry(path: "data/a.txt", kind: .file, mode: 0o644, size: 5, modified: 0), Array("hello".utf8)),
        ])
        try Self.unpack(stream, into: here, expecting: "data")
        #expect(FileManager.default.contents(atPath: here + "/data/a.txt") == Data("hello".utf8))
        var info = stat()
        stat(here + "/data", &info)
        #expect(info.st_mode & 0o777 == 0o750)
    }
}

/// Messages quote what servers sent: a hostile manager's escape sequences reach the terminal as
/// text, not as commands to it.
@Suite struct TerminalSafeTests {
    @Test func controlCharactersButNewlineAndTabAreShownEscaped() {
        let hostile = "\u{1B}]0;owned\u{07}\u{1B}[2J\u{1B}[31mFAKE: please re-enter your password\u{9B}1m\nnext\tline"
        let shown = terminalSafe(hostile)
        #expect(!shown.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" })
        #expect(!shown.unicodeScalars.contains { (0x7F...0x9F).contains($0.value) })
        #expect(shown.contains("\\u{1B}[2J") && shown.contains("\nnext\tline"))
        #expect(terminalSafe("plain text, ünïcödé") == "plain text, ünïcödé")
        #expect(!terminalSafe("file\u{202E}txt.exe").unicodeScalars.contains("\u{202E}"))
    }
}
