/* mpi_test.h: the preamble every tests/mpi test shares (one copy, not three). */
#ifndef ANX_TESTS_MPI_TEST_H
#define ANX_TESTS_MPI_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "anx/dist.h"

/* 77 (ctest's SKIP), with the reason printed, when this build has no MPI or mpirun is not on
 * PATH.  Else 0, after setting the environment every mpirun here needs and making a fresh
 * folder `<build>/<test>.XXXXXX` in dir (exit 1 if it cannot):
 * - the asan build: LeakSanitizer would fail every rank on Open MPI's own leaks at exit.  They
 *   are suppressed by library (tests/mpi/lsan.supp), which needs the library in the leak's
 *   stack: Open MPI must keep its components loaded (no dlclose) and LSan unwind the whole stack;
 * - CI runs as root, which mpirun refuses without both OMPI_ALLOW_RUN_AS_ROOT variables. */
static inline int mpi_test_prepare(const char *test, char *dir, size_t dirlen)
{
    if (!anx_dist_built()) {
        printf("%s: skipped: this build has no MPI (ANX_WITH_MPI)\n", test);
        return 77;
    }
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        printf("%s: skipped: no mpirun on PATH (apt-get install openmpi-bin)\n", test);
        return 77;
    }
    setenv("LSAN_OPTIONS",
           "suppressions=" ANX_SOURCE_DIR "/tests/mpi/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0", 1);
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    snprintf(dir, dirlen, "%s/%s.XXXXXX", ANX_BINARY_DIR, test);
    if (!mkdtemp(dir)) perror(dir), exit(1);
    return 0;
}

#endif
