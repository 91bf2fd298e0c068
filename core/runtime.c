/* The BLAS kernel choice (with the one-time re-exec), thread counts and the banner. */
#include "runtime.h"

#include <cblas.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <pmmintrin.h>
#endif

#include "dist.h"
#include "log.h"

/* Denormal floats (below 1.2e-38) are flushed to zero on input and output, as TensorFlow, which
 * Matterport's model runs on, does in its compute threads: on Intel cores each operation that
 * meets one takes a microcode assist of a hundred cycles or more, and small gradients reach
 * them (2.6x the FPN's backward time at 512 on Emerald Rapids). Set before main() so that every
 * thread OpenMP starts later inherits the mode, in the CLI and in Criterion's test workers,
 * which skip main(). */
__attribute__((constructor)) static void flush_denormals(void) {
#if defined(__x86_64__) || defined(__i386__)
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}

bool mr_runtime_flushes_denormals(void) {
#if defined(__x86_64__) || defined(__i386__)
    return _MM_GET_FLUSH_ZERO_MODE() == _MM_FLUSH_ZERO_ON &&
           _MM_GET_DENORMALS_ZERO_MODE() == _MM_DENORMALS_ZERO_ON;
#else
    return false;
#endif
}

/* OpenBLAS's x86-64 kernel families by the widest vectors they use. */
typedef enum { ISA_SSE, ISA_AVX, ISA_AVX2, ISA_AVX512 } isa;

static isa cpu_isa(void) {
    __builtin_cpu_init(); /* libgcc also checks that the OS saves the wide registers */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
    if (__builtin_cpu_supports("avx")) return ISA_AVX;
    return ISA_SSE;
}

static const char *const isa_name[] = {"SSE", "AVX", "AVX2", "AVX-512"};
/* The kernel to ask for on each level, as later OpenBLAS releases choose for CPUs they do not
 * know by model (Cooperlake's single-precision kernels are SkylakeX's). */
static const char *const isa_kernel[] = {NULL, "Sandybridge", "Haswell", "SkylakeX"};

/* The kernels OpenBLAS 0.3.21 falls back to on a CPU it does not know by model: Prescott for an
 * unknown Intel model (Emerald Rapids, at a sixth of the AVX-512 kernels' speed), Haswell or Zen
 * for AVX-512 AMD cores (Zen 4), Sandybridge for AVX ones without AVX2. Any other kernel was
 * picked by model and is left alone. Returns the level `core` stands for, or -1 when it is not a
 * fallback. */
static int fallback_level(const char *core) {
    static const struct {
        const char *core;
        isa level;
    } fallbacks[] = {
        {"Prescott", ISA_SSE}, {"Sandybridge", ISA_AVX}, {"Haswell", ISA_AVX2}, {"Zen", ISA_AVX2}};
    for (size_t i = 0; core && i < sizeof fallbacks / sizeof fallbacks[0]; i++)
        if (!strcasecmp(core, fallbacks[i].core)) return (int)fallbacks[i].level;
    return -1;
}

/* The kernel this CPU should run instead of `core`, or NULL when `core` is as good. */
static const char *better_kernel(const char *core) {
    int level = fallback_level(core);
    isa have = cpu_isa();
    return level >= 0 && (int)have > level ? isa_kernel[have] : NULL;
}

/* The environment named the BLAS kernel itself (not our re-exec): its choice is kept. */
static bool coretype_from_user;
/* The kernel OpenBLAS picked alone, when the re-exec replaced it. */
static char replaced[32];

/* Set for the re-executed process only: the kernel it replaced. */
#define REPLACED_VAR "MRCNN_BLAS_REPLACED"

void mr_runtime_prepare(int argc, char **argv) {
    (void)argc;
    const char *was = getenv(REPLACED_VAR);
    if (was) {
        /* OpenBLAS has read its kernel by now: the programs this one starts (mpirun's ranks,
         * torchvision in the bench) get the user's environment back and choose for themselves. */
        snprintf(replaced, sizeof replaced, "%s", was);
        unsetenv(REPLACED_VAR);
        unsetenv("OPENBLAS_CORETYPE");
        return;
    }
    coretype_from_user = getenv("OPENBLAS_CORETYPE") != NULL;
    if (coretype_from_user) return;
    const char *core = openblas_get_corename(), *better = better_kernel(core);
    if (!better) return;
    setenv(REPLACED_VAR, core, 1); /* also: never a second re-exec, whatever the library does */
    setenv("OPENBLAS_CORETYPE", better, 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the kernel we have. */
    unsetenv(REPLACED_VAR);
    unsetenv("OPENBLAS_CORETYPE");
}

void mr_runtime_pin_kernel(void) {
    if (replaced[0]) setenv("OPENBLAS_CORETYPE", openblas_get_corename(), 1);
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
    static char buf[320];
    const char *config = openblas_get_config(), *was = mr_runtime_blas_replaced();
    snprintf(buf, sizeof buf, "%s %s", config ? config : "OpenBLAS", mr_runtime_numerics());
    if (was)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf),
                 "; mrcnn chose this kernel over %s, OpenBLAS's fallback for this CPU", was);
    return buf;
}

const char *mr_runtime_blas_note(void) {
    static char buf[256];
    const char *core = openblas_get_corename();
    const char *better = better_kernel(core);
    if (!coretype_from_user || !better) return NULL;
    snprintf(buf, sizeof buf,
             "OPENBLAS_CORETYPE=%s is set; unsetting it would use this CPU's %s kernels (%s), "
             "with faster matrix products",
             getenv("OPENBLAS_CORETYPE"), isa_name[cpu_isa()], better);
    return buf;
}

const char *mr_runtime_kernel(void) {
    return openblas_get_corename();
}

const char *mr_runtime_blas_replaced(void) {
    return replaced[0] ? replaced : NULL;
}

void mr_runtime_banner(void) {
    const char *note = mr_runtime_blas_note();
    if (note) mr_info("%s", note);
}
