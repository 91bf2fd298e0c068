/* Fuzz entry points: one function per target, called by the libFuzzer harness of that target
 * (tests/fuzz/fuzz_<target>.c) and by tests/test_fuzz_corpus.c, which replays the committed
 * corpus through exactly the same code. Each entry returns 0 and aborts on a finding: a broken
 * invariant that the sanitizers alone would not see (a round trip that changes a config, a
 * loaded weight that is not finite, a sample outside [0, 1]). */
#ifndef MR_FUZZ_TARGETS_H
#define MR_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#include "../../core/params.h"

/* VIA 1/2/3 JSON, VIA CSV and COCO through mr_annotations_load on a temp file (.json when the
 * input starts like JSON, else .csv), next to a 6x5 PNG "img.png" so regions can be clipped;
 * every instance is then rasterised. */
int mr_fuzz_annotations(const uint8_t *data, size_t size);
/* mr_config_parse, then mr_config_to_json and a second parse: same mr_config_hash or abort. */
int mr_fuzz_config(const uint8_t *data, size_t size);
/* mr_image_size and mr_image_load (1 and 3 channels) on a temp file. */
int mr_fuzz_image(const uint8_t *data, size_t size);
/* mr_weights_index_read and mr_weights_load (plain, dry run, with --exclude) on a temp HDF5
 * file into a small registry named like the model's layers. */
int mr_fuzz_weights(const uint8_t *data, size_t size);
/* mr_checkpoint_read_state, mr_checkpoint_verify and mr_checkpoint_load on a temp HDF5 file. */
int mr_fuzz_checkpoint(const uint8_t *data, size_t size);
/* The weights and checkpoint readers on a well-formed HDF5 file that the input describes
 * (datasets, shapes, values, attributes of any type, from a vocabulary of mrcnn's names):
 * what byte mutation of real files rarely gets to, as HDF5 1.10 itself breaks first. */
int mr_fuzz_h5_layout(const uint8_t *data, size_t size);
/* mr_roi_align forward and backward, both modes, on boxes taken from the input as float32. */
int mr_fuzz_roi_align(const uint8_t *data, size_t size);

typedef int (*mr_fuzz_fn)(const uint8_t *data, size_t size);
typedef struct {
    const char *name; /* corpus folder tests/fuzz/corpus/<name> */
    mr_fuzz_fn fn;
} mr_fuzz_target;

extern const mr_fuzz_target mr_fuzz_targets[];
extern const int mr_fuzz_n_targets;

/* The registry the weights and checkpoint targets load into and the seed files are written
 * from: conv1 with `conv1_channels` input channels, its batch norm, the RPN conv, the class
 * logits and the mask head, each a few values, so seeds stay a few kilobytes. Values are a
 * fixed pattern; free with mr_params_free. */
mr_status mr_fuzz_small_params(mr_params *p, int conv1_channels);
#endif
