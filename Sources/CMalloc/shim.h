// glibc's allocator tuning. Glibc's Swift module leaves out <malloc.h>; these are called
// directly, not looked up with dlsym, which finds nothing in a statically linked `berth`.
// Elsewhere (macOS, musl) there is nothing to tune and the module is empty.
#if defined(__linux__)
#include <features.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>

static inline int berth_mallopt(int parameter, int value) { return mallopt(parameter, value); }
static inline int berth_malloc_trim(size_t pad) { return malloc_trim(pad); }
#endif
