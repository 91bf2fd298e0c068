/* The training loop. Everything random in a step (data order, augmentation, anchor and ROI
 * sampling) is a function of (SEED, epoch, step), so the state a resume needs is the weights,
 * the momentum and the (epoch, step) position; the checkpoint holds all of it. */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/dist.h"
#include "../core/file.h"
#include "../core/log.h"
#include "../core/profile.h"
#include "../core/rng.h"
#include "../core/runtime.h"
#include "../core/text.h"
#include "../data/draw.h"
#include "../data/image.h"
#include "../layers/inference.h"
#include "../losses/losses.h"
#include "checkpoint.h"
#include "data_source.h"
#include "dataset.h"
#include "evaluate.h"
#include "init.h"
#include "overlays.h"
#include "report.h"
#include "sgd.h"
#include "weights.h"

#define MAX_BAD_STEPS 5
/* What a data-parallel run should have to end its step and save after a stop: a large model's
 * step on a CPU, and its checkpoint. */
#define STOP_GRACE_SECONDS 30

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix-style mixing of the seed with the stream coordinates. */
static uint64_t mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ull;
    uint64_t parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        h ^= parts[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ull;
    }
    return h ^ (h >> 29);
}

/* WARMUP_STEPS: the learning-rate factor at a 0-based global step, rising linearly from 1/1000
 * to 1 (torchvision's reference recipe). */
static float warmup_factor(const mr_config *c, long global_step) {
    if (global_step >= c->warmup_steps) return 1.0f;
    const double start = 1e-3, alpha = (double)global_step / (double)c->warmup_steps;
    return (float)(start * (1.0 - alpha) + alpha);
}

/* The report's validation panels: a fixed set of validation images (the first three with
 * lesions and the first normal one), ground truth beside this epoch's prediction. */
#define N_PANELS 4

typedef struct {
    mr_config cfg;
    mr_model model;
    mr_dataset *train, *val;
    mr_ctx ctx;
    char run_dir[1024];
    FILE *log;
    bool tty, quiet;
    int bad_steps;
    /* The running epoch's loss so far: a mid-epoch checkpoint keeps it, so the epoch's mean
     * after a resume covers every step of the epoch. */
    double epoch_loss_sum;
    int epoch_loss_steps;
    /* Where the newest checkpoint of this process resumes; -1 before the first. */
    long saved_global;
    bool save_failed;            /* a save failed: do not try again on the way out */
    char written_with[96];       /* resuming: mr_runtime_numerics() of the checkpoint's writer */
    char saved_name[1200];       /* file name of the newest checkpoint this process saved */
    double epoch_ap50, epoch_ap; /* this epoch's validation mask AP50 and AP; NaN: not measured */
    /* Data-parallel (core/dist.h): this process is `rank` of `nproc`; only the writer (rank 0)
     * writes the run folder and the console. */
    int rank, nproc;
    bool writer;
    bool failed_elsewhere;        /* stopped because another process failed: it says why */
    bool failed_here;             /* this process brought its own failure to a step boundary */
    double step_wait, step_bytes; /* the last step's seconds and bytes in collectives */
    double step_data_wait;        /* the last step's seconds waiting for the prefetcher */
    /* Partial gradient sums of the step's images (push_image_gradient): sums of 2^k images,
     * largest first, each a buffer of params.total floats kept from step to step. A batch of n
     * images needs at most log2(n) + 1 of them. */
    float *partial[32];
    int partial_images[32], n_partial;
    bool grads_zero; /* the last update consumed the gradients (mr_sgd_step): nothing to zero */
    /* The report's validation panels (panel_images) and the detections validation scoring kept
     * of them this epoch, so that drawing them does not detect them again. */
    int64_t panel_image[N_PANELS], n_panels;
    mr_instances panel_det[N_PANELS];
    bool panel_kept[N_PANELS];
} trainer;

/* The step-boundary protocol of data-parallel training: every process calls it at the same
 * points with its own status and stop request; all leave with the same decision. A failure on
 * any process fails all of them (the others with a line naming the failed process), and a stop
 * asked for on any one stops all. One process: the status as it is. */
static mr_status agree(trainer *t, mr_status st, bool *stop) {
    if (t->nproc == 1) return st;
    int v[3] = {stop && *stop, st != MR_OK ? (int)st : 0, st != MR_OK ? t->rank + 1 : 0};
    mr_dist_max_int(v, 3);
    if (stop) *stop = v[0] != 0;
    if (st != MR_OK) t->failed_here = true;
    if (st != MR_OK || v[1] == 0) return st;
    t->failed_elsewhere = true;
    return mr_fail((mr_status)v[1], "process %d of %d failed (it says why)", v[2] - 1, t->nproc);
}

/* A failure where the processes are not at a step boundary (inside a forward or backward pass):
 * they cannot agree on it, so this process reports it and ends them all. */
static mr_status fail_all_now(trainer *t, mr_status st) {
    if (t->nproc == 1 || st == MR_OK) return st;
    fprintf(stderr, "mrcnn train: process %d of %d: %s; ending all processes\n", t->rank, t->nproc,
            mr_last_error());
    mr_dist_abort(1);
    return st;
}

/* Per-image sampling seeds of a batch: image i of the whole batch draws from hash(base, i),
 * whichever process holds it. */
static uint64_t *image_seeds(trainer *t, const mr_batch *b, uint64_t base) {
    uint64_t *seeds = mr_alloc(&t->ctx, sizeof(uint64_t) * (size_t)b->size, "image_seeds");
    if (!seeds) return NULL;
    for (int64_t i = 0; i < b->size; i++) seeds[i] = mix(base, 0x1a6e, (uint64_t)(b->first + i), 0);
    return seeds;
}

/* The batch's losses: every process holds its images' parts (mr_training_losses_per_image), so
 * the batch's are their sums, the values added in the gradients' tree (the bits of one process)
 * and the counts, whole numbers, exactly. Every process calls it after each forward pass. */
static void reduce_losses(const trainer *t, mr_loss_values *v) {
    if (t->nproc == 1) return;
    float values[MR_LOSS_COUNT + 1];
    memcpy(values, v->value, sizeof v->value);
    values[MR_LOSS_COUNT] = v->total;
    mr_dist_sum_f32(values, MR_LOSS_COUNT + 1);
    memcpy(v->value, values, sizeof v->value);
    v->total = values[MR_LOSS_COUNT];
    double counts[2] = {(double)v->n_positive_anchors, (double)v->n_positive_rois};
    mr_dist_sum_f64(counts, 2);
    v->n_positive_anchors = (int64_t)counts[0];
    v->n_positive_rois = (int64_t)counts[1];
}

/* The batch's gradient is a sum of its images' gradients, always added in one tree over the
 * batch's positions: partial sums of 1, 2, 4, ... consecutive images, merged as a binary counter
 * carries, and the remaining partials added from the smallest up. Processes sum their shares in
 * that tree, and mr_dist_sum_f32_start adds the processes' sums in the same tree over ranks. When
 * a share is a power-of-two number of images, the tree over the batch is exactly the tree over
 * processes of the trees over shares: N processes then compute the bits one process computes,
 * and training at any such N follows the same path. */

/* Adds the partials into grads[lo, hi), which holds the newest image's gradient. */
static void fold_partials(trainer *t, size_t lo, size_t hi) {
    float *g = t->model.params.grads;
    for (int d = t->n_partial - 1; d >= 0; d--) {
        const float *part = t->partial[d];
#pragma omp parallel for schedule(static) if (hi - lo > 65536)
        for (size_t k = lo; k < hi; k++) g[k] = part[k] + g[k];
    }
}

/* Each run of trainable parameters, in offset order: fn(t, lo, hi). */
static void for_trainable(trainer *t, void (*fn)(trainer *, size_t, size_t)) {
    const mr_params *p = &t->model.params;
    for (int i = 0; i < p->count; i++) {
        const mr_param *q = &p->items[i];
        if (!q->frozen && q->t.numel > 0) fn(t, q->offset, q->offset + (size_t)q->t.numel);
    }
}

static void push_range(trainer *t, size_t lo, size_t hi) {
    memcpy(t->partial[t->n_partial] + lo, t->model.params.grads + lo, sizeof(float) * (hi - lo));
}

static void merge_range(trainer *t, size_t lo, size_t hi) {
    float *left = t->partial[t->n_partial - 2];
    const float *right = t->partial[t->n_partial - 1];
#pragma omp parallel for schedule(static) if (hi - lo > 65536)
    for (size_t k = lo; k < hi; k++) left[k] = left[k] + right[k];
}

