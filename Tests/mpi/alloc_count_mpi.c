/* Allocation counting for the MPI Fortran test: counts allocations made while counting is on,
 * except those made inside the MPI library itself (its collectives may allocate temporary
 * buffers per call; that is MPI's business, not InLoop's). Whether a call comes from MPI is read
 * off the call stack: any frame in libmpi, Open MPI's components or libopen-pal. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <string.h>

static int from_mpi(void);
static long mpi_allocs;
#define ALLOC_COUNT_FILTER() (!from_mpi())
#include "../c/alloc_count.h"

static __thread int inside;   /* backtrace/dladdr must not count (or recurse into) themselves */

static int from_mpi(void) {
    if (inside) return 1;
    inside = 1;
    void *frames[48];
    int n = backtrace(frames, 48), mpi = 0;
    for (int i = 2; i < n && !mpi; i++) {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_fname &&
            (strstr(info.dli_fname, "libmpi") || strstr(info.dli_fname, "openmpi") || strstr(info.dli_fname, "open-pal")))
            mpi = 1;
    }
    if (mpi) __atomic_fetch_add(&mpi_allocs, 1, __ATOMIC_RELAXED);
    inside = 0;
    return mpi;
}

/* For Fortran (bind(C)). The first backtrace loads libgcc's unwinder: do it before counting. */
void test_count_start(void) {
    void *frames[4];
    backtrace(frames, 4);
    mpi_allocs = 0;
    count_start();
}
long test_count_stop(void) { return count_stop(0); }
long test_count_mpi(void) { return mpi_allocs; }
