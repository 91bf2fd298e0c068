/* The layer-group profile behind `mrcnn bench`'s floor table (core/profile.h). */
#include "profile.h"

#include <omp.h>
#include <string.h>
#include <time.h>

static mr_profile *active;
static mr_group current;
static int phase; /* 0 forward, 1 backward */
static double since;

static const char *const names[MR_GROUP_COUNT] = {"data",      "backbone",  "FPN",   "RPN",
                                                  "proposals", "ROI Align", "heads", "optimizer"};

const char *mr_group_name(mr_group g) {
    return g >= 0 && g < MR_GROUP_COUNT ? names[g] : "?";
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Charges the time since the last mark to the group and phase that ran. */
static void charge(void) {
    double t = now();
    active->seconds[current][phase] += t - since;
    since = t;
}

void mr_profile_begin(mr_profile *p) {
    memset(p, 0, sizeof *p);
    active = p;
    current = MR_GROUP_DATA;
    phase = 0;
    since = now();
}

void mr_profile_end(void) {
    if (active) charge();
    active = NULL;
}

mr_group mr_profile_enter(mr_group g) {
    mr_group previous = current;
    if (active && g != current) charge();
    current = g;
    return previous;
}

mr_group mr_profile_group(void) {
    return current;
}

void mr_profile_backward(bool on) {
    if (active) charge();
    phase = on;
}

double mr_profile_product_begin(void) {
    return active ? now() : 0.0;
}

void mr_profile_product_end(double start, double m, double n, double k) {
    mr_profile *p = active;
    if (!p || start == 0.0) return;
    double share = omp_in_parallel() ? 1.0 / omp_get_num_threads() : 1.0;
    double f = 2.0 * m * n * k, t = (now() - start) * share;
#pragma omp atomic
    p->flops[current][phase] += f;
#pragma omp atomic
    p->product_seconds[current][phase] += t;
}