/* Keeps the gradient of one more image (not the batch's last) as a partial sum of one image,
 * merging equal partials. */
static mr_status push_image_gradient(trainer *t) {
    const mr_params *p = &t->model.params;
    if (!t->partial[t->n_partial]) {
        t->partial[t->n_partial] = malloc(sizeof(float) * p->total);
        if (!t->partial[t->n_partial])
            return mr_fail(MR_ERR_NOMEM, "out of memory for a partial gradient sum (%.0f MB)",
                           (double)(sizeof(float) * p->total) / 1e6);
    }
    for_trainable(t, push_range);
    t->partial_images[t->n_partial++] = 1;
    while (t->n_partial >= 2 &&
           t->partial_images[t->n_partial - 1] == t->partial_images[t->n_partial - 2]) {
        for_trainable(t, merge_range);
        t->partial_images[t->n_partial - 2] *= 2;
        t->n_partial--;
    }
    return MR_OK;
}

/* Zeroes the gradients before a backward, unless the last update left them zero. */
static void zero_gradients(trainer *t) {
    if (!t->grads_zero) mr_params_zero_grads(&t->model.params);
    t->grads_zero = false; /* backward writes them next */
}

/* Gradient buckets of data-parallel training: the trainable parameters in runs of consecutive
 * offsets, cut into buckets of about BUCKET_FLOATS, from the last parameter to the first (the
 * order backward completes them). Every process makes the same buckets and starts their
 * all-reduces in the same order, each as soon as backward has passed every node that reads one
 * of its parameters, so communication overlaps the rest of backward. */
enum { BUCKET_FLOATS = 1 << 22 }; /* 16 MB; MRCNN_BUCKET_FLOATS overrides it (tests) */

typedef struct {
    size_t start, end; /* floats of the flat gradient buffer */
    int ready_node;    /* complete once backward has run the tape's nodes down to this index */
} grad_bucket;

typedef struct {
    trainer *t;
    const mr_params *p;
    grad_bucket *b;
    int n, next; /* buckets, and the next one to start */
} bucket_plan;

/* The parameter whose values start at `data`, or -1. */
static int param_at(const mr_params *p, const float *data) {
    if (data < p->values || data >= p->values + p->total) return -1;
    size_t off = (size_t)(data - p->values);
    int lo = 0, hi = p->count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (p->items[mid].offset == off) return mid;
        if (p->items[mid].offset < off)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Folds the bucket's partial sums in and starts its sum over the processes. */
static void start_bucket(bucket_plan *plan) {
    grad_bucket *g = &plan->b[plan->next++];
    fold_partials(plan->t, g->start, g->end);
    mr_dist_sum_f32_start(plan->p->grads + g->start, g->end - g->start);
}

static void after_backward_node(void *user, int node) {
    bucket_plan *plan = user;
    while (plan->next < plan->n && plan->b[plan->next].ready_node >= node) start_bucket(plan);
    mr_dist_progress();
}

/* Plans this step's buckets from the tape from node `first` on, the last image's graph (NULL when
 * out of memory: the gradients are then summed after backward). */
static bucket_plan *plan_buckets(trainer *t, int first) {
    const mr_params *p = &t->model.params;
    bucket_plan *plan = calloc(1, sizeof *plan);
    int *first_use = malloc(sizeof(int) * (size_t)(p->count + 1));
    if (plan) plan->b = malloc(sizeof(grad_bucket) * (size_t)(2 * p->count + 1));
    if (!plan || !first_use || !plan->b) {
        if (plan) free(plan->b);
        free(plan);
        free(first_use);
        return NULL;
    }
    plan->t = t;
    plan->p = p;
    for (int i = 0; i < p->count; i++) first_use[i] = INT_MAX; /* unused: complete at once */
    const mr_tape *tape = &t->ctx.tape;
    for (int i = first; i < tape->count; i++) {
        const mr_node *nd = &tape->nodes[i];
        for (int k = 0; k < nd->n_inputs; k++) {
            if (!(nd->needs_grad >> k & 1u) || !nd->inputs[k]->is_param) continue;
            int q = param_at(p, nd->inputs[k]->data);
            if (q >= 0 && first_use[q] == INT_MAX) first_use[q] = i;
        }
    }
    const char *env = getenv("MRCNN_BUCKET_FLOATS");
    const size_t bucket_floats = env && atol(env) > 0 ? (size_t)atol(env) : BUCKET_FLOATS;
    grad_bucket *cur = NULL;
    for (int i = p->count - 1; i >= 0; i--) {
        const mr_param *q = &p->items[i];
        if (q->frozen || q->t.numel == 0) continue;
        size_t lo = q->offset, hi = q->offset + (size_t)q->t.numel;
        if (!cur || cur->start != hi || cur->end - cur->start >= bucket_floats) {
            cur = &plan->b[plan->n++];
            *cur = (grad_bucket){lo, hi, first_use[i]};
        } else {
            cur->start = lo;
            if (first_use[i] < cur->ready_node) cur->ready_node = first_use[i];
        }
    }
    free(first_use);
    return plan;
}

/* The batch's gradient in params.grads: each image's backward on its own, summed in the tree
 * above; under mpirun, summed over the processes too, in buckets started while the last image's
 * backward still runs. */
static mr_status backward_batch(trainer *t, mr_tensor **losses, const int *first_nodes, int64_t n) {
    mr_params *p = &t->model.params;
    t->n_partial = 0;
    for (int64_t i = 0; i + 1 < n; i++) {
        zero_gradients(t);
        MR_TRY(mr_backward(&t->ctx, losses[i]));
        MR_TRY(push_image_gradient(t));
    }
    zero_gradients(t);
    if (t->nproc == 1) {
        MR_TRY(mr_backward(&t->ctx, losses[n - 1]));
        for_trainable(t, fold_partials);
        return MR_OK;
    }
    bucket_plan *plan = plan_buckets(t, first_nodes[n - 1]);
    if (plan) {
        t->ctx.after_backward_node = after_backward_node;
        t->ctx.after_backward_user = plan;
    }
    mr_status st = mr_backward(&t->ctx, losses[n - 1]);
    t->ctx.after_backward_node = NULL;
    t->ctx.after_backward_user = NULL;
    if (st != MR_OK) {
        free(plan ? plan->b : NULL);
        free(plan);
        return st;
    }
    if (plan) {
        while (plan->next < plan->n) start_bucket(plan); /* parameters no node of it read */
        mr_dist_wait();
        free(plan->b);
        free(plan);
    } else {
        for_trainable(t, fold_partials);
        mr_dist_sum_f32(p->grads, p->total);
    }
    return MR_OK;
}

static void forget_panel_detections(trainer *t) {
    for (int k = 0; k < N_PANELS; k++) {
        if (t->panel_kept[k]) mr_instances_free(&t->panel_det[k]);
        t->panel_kept[k] = false;
    }
}

static void trainer_close(trainer *t) {
    forget_panel_detections(t);
    for (size_t d = 0; d < sizeof t->partial / sizeof t->partial[0]; d++) free(t->partial[d]);
    if (t->train) mr_dataset_close(t->train);
    if (t->val) mr_dataset_close(t->val);
    mr_model_free(&t->model);
    mr_ctx_free(&t->ctx);
    if (t->log) fclose(t->log);
}

/* Runs the training graph on one batch (this process's share of it): losses[i] (arena) is image
 * i's part of the batch's loss and first_nodes[i] where its graph begins on the tape. Each image
 * samples anchors and ROIs from a stream of its own. */
static mr_status batch_losses(trainer *t, const mr_batch *b, uint64_t rng_seed, mr_tensor ***losses,
                              int **first_nodes, mr_loss_values *values) {
    const mr_net_config *n = &t->cfg.net;
    mr_tensor *images = mr_tensor_4d(&t->ctx, "images", b->size, n->image_max_dim, n->image_max_dim,
                                     n->image_channels);
    uint64_t *seeds = image_seeds(t, b, rng_seed);
    *losses = mr_alloc(&t->ctx, sizeof(mr_tensor *) * (size_t)b->size, "losses");
    *first_nodes = mr_alloc(&t->ctx, sizeof(int) * (size_t)b->size, "losses");
    if (!images || !seeds || !*losses || !*first_nodes) return t->ctx.status;
    memcpy(images->data, b->images, sizeof(float) * (size_t)images->numel);
    return mr_training_losses_per_image(&t->ctx, &t->model, images, b->gt, NULL, seeds, *losses,
                                        *first_nodes, values);
}

static void batch_names(const trainer *t, const mr_batch *b, char *buf, size_t size) {
    const mr_annotations *a = mr_dataset_annotations(t->train);
    size_t used = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < b->size && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                                 a->records[b->samples[i].record].path);
}

