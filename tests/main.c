/* The suite's entry point: Criterion's own, after the BLAS kernel choice every mrcnn process
 * makes (core/runtime.h), so that the tests and the `mrcnn` runs they start use one kernel and
 * agree to the bit. */
#include <criterion/criterion.h>

#include "../core/runtime.h"

int main(int argc, char **argv) {
    mr_runtime_prepare(argc, argv);
    mr_runtime_pin_kernel(); /* each test's worker starts from this binary, skipping main */
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
