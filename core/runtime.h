/* Process-wide set-up: the version, the BLAS kernel and thread choice, the float mode (denormals
 * flushed, from before main()) and the startup banner.
 * Only this file and core/blas.c know OpenBLAS exists. */
#ifndef MR_RUNTIME_H
#define MR_RUNTIME_H

#include <stdbool.h>

#define MR_VERSION "0.1.0"

/* Called first thing in main(). OpenBLAS 0.3.21 falls back to a slower kernel on CPUs it does not
 * know by model: Prescott (SSE3, a sixth of the speed) on Intel Emerald Rapids, Haswell on
 * AVX-512 AMD cores (Zen 4). It picks its kernel when the library loads, so the only way to
 * choose for the user is to re-execute the program once with OPENBLAS_CORETYPE set to the kernel
 * the CPU's instruction set calls for, as later OpenBLAS releases do. An OPENBLAS_CORETYPE the
 * user set is always respected. */
void mr_runtime_prepare(int argc, char **argv);

/* "OpenBLAS 0.3.21 SkylakeX, 2 threads" */
const char *mr_runtime_blas_desc(void);
/* Pins the kernel mr_runtime_prepare chose in OPENBLAS_CORETYPE, for programs started from this
 * binary that skip main() (Criterion's test workers). */
void mr_runtime_pin_kernel(void);
/* The kernel OpenBLAS runs: "SkylakeX". */
const char *mr_runtime_kernel(void);
/* The kernel OpenBLAS picked alone when mr_runtime_prepare replaced it ("Prescott"), else NULL. */
const char *mr_runtime_blas_replaced(void);
/* A sentence for the user when the environment pinned a BLAS kernel slower than this CPU can
 * run, or NULL. */
const char *mr_runtime_blas_note(void);
/* Whether the calling thread flushes denormal floats to zero (every mrcnn thread does, on x86). */
bool mr_runtime_flushes_denormals(void);
int mr_runtime_threads(void);
/* OpenMP and BLAS threads of this process (core/dist.c: one share of the cores per rank). */
void mr_runtime_set_threads(int n);
/* "kernel SkylakeX, 2 threads" (", 2 processes" under mpirun): what decides the float rounding of
 * sums (recorded in checkpoints, since a resume under another is not bit-identical). */
const char *mr_runtime_numerics(void);
/* At startup: one line when the BLAS set-up is worth knowing about (mr_runtime_blas_note),
 * nothing otherwise. */
void mr_runtime_banner(void);

#endif