/* "47m", "1h05m", "35s": one labelled format for durations. */
static void format_duration(char *buf, size_t size, double seconds) {
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(buf, size, "%ldm", (s + 30) / 60);
    else
        snprintf(buf, size, "%lds", s);
}

/* A running mean as the progress line shows it: "-" for none (NaN), ".21" under 1, "1.42",
 * "12.3". */
static const char *mean_text(char *buf, size_t size, double v) {
    if (isnan(v)) return "-";
    snprintf(buf, size, v < 10.0 ? "%.2f" : "%.1f", v);
    if (buf[0] == '0' && buf[1] == '.') memmove(buf, buf + 1, strlen(buf));
    return buf;
}

/* The epoch's running means for the progress line. The box and mask losses are exactly 0 on a
 * step whose images gave no positive (they train nothing there): those steps are left out of
 * their means, which show "-" until a step has positives, rather than a perfect 0. */
typedef struct {
    double total, value[MR_LOSS_COUNT];
    long steps, counted[MR_LOSS_COUNT];
} running_losses;

static void running_add(running_losses *r, const mr_loss_values *v, double l2) {
    r->total += (double)v->total + l2;
    r->steps++;
    for (int i = 0; i < MR_LOSS_COUNT; i++) {
        bool zero_means_none = i == 1 || i == 3 || i == 4; /* rpn_bbox, mrcnn_bbox, mrcnn_mask */
        if (zero_means_none && v->value[i] == 0.0f) continue;
        r->value[i] += (double)v->value[i];
        r->counted[i]++;
    }
}

void mr_progress_line(char *out, size_t size, const mr_progress *p) {
    enum { COLUMNS = 80, BAR = 10 };
    char eta[32], m[MR_LOSS_COUNT + 1][16], losses[160], bar[BAR + 1];
    format_duration(eta, sizeof eta, p->eta_seconds);
    int done = p->steps > 0 ? p->step * BAR / p->steps : 0;
    for (int i = 0; i < BAR; i++) bar[i] = i < done ? '#' : '.';
    bar[BAR] = '\0';
    /* Long counts, losses and times can make it wider than a terminal: then the time per step
     * goes first, then the split of the loss (log.jsonl keeps both). */
    for (int detail = p->tty ? 1 : 2; detail >= 0; detail--) { /* 2: with the time per step */
        if (detail == 0)
            snprintf(losses, sizeof losses, "loss %s", mean_text(m[0], sizeof m[0], p->total));
        else
            snprintf(losses, sizeof losses, "loss %s rpn %s/%s head %s/%s mask %s",
                     mean_text(m[0], sizeof m[0], p->total),
                     mean_text(m[1], sizeof m[1], p->value[0]),
                     mean_text(m[2], sizeof m[2], p->value[1]),
                     mean_text(m[3], sizeof m[3], p->value[2]),
                     mean_text(m[4], sizeof m[4], p->value[3]),
                     mean_text(m[5], sizeof m[5], p->value[4]));
        char per_step[32] = "";
        if (detail == 2) { /* small models step in milliseconds, which "0.0s/step" would hide */
            if (p->per_step < 0.995)
                snprintf(per_step, sizeof per_step, " %.0fms/step", p->per_step * 1000.0);
            else
                snprintf(per_step, sizeof per_step, " %.1fs/step", p->per_step);
        }
        if (p->tty)
            snprintf(out, size, "epoch %d/%d [%s] %s ETA %s", p->epoch, p->epochs, bar, losses,
                     eta);
        else
            snprintf(out, size, "epoch %d/%d %d/%d %s%s ETA %s", p->epoch, p->epochs, p->step,
                     p->steps, losses, per_step, eta);
        if (strlen(out) < COLUMNS) break;
    }
}

/* One line per update, within 80 columns: on a terminal it rewrites itself with a bar of the
 * epoch; into a file, ten plain lines an epoch with the step count and the time per step. */
static void progress(const trainer *t, int epoch, int step, double per_step, int steps_left,
                     const running_losses *r) {
    const mr_config *c = &t->cfg;
    if (t->quiet) return;
    int every = c->steps_per_epoch >= 10 ? c->steps_per_epoch / 10 : 1;
    bool last = step + 1 == c->steps_per_epoch;
    if (!t->tty && (step + 1) % every != 0 && !last) return;
    mr_progress p = {.epoch = epoch + 1,
                     .epochs = c->epochs,
                     .step = step + 1,
                     .steps = c->steps_per_epoch,
                     .per_step = per_step,
                     .eta_seconds = per_step * (double)steps_left,
                     .total = r->steps ? r->total / (double)r->steps : (double)NAN,
                     .tty = t->tty};
    for (int i = 0; i < MR_LOSS_COUNT; i++)
        p.value[i] = r->counted[i] ? r->value[i] / (double)r->counted[i] : (double)NAN;
    char line[256];
    mr_progress_line(line, sizeof line, &p);
    if (t->tty)
        fprintf(stderr, "\r\033[K%s%s", line, last ? "\n" : "");
    else
        fprintf(stderr, "%s\n", line);
}

/* A log.jsonl record is built whole, then written with its time in one call: a line, or
 * nothing when memory ran out. */
static void record_begin(mr_text *r, const char *type, int epoch) {
    *r = (mr_text){0};
    mr_text_printf(r, "{\"type\":\"%s\",\"epoch\":%d", type, epoch);
}

/* ,"key":value with null for a value that is undefined (NaN, or an AP without ground truth):
 * log.jsonl stays valid JSON. */
static void record_number(mr_text *r, const char *key, double v) {
    mr_text_printf(r, ",\"%s\":", key);
    mr_text_json_number(r, v == MR_AP_UNDEFINED ? (double)NAN : v, 6);
}

static void record_end(trainer *t, mr_text *r) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    mr_text_printf(r, ",\"time\":\"%s\"}\n", when); /* e.g. 2026-12-03T02:15:11Z */
    if (!r->failed && r->s) fputs(r->s, t->log);
    fflush(t->log);
    mr_text_free(r);
}

static void log_step(trainer *t, int epoch, long global, const mr_loss_values *v, double l2,
                     float lr, const mr_sgd_report *rep, double seconds) {
    if (!t->log) return;
    mr_text r;
    record_begin(&r, "step", epoch + 1);
    mr_text_printf(&r, ",\"step\":%ld", global);
    record_number(&r, "loss", (double)v->total + l2);
    for (int i = 0; i < MR_LOSS_COUNT; i++)
        record_number(&r, mr_loss_names[i], (double)v->value[i]);
    record_number(&r, "l2", l2);
    record_number(&r, "lr", (double)lr);
    record_number(&r, "grad_norm", rep->grad_norm);
    record_number(&r, "seconds", seconds);
    record_number(&r, "data_wait_seconds", t->step_data_wait);
    if (t->nproc > 1) { /* data-parallel: the step's time and bytes in MPI collectives */
        mr_text_printf(&r, ",\"processes\":%d", t->nproc);
        record_number(&r, "allreduce_seconds", t->step_wait);
        mr_text_printf(&r, ",\"allreduce_bytes\":%.0f", t->step_bytes);
    }
    record_end(t, &r);
}

/* Mean losses over VALIDATION_STEPS batches, recording off. */
static mr_status validate(trainer *t, int epoch, double *val_loss, double terms[MR_LOSS_COUNT]) {
    const mr_config *c = &t->cfg;
    *val_loss = NAN;
    for (int i = 0; i < MR_LOSS_COUNT; i++) terms[i] = 0.0;
    if (!t->val || c->validation_steps == 0) return MR_OK;
    MR_TRY(fail_all_now(t, mr_dataset_start(t->val, 0, 0, c->validation_steps)));
    double total = 0.0, l2 = mr_weight_decay_loss(&t->model.params, c->net.weight_decay);
    mr_status st = MR_OK;
    for (int v = 0; v < c->validation_steps && st == MR_OK; v++) {
        mr_batch *b = NULL;
        st = agree(t, mr_dataset_next(t->val, &b), NULL);
        if (st != MR_OK) {
            mr_dataset_release(t->val, b);
            break;
        }
        mr_ctx_reset(&t->ctx);
        bool was = mr_no_grad_begin(&t->ctx);
        mr_loss_values values;
        mr_tensor **losses;
        int *first_nodes;
        st = batch_losses(t, b, mix(c->seed, 0x7a1, (uint64_t)epoch, (uint64_t)v), &losses,
                          &first_nodes, &values);
        mr_no_grad_end(&t->ctx, was);
        mr_dataset_release(t->val, b);
        if (st != MR_OK) {
            st = fail_all_now(t, st);
            break;
        }
        reduce_losses(t, &values);
        total += (double)values.total + l2;
        for (int i = 0; i < MR_LOSS_COUNT; i++) terms[i] += (double)values.value[i];
    }
    mr_dataset_stop(t->val);
    if (st != MR_OK) return st;
    *val_loss = total / c->validation_steps;
    for (int i = 0; i < MR_LOSS_COUNT; i++) terms[i] /= c->validation_steps;
    return MR_OK;
}

