/* Allocation counting that leaves out OpenBLAS's own allocations (include instead of alloc_count.h,
 * in exactly one translation unit). OpenBLAS 0.3.21's AVX-512 small-matrix GEMM kernels
 * (dgemm_small_kernel_*_SKYLAKEX / _COOPERLAKE, chosen on AVX-512 CPUs, Intel and AMD alike) malloc
 * a buffer on every call; its AVX2 kernels (Haswell, Zen) do not. That is OpenBLAS's business, not
 * InLoop's: an allocation with an OpenBLAS frame on its call stack is counted apart
 * (count_openblas()), as Tests/mpi/alloc_count_mpi.c does for Open MPI. Every other allocation,
 * InLoop's and the Swift runtime's, is counted. Needs -D_GNU_SOURCE or defines it (dladdr). */
#ifndef INLOOP_TEST_ALLOC_COUNT_OPENBLAS_H
#define INLOOP_TEST_ALLOC_COUNT_OPENBLAS_H
#ifdef INLOOP_SANITIZE
/* under a sanitizer nothing is counted (see alloc_count.h) */
#include "alloc_count.h"
static void count_openblas_prepare(void) {}
static long count_openblas(void) { return 0; }
static void count_start_all(void) { count_start(); }
#else
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <execinfo.h>
#include <string.h>

static int alloc_from_openblas(void);
#define ALLOC_COUNT_FILTER() (!alloc_from_openblas())
#include "alloc_count.h"

static long openblas_allocs;
static __thread int openblas_inside;   /* backtrace/dladdr must not count (or recurse into) themselves */

static int alloc_from_openblas(void) {
    void *frames[48];
    int n, i, blas = 0;
    if (openblas_inside) return 1;
    openblas_inside = 1;
    n = backtrace(frames, 48);
    for (i = 2; i < n && !blas; i++) {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_fname && strstr(info.dli_fname, "libopenblas")) blas = 1;
    }
    if (blas) __atomic_fetch_add(&openblas_allocs, 1, __ATOMIC_RELAXED);
    openblas_inside = 0;
    return blas;
}

/* The first backtrace loads libgcc's unwinder (it allocates): call this once before counting. */
static void count_openblas_prepare(void) {
    void *frames[4];
    (void)backtrace(frames, 4);
}

/* OpenBLAS's allocations since the last count_start (read after count_stop). */
static long count_openblas(void) { return __atomic_load_n(&openblas_allocs, __ATOMIC_SEQ_CST); }

static void count_start_all(void) {
    __atomic_store_n(&openblas_allocs, 0, __ATOMIC_SEQ_CST);
    count_start();
}
#endif /* INLOOP_SANITIZE */
#endif
