/* Tiny C shim over MPI for Swift: MPI handles (MPI_Comm, MPI_FLOAT, ...) are C macros or
 * implementation-specific types, so Swift reaches MPI only through these plain functions.
 * Symbols are prefixed ilshim_ (not inloop_): they are internal, not part of the public C API. */
#ifndef INLOOP_MPI_SHIM_H
#define INLOOP_MPI_SHIM_H
#include <stdint.h>

/* 1 if MPI_Init has been called and MPI_Finalize has not, else 0. Safe to call at any time. */
int ilshim_mpi_is_usable(void);
/* Library version string of the MPI implementation the library was linked with. */
const char *ilshim_mpi_library_version(void);

#endif
