import ArgumentParser
import BerthAPI
import BerthCLI
import BerthCore
import BerthTar
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import HTTPWire
import NIOTransport

struct Copy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cp",
        abstract: "Copy files and folders between here and a unit's /app.",
        discussion: """
            One side is a unit's path, IP:PORT:/app/…; the other is here. As with docker cp, a
            folder that exists receives what is copied; a name that does not is what it is
            copied as. - on this side is a tar stream (stdin or stdout). Links are copied as links.
              berth cp Employee.sh 127.0.0.2:8281:/app/script/
              berth cp 127.0.0.2:8281:/app/data/result.txt .
              tar -c data | berth cp - 127.0.0.2:8281:/app
            """)

    @Argument(help: ArgumentHelp("What to copy: a path here, IP:PORT:/app/PATH, or -.", valueName: "source"))
    var source: String

    @Argument(help: ArgumentHelp("Where to: a path here, IP:PORT:/app/PATH, or -.", valueName: "destination"))
    var destination: String

    func run() async throws {
        switch (Self.remote(source), Self.remote(destination)) {
        case (nil, let target?): try await copyIn(to: target)
        case (let origin?, nil): try await copyOut(from: origin)
        case (nil, nil): throw failure("neither side is a unit's path; write it as IP:PORT:/app/PATH")
        case (_?, _?): throw failure("both sides are units' paths; copy through here, one side at a time")
        }
    }

    /// `IP:PORT:/PATH`, or nil for a path here.
    static func remote(_ text: String) -> (unit: HostPort, path: String)? {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("/"), let unit = HostPort(parsing: "\(parts[0]):\(parts[1])") else { return nil }
        return (unit, String(parts[2]))
    }

    private func copyIn(to target: (unit: HostPort, path: String)) async throws {
        let session = try SessionFile.load()
        let upload = UploadStream()
        let query = [(name: "unit", value: target.unit.description), (name: "path", value: target.path)]
        let manager = session.manager
        let answer = Task { try await manager.upload(ManagerRoutes.copyIn, query: query, input: upload, contentType: TarStream.contentType, token: session.token) }
        var progress = Progress(verb: "sent")
        do {
            if source == "-" {
                var buffer = [UInt8](repeating: 0, count: 256 * 1024)
                while true {
                    let count = read(STDIN_FILENO, &buffer, buffer.count)
                    if count < 0 && errno == EINTR { continue }
                    guard count >= 0 else { throw failure("cannot read stdin: \(String(cString: strerror(errno)))") }
                    guard count > 0 else { break }
                    try await upload.write(Data(buffer[0..<count]))
                    progress.add(count)
                }
            } else {
                try await LocalArchive.pack(source) { piece in
                    try await upload.write(piece)
                    progress.add(piece.count)
                }
            }
            upload.finish()
        } catch is HTTPClientError {
            // The request ended early (refused midway): its answer says why.
            upload.finish()
        } catch {
            // Nothing half-sent is taken for whole: the request is dropped, not ended.
            answer.cancel()
            upload.finish()
            throw error
        }
        let result = try await managerCall { try await answer.value }
        progress.done("\(result.written) item\(result.written == 1 ? "" : "s") to \(target.unit):\(target.path)")
    }

    private func copyOut(from origin: (unit: HostPort, path: String)) async throws {
        let session = try SessionFile.load()
        let query = [(name: "unit", value: origin.unit.description), (name: "path", value: origin.path)]
        let response = try await managerCall {
            try await session.manager.stream(ManagerRoutes.copyOut, query: query, token: session.token)
        }
        var progress = Progress(verb: "received")
        do {
            if destination == "-" {
                for try await chunk in response.body {
                    try chunk.withUnsafeBytes { try writeAll(STDOUT_FILENO, $0) }
                    progress.add(chunk.count)
                }
            } else {
                var unpacker = try LocalArchive.Unpacker(into: destination, expecting: lastPathComponent(origin.path))
                var reader = TarReader()
                for try await chunk in response.body {
                    try chunk.withUnsafeBytes { bytes in try reader.feed(bytes) { try unpacker.take($0) } }
                    progress.add(chunk.count)
                }
                try reader.finish()
                try unpacker.finish()
            }
        } catch let error as TarError {
            throw failure("the copy of \(origin.unit):\(origin.path) is damaged: \(error)")
        } catch let error as HTTPClientError {
            throw failure("the copy of \(origin.unit):\(origin.path) was cut short: \(error)")
        } catch let error as CallError {
            throw failure(error.message)
        }
        progress.done("from \(origin.unit):\(origin.path)")
    }
}

