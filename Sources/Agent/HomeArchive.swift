import BerthAPI
import BerthTar
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `berth cp` into a unit's `/app`, done by root in the user's home on this host: every name is
/// opened beneath the home with O_NOFOLLOW, so no link the user made is ever followed; a file is
/// written under a new name and renamed over the old, so a hard link is never written through;
/// what is made belongs to the user's account, with its mode (set-id bits dropped) and time.
enum HomeArchive {
    /// Where in the home a path of the unit's `/app` lies: its names below the home, refused when
    /// the path is not in `/app` or steps with `.` or `..`.
    static func names(ofUnitPath path: String) throws -> [String] {
        let names = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard path.hasPrefix("/"), names.first == "app" else {
            throw AgentError("\(path) is not in /app: files are copied to and from /app only")
        }
        guard !names.contains(where: { $0 == "." || $0 == ".." || $0.contains("\0") }) else {
            throw AgentError("\(path) has . or .. in it; name the place in /app directly")
        }
        return Array(names.dropFirst())
    }

    /// A member's names, refused when it would step out of where it is unpacked.
    static func names(ofMember path: String) throws -> [String] {
        let names = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard !path.hasPrefix("/"), !names.isEmpty, !names.contains(where: { $0 == "." || $0 == ".." || $0.contains("\0") }) else {
            throw AgentError("the archive's member \"\(shown(path))\" is absolute or has . or ..; nothing was copied past it")
        }
        return names
    }

    /// Unpacks the tar stream `chunks` at the unit path `destination` of `home`: into it when it is
    /// a directory, else (a single member tree) under its name in its parent, which must exist,
    /// replacing a file of that name, as `docker cp` does. A link there is refused, not replaced.
    /// Returns the members written.
    static func unpack<Chunks: AsyncSequence>(
        _ chunks: Chunks, to destination: String, home: SafeDirectory, account: UnixAccount, memory: CopyMemory = .shared
    ) async throws -> Int where Chunks.Element == Data {
        let target = try names(ofUnitPath: destination)
        var into = home
        var rename: String?
        for (index, name) in target.enumerated() {
            do {
                into = try into.child(name)
            } catch let refusal where index == target.count - 1 && !refusal.isLink && (refusal.isMissing || refusal.code == ENOTDIR) {
                // A new name, or a file to replace (renamed over, never written into).
                rename = name
            } catch {
                throw AgentError("/app/\(target[...index].joined(separator: "/")): \(Self.reason(error))")
            }
        }
        var writer = Unpacker(base: into, rename: rename, account: account, shown: destination, memory: memory, home: home.path)
        var reader = TarReader()
        do {
            for try await chunk in chunks {
                try chunk.withUnsafeBytes { bytes in
                    try reader.feed(bytes) { event in try writer.take(event) }
                }
            }
            try reader.finish()
        } catch {
            // What was fully written stays, as with any copy cut short; a file midway goes.
            try? writer.finish()
            if let error = error as? TarError { throw AgentError("\(destination): \(error)") }
            throw error
        }
        try writer.finish()
        return writer.written
    }

    /// Where the unit path `source` lies in `home`: the folder holding it and its name (nil for
    /// `/app` itself), refused with the reason when it is missing or a link lies on the way.
    static func locate(_ source: String, home: SafeDirectory) throws -> (directory: SafeDirectory, name: String?) {
        let path = try names(ofUnitPath: source)
        var directory = home
        for (index, name) in path.dropLast().enumerated() {
            do {
                directory = try directory.child(name)
            } catch {
                throw AgentError("/app/\(path[...index].joined(separator: "/")): \(reason(error))")
            }
        }
        if let name = path.last {
            do { _ = try directory.status(of: name) } catch { throw AgentError("\(source): \(reason(error))") }
        }
        return (directory, path.last)
    }

    /// Packs the unit path `source` of `home` as a tar stream, under the source's own name: a
    /// file, or a folder with all it holds. Links are packed as links, never followed; devices,
    /// FIFOs and sockets are left out, and what `account` may not read is refused. `send` gets the
    /// stream a piece at a time.
    static func pack(
        _ source: String, home: SafeDirectory, account: UnixAccount, memory: CopyMemory = .shared, send: @escaping (Data) async throws -> Void
    ) async throws {
        let (directory, name) = try locate(source, home: home)
        var packer = Packer(account: account, device: try home.status().st_dev, memory: memory, home: home.path, send: send)
        if let name {
            try await packer.add(name, in: directory, as: name, shown: source)
        } else {
            // /app itself: the home, packed as "app".
            let status = try home.status()
            try await packer.addDirectory(home, as: "app", modified: Int64(status.st_mtim.tv_sec), mode: status.st_mode)
        }
        try await packer.flush(TarWriter.end)
    }