static int64_t panel_images(const trainer *t, int64_t pick[N_PANELS]) {
    const mr_annotations *a = mr_dataset_annotations(t->val);
    int64_t n = 0, lesions = 0;
    bool normal = false;
    for (int64_t i = 0; i < mr_dataset_size(t->val) && n < N_PANELS; i++) {
        bool has = a->records[i].n_instances > 0;
        if ((has && lesions < N_PANELS - 1) || (!has && !normal)) {
            pick[n++] = i;
            lesions += has;
            normal = normal || !has;
        }
    }
    return n;
}

/* Drops the detections below min_score (none when it is 0), in place: what detecting at
 * min_score gives, since a detection only ever suppresses lower-scoring ones (layers/detect.c). */
static void keep_confident(mr_instances *d, float min_score) {
    const int64_t pixels = d->mask_h * d->mask_w;
    int64_t kept = 0;
    for (int64_t k = 0; k < d->n; k++) {
        if (min_score != 0.0f && !(d->scores[k] >= min_score)) continue;
        if (kept != k) {
            memcpy(d->boxes + 4 * kept, d->boxes + 4 * k, 4 * sizeof *d->boxes);
            d->class_ids[kept] = d->class_ids[k];
            d->scores[kept] = d->scores[k];
            if (d->masks) memcpy(d->masks + kept * pixels, d->masks + k * pixels, (size_t)pixels);
            if (d->class_probs)
                memcpy(d->class_probs + kept * d->n_classes, d->class_probs + k * d->n_classes,
                       sizeof *d->class_probs * (size_t)d->n_classes);
        }
        kept++;
    }
    d->n = kept;
    /* Scored at every confidence, an image may hold a hundred full-size masks. */
    if (kept == 0) {
        free(d->masks);
        d->masks = NULL;
    } else if (d->masks) {
        uint8_t *fit = realloc(d->masks, (size_t)(kept * pixels));
        if (fit) d->masks = fit;
    }
}

/* mr_eval_take_fn: keeps the detections of the report's panels, those the panels draw. */
static bool keep_panel_detections(void *user, int64_t image, mr_instances *det) {
    trainer *t = user;
    for (int64_t k = 0; k < t->n_panels; k++)
        if (t->panel_image[k] == image && !t->panel_kept[k]) {
            keep_confident(det, t->cfg.net.detection_min_confidence);
            t->panel_det[k] = *det;
            t->panel_kept[k] = true;
            return true;
        }
    return false;
}

/* Detection metrics on the first validation images, every VALIDATION_METRICS epochs: what the
 * report charts and the epoch line shows. *done is false when not measured this epoch. */
static mr_status validation_metrics(trainer *t, int epoch, mr_evaluation *e, bool *done) {
    const mr_config *c = &t->cfg;
    *done = false;
    /* Scored by the writer alone (the others wait at the next step boundary). */
    if (!t->writer || !t->val || c->validation_metrics <= 0 ||
        (epoch + 1) % c->validation_metrics != 0)
        return MR_OK;
    int64_t n = c->validation_metric_images > 0 ? c->validation_metric_images
                                                : (int64_t)c->validation_steps * c->batch_size;
    const mr_eval_options eo = {.det_threshold = 0.0f,
                                .op_threshold = c->net.detection_min_confidence};
    MR_TRY(mr_evaluation_init(e, c->net.num_classes, &eo));
    forget_panel_detections(t);
    t->n_panels = panel_images(t, t->panel_image);
    mr_status st =
        mr_evaluate_model(e, &t->ctx, &t->model, t->val, n, NULL, keep_panel_detections, t);
    if (st == MR_OK) st = mr_evaluation_finish(e);
    if (st != MR_OK) {
        mr_evaluation_free(e);
        return st;
    }
    *done = true;
    return MR_OK;
}

/* The report's panels with this epoch's detections: those validation scoring kept, or detected
 * here (an epoch without scoring, or panels past the images it scores). */
static mr_status write_overlays(trainer *t, int epoch) {
    const mr_config *c = &t->cfg;
    if (!t->val || !t->writer) return MR_OK;
    int64_t pick[N_PANELS];
    const int64_t n = panel_images(t, pick);
    const char *names[MR_MAX_CLASSES];
    for (int k = 0; k < c->net.num_classes; k++) names[k] = c->class_names[k];
    mr_status st = MR_OK;
    for (int64_t i = 0; i < n && st == MR_OK; i++) {
        mr_instances det;
        if (t->panel_kept[i]) {
            det = t->panel_det[i];
            t->panel_kept[i] = false;
        } else {
            /* Alone, as validation scores them: a batch of the panels' images would hold all
             * their activations at once, and the arena keeps its high-water mark for the rest of
             * the run (ResNet-101 at 512 px: a training process peaked at 2.8 GB, not 1.5). */
            st = mr_detect_dataset_image(&t->ctx, &t->model, t->val, pick[i], -1.0f, &det);
        }
        char out[1200];
        snprintf(out, sizeof out, "%s/overlay_%lld.png", t->run_dir, (long long)i + 1);
        mr_panel_scores scores;
        if (st == MR_OK)
            st = mr_write_validation_panel(&mr_dataset_annotations(t->val)->records[pick[i]], &det,
                                           epoch + 1, names, c->net.num_classes,
                                           c->max_image_pixels, out, &scores);
        mr_instances_free(&det);
    }
    forget_panel_detections(t);
    return st;
}

/* About what a checkpoint of this model takes on disk: values and momentum, plus HDF5's
 * overhead. */
static int64_t checkpoint_bytes(const trainer *t) {
    return (int64_t)t->model.params.total * 2 * (int64_t)sizeof(float) * 21 / 20 + (1 << 20);
}

/* After a failed save: what the user still has. */
static void say_what_is_left(trainer *t, mr_status st) {
    char msg[2048], latest[1200];
    snprintf(msg, sizeof msg, "%s", mr_last_error());
    if (mr_checkpoint_find_latest(t->run_dir, latest, sizeof latest, NULL) == MR_OK)
        mr_fail(st, "%s; the previous checkpoint %s is intact", msg, latest);
    else
        mr_fail(st, "%s; the run has no checkpoint yet", msg);
}

/* The state beside the tensors that a resume reads back: the running epoch's loss sums, and
 * the BLAS kernel and thread count, since a different one changes float rounding. */
static char *checkpoint_metrics(const trainer *t, int step_in_epoch) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    if (step_in_epoch > 0) {
        cJSON_AddNumberToObject(m, "epoch_loss_sum", t->epoch_loss_sum);
        cJSON_AddNumberToObject(m, "epoch_loss_steps", t->epoch_loss_steps);
    } else if (isfinite(t->epoch_ap50)) { /* pruning keeps the best checkpoint by these */
        cJSON_AddNumberToObject(m, "val_mask_ap50", t->epoch_ap50);
        if (isfinite(t->epoch_ap)) cJSON_AddNumberToObject(m, "val_mask_ap", t->epoch_ap);
    }
    cJSON_AddStringToObject(m, "numerics", mr_runtime_numerics());
    char *json = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return json;
}

