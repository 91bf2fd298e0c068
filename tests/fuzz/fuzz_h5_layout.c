/* libFuzzer harness: the weights and checkpoint readers on well-formed HDF5 files the input
 * describes. The body is mr_fuzz_h5_layout in targets.c, which the corpus replay test
 * (tests/test_fuzz_corpus.c) calls too. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mr_fuzz_h5_layout(data, size);
}
