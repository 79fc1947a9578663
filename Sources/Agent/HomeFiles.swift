import BerthAPI
import BerthCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Root's file work in users' homes (a home's directories, a unit's saved log), done through
/// descriptors opened without following links: a user can swap any entry of their home for a
/// link at any moment, and root must never write or chown through one.
enum HomeFiles {
    /// What every home holds; the unit's container sees the home as /app.
    static let directories = ["script", "data", "config", "logs"]

    /// Opens `home` walking from "/" (or from `homeRoot`, the admin's, which may be reached through
    /// links) one name at a time without following a link, makes it when missing and `account` is
    /// given, then makes its `script data config logs` owned by the account the units run as:
    /// `account`, or the home's owner. Returns that account; root's is refused. An entry already
    /// there is left alone whatever it is, and "already there" is success: several units of one
    /// user start at once.
    static func prepare(home: String, homeRoot: String?, account: UnixAccount?) throws -> UnixAccount {
        if let account, account.isRoot {
            throw AgentError("home \(home): account \(account) is root's; give the user a <Uid> of their own in docker_user.xml")
        }
        let (parent, name) = try openParent(of: home, homeRoot: homeRoot)
        let directory = try openHome(name, in: parent, home: home, account: account)
        let owner = try account ?? inHome(home) { () throws(SafeDirectory.Refusal) in try directory.owner() }
        guard !owner.isRoot else { throw rootOwned(home, owner) }
        try inHome(home) { () throws(SafeDirectory.Refusal) in
            for name in directories { _ = try directory.makeChild(name, mode: 0o755, owner: owner) }
        }
        return owner
    }

    /// Saves a unit's log: streams `chunks` into `<home>/logs/<fileName>`, created (never opened
    /// if it exists) and given to `owner` (nil: the home's owner), keeping its newest `cap` bytes behind a line saying how
    /// many were dropped. When the home cannot take it safely (a link, not a directory, missing,
    /// the name taken) the log goes to `<fallbackDirectory>/<user>/`, root's, and the result says
    /// why. Memory holds one chunk and a 64 KiB buffer, never the whole log.
    static func saveLog<Chunks: AsyncSequence>(
        home: String, homeRoot: String?, user: String, fileName: String, owner: UnixAccount?,
        fallbackDirectory: String, cap: Int, chunks: Chunks
    ) async throws -> SavedLog where Chunks.Element == Data {
        try checkName(user, "user name")
        try checkName(fileName, "log file name")
        guard cap > 0 else { throw AgentError("log cap \(cap) must be above 0 bytes") }
        let (file, reason) = try createLogFile(
            home: home, homeRoot: homeRoot, user: user, fileName: fileName, owner: owner, fallbackDirectory: fallbackDirectory)
        var log = CappedLog(file: file, cap: cap)
        try await log.write(chunks)
        return SavedLog(path: file.path, bytes: log.length, droppedBytes: log.dropped, fallbackReason: reason, unsavedBytes: log.unsaved)
    }

    /// The home, opened walking as `prepare` does, for `berth cp`; with the account its files
    /// belong to (`account`, or the home's owner).
    static func open(home: String, homeRoot: String?, account: UnixAccount?) throws -> (SafeDirectory, UnixAccount) {
        let owner = try prepare(home: home, homeRoot: homeRoot, account: account)
        let (parent, name) = try openParent(of: home, homeRoot: homeRoot)
        return (try inHome(home) { () throws(SafeDirectory.Refusal) in try parent.child(name) }, owner)
    }

    // MARK: - The walk

    /// The directory holding the home, reached without following a link below the home root, and
    /// the home's own name.
    private static func openParent(of home: String, homeRoot: String?) throws -> (SafeDirectory, String) {
        let names = try homeNames(home)
        var (directory, rest) = try walkStart(names, home: home, homeRoot: homeRoot)
        for name in rest.dropLast() {
            try checkNobodyCanSwap(name, in: directory, home: home)
            directory = try inHome(home) { () throws(SafeDirectory.Refusal) in try directory.child(name) }
        }
        try checkNobodyCanSwap(names[names.count - 1], in: directory, home: home)
        return (directory, names[names.count - 1])
    }