static mr_status save_here(trainer *t, int epoch, int step_in_epoch, double val_loss,
                           const char *why) {
    const mr_config *c = &t->cfg;
    char path[1200];
    long global = (long)epoch * c->steps_per_epoch + step_in_epoch;
    /* A checkpoint is named by where training resumes: the epoch index and global step. */
    mr_checkpoint_path(path, sizeof path, t->run_dir, epoch, global);
    /* A full disk is found before writing: HDF5 copes badly with a write that fails. */
    mr_status st = mr_checkpoint_probe(t->run_dir, checkpoint_bytes(t));
    if (st != MR_OK) {
        t->save_failed = true;
        say_what_is_left(t, st);
        return st;
    }
    int64_t order[2] = {epoch, step_in_epoch};
    char *config_json = mr_config_to_json(c);
    char *metrics_json = checkpoint_metrics(t, step_in_epoch);
    mr_checkpoint_state s = {.epoch = epoch,
                             .step = global,
                             .data_order = order,
                             .n_data_order = 2,
                             .config_json = config_json,
                             .metrics_json = metrics_json,
                             .val_loss = val_loss};
    st = config_json && metrics_json ? mr_checkpoint_save(path, &t->model.params, &s)
                                     : mr_fail(MR_ERR_NOMEM, "%s: out of memory", path);
    free(config_json);
    free(metrics_json);
    if (st != MR_OK) {
        t->save_failed = true;
        say_what_is_left(t, st);
        return st;
    }
    t->saved_global = global;
    snprintf(t->saved_name, sizeof t->saved_name, "%s",
             strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    if (!t->quiet) mr_info("saved %s (%s)", path, why);
    return mr_checkpoint_prune(t->run_dir, c->checkpoint_keep, NULL);
}

/* Saves where training resumes: the writer writes, every process learns whether it worked (all
 * processes call it at the same step boundary). */
static mr_status save(trainer *t, int epoch, int step_in_epoch, double val_loss, const char *why) {
    mr_status st = t->writer ? save_here(t, epoch, step_in_epoch, val_loss, why) : MR_OK;
    if (t->nproc == 1) return st;
    int code = (int)st;
    mr_dist_bcast(&code, sizeof code);
    if (t->writer) return st;
    if (code != MR_OK) {
        t->save_failed = true;
        t->failed_elsewhere = true;
        return mr_fail((mr_status)code, "process 0 could not save the checkpoint (its message is "
                                        "above)");
    }
    t->saved_global = (long)epoch * t->cfg.steps_per_epoch + step_in_epoch;
    return MR_OK;
}

/* On resume: the running epoch's loss sums, and the BLAS kernel and thread count that wrote
 * the checkpoint. */
static void read_checkpoint_metrics(trainer *t, const char *metrics_json, int start_step) {
    cJSON *m = metrics_json ? cJSON_Parse(metrics_json) : NULL;
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(m, "epoch_loss_sum");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(m, "epoch_loss_steps");
    if (start_step > 0 && cJSON_IsNumber(sum) && cJSON_IsNumber(n) && n->valuedouble >= 0 &&
        n->valuedouble <= start_step) {
        t->epoch_loss_sum = sum->valuedouble;
        t->epoch_loss_steps = (int)n->valuedouble;
    }
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(m, "numerics");
    if (cJSON_IsString(rt))
        snprintf(t->written_with, sizeof t->written_with, "%s", rt->valuestring);
    cJSON_Delete(m);
}

/* A folder holds a run when it has a run's config, step log or checkpoints. */
static int run_files(const char *dir, bool remove_them) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        const char *f = e->d_name;
        size_t len = strlen(f);
        bool ours = !strcmp(f, "config.json") || !strcmp(f, "log.jsonl") ||
                    !strcmp(f, "report.html") ||
                    (!strncmp(f, "ckpt-e", 6) && len > 3 &&
                     (!strcmp(f + len - 3, ".h5") || !strcmp(f + len - 4, ".tmp"))) ||
                    (!strncmp(f, "overlay_", 8) && len > 4 && !strcmp(f + len - 4, ".png"));
        if (!ours) continue;
        n++;
        if (remove_them) {
            char path[2400];
            snprintf(path, sizeof path, "%s/%s", dir, f);
            unlink(path);
        }
    }
    closedir(d);
    return n;
}

/* The run folder of a new run: --out (refused when it holds a run, unless --force), else
 * runs/NAME-DATE, made unique with -2, -3, ... by creating it, so two runs started in the same
 * minute never share one. */
