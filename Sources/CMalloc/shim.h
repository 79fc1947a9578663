// glibc's allocator tuning. Glibc's Swift module leaves out <malloc.h>; these are called
// directly, not looked up with dlsym, which finds nothing in a statically linked `berth`.
#include <malloc.h>

static inline int berth_mallopt(int parameter, int value) { return mallopt(parameter, value); }
static inline int berth_malloc_trim(size_t pad) { return malloc_trim(pad); }
/// Chunks the allocator took straight from mmap: what a lower threshold would cost.
static inline size_t berth_mmapped_chunks(void) { return mallinfo2().hblks; }
