/* Allocation counting for the C tests: the test executable defines the allocator, so every malloc
 * of the library, the Swift runtime and OpenBLAS comes here (ELF symbol interposition).
 * Include in exactly one translation unit of a test program (it defines malloc and friends). */
#ifndef INLOOP_TEST_ALLOC_COUNT_H
#define INLOOP_TEST_ALLOC_COUNT_H

#ifdef INLOOP_SANITIZE
/* Under a sanitizer (make sanitize) the sanitizer's runtime owns malloc: no interposition here, and
 * the allocation checks are not run (ALLOC_COUNTING is 0; the ordinary run of the suite checks them). */
#define ALLOC_COUNTING 0
static void count_start(void) {}
static long count_stop(long *frees) { if (frees) *frees = 0; return 0; }
#else
#define ALLOC_COUNTING 1
#include <errno.h>
#include <stddef.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t alignment, size_t size);

static int count_on;   /* accessed with __atomic builtins: threads may allocate */
static long n_allocs;
static long n_frees;

/* A test may define ALLOC_COUNT_FILTER() to leave some allocations out (e.g. MPI's own). */
#ifndef ALLOC_COUNT_FILTER
#define ALLOC_COUNT_FILTER() 1
#endif

static void note_alloc(void) {
    if (__atomic_load_n(&count_on, __ATOMIC_RELAXED) && ALLOC_COUNT_FILTER())
        __atomic_fetch_add(&n_allocs, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t size) { note_alloc(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { note_alloc(); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { note_alloc(); return __libc_realloc(p, size); }
void *memalign(size_t alignment, size_t size) { note_alloc(); return __libc_memalign(alignment, size); }

void free(void *p) {
    if (p && __atomic_load_n(&count_on, __ATOMIC_RELAXED)) __atomic_fetch_add(&n_frees, 1, __ATOMIC_RELAXED);
    __libc_free(p);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    void *p;
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % sizeof(void *) != 0) return EINVAL;
    note_alloc();
    p = __libc_memalign(alignment, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) { errno = EINVAL; return NULL; }
    note_alloc();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size) {
    note_alloc();
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

void *pvalloc(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    note_alloc();
    return __libc_memalign(page, size == 0 ? page : (size + page - 1) / page * page);
}

static void count_start(void) {
    __atomic_store_n(&n_allocs, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&n_frees, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&count_on, 1, __ATOMIC_SEQ_CST);
}

/* Stops counting; returns the allocations since count_start and stores the frees. */
static long count_stop(long *frees) {
    __atomic_store_n(&count_on, 0, __ATOMIC_SEQ_CST);
    if (frees) *frees = __atomic_load_n(&n_frees, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&n_allocs, __ATOMIC_SEQ_CST);
}

#endif /* INLOOP_SANITIZE */
#endif