static mr_status claim_run_dir(trainer *t, const mr_train_options *opt) {
    if (opt->out_dir) {
        snprintf(t->run_dir, sizeof t->run_dir, "%s", opt->out_dir);
        int n = run_files(t->run_dir, false);
        if (n > 0 && !opt->force)
            return mr_fail(MR_ERR_ARG,
                           "%s already holds a run (%d files: config, log, checkpoints); "
                           "continue it with mrcnn train --resume %s, or add --force to start "
                           "again there (its checkpoints and log are deleted)",
                           t->run_dir, n, t->run_dir);
        if (n > 0) {
            run_files(t->run_dir, true);
            if (!t->quiet) mr_info("--force: removed the earlier run's %d files", n);
        }
        return mr_make_dirs(t->run_dir);
    }
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char base[900];
    snprintf(base, sizeof base, "runs/%s-%04d%02d%02dT%02d%02d", t->cfg.name, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
    MR_TRY(mr_make_dirs("runs"));
    for (int k = 1; k < 1000; k++) {
        if (k == 1)
            snprintf(t->run_dir, sizeof t->run_dir, "%s", base);
        else
            snprintf(t->run_dir, sizeof t->run_dir, "%s-%d", base, k);
        if (mkdir(t->run_dir, 0755) == 0) return MR_OK;
        if (errno != EEXIST)
            return mr_fail(MR_ERR_IO, "%s: cannot create the run folder (%s)", t->run_dir,
                           strerror(errno));
    }
    return mr_fail(MR_ERR_IO, "%s: 999 runs already started this minute; give --out", base);
}

/* --resume with --data, --image-root or --val-split naming other images than the run's: the
 * data order is part of an exact resume, so that takes --force. */
static mr_status check_resume_data(const mr_config *before, const mr_config *after, bool force,
                                   bool quiet) {
    bool same = !strcmp(before->train_data, after->train_data) &&
                !strcmp(before->val_data, after->val_data) &&
                !strcmp(before->image_root, after->image_root) &&
                before->validation_split == after->validation_split;
    if (same) return MR_OK;
    if (!force)
        return mr_fail(MR_ERR_ARG,
                       "this run was trained on %s%s%s; the command line names %s%s%s. The "
                       "order of the data is part of an exact resume: drop --data/--image-root/"
                       "--val-split, or add --force to continue on the new data",
                       before->train_data, before->val_data[0] ? " and " : "", before->val_data,
                       after->train_data, after->val_data[0] ? " and " : "", after->val_data);
    if (!quiet)
        mr_warn("--force: continuing on %s, not the data the run began on; not an exact resume",
                after->train_data);
    return MR_OK;
}

static mr_status open_run(trainer *t, const mr_train_options *opt, int *start_epoch,
                          int *start_step) {
    mr_config *c = &t->cfg;
    mr_config_defaults(c);
    *start_epoch = *start_step = 0;
    char resume_from[1200] = "";
    if (opt->resume_dir) {
        int skipped = 0;
        MR_TRY(
            mr_checkpoint_find_latest(opt->resume_dir, resume_from, sizeof resume_from, &skipped));
        if (skipped)
            mr_warn("skipped %d damaged checkpoint(s); resuming from %s", skipped, resume_from);
        mr_checkpoint_state s;
        MR_TRY(mr_checkpoint_read_state(resume_from, &s));
        mr_status st = mr_config_parse(s.config_json ? s.config_json : "{}", resume_from, c);
        if (st == MR_OK)
            st = mr_checkpoint_position(resume_from, &s, c->steps_per_epoch, start_epoch,
                                        start_step);
        if (st == MR_OK) read_checkpoint_metrics(t, s.metrics_json, *start_step);
        mr_checkpoint_state_free(&s);
        MR_TRY(st);
        snprintf(t->run_dir, sizeof t->run_dir, "%s", opt->resume_dir);
    } else {
        if (!opt->config_path) return mr_fail(MR_ERR_ARG, "no --config given");
        MR_TRY(mr_config_load(opt->config_path, c));
    }
    /* --data, DATASET, IMAGE_ROOT and the validation split, resolved as every verb resolves
     * them; c records the result (absolute paths), so config.json and a resume reopen the same
     * images. */
    const mr_data_args data = {.data = opt->data_dir,
                               .image_root = opt->image_root,
                               .has_val_split = opt->has_val_split,
                               .val_split = opt->val_split};
    mr_config *recorded = opt->resume_dir ? malloc(sizeof *recorded) : NULL;
    if (opt->resume_dir && !recorded) return mr_fail(MR_ERR_NOMEM, "out of memory");
    if (recorded) *recorded = *c;
    mr_status st = mr_data_resolve(c, &data);
    if (st == MR_OK && recorded) st = check_resume_data(recorded, c, opt->force, t->quiet);
    free(recorded);
    MR_TRY(st);
    if (opt->epochs > 0) {
        c->epochs = opt->epochs;
        if (c->stages[c->n_stages - 1].until_epoch < c->epochs)
            c->stages[c->n_stages - 1].until_epoch = c->epochs;
    }
    if (opt->resume_dir && *start_epoch >= c->epochs) return MR_OK; /* complete: mr_train says so */
    if (t->nproc > 1 && c->batch_size % t->nproc != 0)
        return mr_fail(MR_ERR_CONFIG,
                       "BATCH_SIZE %d does not divide among %d processes (each takes an equal "
                       "share of every batch): use a multiple of %d, or mpirun -np a divisor of %d",
                       c->batch_size, t->nproc, t->nproc, c->batch_size);
    if (t->nproc > 1 && c->net.train_bn)
        return mr_fail(MR_ERR_CONFIG,
                       "TRAIN_BN true trains batch statistics, which are not synchronised across "
                       "%d processes: set TRAIN_BN false (frozen batch norm, Matterport's default) "
                       "or train in one process",
                       t->nproc);
    /* The run folder is the writer's: the other processes only read (a resumed checkpoint). */
    if (!opt->resume_dir && t->writer) MR_TRY(claim_run_dir(t, opt));
    if (t->writer) MR_TRY(mr_checkpoint_probe(t->run_dir, 0));

    /* Data first: bad annotations or images fail here, before any weights are touched. */
    mr_data_summary opened;
    MR_TRY(mr_data_open(c, &t->train, c->validation_steps > 0 ? &t->val : NULL, &opened));
    if (!t->quiet) mr_info("%s", opened.line);
    if (t->nproc > 1) {
        MR_TRY(mr_dataset_set_shard(t->train, t->rank, t->nproc));
        if (t->val) MR_TRY(mr_dataset_set_shard(t->val, t->rank, t->nproc));
    }

    MR_TRY(mr_model_init(&t->model, &c->net));
    /* A run that could not save its first checkpoint is not started. */
    if (t->writer) MR_TRY(mr_checkpoint_probe(t->run_dir, checkpoint_bytes(t)));
    MR_TRY(mr_ctx_init(&t->ctx, (size_t)c->arena_mb << 20));
    mr_init_weights(&t->model, c->weight_init, c->seed);
    if (resume_from[0]) {
        mr_checkpoint_state s;
        MR_TRY(mr_checkpoint_load(resume_from, &t->model.params, &s));
        mr_checkpoint_state_free(&s);
        if (!t->quiet)
            mr_info("resuming %s at epoch %d step %d from %s", t->run_dir, *start_epoch + 1,
                    *start_step, resume_from);
    } else if (opt->weights_path) {
        mr_weights_load_options wo = {.exclude = opt->exclude,
                                      .n_exclude = opt->n_exclude,
                                      .allow_damaged = opt->allow_damaged};
        mr_load_report report;
        st = mr_weights_load(opt->weights_path, &t->model.params, &wo, &report);
        if (!t->quiet && st == MR_OK) mr_load_report_print(&report, stderr);
        mr_load_report_free(&report);
        MR_TRY(st);
    }
    if (!t->writer) return MR_OK;
    /* The resolved config next to the checkpoints, for people and tools. */
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", t->run_dir);
    char *json = mr_config_to_json(c);
    if (!json) return mr_fail(MR_ERR_NOMEM, "%s: out of memory", path);
    st = mr_write_file_atomic(path, json, strlen(json), 0644);
    free(json);
    MR_TRY(st);
    snprintf(path, sizeof path, "%s/log.jsonl", t->run_dir);
    long keep_through = (long)*start_epoch * c->steps_per_epoch + *start_step;
    MR_TRY(mr_report_trim_log(path, keep_through, *start_epoch));
    t->log = fopen(path, "a");
    if (!t->log) return mr_fail(MR_ERR_IO, "%s: cannot open the step log", path);
    return MR_OK;
}

/* A failure once training has begun: the weights are those before the failing step (a step
 * updates them only after its backward pass succeeded), so they are saved where training
 * resumes (a failure after the epoch's last step: the epoch's end) unless a checkpoint of this
 * process is there already, and the message ends with the --resume command. */
/* "after 8 steps (1 epoch complete + 3 steps); saved ckpt-e0001-s00000008.h5": counted as the
 * checkpoint's name counts, epochs complete and steps done. */
static void position_text(const trainer *t, int epoch, int step, char *buf, size_t size) {
    long global = (long)epoch * t->cfg.steps_per_epoch + step;
    snprintf(buf, size, "after %ld steps (%d epoch%s complete%s", global, epoch,
             epoch == 1 ? "" : "s", step ? "" : ")");
    if (step)
        snprintf(buf + strlen(buf), size - strlen(buf), " + %d step%s)", step,
                 step == 1 ? "" : "s");
    snprintf(buf + strlen(buf), size - strlen(buf), "; saved %s", t->saved_name);
}

static mr_status save_after_failure(trainer *t, mr_status st, int epoch, int step) {
    const mr_config *c = &t->cfg;
    char why[2048];
    snprintf(why, sizeof why, "%s", mr_last_error());
    if (step >= c->steps_per_epoch) {
        epoch++;
        step = 0;
    }
    long global = (long)epoch * c->steps_per_epoch + step;
    if (!t->writer) { /* in step with the writer's save; the writer prints the --resume line */
        if (global != t->saved_global) save(t, epoch, step, NAN, "stopped by an error");
        return mr_fail(st, "%s", why);
    }
    if (global != t->saved_global && save(t, epoch, step, NAN, "stopped by an error") != MR_OK)
        return mr_fail(st, "%s; saving on the way out failed too: %s", why, mr_last_error());
    char where[1400];
    position_text(t, epoch, step, where, sizeof where);
    return mr_fail(st, "%s; stopped %s; resume with: mrcnn train --resume %s", why, where,
                   t->run_dir);
}

/* The end of a run on every process: a failure the writer reports (its own, one every process had
 * alike such as a refused config, or a stop) leaves the other processes silent. */
static void settle(trainer *t, mr_status st, mr_train_result *result) {
    if (t->nproc == 1) return;
    char mine[1024], first[1024];
    snprintf(mine, sizeof mine, "%s", st != MR_OK ? mr_last_error() : "");
    memcpy(first, mine, sizeof first);
    mr_dist_bcast(first, sizeof first);
    /* A failure every process reached by the same decision (non-finite losses of the reduced
     * batch) is the writer's to report too. */
    result->silent = !t->writer && (st == MR_OK || st == MR_ERR_INTERRUPTED ||
                                    t->failed_elsewhere || !t->failed_here || !strcmp(first, mine));
}

/* The data as report.html summarises it. */
static mr_report_run report_run(const trainer *t) {
    mr_report_run r;
    memset(&r, 0, sizeof r);
    mr_dataset *sides[2] = {t->train, t->val};
    for (int k = 0; k < 2; k++) {
        if (!sides[k]) continue;
        const mr_annotations *a = mr_dataset_annotations(sides[k]);
        int64_t n = mr_dataset_size(sides[k]);
        *(k ? &r.n_val : &r.n_train) = n;
        for (int64_t i = 0; i < n; i++) {
            const mr_image_record *rec = &a->records[i];
            r.normals += rec->n_instances == 0;
            for (int64_t j = 0; j < rec->n_instances; j++) {
                int id = rec->instances[j].class_id;
                if (id >= 0 && id < MR_MAX_CLASSES) r.lesions[id]++;
            }
        }
    }
    return r;
}

/* The config in a few lines; the whole of it is the run's config.json. */
static void print_config_summary(const trainer *t) {
    const mr_config *c = &t->cfg;
    const mr_net_config *n = &c->net;
    char classes[512] = "";
    for (int k = 1; k < n->num_classes && strlen(classes) < sizeof classes - 64; k++)
        snprintf(classes + strlen(classes), sizeof classes - strlen(classes), "%s%s",
                 k > 1 ? ", " : "", c->class_names[k]);
    mr_info("config %s: %s (%d filters), %d classes (%s), %dx%d px, %d channel%s, pixels "
            "%s",
            c->source, mr_net_backbone_title(n), n->backbone_filters, n->num_classes - 1, classes,
            n->image_max_dim, n->image_max_dim, n->image_channels,
            n->image_channels == 1 ? "" : "s",
            n->image_normalization == MR_NORM_MEAN_STD ? "scaled by mean and std"
                                                       : "mean-subtracted (Matterport)");
    char stages[512] = "";
    for (int i = 0; i < c->n_stages && strlen(stages) < sizeof stages - 64; i++)
        snprintf(stages + strlen(stages), sizeof stages - strlen(stages), "%s\"%s\" to %d at %g",
                 i ? ", " : "", c->stages[i].layers, c->stages[i].until_epoch,
                 (double)c->stages[i].learning_rate);
    mr_info("training: %d epoch%s of %d steps, batch %d, seed %llu; layers %s", c->epochs,
            c->epochs == 1 ? "" : "s", c->steps_per_epoch, c->batch_size,
            (unsigned long long)c->seed, stages);
    mr_info("run folder %s (the whole resolved config: config.json; hash %016llx)", t->run_dir,
            (unsigned long long)mr_config_hash(c));
}

/* One optimizer step on the next batch: losses, backward, SGD. *applied is false when the
 * update was skipped for a non-finite loss or gradient (warned, counted in t->bad_steps; the
 * run stops with MR_ERR_NUMERIC after MAX_BAD_STEPS in a row). */
static mr_status train_step(trainer *t, int epoch, int step, const mr_stage *stage, mr_sgd *sgd,
                            mr_loss_values *v, mr_sgd_report *rep, double *seconds, bool *applied) {
    const mr_config *c = &t->cfg;
    *applied = false;
    *rep = (mr_sgd_report){.finite = true};
    mr_batch *b = NULL;
    double asked = now_seconds();
    mr_profile_enter(MR_GROUP_DATA);
    mr_status got = mr_dataset_next(t->train, &b);
    t->step_data_wait = now_seconds() - asked;
    const char *inject = getenv("MRCNN_TEST_FAIL"); /* "RANK:STEP", tests of a failing process */
    if (got == MR_OK && inject && t->nproc > 1 && atoi(inject) == t->rank && strchr(inject, ':') &&
        atol(strchr(inject, ':') + 1) == (long)epoch * c->steps_per_epoch + step)
        got = mr_fail(MR_ERR_IO, "MRCNN_TEST_FAIL: process %d fails at step %ld as asked", t->rank,
                      (long)epoch * c->steps_per_epoch + step);
    mr_status st = agree(t, got, NULL);
    if (st != MR_OK) {
        mr_dataset_release(t->train, b);
        return st;
    }
    double t0 = now_seconds(), wait0 = mr_dist_wait_seconds(), bytes0 = mr_dist_bytes();
    mr_ctx_reset(&t->ctx);
    mr_tensor **losses;
    int *first_nodes;
    st = batch_losses(t, b, mix(c->seed, 0x7a9, (uint64_t)epoch, (uint64_t)step), &losses,
                      &first_nodes, v);
    if (st != MR_OK) {
        mr_dataset_release(t->train, b);
        return fail_all_now(t, st);
    }
    reduce_losses(t, v); /* the batch's loss: the same on every process, so is `finite` */
    bool finite = isfinite(v->total);
    if (finite) {
        /* Clipping and weight decay (mr_sgd_step) see the whole batch's gradient. */
        st = backward_batch(t, losses, first_nodes, b->size);
        if (st != MR_OK) {
            mr_dataset_release(t->train, b);
            return fail_all_now(t, st);
        }
        sgd->learning_rate =
            stage->learning_rate * warmup_factor(c, (long)epoch * c->steps_per_epoch + step);
        mr_profile_enter(MR_GROUP_OPTIMIZER);
        mr_sgd_step(&t->model.params, sgd, rep);
        t->grads_zero = true;
    }
    if (finite && rep->finite) {
        t->bad_steps = 0;
        mr_dataset_release(t->train, b);
        *seconds = now_seconds() - t0;
        t->step_wait = mr_dist_wait_seconds() - wait0;
        t->step_bytes = mr_dist_bytes() - bytes0;
        *applied = true;
        return MR_OK;
    }
    char names[2048], what[320] = "";
    batch_names(t, b, names, sizeof names);
    if (finite) {
        snprintf(what, sizeof what, "gradient of %s", rep->bad_param);
    } else {
        for (int i = 0; i < MR_LOSS_COUNT; i++)
            if (!isfinite(v->value[i]))
                snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s",
                         what[0] ? ", " : "", mr_loss_names[i]);
    }
    mr_warn("epoch %d step %d: non-finite %s (images: %s); update skipped", epoch + 1, step + 1,
            what, names);
    mr_dataset_release(t->train, b);
    if (++t->bad_steps >= MAX_BAD_STEPS)
        return mr_fail(MR_ERR_NUMERIC,
                       "stopped after %d non-finite steps in a row (last: %s, images: %s); lower "
                       "LEARNING_RATE or check the annotations of those images",
                       t->bad_steps, what, names);
    return MR_OK;
}

