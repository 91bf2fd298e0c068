/* Weight initialisation by the network table: each row says what kind of layer it is and, for
 * WEIGHT_INIT "kaiming", which of torchvision's rules its kernel follows. */
#include "init.h"

#include <math.h>

#include "../core/rng.h"

/* Kernel values for WEIGHT_INIT "kaiming", following torchvision's Mask R-CNN: Kaiming-normal
 * (fan_out, ReLU gain) for the backbone and mask head convolutions, Kaiming-uniform with a = 1
 * for the FPN and the box head's hidden layers, normal(0.01) for the RPN and the class logits,
 * normal(0.001) for the box regressor. Returns the normal std, or sets *uniform_limit. */
static double kaiming_std(mr_kaiming_rule rule, double fan_in, double fan_out,
                          double *uniform_limit) {
    *uniform_limit = 0.0;
    switch (rule) {
    case MR_KAIMING_NORMAL_0_01:
        return 0.01;
    case MR_KAIMING_NORMAL_0_001:
        return 0.001;
    case MR_KAIMING_UNIFORM_FAN_IN:
        *uniform_limit = sqrt(3.0 / fan_in);
        return 0.0;
    case MR_KAIMING_NORMAL_FAN_OUT:
        break;
    }
    return sqrt(2.0 / fan_out);
}

static void fill(mr_tensor *t, float v) {
    for (int64_t k = 0; k < t->numel; k++) t->data[k] = v;
}

static void init_kernel(mr_tensor *t, const mr_layer *l, mr_weight_init how, mr_rng *rng) {
    /* Conv kernels are (kh, kw, in, out), dense (in, out); the deconvolution's (kh, kw, out, in)
     * is taken the same way, as Keras does. */
    int64_t receptive = 1;
    for (int d = 0; d < t->ndim - 2; d++) receptive *= t->shape[d];
    double fan_in = (double)(receptive * t->shape[t->ndim - 2]);
    double fan_out = (double)(receptive * t->shape[t->ndim - 1]);
    double limit = sqrt(6.0 / (fan_in + fan_out)), std = 0.0;
    if (how == MR_INIT_KAIMING) std = kaiming_std(l->kaiming, fan_in, fan_out, &limit);
    for (int64_t k = 0; k < t->numel; k++)
        t->data[k] = std > 0.0 ? (float)std * mr_rng_normal(rng)
                               : (float)limit * (2.0f * mr_rng_uniform(rng) - 1.0f);
}

void mr_init_weights(mr_model *m, mr_weight_init how, uint64_t seed) {
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_layers; i++) {
        const mr_layer *l = &m->layers[i];
        mr_tensor *t[MR_LAYER_MAX_PARAMS];
        for (int k = 0; k < l->n_params; k++) t[k] = &m->params.items[l->param[k]].t;
        if (l->kind == MR_LAYER_BN) {
            /* gamma, beta, moving_mean, moving_variance */
            fill(t[0], 1.0f);
            fill(t[1], 0.0f);
            fill(t[2], 0.0f);
            fill(t[3], 1.0f);
        } else {
            init_kernel(t[0], l, how, &rng);
            fill(t[1], 0.0f);
        }
    }
}
