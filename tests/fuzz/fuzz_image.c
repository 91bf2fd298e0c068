/* libFuzzer harness: image files through mr_image_load. The body is mr_fuzz_image in targets.c,
 * which the corpus replay test (tests/test_fuzz_corpus.c) calls too. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mr_fuzz_image(data, size);
}
