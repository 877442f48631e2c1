/* OpenBLAS's cblas.h: cblas_sgemm/cblas_sgemv and openblas_set_num_threads/openblas_get_num_threads. */
#include <cblas.h>