    /// The engine mounts a home by its path, following links as root: every folder on the way must
    /// be one where nobody but root (or this agent's own account) can rename `name` into a link.
    /// A sticky folder (`/tmp`) lets others rename only what they own.
    private static func checkNobodyCanSwap(_ name: String, in directory: SafeDirectory, home: String) throws {
        let info = try inHome(home) { () throws(SafeDirectory.Refusal) in try directory.status() }
        let trusted = { (uid: uid_t) in uid == 0 || uid == geteuid() }
        let othersMayWrite = info.st_mode & 0o022 != 0
        let sticky = info.st_mode & S_ISVTX != 0
        guard trusted(info.st_uid), !othersMayWrite || sticky else {
            throw AgentError("home \(home): \(directory.path) can be changed by other users (owner \(info.st_uid), mode \(String(info.st_mode & 0o7777, radix: 8))); homes must lie in folders only root can change")
        }
        if othersMayWrite, let entry = try? directory.status(of: name), !trusted(entry.st_uid) {
            throw AgentError("home \(home): \(directory.childPath(name)) belongs to uid \(entry.st_uid) in a folder others can write; homes must lie in folders only root can change")
        }
    }

    /// The home's names from "/" down, refused unless the path is absolute, below "/" and free of
    /// `.` and `..`, which could step out of the directory the admin meant to give.
    private static func homeNames(_ home: String) throws -> [String] {
        let names = home.split(separator: "/").map(String.init)
        guard home.hasPrefix("/"), !names.contains(where: { $0 == "." || $0 == ".." || $0.contains("\0") }) else {
            throw AgentError("home \(home) must be an absolute path without . or .. components")
        }
        guard !names.isEmpty else { throw AgentError("home \(home) must be a directory below /, not / itself") }
        return names
    }

    /// Where the walk begins: "/" when nothing is trusted, else the home root, whose path is the
    /// admin's and may hold links; the home must lie strictly below it, name by name.
    private static func walkStart(_ names: [String], home: String, homeRoot: String?) throws -> (SafeDirectory, ArraySlice<String>) {
        guard let homeRoot else { return (try inHome(home) { () throws(SafeDirectory.Refusal) in try SafeDirectory.root() }, names[...]) }
        for root in rootNames(homeRoot) where names.count > root.count && names.starts(with: root) {
            let path = "/" + root.joined(separator: "/")
            return (try inHome(home) { () throws(SafeDirectory.Refusal) in try SafeDirectory.trusted(path) }, names.dropFirst(root.count))
        }
        throw AgentError("home \(home) is not below the home root \(homeRoot); give the user a home under \(homeRoot)")
    }

    /// The home root's names as written and as resolved, since the admin may name homes either way
    /// when the root is reached through a link.
    private static func rootNames(_ homeRoot: String) -> [[String]] {
        let written = homeRoot.split(separator: "/").map(String.init)
        var roots = homeRoot.hasPrefix("/") && !written.contains(where: { $0 == "." || $0 == ".." }) ? [written] : []
        if let resolved = realpath(homeRoot, nil) {
            roots.append(String(cString: resolved).split(separator: "/").map(String.init))
            free(resolved)
        }
        return roots
    }

    // MARK: - Prepare

    /// The home itself. A missing one is made (0750, the account's) only when the account is known:
    /// otherwise nobody could own it but root.
    private static func openHome(_ name: String, in parent: SafeDirectory, home: String, account: UnixAccount?) throws -> SafeDirectory {
        if let account, let made = try inHome(home, { () throws(SafeDirectory.Refusal) in try parent.makeChild(name, mode: 0o750, owner: account) }) {
            return made
        }
        do throws(SafeDirectory.Refusal) {
            return try parent.child(name)
        } catch let refusal where refusal.isMissing {
            throw AgentError("home \(home) does not exist; create it owned by the user's account, or give the user a <Uid> in docker_user.xml")
        } catch {
            throw homeError(home, error)
        }
    }