/// Bytes moved so far, on stderr when it is a terminal, at most ten times a second.
struct Progress {
    let verb: String
    private var bytes = 0
    private var shown = ContinuousClock.now
    private let onTerminal = isatty(STDERR_FILENO) == 1

    init(verb: String) {
        self.verb = verb
    }

    mutating func add(_ count: Int) {
        bytes += count
        guard onTerminal, ContinuousClock.now - shown > .milliseconds(100) else { return }
        shown = ContinuousClock.now
        writeToStandardError("\r\(verb) \(byteCount(UInt64(bytes)))\u{1B}[K")
    }

    func done(_ what: String) {
        guard onTerminal else { return }
        writeToStandardError("\r\(verb) \(byteCount(UInt64(bytes))): \(what)\u{1B}[K\n")
    }
}

/// `berth cp`'s side here: a path packed as a tar stream, or a stream unpacked at a path, links
/// copied as links and never written through.
enum LocalArchive {
    static func pack(_ path: String, send: (Data) async throws -> Void) async throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw failure("cannot read \(path): \(String(cString: strerror(errno)))") }
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        let name = trimmed == "." ? lastPathComponent(FileManager.default.currentDirectoryPath) : lastPathComponent(trimmed)
        try await add(trimmed, as: name, send: send)
        try await send(Data(TarWriter.end))
    }

    private static func add(_ path: String, as member: String, send: (Data) async throws -> Void) async throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw failure("cannot read \(path): \(String(cString: strerror(errno)))") }
        let modified = Int64(info.st_mtim.tv_sec)
        let mode = UInt32(info.st_mode & 0o7777)
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            try await send(Data(TarWriter.header(for: TarEntry(path: member, kind: .directory, mode: mode, modified: modified))))
            let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
            for name in names { try await add(path + "/" + name, as: member + "/" + name, send: send) }
        case S_IFREG:
            let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw failure("cannot read \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var opened = stat()
            fstat(fd, &opened)
            let size = Int(opened.st_size)
            try await send(Data(TarWriter.header(for: TarEntry(path: member, kind: .file, mode: mode, size: size, modified: modified))))
            var left = size
            var buffer = [UInt8](repeating: 0, count: 256 * 1024)
            while left > 0 {
                let count = read(fd, &buffer, min(buffer.count, left))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw failure("\(path) shrank while it was copied") }
                try await send(Data(buffer[0..<count]))
                left -= count
            }
            try await send(Data(TarWriter.padding(for: size)))
        case S_IFLNK:
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: path)
            try await send(Data(TarWriter.header(for: TarEntry(path: member, kind: .symlink(target: target), mode: 0o777, modified: modified))))
        default:
            writeToStandardError("berth: \(path) is not a file, folder or link; left out\n")
        }
    }

    /// Writes members under `destination` as they come: into it when it is a folder, else as it.
    struct Unpacker {
        let base: String
        let rename: String?
        private var topLevel: String?
        private var file: (fd: Int32, path: String, entry: TarEntry)?
        private var directoryTimes: [(String, Int64)] = []

        /// What the copy holds is the one thing asked for: every member is `expected` or in it.
        /// The stream comes from the manager, which must not name where files land here.
        let expected: String

        /// What the user's umask takes off modes, as for any file they make: the stream's modes
        /// come from the manager.
        private let masked: mode_t

        init(into destination: String, expecting expected: String) throws {
            self.expected = expected
            let current = umask(0o022)
            umask(current)
            masked = current
            var isDirectory = false
            if FileManager.default.fileExists(atPath: destination, isDirectory: &isDirectory), isDirectory {
                (base, rename) = (destination, nil)
            } else {
                // As docker cp: a name ending in "/" is a folder that must be there.
                guard !destination.hasSuffix("/") else { throw failure("\(destination) is not a folder here") }
                let parent = folder(of: destination)
                guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory else {
                    throw failure("\(parent) is not a folder here")
                }
                (base, rename) = (parent, lastPathComponent(destination))
            }
        }

        mutating func take(_ event: TarEvent) throws {
            switch event {
            case .begin(let entry): try begin(entry)
            case .data(let bytes):
                guard let file else { return }
                if let reason = writeEvery(byteOf: bytes, to: file.fd) { throw failure("cannot write \(file.path): \(reason)") }
            case .end: endFile()
            }
        }

        private mutating func begin(_ entry: TarEntry) throws {
            var names = entry.path.split(separator: "/").map(String.init)
            guard !entry.path.hasPrefix("/"), !names.isEmpty, !names.contains(where: { $0 == "." || $0 == ".." || $0.contains("\0") }) else {
                throw failure("the copy holds \"\(entry.path.prefix(200))\", which would land outside \(base); nothing past it was written")
            }
            if names[0] != expected {
                throw failure("the copy holds \"\(entry.path.prefix(200))\", which is not \(expected), the thing asked for; nothing past it was written")
            }
            if let rename {
                if topLevel == nil { topLevel = names[0] }
                guard names[0] == topLevel else { throw failure("the copy holds more than one thing; copy into a folder that exists") }
                names[0] = rename
            }
            // Never through a link: a link the copy made (or one already here) on the way is refused.
            var path = base
            for name in names.dropLast() {
                path += "/" + name
                var info = stat()
                guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                    throw failure("\(path) is not a folder here (a link, a file, or missing); nothing past it was written")
                }
            }
            path += "/" + names[names.count - 1]
            switch entry.kind {
            case .directory:
                let made = mkdir(path, mode_t(entry.mode & 0o777) | 0o700) == 0
                if !made && errno != EEXIST {
                    throw failure("cannot make \(path): \(String(cString: strerror(errno)))")
                }
                var info = stat()
                guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { throw failure("\(path) is not a folder here") }
                // A folder that was here keeps its mode and times: the copy fills it, nothing more.
                if made {
                    chmod(path, mode_t(entry.mode & 0o777) & ~masked)
                    directoryTimes.append((path, entry.modified))
                }
            case .file:
                unlink(path)
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(entry.mode & 0o777))
                guard fd >= 0 else { throw failure("cannot write \(path): \(String(cString: strerror(errno)))") }
                file = (fd, path, entry)
            case .symlink(let target):
                unlink(path)
                guard symlink(target, path) == 0 else { throw failure("cannot make the link \(path): \(String(cString: strerror(errno)))") }
            case .other:
                note("berth: \(entry.path) is not a file, folder or link; left out")
            }
        }

        private mutating func endFile() {
            guard let current = file else { return }
            file = nil
            var times = [timespec(tv_sec: Int(current.entry.modified), tv_nsec: 0), timespec(tv_sec: Int(current.entry.modified), tv_nsec: 0)]
            fchmod(current.fd, mode_t(current.entry.mode & 0o777) & ~masked)
            futimens(current.fd, &times)
            close(current.fd)
        }

        mutating func finish() throws {
            if let current = file {
                close(current.fd)
                file = nil
            }
            for (path, modified) in directoryTimes.reversed() {
                var times = [timespec(tv_sec: Int(modified), tv_nsec: 0), timespec(tv_sec: Int(modified), tv_nsec: 0)]
                utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
            }
        }
    }
}