    /// Writes members a piece at a time, in pieces of about 256 KiB. Root reads only what the
    /// unit's account could: a file the account may not read (a hard link to root's, a file an
    /// admin left) is refused, as is anything on another file system mounted in the home.
    struct Packer {
        let send: (Data) async throws -> Void
        let account: UnixAccount
        let device: dev_t
        /// Each level of the walk holds its folder's names until its end: all levels of all the
        /// home's copies together hold at most the home's share.
        let memory: CopyMemory
        let home: String
        private var pending: [UInt8] = []
        private var depth = 0

        /// Deeper folders are refused: each level holds a descriptor until its end.
        static let maxDepth = 256

        init(account: UnixAccount, device: dev_t, memory: CopyMemory, home: String, send: @escaping (Data) async throws -> Void) {
            self.account = account
            self.device = device
            self.memory = memory
            self.home = home
            self.send = send
        }

        mutating func flush(_ bytes: [UInt8] = []) async throws {
            pending += bytes
            guard !pending.isEmpty else { return }
            try await send(Data(pending))
            pending = []
        }

        /// Whether the account may read what `info` describes (and, for a folder, list it).
        func readable(_ info: stat, directory: Bool) -> Bool {
            HomeArchive.permits(account, directory ? 0o5 : 0o4, info)
        }

