/* Tiny C shim over MPI for Swift: MPI handles (MPI_Comm, MPI_INT64_T, ...) are C macros or
 * implementation-specific types, so Swift reaches MPI only through these plain functions.
 * Communicators cross the boundary as Fortran handles (MPI_Fint, converted with MPI_Comm_f2c), the
 * one portable integer representation. Every function returns an MPI error code (0 = MPI_SUCCESS),
 * or ILSHIM_NOT_INITIALIZED when MPI is not initialised (or already finalised): the shim then calls
 * nothing else in MPI. Symbols are prefixed ilshim_ (internal, not part of the public C API). */
#ifndef INLOOP_MPI_SHIM_H
#define INLOOP_MPI_SHIM_H
#include <stdint.h>

#define ILSHIM_NOT_INITIALIZED (-1000)

/* 1 if MPI_Init has been called and MPI_Finalize has not, else 0. Safe to call at any time. */
int ilshim_mpi_is_usable(void);
/* Library version string of the MPI implementation the library was linked with. */
const char *ilshim_mpi_library_version(void);
/* Text of an MPI error code (or of ILSHIM_NOT_INITIALIZED) into buf. */
void ilshim_error_string(int code, char *buf, int len);

/* *out = a private duplicate of fcomm with MPI_ERRORS_RETURN (collective over fcomm). */
int ilshim_comm_dup(int32_t fcomm, int32_t *out);
int ilshim_comm_free(int32_t fcomm);
int ilshim_comm_rank(int32_t fcomm, int *rank);
int ilshim_comm_size(int32_t fcomm, int *size);
/* Number of ranks of fcomm on this node (MPI_Comm_split_type SHARED; collective over fcomm). */
int ilshim_comm_local_size(int32_t fcomm, int *local_size);
/* In-place all-reduce. */
int ilshim_allreduce_max_f64(int32_t fcomm, double *buf, int64_t count);
/* recv = rank's segment of the element-wise sum of every rank's send (MPI_Reduce_scatter):
 * send holds the segments of all ranks back to back, counts[r] integers of 4 or 8 bytes each. */
int ilshim_reduce_scatter_sum_int(int32_t fcomm, const void *send, void *recv, const int *counts, int bytes);
/* In-place MPI_Allgatherv of float (bytes = 4) or double (bytes = 8) values: each rank's
 * counts[r] values at displs[r] go to every rank. */
int ilshim_allgatherv_real(int32_t fcomm, void *buf, const int *counts, const int *displs, int bytes);
/* Node-shared memory for ranks of fcomm that all run on one node (collective): rank 0 creates a
 * POSIX shared-memory object of `bytes` bytes with its space reserved up front (so a full /dev/shm
 * is an error here, not a SIGBUS later), every rank maps it and the name is unlinked at once (the
 * memory goes away with the last mapping, even after a crash). A token rank 0 writes must be seen by
 * every rank (not so across IPC namespaces). *base is the mapping, or NULL on every rank when any rank
 * could not map it (then the return value is still 0). */
int ilshim_shm_map(int32_t fcomm, int64_t bytes, void **base);
/* Unmaps what ilshim_shm_map mapped (local, not collective). */
void ilshim_shm_unmap(void *base, int64_t bytes);
/* MPI_Barrier with full memory fences on both sides: plain stores to shared memory made before it
 * are seen by every rank after it. */
int ilshim_barrier_fenced(int32_t fcomm);
/* Broadcast of count bytes from root (any size: sent in chunks below INT_MAX). */
int ilshim_bcast_bytes(int32_t fcomm, void *buf, int64_t count, int root);
/* The Fortran handle of MPI_COMM_WORLD. */
int32_t ilshim_comm_world(void);
/* Cores this process may run on (its CPU affinity mask), for the thread policy; not MPI. */
int ilshim_affinity_cores(void);

#endif
