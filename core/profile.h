/* Where a training step's time and matrix-product FLOPs go, by layer group, for `mrcnn bench`'s
 * floor table. Off unless a profile is begun. The model marks which group runs
 * (mr_profile_enter), every tape node remembers the group it was recorded in so backward charges
 * its time there, and each matrix product adds its FLOPs and its time to the group running. One
 * profile per process, one step at a time (the bench); marking costs one store when no profile is
 * on. */
#ifndef MR_PROFILE_H
#define MR_PROFILE_H

#include <stdbool.h>

typedef enum {
    MR_GROUP_DATA,      /* the input batch */
    MR_GROUP_BACKBONE,  /* ResNet stages */
    MR_GROUP_FPN,       /* lateral, top-down and smoothing layers */
    MR_GROUP_RPN,       /* the shared RPN convolution and its two outputs, P2..P6 */
    MR_GROUP_PROPOSALS, /* proposal layer, training targets, detection layer, unmolding */
    MR_GROUP_ROI_ALIGN, /* crops for the heads */
    MR_GROUP_HEADS,     /* box and mask heads, and the losses */
    MR_GROUP_OPTIMIZER, /* the SGD update */
    MR_GROUP_COUNT
} mr_group;

typedef struct {
    /* [group][0]: forward (and everything outside backward), [group][1]: backward. */
    double seconds[MR_GROUP_COUNT][2];
    double flops[MR_GROUP_COUNT][2]; /* 2 M N K of each matrix product */
    /* Of `seconds`, the time in matrix products: each product's time times its share of the
     * run's threads (all of them when it is called outside a parallel region, one of the team
     * inside one), so the floor's distance splits into the products' own speed and the rest. */
    double product_seconds[MR_GROUP_COUNT][2];
} mr_profile;

/* "backbone", ... */
const char *mr_group_name(mr_group g);

/* Starts charging to `p` (zeroed here) from now, in group DATA; end charges the last interval and
 * stops. */
void mr_profile_begin(mr_profile *p);
void mr_profile_end(void);
/* From now on, `g` runs; returns the group that ran before. */
mr_group mr_profile_enter(mr_group g);
mr_group mr_profile_group(void);
/* Backward starts (true) or ends (false). */
void mr_profile_backward(bool on);
/* A matrix product starts: returns the clock to hand to mr_profile_product_end (0 when no
 * profile is on). Both are callable from threads. */
double mr_profile_product_begin(void);
/* The product begun at `start`, of 2 * m * n * k FLOPs, ended in the current group. */
void mr_profile_product_end(double start, double m, double n, double k);

#endif
