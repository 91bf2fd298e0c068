/* The BLAS kernel choice (with the one-time re-exec), thread counts and the banner. */
#include "runtime.h"

#include <cblas.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"
#include "log.h"

/* True when the CPU has the AVX-512 subsets the SkylakeX kernels use. */
static int cpu_has_skylakex_isa(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
}

/* The environment named the BLAS kernel itself (not our re-exec): its choice is kept. */
static bool coretype_from_user;

void mr_runtime_prepare(int argc, char **argv) {
    (void)argc;
    coretype_from_user = getenv("OPENBLAS_CORETYPE") && !getenv("MRCNN_NO_REEXEC");
    if (getenv("OPENBLAS_CORETYPE") || getenv("MRCNN_NO_REEXEC")) return;
    const char *core = openblas_get_corename();
    if (!cpu_has_skylakex_isa() || !core || strcasecmp(core, "haswell") != 0) return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    setenv("MRCNN_NO_REEXEC", "1", 1); /* never loop, whatever the library does */
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the kernel we have. */
}

int mr_runtime_threads(void) {
    return omp_get_max_threads();
}

void mr_runtime_set_threads(int n) {
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

const char *mr_runtime_numerics(void) {
    static char buf[96];
    snprintf(buf, sizeof buf, "kernel %s, %d thread%s", openblas_get_corename(),
             mr_runtime_threads(), mr_runtime_threads() == 1 ? "" : "s");
    /* The process count decides how the gradient sums are split, hence their rounding. */
    if (mr_dist_size() > 1)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ", %d processes", mr_dist_size());
    return buf;
}

const char *mr_runtime_blas_desc(void) {
    static char buf[256];
    const char *config = openblas_get_config();
    snprintf(buf, sizeof buf, "%s %s", config ? config : "OpenBLAS", mr_runtime_numerics());
    return buf;
}

const char *mr_runtime_blas_note(void) {
    static char buf[256];
    const char *core = openblas_get_corename();
    if (!coretype_from_user || !cpu_has_skylakex_isa() || !core || strcasecmp(core, "haswell"))
        return NULL;
    snprintf(buf, sizeof buf,
             "OPENBLAS_CORETYPE=%s is set; unsetting it would use this CPU's AVX-512 kernels "
             "(about 1.7x faster matrix products)",
             getenv("OPENBLAS_CORETYPE"));
    return buf;
}

void mr_runtime_banner(void) {
    const char *note = mr_runtime_blas_note();
    if (note) mr_info("%s", note);
}