        mutating func add(_ name: String, in directory: SafeDirectory, as member: String, shown: String) async throws {
            let info: stat
            do {
                info = try directory.status(of: name)
            } catch let refusal as SafeDirectory.Refusal where refusal.isMissing && depth > 0 {
                return  // gone since the folder was listed
            } catch {
                throw AgentError("\(HomeArchive.shown(shown)): \(HomeArchive.reason(error))")
            }
            let modified = Int64(info.st_mtim.tv_sec)
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                let child: SafeDirectory
                do { child = try directory.child(name) } catch { throw AgentError("\(HomeArchive.shown(shown)): \(HomeArchive.reason(error))") }
                let opened = try child.status()
                guard opened.st_dev == device else { throw AgentError("\(HomeArchive.shown(shown)) is another file system mounted in the home; it is not copied") }
                guard readable(opened, directory: true) else { throw AgentError("\(HomeArchive.shown(shown)) cannot be read by the unit's account") }
                guard depth < Self.maxDepth else { throw AgentError("\(HomeArchive.shown(shown)) is more than \(Self.maxDepth) folders deep") }
                try await addDirectory(child, as: member, modified: modified, mode: opened.st_mode)
            case S_IFREG:
                // Non-blocking: a name swapped for a FIFO since it was looked at must not hold
                // this thread; what is opened must be the regular file that was looked at.
                let fd = openat(directory.fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
                guard fd >= 0 else { throw AgentError("\(HomeArchive.shown(shown)): cannot read: \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                var opened = stat()
                guard fstat(fd, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG, opened.st_ino == info.st_ino, opened.st_dev == info.st_dev else {
                    throw AgentError("\(HomeArchive.shown(shown)) changed while it was copied; copy it again")
                }
                guard opened.st_dev == device else { throw AgentError("\(HomeArchive.shown(shown)) is on another file system mounted in the home; it is not copied") }
                guard readable(opened, directory: false) else { throw AgentError("\(HomeArchive.shown(shown)) cannot be read by the unit's account") }
                let size = Int(opened.st_size)
                pending += TarWriter.header(for: TarEntry(path: member, kind: .file, mode: UInt32(opened.st_mode & 0o7777), size: size, modified: Int64(opened.st_mtim.tv_sec)))
                var left = size
                var buffer = [UInt8](repeating: 0, count: 256 * 1024)
                while left > 0 {
                    let count = read(fd, &buffer, min(buffer.count, left))
                    if count < 0 && errno == EINTR { continue }
                    if count <= 0 {
                        // Cut while read: the member keeps its announced size.
                        pending += [UInt8](repeating: 0, count: left)
                        left = 0
                        break
                    }
                    pending += buffer[0..<count]
                    left -= count
                    if pending.count >= 256 * 1024 { try await flush() }
                }
                pending += TarWriter.padding(for: size)
            case S_IFLNK:
                var target = [UInt8](repeating: 0, count: 4096)
                let count = readlinkat(directory.fd, name, &target, target.count)
                guard count >= 0 else { return }
                pending += TarWriter.header(for: TarEntry(
                    path: member, kind: .symlink(target: String(decoding: target[0..<count], as: UTF8.self)), mode: 0o777, modified: modified))
            default:
                return
            }
            if pending.count >= 256 * 1024 { try await flush() }
        }

        mutating func addDirectory(_ directory: SafeDirectory, as member: String, modified: Int64, mode: mode_t) async throws {
            pending += TarWriter.header(for: TarEntry(path: member, kind: .directory, mode: UInt32(mode & 0o7777), modified: modified))
            let entries: [(name: String, modified: Int)]
            do throws(SafeDirectory.Refusal) {
                // Taken from the home's share name by name, as they are read.
                entries = try directory.entries(charging: memory, for: home)
            } catch where error.code == ENOBUFS {
                throw AgentError("\(HomeArchive.shown(member)): \(memory.refusal)")
            } catch {
                throw AgentError("\(HomeArchive.shown(member)): \(HomeArchive.reason(error))")
            }
            let held = entries.reduce(0) { $0 + CopyMemory.cost(ofName: $1.name) }
            defer { memory.give(held, for: home) }
            depth += 1
            defer { depth -= 1 }
            for entry in entries.sorted(by: { $0.name < $1.name }) {
                try await add(entry.name, in: directory, as: member + "/" + entry.name, shown: member + "/" + entry.name)
            }
        }
    }

    /// Whether `account` has the `needed` bits (4 read, 2 write, 1 search) on what `info`
    /// describes, by its owner, group and others' bits: root does for a copy only what the unit
    /// could.
    static func permits(_ account: UnixAccount, _ needed: mode_t, _ info: stat) -> Bool {
        let bits = info.st_uid == account.uid ? info.st_mode >> 6 : info.st_gid == account.gid ? info.st_mode >> 3 : info.st_mode
        return bits & needed == needed
    }

    /// A path from an archive or a home, for a one-line message: control characters shown as
    /// `?`, and no longer than 200 characters.
    static func shown(_ path: String) -> String {
        let cleaned = String(String.UnicodeScalarView(path.unicodeScalars.prefix(200).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
        return path.unicodeScalars.count > 200 ? cleaned + "…" : cleaned
    }

    static func reason(_ error: any Error) -> String {
        if let refusal = error as? SafeDirectory.Refusal {
            if refusal.isLink { return "is a symbolic link" }
            if refusal.isMissing { return "does not exist" }
        }
        return "\(error)"
    }

    /// Writes the members of one archive as they come.
    struct Unpacker {
        let base: SafeDirectory
        /// The name the archive's single top-level member takes, when the destination is new.
        let rename: String?
        let account: UnixAccount
        let shown: String
        var written = 0
        private var topLevel: String?
        private var file: (directory: SafeDirectory, temporary: String, name: String, fd: Int32, entry: TarEntry)?
        /// Directories' times by their names below `base`, set once their contents are in (writing
        /// into one changes its time). Names, not open descriptors: a stream of a million
        /// folders must not hold a million descriptors.
        private var directoryTimes: [[String]: Int64] = [:]
        /// What those names take, held in the home's share of root's memory (`CopyMemory`): once
        /// it is spent, later folders keep the time of their making. Root's memory is not the
        /// user's to fill with a stream of folders.
        private var timesBytes = 0
        /// Folders made once the share was spent, counted as written all the same.
        private var foldersPastBudget = 0
        let memory: CopyMemory
        let home: String

        init(base: SafeDirectory, rename: String?, account: UnixAccount, shown: String, memory: CopyMemory = .shared, home: String) {
            self.base = base
            self.rename = rename
            self.account = account
            self.shown = shown
            self.memory = memory
            self.home = home
        }

        mutating func take(_ event: TarEvent) throws {
            switch event {
            case .begin(let entry): try begin(entry)
            case .data(let bytes):
                guard let file else { return }
                let shown = shown
                let fitted = try HomeRoom.ifRoom(for: .bytes(bytes.count), on: file.fd) {
                    var done = 0
                    while done < bytes.count {
                        let count = write(file.fd, bytes.baseAddress! + done, bytes.count - done)
                        if count < 0 && errno == EINTR { continue }
                        guard count > 0 else { throw AgentError("\(shown): cannot write \(HomeArchive.shown(file.entry.path)): \(String(cString: strerror(errno)))") }
                        done += count
                    }
                }
                guard fitted != nil else { throw noRoom(for: file.entry.path) }
            case .end: try endFile()
            }
        }

        private mutating func begin(_ entry: TarEntry) throws {
            var names = try HomeArchive.names(ofMember: entry.path)
            // As deep as a pack goes, no deeper: each level is a walk from the base for every member.
            guard names.count <= Packer.maxDepth else {
                throw AgentError("\(shown): \(HomeArchive.shown(entry.path)) is more than \(Packer.maxDepth) folders deep; nothing past it was copied")
            }
            if let rename {
                if topLevel == nil { topLevel = names[0] }
                guard names[0] == topLevel else {
                    throw AgentError("\(shown) does not exist, and the archive holds more than one thing to name so; copy into a folder that exists")
                }
                names[0] = rename
            }
            var directory = base
            for name in names.dropLast() {
                directory = try open(name, in: directory, entry: entry)
            }
            // A folder the unit could not write to (root's, say) gets nothing from root either.
            guard let folder = try? directory.status(), HomeArchive.permits(account, 0o3, folder) else {
                throw AgentError("\(shown): the folder for \(HomeArchive.shown(entry.path)) cannot be written by the unit's account")
            }
            let name = names[names.count - 1]
            let mode = mode_t(entry.mode & 0o777)
            switch entry.kind {
            case .directory:
                let (made, isNew) = try ensureFolder(name, in: directory, mode: 0o700, entry: entry, onTheWay: false)
                if try made.owner() == account { fchmod(made.fd, mode) }
                let cost = names.reduce(64) { $0 + $1.utf8.count + 16 }
                if directoryTimes[names] != nil {
                    directoryTimes[names] = entry.modified
                } else if memory.take(cost, for: home) {
                    directoryTimes[names] = entry.modified
                    timesBytes += cost
                } else if isNew {
                    foldersPastBudget += 1
                }
            case .file:
                // Refused at once when the whole file cannot fit (each piece is checked as written).
                guard try HomeRoom.ifRoom(for: .bytes(entry.size), on: directory.fd, {}) != nil else {
                    throw AgentError("\(shown): no room for \(HomeArchive.shown(entry.path)) (\(entry.size) bytes) on the disk of the home")
                }
                // A new name beside the old, renamed over it at the end: never a write through a
                // link or into an inode another name shares.
                let temporary = ".berth-cp-\(UInt64.random(in: 0...UInt64.max))"
                // A new name grows its folder, whatever the file's size: an empty file needs room too.
                guard let fd = try HomeRoom.ifRoom(for: .name, on: directory.fd, {
                    openat(directory.fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                }) else { throw noRoom(for: entry.path) }
                guard fd >= 0 else { throw AgentError("\(shown): cannot create \(HomeArchive.shown(entry.path)): \(String(cString: strerror(errno)))") }
                fchown(fd, account.uid, account.gid)
                file = (directory, temporary, name, fd, entry)
            case .symlink(let target):
                let made = try HomeRoom.ifRoom(for: .name, on: directory.fd) { () -> Int32 in
                    unlinkat(directory.fd, name, 0)
                    return symlinkat(target, directory.fd, name)
                }
                guard let made else { throw noRoom(for: entry.path) }
                guard made == 0 else {
                    throw AgentError("\(shown): cannot make the link \(HomeArchive.shown(entry.path)): \(String(cString: strerror(errno)))")
                }
                // Given to the account by descriptor, once it is sure to be the link just made:
                // by name, a hard link to root's file swapped in meanwhile would be given away.
                let link = openat(directory.fd, name, Self.openPath | O_NOFOLLOW | O_CLOEXEC)
                if link >= 0 {
                    var info = stat()
                    if fstat(link, &info) == 0, info.st_mode & S_IFMT == S_IFLNK, info.st_uid == getuid() {
                        fchownat(link, "", account.uid, account.gid, Self.emptyPath | AT_SYMLINK_NOFOLLOW)
                    }
                    close(link)
                }
                written += 1
            case .other(let flag):
                throw AgentError("\(shown): \(HomeArchive.shown(entry.path)) is a \(Self.kindName(flag)); only files, folders and links are copied")
            }
        }

        private mutating func endFile() throws {
            guard let current = file else { return }
            file = nil
            defer { close(current.fd) }
            var times = [timespec(tv_sec: Int(current.entry.modified), tv_nsec: 0), timespec(tv_sec: Int(current.entry.modified), tv_nsec: 0)]
            fchmod(current.fd, mode_t(current.entry.mode & 0o777))
            futimens(current.fd, &times)
            // The final name may grow the folder where the temporary one did not.
            let code = try HomeRoom.ifRoom(for: .name, on: current.directory.fd) {
                renameat(current.directory.fd, current.temporary, current.directory.fd, current.name) == 0 ? 0 : errno
            }
            guard code == 0 else {
                unlinkat(current.directory.fd, current.temporary, 0)
                guard let code else { throw noRoom(for: current.entry.path) }
                throw AgentError("\(shown): cannot put \(HomeArchive.shown(current.entry.path)) in place: \(String(cString: strerror(code)))")
            }
            written += 1
        }

        /// Ends the copy: directories get their times; a file cut off midway is removed.
        mutating func finish() throws {
            defer {
                memory.give(timesBytes, for: home)
                timesBytes = 0
            }
            if let current = file {
                close(current.fd)
                unlinkat(current.directory.fd, current.temporary, 0)
                file = nil
            }
            for (names, modified) in directoryTimes {
                // Walked again from the base, one name at a time, never through a link.
                var directory: SafeDirectory? = base
                for name in names { directory = try? directory?.child(name) }
                guard let directory else { continue }
                var times = [timespec(tv_sec: Int(modified), tv_nsec: 0), timespec(tv_sec: Int(modified), tv_nsec: 0)]
                futimens(directory.fd, &times)
            }
            written += directoryTimes.count + foldersPastBudget
        }

        private func open(_ name: String, in directory: SafeDirectory, entry: TarEntry) throws -> SafeDirectory {
            try ensureFolder(name, in: directory, mode: 0o755, entry: entry, onTheWay: true).directory
        }

        /// The folder `name` in `directory`, made (the account's) when missing, if the disk has a
        /// block left for users; whether it was made now.
        private func ensureFolder(
            _ name: String, in directory: SafeDirectory, mode: mode_t, entry: TarEntry, onTheWay: Bool
        ) throws -> (directory: SafeDirectory, isNew: Bool) {
            let place = onTheWay ? "a folder on the way to \(HomeArchive.shown(entry.path))" : HomeArchive.shown(entry.path)
            let failed = { (error: SafeDirectory.Refusal) in AgentError("\(shown): \(place) \(HomeArchive.reason(error))") }
            if let existing = try existingFolder(name, in: directory, failed) { return (existing, false) }
            let account = account
            let made: SafeDirectory??
            do {
                made = try HomeRoom.ifRoom(for: .name, on: directory.fd) { () throws(SafeDirectory.Refusal) in
                    try directory.makeChild(name, mode: mode, owner: account)
                }
            } catch let error as SafeDirectory.Refusal {
                throw failed(error)
            }
            guard let made else { throw noRoom(for: entry.path) }
            if let made { return (made, true) }
            // Made by the user in between.
            guard let existing = try existingFolder(name, in: directory, failed) else { throw failed(SafeDirectory.Refusal(path: name, code: ENOENT)) }
            return (existing, false)
        }

        /// The folder `name` in `directory` if there is one; a link or anything else is refused.
        private func existingFolder(_ name: String, in directory: SafeDirectory, _ failed: (SafeDirectory.Refusal) -> AgentError) throws -> SafeDirectory? {
            do {
                return try directory.child(name)
            } catch {
                if error.isMissing { return nil }
                throw failed(error)
            }
        }

        private func noRoom(for path: String) -> AgentError {
            AgentError("\(shown): no room left for \(HomeArchive.shown(path)) on the disk of the home: the rest of it is kept for root")
        }

        /// Linux's O_PATH and AT_EMPTY_PATH, which Glibc's module leaves out (they need
        /// _GNU_SOURCE): a descriptor naming a link itself, and a call on that descriptor.
        static let openPath: Int32 = 0o10000000
        static let emptyPath: Int32 = 0x1000

        private static func kindName(_ flag: UInt8) -> String {
            switch flag {
            case UInt8(ascii: "1"): "hard link"
            case UInt8(ascii: "3"), UInt8(ascii: "4"): "device"
            case UInt8(ascii: "6"): "FIFO"
            default: "member of type \(flag)"
            }
        }
    }
}
