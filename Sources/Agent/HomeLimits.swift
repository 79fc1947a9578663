#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// Root may write where users may not: into the blocks a disk keeps for root, which a full disk
/// leaves to the host's own services. Every write the agent makes in a home (a copy's files,
/// folders and links, a saved log) is done only when the disk still has room for users, checked
/// and written under its disk's lock, so copies running at once cannot all pass the same check;
/// one lock per disk, so a slow or hung disk holds up only the writes to it.
enum HomeRoom {
    /// Each held across a check and its write only, never across a suspension.
    private static let locks = Mutex<[UInt64: WriteLock]>([:])

    private static func lock(for fd: Int32) -> WriteLock {
        var info = stat()
        let device = fstat(fd, &info) == 0 ? UInt64(info.st_dev) : 0
        return locks.withLock { locks in
            if let lock = locks[device] { return lock }
            let lock = WriteLock()
            locks[device] = lock
            return lock
        }
    }

    /// What a write needs: its bytes, or what a new name may take (a folder, a link, a file's
    /// name, a rename): a block for its folder to grow and one for what it holds.
    enum Need {
        case bytes(Int)
        case name
    }

    /// What `write` returns if `need` fits in what users may still write on the disk of `fd`
    /// (`f_bavail`); nil, with nothing written, if it does not.
    static func ifRoom<T>(for need: Need, on fd: Int32, _ write: () throws -> T) throws -> T? {
        let lock = lock(for: fd)
        lock.lock()
        defer { lock.unlock() }
        var disk = statvfs()
        if fstatvfs(fd, &disk) == 0 {
            let wanted = switch need {
            case .bytes(let count): UInt64(count)
            case .name: 2 * UInt64(disk.f_bsize)
            }
            guard wanted <= UInt64(disk.f_bavail) * UInt64(disk.f_frsize) else { return nil }
        }
        return try write()
    }
}

/// What root holds in memory for one home's copies at once: the folder listings of the walk while
/// packing, the folder times kept to be set at the end while unpacking. Bounded per home, so a
/// user's copies, however many and however stalled, hold at most `perHome` bytes of the agent's
/// memory, and never take another user's share.
final class CopyMemory: Sendable {
    static let shared = CopyMemory(perHome: 16 << 20)

    let perHome: Int
    private let held = Mutex<[String: Int]>([:])

    init(perHome: Int) {
        self.perHome = perHome
    }

    /// What one more listing or folder time may take for `home` now.
    func room(for home: String) -> Int {
        held.withLock { perHome - ($0[home] ?? 0) }
    }

    /// Takes `bytes` of the home's share; false, with nothing taken, when they do not fit.
    func take(_ bytes: Int, for home: String) -> Bool {
        held.withLock { held in
            let now = held[home] ?? 0
            guard now + bytes <= perHome else { return false }
            held[home] = now + bytes
            return true
        }
    }

    func give(_ bytes: Int, for home: String) {
        guard bytes > 0 else { return }
        held.withLock { held in
            let left = (held[home] ?? 0) - bytes
            held[home] = left > 0 ? left : nil
        }
    }

    /// What a name held in a listing costs: its bytes and the entry around them.
    static func cost(ofName name: String) -> Int { name.utf8.count + 48 }

    /// The sentence a copy refused for this budget ends with.
    var refusal: String {
        "the folders being copied in this home at once hold more names than the agent keeps for one home (\(perHome >= 1 << 20 ? "\(perHome >> 20) MB" : "\(perHome) bytes")); copy fewer or smaller folders at a time"
    }
}

/// A plain mutex for a check and the write it allows, which return values `Mutex` would need sent.
final class WriteLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() { pthread_mutex_init(mutex, nil) }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
}