    private static func rootOwned(_ home: String, _ owner: UnixAccount) -> AgentError {
        let whose = owner.uid == 0 ? "owned by root" : "in root's group"
        return AgentError(
            "home \(home) is \(whose) (\(owner)); chown it to the user's account (e.g. chown 2001:2001 \(home)) "
                + "or give the user a <Uid> (e.g. <Uid>2001:2001</Uid>) in docker_user.xml")
    }

    /// Runs `body`, turning a refusal into the one-line error an admin reads.
    private static func inHome<T>(_ home: String, _ body: () throws(SafeDirectory.Refusal) -> T) throws(AgentError) -> T {
        do throws(SafeDirectory.Refusal) {
            return try body()
        } catch {
            throw homeError(home, error)
        }
    }

    /// The refusal with what to do about it.
    private static func homeError(_ home: String, _ refusal: SafeDirectory.Refusal) -> AgentError {
        let advice =
            if refusal.isLink { "; Berth follows no links in homes: make it a real directory" }
            else if refusal.isMissing { "; create it (Berth creates only the home's own directory)" }
            else if refusal.code == ENOTDIR { "; it must be a directory" }
            else { "" }
        return AgentError("home \(home): \(refusal)\(advice)")
    }

    // MARK: - Save a log

    /// The log's file, in the home's `logs` when it can be made there without following a link,
    /// else in the fallback directory together with why not.
    private static func createLogFile(
        home: String, homeRoot: String?, user: String, fileName: String, owner: UnixAccount?, fallbackDirectory: String
    ) throws -> (OpenFile, String?) {
        do {
            return (try createInHome(home: home, homeRoot: homeRoot, fileName: fileName, owner: owner), nil)
        } catch {
            return (try createInFallback(fallbackDirectory, user: user, fileName: fileName), "\(error)")
        }
    }

    /// `<home>/logs/<fileName>`, made new and given through its descriptor to `owner`, or to the
    /// home's owner (a root unit's log goes to the user, who could not read it otherwise).
    private static func createInHome(home: String, homeRoot: String?, fileName: String, owner: UnixAccount?) throws -> OpenFile {
        let (parent, name) = try openParent(of: home, homeRoot: homeRoot)
        return try inHome(home) { () throws(SafeDirectory.Refusal) in
            let directory = try parent.child(name)
            // A file of the name is another save of the same second; a link there is refused.
            let file = try createUnique(fileName, in: directory.child("logs"), unlessLink: true)
            if let owner { try file.give(to: owner) } else { try file.give(to: directory.owner()) }
            return file
        }
    }

    /// `<fallback>/<user>/<fileName>` (numbered when taken), all root's: the agent's own
    /// directory, out of the user's reach.
    private static func createInFallback(_ fallback: String, user: String, fileName: String) throws -> OpenFile {
        do throws(SafeDirectory.Refusal) {
            // Only the last name is made: the rest of the path is the admin's to provide.
            mkdir(fallback, 0o700)
            let base = try SafeDirectory.trusted(fallback)
            let directory = try base.childMadeIfMissing(user, mode: 0o700)
            let file = try createUnique(fileName, in: directory)
            prune(directory, keeping: fallbackLogsKept, sparing: file)
            return file
        } catch {
            throw AgentError("log fallback: \(error); give the agent a writable fallback directory")
        }
    }

    /// A user can have every save fall back, logging in and out in a loop: only their newest logs
    /// are kept, so the agent's disk holds at most this many capped logs per user.
    static let fallbackLogsKept = 8

    /// Keeps the newest `kept` files, `newest` (the log just made, which may share its time with
    /// older ones, or reuse a name freed by an earlier prune) always among them.
    private static func prune(_ directory: SafeDirectory, keeping kept: Int, sparing newest: OpenFile) {
        guard let entries = try? directory.entries(), entries.count > kept else { return }
        let others = entries.filter { directory.childPath($0.name) != newest.path }
        for old in others.sorted(by: { ($0.modified, $0.name) > ($1.modified, $1.name) }).dropFirst(kept - 1) {
            directory.remove(old.name)
        }
    }