/* The end of an epoch: validation loss and metrics, the epoch's log record and line, the
 * best epoch so far, the checkpoint, the overlays and report.html. */
/* The epoch's record in log.jsonl; ev NULL when the epoch was not scored. */
static void log_epoch(trainer *t, int epoch, double val_loss, const double terms[MR_LOSS_COUNT],
                      const mr_evaluation *ev, double seconds) {
    if (!t->log) return;
    mr_text r;
    record_begin(&r, "epoch", epoch + 1);
    record_number(&r, "loss",
                  t->epoch_loss_steps ? t->epoch_loss_sum / t->epoch_loss_steps : (double)NAN);
    record_number(&r, "val_loss", val_loss);
    for (int i = 0; i < MR_LOSS_COUNT; i++) {
        char key[64];
        snprintf(key, sizeof key, "val_%s", mr_loss_names[i]);
        record_number(&r, key, terms[i]);
    }
    if (ev) {
        record_number(&r, "val_mask_ap50", ev->mask.mean_ap50);
        record_number(&r, "val_mask_ap", ev->mask.mean_ap);
        record_number(&r, "val_sensitivity", mr_lesion_sensitivity(&ev->lesions));
        record_number(&r, "val_fp_per_image", mr_lesion_fp_per_image(&ev->lesions));
        record_number(&r, "val_dice",
                      ev->lesions.n_matched ? mr_lesion_mean_dice(&ev->lesions) : (double)NAN);
        record_number(&r, "val_accuracy",
                      ev->n_classified ? (double)ev->n_right / (double)ev->n_classified
                                       : (double)NAN);
        mr_text_printf(&r, ",\"val_images\":%lld", (long long)ev->n_images);
    }
    record_number(&r, "seconds", seconds);
    record_end(t, &r);
}

static mr_status finish_epoch(trainer *t, int epoch, double epoch_start, mr_report_run *report,
                              mr_train_result *result) {
    const mr_config *c = &t->cfg;
    double val_loss = NAN;
    double terms[MR_LOSS_COUNT];
    mr_dataset_stop(t->train);
    MR_TRY(validate(t, epoch, &val_loss, terms));
    mr_evaluation ev;
    bool scored = false;
    MR_TRY(agree(t, validation_metrics(t, epoch, &ev, &scored), NULL));
    log_epoch(t, epoch, val_loss, terms, scored ? &ev : NULL, now_seconds() - epoch_start);
    if (!t->quiet && scored)
        mr_info("epoch %d/%d done in %.0fs: loss %.4f, val_loss %.4f, val mask AP50 %.3f "
                "(%lld images)",
                epoch + 1, c->epochs, now_seconds() - epoch_start,
                t->epoch_loss_steps ? t->epoch_loss_sum / t->epoch_loss_steps : (double)NAN,
                val_loss, ev.mask.mean_ap50, (long long)ev.n_images);
    else if (!t->quiet)
        mr_info("epoch %d/%d done in %.0fs: loss %.4f, val_loss %.4f", epoch + 1, c->epochs,
                now_seconds() - epoch_start,
                t->epoch_loss_steps ? t->epoch_loss_sum / t->epoch_loss_steps : (double)NAN,
                val_loss);
    if (scored && ev.mask.mean_ap50 != MR_AP_UNDEFINED && isfinite(ev.mask.mean_ap50) &&
        !(ev.mask.mean_ap50 <= result->best_val_mask_ap50)) {
        result->best_val_mask_ap50 = ev.mask.mean_ap50;
        result->best_ap50_epoch = epoch + 1;
    }
    t->epoch_ap50 = t->epoch_ap = NAN;
    if (scored && ev.mask.mean_ap50 != MR_AP_UNDEFINED) t->epoch_ap50 = ev.mask.mean_ap50;
    if (scored && ev.mask.mean_ap != MR_AP_UNDEFINED) t->epoch_ap = ev.mask.mean_ap;
    if (scored) mr_evaluation_free(&ev);
    result->last_epoch_loss =
        t->epoch_loss_steps ? t->epoch_loss_sum / t->epoch_loss_steps : (double)NAN;
    result->epochs_done = epoch + 1;
    result->last_val_loss = val_loss;
    if (val_loss < result->best_val_loss) result->best_val_loss = val_loss;
    MR_TRY(save(t, epoch + 1, 0, val_loss, "end of epoch"));
    MR_TRY(agree(t, write_overlays(t, epoch), NULL));
    report->finished = epoch + 1 >= c->epochs;
    if (t->writer && mr_report_write(t->run_dir, c, report) != MR_OK) /* goes on without it */
        mr_warn("report.html not refreshed: %s", mr_last_error());
    return MR_OK;
}

