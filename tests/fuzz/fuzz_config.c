/* libFuzzer harness: config JSON with a write-and-reparse round trip. The body is mr_fuzz_config in
 * targets.c, which the corpus replay test (tests/test_fuzz_corpus.c) calls too. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mr_fuzz_config(data, size);
}
