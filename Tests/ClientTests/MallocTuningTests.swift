import BerthCLI
import Testing

/// The allocator settings `berth` and the daemons start with. They are called directly: looked
/// up with dlsym they were silently lost in the statically linked `berth`.
struct MallocTuningTests {
    @Test func glibcTakesEverySetting() {
        #expect(MallocTuning.apply())
        #expect(MallocTuning.apply(mmapThreshold: MallocTuning.daemonThreshold, trimThreshold: nil))
    }
}
