import BerthCLI
import CMalloc
import Foundation
import Testing

/// The allocator settings `berth` and the daemons start with. They are called directly: looked
/// up with dlsym they were silently lost in the statically linked `berth`.
struct MallocTuningTests {
    /// A piece of a stream (up to 1 MB) comes from an arena; a block above the threshold (a
    /// password check's 19 MB) from mmap, even after a large block was freed, which left alone
    /// glibc takes as a reason to raise the threshold for good.
    @Test func theThresholdHoldsAndStreamPiecesComeFromAnArena() {
        MallocTuning.apply()
        free(malloc(8 << 20))
        var before = berth_mmapped_chunks()
        let piece = malloc(1 << 20)
        defer { free(piece) }
        #expect(berth_mmapped_chunks() == before)
        before = berth_mmapped_chunks()
        let large = malloc(3 << 20)
        defer { free(large) }
        #expect(berth_mmapped_chunks() == before + 1)
    }
}