    /// Saves made within the same second share a name; the later ones get a number before the
    /// extension (`a.log`, `a-1.log`, `a-2.log`). With `unlessLink`, an entry that is a link ends
    /// the search: it was planted, and the caller decides where the log goes instead.
    private static func createUnique(_ name: String, in directory: SafeDirectory, unlessLink: Bool = false) throws(SafeDirectory.Refusal) -> OpenFile {
        var number = 0
        while true {
            do throws(SafeDirectory.Refusal) {
                return try directory.createFile(numbered(name, number), mode: 0o640)
            } catch where error.code == EEXIST && !(unlessLink && error.isLink) && number < 99 {
                number += 1
            }
        }
    }

    static func numbered(_ name: String, _ number: Int) -> String {
        guard number > 0 else { return name }
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "\(name)-\(number)" }
        return "\(name[..<dot])-\(number)\(name[dot...])"
    }

    /// One plain name, which cannot step into another directory.
    private static func checkName(_ name: String, _ what: String) throws {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.contains("\0") else {
            throw AgentError("\(what) \"\(name)\" must be a single file name, without / and not . or ..")
        }
    }
}

/// Where a unit's log was saved, how much of it and, when not in the home, why.
struct SavedLog: Sendable {
    var path: String
    /// The log's bytes in the file, not counting the dropped-bytes line.
    var bytes: Int
    /// The oldest bytes left out to keep the file to its cap.
    var droppedBytes: Int
    /// Why the log is in the agent's fallback directory rather than the home; nil when in the home.
    var fallbackReason: String?
    /// The newest bytes left out because the disk had no room left for users.
    var unsavedBytes = 0
}

/// A directory opened without following symlinks anywhere on its path, for root's work in users' homes.
final class SafeDirectory: Sendable {
    let fd: Int32
    /// The path it was reached by, for messages only: nothing is ever opened by it.
    let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// "/", where a walk with nothing trusted begins.
    static func root() throws(Refusal) -> SafeDirectory {
        try trusted("/")
    }

