#if canImport(Glibc)
import Glibc
#endif

/// glibc's allocator settings, applied once at start: the daemons', and `berth`'s for the chunks
/// its streams pass between threads.
///
/// Left alone, glibc gives busy threads arenas of their own (up to 8 per core) and, after a large
/// block is freed, raises its mmap threshold so the next large blocks come from those arenas and
/// stay there. The manager's password check allocates 16 MB (scrypt, N=2^14, r=8) on whichever
/// thread runs it, so each login could pin another 16 MB arena: two arenas and a fixed threshold
/// keep large blocks in mmap, returned to the system when freed.
public enum MallocTuning {
    /// For `berth`, whose streams end with the command.
    public static let clientThreshold = 256 * 1024
    /// For the daemons, which relay streams for days: their pieces (4 to 64 KB, allocated on one
    /// thread and freed on another) left glibc's arenas fragmented, and relaying 3 × 400 MB of exec
    /// output left the manager at 166 to 290 MB resident with a 256 KB threshold; from mmap, each
    /// piece goes back when freed, and it stayed at 45 MB. The cost, a map and unmap per piece, is
    /// small next to moving the piece over the network twice.
    public static let daemonThreshold = 8 * 1024

    public static func apply(mmapThreshold: Int = clientThreshold) {
        #if canImport(Glibc)
        // Glibc's module map leaves out <malloc.h>, so mallopt is looked up; the two parameters
        // are its M_ARENA_MAX (-8) and M_MMAP_THRESHOLD (-3).
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        _ = mallopt(-8, 2)
        _ = mallopt(-3, Int32(mmapThreshold))
        #endif
    }
}
