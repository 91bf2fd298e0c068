/* What a weights file holds and whether it is whole, as `mrcnn inspect` prints it: its kind,
 * the network it stores, a checkpoint's training state, every tensor's checksum, the tensor
 * table, and the report a model from a config would get loading it. */
#ifndef MR_INSPECT_H
#define MR_INSPECT_H

#include <stdbool.h>
#include <stdio.h>

#include "weights.h"

/* Prints the summary (kind, checkpoint state, stored config, integrity) and, when `tensors`,
 * the tensor table to `out`. A file that cannot be read at all is the returned failure; damage
 * found while describing it (a checksum that fails, a value that is not finite, an unreadable
 * training state) is MR_OK with *damage set to its status and damage_msg to its message. */
mr_status mr_inspect_print(const char *path, bool tensors, FILE *out, mr_status *damage,
                           char *damage_msg, size_t msg_size);
/* The load report a model built from config_path would get from the file (nothing copied). */
mr_status mr_inspect_load_report(const char *path, const char *config_path,
                                 const mr_weights_load_options *opt, FILE *out);

#endif