    /// An admin's directory (the home root, the agent's own), whose path may hold links: they are
    /// the admin's.
    static func trusted(_ path: String) throws(Refusal) -> SafeDirectory {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Refusal(path: path, code: errno) }
        return SafeDirectory(fd: fd, path: path)
    }

    /// The directory `name` in this one, refused when it is a link, not a directory or missing.
    func child(_ name: String) throws(Refusal) -> SafeDirectory {
        let fd = openat(self.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw refusal(name, code: errno) }
        return SafeDirectory(fd: fd, path: childPath(name))
    }

    /// Makes the directory `name` and gives it to `owner`; nil when an entry of that name was
    /// there already, which is left alone whatever it is.
    func makeChild(_ name: String, mode: mode_t, owner: UnixAccount?) throws(Refusal) -> SafeDirectory? {
        guard mkdirat(fd, name, mode) == 0 else {
            let code = errno
            if code == EEXIST { return nil }
            throw Refusal(path: childPath(name), code: code)
        }
        let made = try child(name)
        // Should the user swap the name between mkdirat and openat, only a directory of root's is given away.
        if let owner, try made.owner().uid == geteuid() { try made.give(to: owner) }
        return made
    }

    /// The directory `name`, made (root's) when missing.
    func childMadeIfMissing(_ name: String, mode: mode_t) throws(Refusal) -> SafeDirectory {
        if let made = try makeChild(name, mode: mode, owner: nil) { return made }
        return try child(name)
    }

    /// A new file `name`, never an existing entry nor a link's target.
    func createFile(_ name: String, mode: mode_t) throws(Refusal) -> OpenFile {
        // Read and write: keeping a log's tail reads the file back.
        let fd = openat(self.fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw refusal(name, code: errno) }
        return OpenFile(fd: fd, path: childPath(name))
    }

    func owner() throws(Refusal) -> UnixAccount {
        let info = try status()
        return UnixAccount(uid: info.st_uid, gid: info.st_gid)
    }

    func status() throws(Refusal) -> stat {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Refusal(path: path, code: errno) }
        return info
    }

    /// The entry `name` itself, a link not followed.
    func status(of name: String) throws(Refusal) -> stat {
        var info = stat()
        guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { throw Refusal(path: childPath(name), code: errno) }
        return info
    }

    /// More entries than a listing holds: root lists users' folders, which may hold millions.
    static let maxEntries = 100_000

    /// The names in this directory with their last modification (nanoseconds since 1970), links
    /// not followed; refused (`E2BIG`) past `maxEntries`, and (`ENOBUFS`) once the names taken
    /// from `memory`'s share for `home` (`CopyMemory.cost(ofName:)`, as each is read) find it
    /// spent. What was taken is the caller's to give back: each entry's cost.
    func entries(charging memory: CopyMemory? = nil, for home: String = "") throws(Refusal) -> [(name: String, modified: Int)] {
        let copy = dup(fd)
        guard copy >= 0, let stream = fdopendir(copy) else {
            let code = errno
            if copy >= 0 { close(copy) }
            throw Refusal(path: path, code: code)
        }
        defer { closedir(stream) }
        var found: [(name: String, modified: Int)] = []
        var taken = 0
        func refuse(_ code: Int32) -> Refusal {
            memory?.give(taken, for: home)
            return Refusal(path: path, code: code)
        }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != ".", name != "..", let info = try? status(of: name) else { continue }
            guard found.count < Self.maxEntries else { throw refuse(E2BIG) }
            if let memory {
                let cost = CopyMemory.cost(ofName: name)
                guard memory.take(cost, for: home) else { throw refuse(ENOBUFS) }
                taken += cost
            }
            found.append((name, Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec)))
        }
        return found
    }

    func remove(_ name: String) {
        unlinkat(fd, name, 0)
    }

    func give(to account: UnixAccount) throws(Refusal) {
        guard fchown(fd, account.uid, account.gid) == 0 else { throw Refusal(path: path, code: errno) }
    }

    func childPath(_ name: String) -> String {
        path.hasSuffix("/") ? path + name : path + "/" + name
    }

    /// The refusal to open `name`, saying whether it is a link: with O_DIRECTORY the kernel answers
    /// ENOTDIR for one, and with O_EXCL EEXIST.
    private func refusal(_ name: String, code: Int32) -> Refusal {
        var info = stat()
        let isLink = fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 && info.st_mode & S_IFMT == S_IFLNK
        return Refusal(path: childPath(name), code: code, isLink: isLink)
    }
}

extension SafeDirectory {
    /// Why an entry could not be used: its path, the system's reason, and whether it is a link.
    struct Refusal: Error, CustomStringConvertible {
        let path: String
        let code: Int32
        var isLink = false

        var isMissing: Bool { code == ENOENT }

        var description: String {
            if isLink { return "\(path) is a symbolic link" }
            switch code {
            case ENOENT: return "\(path) does not exist"
            case ENOTDIR: return "\(path) is not a directory"
            case EEXIST: return "\(path) exists already"
            case E2BIG: return "\(path) holds more than \(SafeDirectory.maxEntries) entries; copy it in parts, or pack it in the unit"
            default: return "\(path): \(String(cString: strerror(code)))"
            }
        }
    }
}

/// A file descriptor closed when dropped, with the path it was created at for messages.
final class OpenFile {
    let fd: Int32
    let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    func give(to account: UnixAccount) throws(SafeDirectory.Refusal) {
        guard fchown(fd, account.uid, account.gid) == 0 else { throw SafeDirectory.Refusal(path: path, code: errno) }
    }

