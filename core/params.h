/* The parameter registry: every weight of the model by its Matterport name
 * ("res4b_branch2a/kernel"), with one flat buffer each for values, gradients and momentum, and a
 * frozen flag per parameter (frozen parameters record no ops and get no gradient work). */
#ifndef MR_PARAMS_H
#define MR_PARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

#define MR_PARAM_NAME_MAX 96

typedef struct {
    char name[MR_PARAM_NAME_MAX]; /* "layer/weight", e.g. "bn_conv1/moving_variance" */
    mr_tensor t;                  /* data/grad point into the flat buffers */
    size_t offset;                /* into values/grads/momentum */
    bool frozen;
    bool trainable_kind;  /* false for batch-norm moving statistics: never trained */
    bool momentum_backed; /* its momentum pages are backed for writing: mr_params_back_momentum */
} mr_param;

typedef struct {
    mr_param *items;
    int count;
    size_t capacity;
    float *values, *grads, *momentum; /* total floats each, 64-byte aligned, in `block` */
    void *block;
    size_t total; /* floats in each flat buffer */
    bool finalized;
} mr_params;

void mr_params_init(mr_params *p);
void mr_params_free(mr_params *p);
/* Declares a parameter; returns its index, or -1 (with the error set) on a duplicate name or
 * no memory. Shapes are fixed at declaration; buffers exist after mr_params_finalize. */
int mr_params_add(mr_params *p, const char *name, int ndim, const int64_t *shape,
                  bool trainable_kind);
mr_status mr_params_finalize(mr_params *p);
mr_param *mr_params_find(mr_params *p, const char *name);
mr_tensor *mr_params_tensor(mr_params *p, const char *name);
/* The layer part of a name: "res2a_branch2a/kernel" -> "res2a_branch2a". */
void mr_param_layer(const char *name, char *layer, size_t size);

/* Freezes every parameter, then unfreezes the trainable ones whose layer name fully matches
 * the POSIX extended regex (Matterport's set_trainable). Returns how many became trainable. */
mr_status mr_params_set_trainable(mr_params *p, const char *layer_regex, int *n_trainable);
/* Freezes or unfreezes one parameter (a frozen one has no gradient buffer). */
void mr_params_set_frozen(mr_params *p, mr_param *param, bool frozen);
void mr_params_zero_grads(mr_params *p);
/* Backs the trainable parameters' momentum pages for writing, each parameter's once; contents
 * are kept. The optimizer calls it before its first update of a parameter, which reads the
 * momentum before writing it (train/sgd.c). */
void mr_params_back_momentum(mr_params *p);
size_t mr_params_count_trainable(const mr_params *p);

#endif
