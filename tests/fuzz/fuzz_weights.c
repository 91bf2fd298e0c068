/* libFuzzer harness: weights files (Keras, mrcnn export, checkpoint) through the weights loader.
 * The body is mr_fuzz_weights in targets.c, which the corpus replay test (tests/test_fuzz_corpus.c)
 * calls too. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return mr_fuzz_weights(data, size);
}