    func write(_ data: Data, at offset: Int) throws {
        try data.withUnsafeBytes { try write($0, at: offset) }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let written = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw failure("cannot write") }
            done += written
        }
    }

    /// Fills `buffer` from `offset`; a file shorter than that was cut behind the writer's back.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buffer.count {
            let read = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if read < 0 && errno == EINTR { continue }
            guard read > 0 else { throw read == 0 ? AgentError("log \(path) was cut while being written") : failure("cannot read") }
            done += read
        }
    }

    /// Copies `count` bytes from `source` to `destination` in 64 KiB pieces, from the end first
    /// when the ranges overlap that way, as memmove does.
    func move(from source: Int, to destination: Int, count: Int) throws {
        guard source != destination, count > 0 else { return }
        let piece = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(piece, count), alignment: 16)
        defer { buffer.deallocate() }
        let starts = stride(from: 0, to: count, by: piece)
        for start in destination < source ? Array(starts) : starts.reversed() {
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(piece, count - start)])
            try read(into: slice, at: source + start)
            try write(UnsafeRawBufferPointer(slice), at: destination + start)
        }
    }

    func truncate(_ length: Int) throws {
        guard ftruncate(fd, off_t(length)) == 0 else { throw failure("cannot truncate") }
    }

    private func failure(_ what: String) -> AgentError {
        AgentError("log \(path): \(what): \(String(cString: strerror(errno)))")
    }
}

/// A log file kept to its newest `cap` bytes while it is written: it grows to twice the cap, then
/// its last `cap` bytes move to the front, so the whole log is never held, in memory or on disk.
struct CappedLog {
    let file: OpenFile
    let cap: Int
    /// The log's bytes in the file now.
    private(set) var length = 0
    private(set) var dropped = 0
    /// Bytes not written because the disk had no room left for users: the log stops there.
    private(set) var unsaved = 0

    init(file: OpenFile, cap: Int) {
        self.file = file
        self.cap = cap
    }

    /// Writes every chunk, then cuts to the cap; a stream that fails midway still leaves a capped file.
    mutating func write<Chunks: AsyncSequence>(_ chunks: Chunks) async throws where Chunks.Element == Data {
        do {
            for try await chunk in chunks { try append(chunk) }
        } catch {
            try? finish()
            throw error
        }
        try finish()
    }

    /// Root writes the log, into a home whose disk the user may have filled: once the disk has
    /// no room left for users, the rest is counted, not written (`HomeRoom`). The engine sends a
    /// log a line at a time: lines are written, and the room checked, 64 KB at a time.
    mutating func append(_ chunk: Data) throws {
        guard unsaved == 0 else { unsaved += chunk.count; return }
        pending.append(chunk)
        if pending.count >= Self.piece { try writePending() }
    }

    static let piece = 64 * 1024
    private var pending = Data()

    private mutating func writePending() throws {
        guard !pending.isEmpty else { return }
        let (file, length, bytes) = (self.file, self.length, pending)
        pending = Data()
        guard try HomeRoom.ifRoom(for: .bytes(bytes.count), on: file.fd, { try file.write(bytes, at: length) }) != nil else {
            unsaved = bytes.count
            return
        }
        self.length += bytes.count
        if self.length > 2 * cap { try keepTail(cap, at: 0) }
    }

    /// Cuts to the last `cap` bytes behind a line saying how many were dropped, if any were, and
    /// ends with a line saying how many were not saved, if the disk filled (and the line fits).
    mutating func finish() throws {
        try writePending()
        // The note goes at the end first, so the cut below keeps it with the newest bytes.
        if unsaved > 0 {
            let note = Data("\n[berth: the last \(unsaved) bytes were not saved: the disk has no room left for users]\n".utf8)
            let (file, length) = (self.file, self.length)
            if try HomeRoom.ifRoom(for: .bytes(note.count), on: file.fd, { try file.write(note, at: length) }) != nil {
                self.length += note.count
            }
        }
        let total = dropped + max(0, length - cap)
        if total > 0 {
            let marker = Data("[berth: \(total) earlier bytes dropped]\n".utf8)
            try keepTail(min(length, cap), at: marker.count)
            try file.write(marker, at: 0)
        }
    }

    /// Moves the last `count` bytes to `offset` and ends the file after them.
    private mutating func keepTail(_ count: Int, at offset: Int) throws {
        try file.move(from: length - count, to: offset, count: count)
        try file.truncate(offset + count)
        dropped += length - count
        length = count
    }
}
