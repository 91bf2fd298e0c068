/* Initial weights: every layer of the network table started as WEIGHT_INIT says, from one seeded
 * random stream. */
#ifndef MR_INIT_H
#define MR_INIT_H

#include <stdint.h>

#include "config.h"

/* Initial values, seeded: kernels as WEIGHT_INIT says (glorot: Keras' glorot-uniform, as
 * Matterport; kaiming: torchvision's scheme, each layer's rule from its table row), zero biases,
 * batch norm gamma 1, beta 0, mean 0, variance 1. The random stream runs through the table in
 * order, one kernel after the other. */
void mr_init_weights(mr_model *m, mr_weight_init how, uint64_t seed);

#endif