mr_status mr_train(const mr_train_options *opt, mr_train_result *result) {
    trainer t;
    memset(&t, 0, sizeof t);
    memset(result, 0, sizeof *result);
    result->best_val_loss = INFINITY;
    result->last_epoch_loss = result->best_val_mask_ap50 = NAN;
    t.rank = mr_dist_rank();
    t.nproc = mr_dist_size();
    t.writer = t.rank == 0;
    t.quiet = opt->quiet || !t.writer; /* the other processes are silent unless they fail */
    t.tty = isatty(STDERR_FILENO);
    t.saved_global = -1;
    t.epoch_ap50 = t.epoch_ap = NAN;
    int epoch = 0, step = 0;
    mr_status st = open_run(&t, opt, &epoch, &step);
    if (t.nproc > 1) {
        st = agree(&t, st, NULL);
        if (st == MR_OK && !(opt->resume_dir && epoch >= t.cfg.epochs)) { /* not complete */
            mr_dist_bcast(t.run_dir, sizeof t.run_dir);                   /* the writer named it */
            /* Every process starts from the writer's weights and momentum, whatever each read
             * (a weights file that differs between machines would otherwise go unnoticed). */
            mr_dist_bcast(t.model.params.values, sizeof(float) * t.model.params.total);
            mr_dist_bcast(t.model.params.momentum, sizeof(float) * t.model.params.total);
        }
    }
    snprintf(result->run_dir, sizeof result->run_dir, "%s", t.run_dir);
    result->epochs_total = t.cfg.epochs;
    if (st == MR_OK && opt->resume_dir && epoch >= t.cfg.epochs) {
        result->already_complete = true;
        result->epochs_done = epoch;
    }
    if (st != MR_OK || result->already_complete) {
        settle(&t, st, result);
        trainer_close(&t);
        return st;
    }
    mr_config *c = &t.cfg;
    /* Thread and process counts do not change a step's bits (core/blas.c, backward_batch), the
     * BLAS kernel does. */
    const char *now_with = mr_runtime_numerics();
    const size_t kernel_len = strcspn(now_with, ",");
    if (t.written_with[0] && (strcspn(t.written_with, ",") != kernel_len ||
                              strncmp(t.written_with, now_with, kernel_len) != 0))
        mr_warn("this run was trained with %s, this process has %s: the continuation differs "
                "from an uninterrupted run in float rounding; resume on a machine with the same "
                "OpenBLAS kernel (OPENBLAS_CORETYPE) for a bit-identical result",
                t.written_with, now_with);
    if (!t.quiet) {
        mr_runtime_banner();
        print_config_summary(&t);
    }
    /* mpirun's default leaves a stopped run no time to finish its step and save it. */
    int grace = mr_dist_stop_grace_seconds();
    if (t.writer && t.nproc > 1 && grace < STOP_GRACE_SECONDS)
        mr_warn("mpirun kills the processes %d s after Ctrl-C or SIGTERM, too soon to finish the "
                "step and save it; give them time with: mpirun --mca odls_base_sigkill_timeout %d",
                grace, STOP_GRACE_SECONDS);
    long steps_run = 0;
    mr_report_run report = report_run(&t);
    if (epoch < c->epochs) st = mr_dataset_start(t.train, epoch, step, c->steps_per_epoch);
    for (; st == MR_OK && epoch < c->epochs; epoch++, step = 0) {
        const mr_stage *stage = mr_config_stage(c, epoch);
        int n_trainable = 0;
        if ((st = mr_model_set_trainable(&t.model, stage->layers, &n_trainable)) != MR_OK) break;
        /* Matterport compiles a fresh optimizer for each train() call, so momentum restarts
         * with every stage. */
        bool stage_start = epoch == 0 || mr_config_stage(c, epoch - 1) != stage;
        if (stage_start && step == 0)
            memset(t.model.params.momentum, 0, sizeof(float) * t.model.params.total);
        if (!t.quiet && step == 0)
            mr_info("epoch %d/%d: layers \"%s\" (%zu trainable values), learning rate %g",
                    epoch + 1, c->epochs, stage->layers, mr_params_count_trainable(&t.model.params),
                    (double)stage->learning_rate);
        mr_sgd opt_sgd = {stage->learning_rate, c->learning_momentum, c->net.weight_decay,
                          c->gradient_clip_norm};
        double epoch_start = now_seconds();
        const int first_step = step; /* > 0 in an epoch resumed in its middle */
        running_losses running = {0};
        if (step == 0) { /* a resumed epoch keeps the sums its checkpoint carried */
            t.epoch_loss_sum = 0.0;
            t.epoch_loss_steps = 0;
        }
        for (; step < c->steps_per_epoch; step++) {
            mr_loss_values v;
            mr_sgd_report rep;
            double seconds = 0.0;
            bool applied = false;
            st = train_step(&t, epoch, step, stage, &opt_sgd, &v, &rep, &seconds, &applied);
            if (st != MR_OK) {
                /* The skipped steps are behind: a resume goes on after them. */
                if (t.bad_steps >= MAX_BAD_STEPS) step++;
                break;
            }
            if (!applied) continue;
            long global = (long)epoch * c->steps_per_epoch + step + 1;
            log_step(&t, epoch, global, &v, rep.l2_loss, opt_sgd.learning_rate, &rep, seconds);
            t.epoch_loss_sum += (double)v.total + rep.l2_loss;
            t.epoch_loss_steps++;
            steps_run++;
            int left =
                (c->epochs - epoch - 1) * c->steps_per_epoch + (c->steps_per_epoch - step - 1);
            running_add(&running, &v, rep.l2_loss);
            progress(&t, epoch, step, (now_seconds() - epoch_start) / (step + 1 - first_step), left,
                     &running);
            bool stop =
                (opt->stop && *opt->stop) || (opt->max_steps > 0 && steps_run >= opt->max_steps);
            /* A signal to any process stops them all after the same step. */
            if (t.nproc > 1) agree(&t, MR_OK, &stop);
            if (stop && step + 1 < c->steps_per_epoch) {
                mr_dataset_stop(t.train);
                st = save(&t, epoch, step + 1, NAN, "interrupted");
                t.save_failed = true; /* saved or not, nothing more to save on the way out */
                char where[1400];
                position_text(&t, epoch, step + 1, where, sizeof where);
                if (st == MR_OK)
                    st = mr_fail(MR_ERR_INTERRUPTED,
                                 "stopped %s; resume with: mrcnn train --resume %s", where,
                                 t.run_dir);
                break;
            }
        }
        if (st != MR_OK) break;
        if ((st = finish_epoch(&t, epoch, epoch_start, &report, result)) != MR_OK) break;
        bool stop =
            (opt->stop && *opt->stop) || (opt->max_steps > 0 && steps_run >= opt->max_steps);
        if (t.nproc > 1) agree(&t, MR_OK, &stop);
        if (stop && epoch + 1 < c->epochs) {
            char where[1400];
            position_text(&t, epoch + 1, 0, where, sizeof where);
            st = mr_fail(MR_ERR_INTERRUPTED, "stopped %s; resume with: mrcnn train --resume %s",
                         where, t.run_dir);
            break;
        }
        if (epoch + 1 < c->epochs &&
            (st = mr_dataset_start(t.train, epoch + 1, 0, c->steps_per_epoch)) != MR_OK)
            break;
    }
    if (t.train) mr_dataset_stop(t.train);
    if (st != MR_OK && st != MR_ERR_INTERRUPTED && !t.save_failed)
        st = save_after_failure(&t, st, epoch, step);
    result->step_memory_peak = t.ctx.arena.high_water;
    settle(&t, st, result);
    trainer_close(&t);
    return st;
}
