#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

// The few things `berth` took from the whole of Foundation (NSString paths, NSLock, FileHandle,
// CharacterSet). Without them it links FoundationEssentials alone, as the daemons do, and starts
// without CoreFoundation: every command a user runs starts sooner.

/// A path's last part, as `basename` names it: "c" for "/a/b/c" and "/a/b/c/", "/" for "/".
func lastPathComponent(_ path: String) -> String {
    if let last = path.split(separator: "/").last { return String(last) }
    return path.hasPrefix("/") ? "/" : path
}

/// A path without its last part, as `dirname` gives it but "" for a bare name: "/a/b" for
/// "/a/b/c", "/" for "/a", "" for "c".
func parentPath(_ path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "" }
    var parent = trimmed[..<slash]
    while parent.hasSuffix("/") { parent = parent.dropLast() }
    return parent.isEmpty ? "/" : String(parent)
}

/// The folder a path names a thing in: its parent, or "." for a bare name.
func folder(of path: String) -> String {
    let parent = parentPath(path)
    return parent.isEmpty ? "." : parent
}

/// Up to `limit` bytes from `descriptor`, until its end.
func readAll(_ descriptor: Int32, limit: Int) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while data.count < limit {
        let count = read(descriptor, &buffer, min(buffer.count, limit - data.count))
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        data.append(contentsOf: buffer[0..<count])
    }
    return data
}

extension String {
    /// Without the characters at either end that `drop` says to drop.
    func trimmed(_ drop: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !drop($0) }), let last = lastIndex(where: { !drop($0) }) else { return "" }
        return String(self[first...last])
    }
}

/// A mutex to lock and unlock across the branches of one function, as `NSLock` is used.
final class ThreadLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() {
        pthread_mutex_lock(mutex)
    }

    func unlock() {
        pthread_mutex_unlock(mutex)
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
