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

/// Writing keys and certificates: never over an existing file, never through a link, keys
/// readable by their owner alone from the moment they exist.
public enum NewFiles {
    /// Refuses, naming every one, if any of `paths` exists: a half-written set is worse than none.
    public static func checkAbsent(_ paths: [String]) throws(TLSFileError) {
        let existing = paths.filter { path in
            var info = stat()
            return lstat(path, &info) == 0
        }
        guard existing.isEmpty else {
            throw TLSFileError("\(existing.joined(separator: ", ")) already exist\(existing.count == 1 ? "s" : ""); move \(existing.count == 1 ? "it" : "them") away first (nothing was written)")
        }
    }

    /// Writes `text` to a new file of `mode`.
    public static func write(_ text: String, to path: String, mode: mode_t) throws(TLSFileError) {
        try write(Array(text.utf8), to: path, mode: mode)
    }

    /// Writes `bytes` to a new file of `mode`, synced to the disk first with `sync`.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t, sync: Bool = false) throws(TLSFileError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw TLSFileError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        // The umask may have taken bits away; never added any.
        _ = fchmod(descriptor, mode)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { throw TLSFileError("cannot write \(path): \(result == 0 ? "the disk took nothing more" : String(cString: strerror(errno)))") }
            written += result
        }
        if sync && fsync(descriptor) != 0 { throw TLSFileError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    /// Makes `directory` and the folders on its way (mode 0700) where they do not exist. The
    /// directory itself must be this user's and writable by nobody else: whoever could write in
    /// it could swap a key or certificate before it is copied out.
    public static func makeDirectory(_ directory: String) throws(TLSFileError) {
        var path = directory.hasPrefix("/") ? "" : "."
        for part in directory.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                throw TLSFileError("cannot create \(path): \(String(cString: strerror(errno)))")
            }
        }
        var info = stat()
        guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw TLSFileError("\(directory) is not a folder")
        }
        guard info.st_uid == geteuid(), info.st_mode & 0o022 == 0 else {
            throw TLSFileError("\(directory) belongs to another user or others may write in it; use a folder of your own (mode 700)")
        }
    }
}

/// Reading a PEM file (a certificate, a chain or a key) whole: they are a few kilobytes.
public enum PEMFile {
    static let maximumSize = 1 << 20

    public static func read(_ path: String) throws(TLSFileError) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw TLSFileError("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        // Never more than the limit is read, whatever the file's size. The buffer starts at the
        // size the file says it has and grows only if it grows: a CA file is read at every TLS
        // login, and reading through a slice of a 1 MB array copied the whole array per read.
        var info = stat()
        let said = fstat(descriptor, &info) == 0 ? Int(info.st_size) : 0
        let limit = maximumSize + 1
        var bytes = [UInt8](repeating: 0, count: min(max(said + 1, 4096), limit))
        var count = 0
        while count < limit {
            if count == bytes.count { bytes += repeatElement(0, count: min(bytes.count, limit - bytes.count)) }
            let result = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + count, $0.count - count) }
            if result < 0 && errno == EINTR { continue }
            guard result >= 0 else { throw TLSFileError("cannot read \(path): \(String(cString: strerror(errno)))") }
            if result == 0 { break }
            count += result
        }
        guard count <= maximumSize else { throw TLSFileError("\(path) is over 1 MB; is it a PEM file?") }
        return String(decoding: bytes[..<count], as: UTF8.self)
    }
}
