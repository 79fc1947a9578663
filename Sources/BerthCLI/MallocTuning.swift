#if canImport(Glibc)
import CMalloc
#endif

/// glibc's allocator settings, applied once at start: the daemons', and `berth`'s for the chunks
/// its streams pass between threads.
///
/// Left alone, glibc gives busy threads arenas of their own (up to 8 per core) and, after a large
/// block is freed, raises its mmap threshold so the next large blocks come from those arenas and
/// stay there. The manager's password check allocates 16 to 19 MB (scrypt, Argon2id) on whichever
/// thread runs it, so each login could pin another arena of that size: two arenas and a fixed
/// threshold keep such blocks in mmap, returned to the system when freed.
public enum MallocTuning {
    /// Stream pieces (up to 256 KB, a few MB in flight per stream) stay below the threshold, in
    /// the two arenas: a map and unmap per piece (page faults, and the other core's TLB flushed)
    /// cost `berth cp` a third of its speed. A lower threshold (8 KB) once hid arenas that grew
    /// with output piling up unbounded; streams now hold at most a window each.
    public static let clientThreshold = 2 * 1024 * 1024
    public static let daemonThreshold = 2 * 1024 * 1024

    /// `berth` keeps up to this much free at the top of an arena. A fixed mmap threshold also
    /// fixes glibc's trim threshold at its default, 128 KB: a stream whose pieces came and went
    /// then shrank an arena and grew it again around nearly every piece (`berth call` of 50 MB:
    /// 811 `brk` and 378 `madvise` calls, 1,300 to 1,600 page faults). Twice the mmap threshold,
    /// as glibc's own moving threshold would set it, leaves those pages in place: 30 % less CPU
    /// for that call, and a command gives everything back as it exits. The daemons keep the
    /// default: with it they held 5 MB more after relaying a 50 MB copy (`make bench`).
    public static let clientTrimThreshold = 2 * clientThreshold

    /// Whether glibc took every setting; `trimThreshold` nil leaves glibc's.
    @discardableResult
    public static func apply(mmapThreshold: Int = clientThreshold, trimThreshold: Int? = clientTrimThreshold) -> Bool {
        #if canImport(Glibc)
        let arenas = berth_mallopt(M_ARENA_MAX, 2)
        let threshold = berth_mallopt(M_MMAP_THRESHOLD, Int32(mmapThreshold))
        let trim = trimThreshold.map { berth_mallopt(M_TRIM_THRESHOLD, Int32($0)) } ?? 1
        return arenas == 1 && threshold == 1 && trim == 1
        #else
        return false
        #endif
    }

    /// Gives the system back the free pages inside the arenas, now and then, for as long as the
    /// process runs: a daemon that relayed a burst of streams would otherwise keep their pages
    /// resident, spread between pieces still in use. One pass over two arenas takes well under a
    /// millisecond.
    public static func trimPeriodically(every interval: Duration = .seconds(10)) {
        #if canImport(Glibc)
        Task.detached(priority: .background) {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                _ = berth_malloc_trim(0)
            }
        }
        #endif
    }
}
