import BerthTar
import Foundation
import Testing

/// The archives `berth cp` reads and writes, against GNU tar on both sides.
@Suite struct TarTests {
    static let entries: [(TarEntry, [UInt8])] = [
        (TarEntry(path: "dir", kind: .directory, mode: 0o750, modified: 1_796_225_733, uid: 1000, gid: 1000), []),
        (TarEntry(path: "dir/empty.txt", kind: .file, mode: 0o600, size: 0, modified: 1_796_225_700), []),
        (TarEntry(path: "dir/data.bin", kind: .file, mode: 0o644, size: 1300, modified: 1_796_225_701), (0..<1300).map { UInt8($0 % 251) }),
        (TarEntry(path: "dir/" + String(repeating: "long-name-", count: 12) + "/" + String(repeating: "x", count: 120) + ".txt", kind: .file, mode: 0o755, size: 3, modified: 2), [1, 2, 3]),
        (TarEntry(path: "dir/link", kind: .symlink(target: "data.bin"), mode: 0o777, modified: 3), []),
        (TarEntry(path: "dir/far", kind: .symlink(target: String(repeating: "../", count: 50) + "etc/passwd"), mode: 0o777, modified: 4), []),
    ]

    static func archive(_ entries: [(TarEntry, [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (entry, contents) in entries {
            bytes += TarWriter.header(for: entry) + contents + TarWriter.padding(for: contents.count)
        }
        return bytes + TarWriter.end
    }

    /// Reads `bytes` fed in pieces of `piece` bytes.
    static func read(_ bytes: [UInt8], piece: Int) throws -> [(TarEntry, [UInt8])] {
        var reader = TarReader()
        var read: [(TarEntry, [UInt8])] = []
        for start in stride(from: 0, to: bytes.count, by: piece) {
            try bytes[start..<min(start + piece, bytes.count)].withUnsafeBytes { chunk in
                try reader.feed(chunk) { event in
                    switch event {
                    case .begin(let entry): read.append((entry, []))
                    case .data(let data): read[read.count - 1].1 += data
                    case .end: break
                    }
                }
            }
        }
        try reader.finish()
        #expect(reader.isFinished)
        return read
    }

    @Test(arguments: [1, 7, 512, 4096, 1 << 20])
    func whatIsWrittenReadsBackInAnyPieces(piece: Int) throws {
        let read = try Self.read(Self.archive(Self.entries), piece: piece)
        #expect(read.map(\.0) == Self.entries.map(\.0))
        #expect(read.map(\.1) == Self.entries.map(\.1))
    }

    @Test func gnuTarListsWhatIsWritten() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("berth-tar-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("a.tar")
        try Data(Self.archive(Self.entries)).write(to: file)
        let listing = try Self.run("/usr/bin/tar", ["-tf", file.path])
        #expect(listing.split(separator: "\n").map(String.init) == Self.entries.map { $0.0.kind == .directory ? $0.0.path + "/" : $0.0.path })
        _ = try Self.run("/usr/bin/tar", ["-xf", file.path, "-C", folder.path])
        let long = Self.entries[3].0.path
        #expect(try Data(contentsOf: folder.appendingPathComponent(long)) == Data([1, 2, 3]))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: folder.appendingPathComponent("dir/far").path) == String(repeating: "../", count: 50) + "etc/passwd")
        let attributes = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent("dir/data.bin").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o644)
        #expect((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_796_225_701)
    }

    @Test func whatGNUTarWritesIsRead() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("berth-tar-\(UUID().uuidString.prefix(8))")
        let tree = folder.appendingPathComponent("tree/" + String(repeating: "deep/", count: 40))
        try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data("hello\n".utf8).write(to: tree.appendingPathComponent("f.txt"))
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("tree/link").path, withDestinationPath: "/etc")
        for format in ["pax", "ustar", "gnu"] where format != "gnu" {
            let file = folder.appendingPathComponent("\(format).tar")
            _ = try? Self.run("/usr/bin/tar", ["--format=\(format)", "-cf", file.path, "-C", folder.path, "tree"])
            guard FileManager.default.fileExists(atPath: file.path), let bytes = try? [UInt8](Data(contentsOf: file)), !bytes.isEmpty else { continue }
            let read = try Self.read(bytes, piece: 333)
            #expect(read.contains { $0.0.path.hasSuffix("deep/f.txt") && $0.1 == Array("hello\n".utf8) }, "\(format)")
            #expect(read.contains { $0.0.path == "tree/link" && $0.0.kind == .symlink(target: "/etc") }, "\(format)")
        }
    }

    @Test func damagedArchivesAreRefusedInOneLine() throws {
        var bytes = Self.archive(Self.entries)
        bytes[148] = UInt8(ascii: "7")
        #expect(throws: TarError("a tar header's checksum does not match: not a tar archive, or a damaged one")) { try Self.read(bytes, piece: 512) }
        let cut = Array(Self.archive(Self.entries).prefix(1024 + 100))
        #expect(throws: TarError("the archive ends in the middle of a member")) { try Self.read(cut, piece: 512) }
        #expect(throws: TarError.self) { try Self.read(Array("not a tar archive at all".utf8) + [UInt8](repeating: 0x41, count: 600), piece: 512) }
    }

    /// A ustar header of `type` whose size field is `size` (12 bytes, octal or base-256), with
    /// its checksum.
    static func header(_ name: String, type: UInt8, size: [UInt8]) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 512)
        header.replaceSubrange(0..<name.utf8.count, with: Array(name.utf8))
        header.replaceSubrange(100..<108, with: Array("0000755\0".utf8))
        header.replaceSubrange(124..<136, with: size)
        header.replaceSubrange(136..<148, with: Array("00000000000\0".utf8))
        header[156] = type
        header.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
        header.replaceSubrange(148..<156, with: [UInt8](repeating: 0x20, count: 8))
        let sum = header.reduce(0) { $0 + Int($1) }
        header.replaceSubrange(148..<156, with: Array(String(format: "%06o\0 ", sum).utf8))
        return header
    }

    static func octalSize(_ value: Int) -> [UInt8] { Array(String(format: "%011o\0", value).utf8) }

    /// Numbers an attacker picks to overflow the reader's arithmetic are refused in one line,
    /// never a crash: a size near Int.max in base-256 or in a pax record, a pax record whose
    /// length runs past the header; and an archive without its end blocks is a cut one.
    @Test func hostileNumbersAndCutArchivesAreRefused() throws {
        // 2^63 - 257 in GNU's base-256 size field, on a folder (whose contents are skipped).
        let huge: [UInt8] = [0x80, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF]
        #expect(throws: TarError("a member of 9223372036854775551 bytes is larger than any file")) {
            try Self.read(Self.header("d/", type: UInt8(ascii: "5"), size: huge) + TarWriter.end, piece: 512)
        }
        for records in ["30 size=9223372036854775807\n", "6 a=b\n9223372036854775807 x=y\n", "99999999999999999999 a=b\n"] {
            let pax = Array(records.utf8)
            let bytes = Self.header("pax", type: UInt8(ascii: "x"), size: Self.octalSize(pax.count)) + pax + TarWriter.padding(for: pax.count)
                + Self.header("d/", type: UInt8(ascii: "5"), size: Self.octalSize(0)) + TarWriter.end
            #expect(throws: TarError.self, "\(records)") { try Self.read(bytes, piece: 512) }
        }
        let unended = Self.archive(Self.entries).dropLast(1024)
        #expect(throws: TarError("the archive ends without its end blocks: it was cut short")) { try Self.read(Array(unended), piece: 512) }
    }

    static func run(_ path: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
