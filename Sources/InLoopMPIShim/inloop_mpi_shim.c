#include "inloop_mpi_shim.h"
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
