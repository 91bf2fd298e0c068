/* Matterport's optimizer step: L2 weight decay on trainable weights (not gamma/beta) as
 * WEIGHT_DECAY * mean(w^2) per weight, one global-norm gradient clip (multi-backend Keras
 * clipnorm), then SGD with momentum: v = momentum * v - lr * g; w += v. */
#ifndef MR_SGD_H
#define MR_SGD_H

#include "../core/params.h"

typedef struct {
    float learning_rate, momentum, weight_decay, clip_norm; /* clip_norm 0: none */
} mr_sgd;

typedef struct {
    double l2_loss;   /* the weight-decay term added to the reported loss */
    double grad_norm; /* global norm before clipping */
    bool clipped;
    bool finite;                       /* false: a NaN/Inf gradient; nothing was updated */
    char bad_param[MR_PARAM_NAME_MAX]; /* the first parameter with a non-finite gradient */
} mr_sgd_report;

/* Adds the weight-decay gradient, clips, updates values and momentum of the trainable
 * parameters (the decay term is added on the fly). The step consumes the gradients: it leaves
 * every trainable one zero, ready for the next backward, whether it updated or found a NaN/Inf
 * and updated nothing, so the caller need not zero them again (mr_params_zero_grads). Frozen
 * parameters, their gradients and momentum are untouched. */
void mr_sgd_step(mr_params *p, const mr_sgd *opt, mr_sgd_report *report);
/* The weight-decay term alone (for validation losses). */
double mr_weight_decay_loss(const mr_params *p, float weight_decay);

#endif
