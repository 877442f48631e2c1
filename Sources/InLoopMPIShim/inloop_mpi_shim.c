#define _GNU_SOURCE
#include "inloop_mpi_shim.h"
#include <sched.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <mpi.h>

int ilshim_mpi_is_usable(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

const char *ilshim_mpi_library_version(void) {
    static char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (version[0] == '\0') MPI_Get_library_version(version, &len);
    return version;
}

void ilshim_error_string(int code, char *buf, int len) {
    if (len <= 0) return;
    if (code == ILSHIM_NOT_INITIALIZED) {
        snprintf(buf, (size_t)len, "MPI is not initialized (call MPI_Init before passing a communicator to InLoop)");
        return;
    }
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (ilshim_mpi_is_usable() && MPI_Error_string(code, text, &n) == MPI_SUCCESS) snprintf(buf, (size_t)len, "%s", text);
    else snprintf(buf, (size_t)len, "MPI error %d", code);
}

#define REQUIRE_MPI() do { if (!ilshim_mpi_is_usable()) return ILSHIM_NOT_INITIALIZED; } while (0)

int ilshim_comm_dup(int32_t fcomm, int32_t *out) {
    REQUIRE_MPI();
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)fcomm), dup;
    if (comm == MPI_COMM_NULL) return MPI_ERR_COMM;
    int rc = MPI_Comm_dup(comm, &dup);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    *out = (int32_t)MPI_Comm_c2f(dup);
    return MPI_SUCCESS;
}

int ilshim_comm_free(int32_t fcomm) {
    REQUIRE_MPI();
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)fcomm);
    return MPI_Comm_free(&comm);
}

int ilshim_comm_rank(int32_t fcomm, int *rank) {
    REQUIRE_MPI();
    return MPI_Comm_rank(MPI_Comm_f2c((MPI_Fint)fcomm), rank);
}

int ilshim_comm_size(int32_t fcomm, int *size) {
    REQUIRE_MPI();
    return MPI_Comm_size(MPI_Comm_f2c((MPI_Fint)fcomm), size);
}

int ilshim_comm_local_size(int32_t fcomm, int *local_size) {
    REQUIRE_MPI();
    MPI_Comm node;
    int rc = MPI_Comm_split_type(MPI_Comm_f2c((MPI_Fint)fcomm), MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Comm_size(node, local_size);
    MPI_Comm_free(&node);
    return rc;
}

int ilshim_allreduce_max_f64(int32_t fcomm, double *buf, int64_t count) {
    REQUIRE_MPI();
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)fcomm);
    for (int64_t done = 0; done < count;) {
        int n = (int)(count - done > INT_MAX / 2 ? INT_MAX / 2 : count - done);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + done, n, MPI_DOUBLE, MPI_MAX, comm);
        if (rc != MPI_SUCCESS) return rc;
        done += n;
    }
    return MPI_SUCCESS;
}

int ilshim_reduce_scatter_sum_int(int32_t fcomm, const void *send, void *recv, const int *counts, int bytes) {
    REQUIRE_MPI();
    if (bytes != 4 && bytes != 8) return MPI_ERR_TYPE;
    return MPI_Reduce_scatter(send, recv, counts, bytes == 4 ? MPI_INT32_T : MPI_INT64_T, MPI_SUM,
                              MPI_Comm_f2c((MPI_Fint)fcomm));
}

int ilshim_allgatherv_real(int32_t fcomm, void *buf, const int *counts, const int *displs, int bytes) {
    REQUIRE_MPI();
    if (bytes != 4 && bytes != 8) return MPI_ERR_TYPE;
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs,
                          bytes == 4 ? MPI_FLOAT : MPI_DOUBLE, MPI_Comm_f2c((MPI_Fint)fcomm));
}

int ilshim_shm_map(int32_t fcomm, int64_t bytes, void **base) {
    REQUIRE_MPI();
    *base = NULL;
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)fcomm);
    int rank = 0, rc;
    if ((rc = MPI_Comm_rank(comm, &rank)) != MPI_SUCCESS) return rc;
    /* The name, and a token rank 0 writes into the memory: a rank that maps something else (another
     * IPC namespace, say) sees no token and declines, and then nobody uses shared memory. */
    struct { char name[64]; uint64_t token; } id;
    memset(&id, 0, sizeof id);
    int fd = -1;
    void *p = MAP_FAILED;
    if (rank == 0 && bytes >= (int64_t)sizeof(uint64_t)) {
        static unsigned counter = 0;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        snprintf(id.name, sizeof id.name, "/inloop.%ld.%u.%ld", (long)getpid(), counter++, (long)t.tv_nsec);
        id.token = ((uint64_t)getpid() << 32) ^ (uint64_t)t.tv_nsec ^ ((uint64_t)counter << 48) ^ 0x9e3779b97f4a7c15ull;
        fd = shm_open(id.name, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd >= 0 && ftruncate(fd, (off_t)bytes) == 0 && posix_fallocate(fd, 0, (off_t)bytes) == 0)
            p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            memcpy(p, &id.token, sizeof id.token);
        } else {
            if (fd >= 0) shm_unlink(id.name);
            id.name[0] = '\0';
        }
    }
    rc = MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm);
    if (rc != MPI_SUCCESS && rank == 0 && id.name[0] != '\0') shm_unlink(id.name);
    if (rc == MPI_SUCCESS && id.name[0] != '\0') {
        if (rank != 0) {
            fd = shm_open(id.name, O_RDWR, 0600);
            if (fd >= 0) p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED && memcmp(p, &id.token, sizeof id.token) != 0) {
                munmap(p, (size_t)bytes);
                p = MAP_FAILED;
            }
        }
        int mine = p != MAP_FAILED, all = 0;
        rc = MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);   /* every rank mapped it, or none uses it */
        if (rank == 0) shm_unlink(id.name);   /* after everyone opened it */
        if (rc == MPI_SUCCESS && all) *base = p;
        else if (p != MAP_FAILED) munmap(p, (size_t)bytes);
    } else if (p != MAP_FAILED) {
        munmap(p, (size_t)bytes);
    }
    if (fd >= 0) close(fd);
    return rc;
}

void ilshim_shm_unmap(void *base, int64_t bytes) {
    if (base != NULL && bytes > 0) munmap(base, (size_t)bytes);
}

int ilshim_barrier_fenced(int32_t fcomm) {
    REQUIRE_MPI();
    atomic_thread_fence(memory_order_seq_cst);
    int rc = MPI_Barrier(MPI_Comm_f2c((MPI_Fint)fcomm));
    atomic_thread_fence(memory_order_seq_cst);
    return rc;
}

int ilshim_bcast_bytes(int32_t fcomm, void *buf, int64_t count, int root) {
    REQUIRE_MPI();
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)fcomm);
    char *p = (char *)buf;
    for (int64_t done = 0; done < count;) {
        int n = (int)(count - done > INT_MAX / 2 ? INT_MAX / 2 : count - done);
        int rc = MPI_Bcast(p + done, n, MPI_BYTE, root, comm);
        if (rc != MPI_SUCCESS) return rc;
        done += n;
    }
    return MPI_SUCCESS;
}

int32_t ilshim_comm_world(void) { return (int32_t)MPI_Comm_c2f(MPI_COMM_WORLD); }

int ilshim_affinity_cores(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
