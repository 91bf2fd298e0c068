/* Parameter declaration, the flat buffers, lookup by name and the trainable-layer selection. */
#include "params.h"

#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

void mr_params_init(mr_params *p) {
    memset(p, 0, sizeof *p);
}

void mr_params_free(mr_params *p) {
    free(p->items);
    free(p->block);
    memset(p, 0, sizeof *p);
}

int mr_params_add(mr_params *p, const char *name, int ndim, const int64_t *shape,
                  bool trainable_kind) {
    MR_REQUIRE(!p->finalized, "parameter '%s' declared after finalize", name);
    MR_REQUIRE(strlen(name) < MR_PARAM_NAME_MAX, "parameter name too long: %s", name);
    MR_REQUIRE(ndim >= 1 && ndim <= MR_MAX_DIMS, "parameter '%s' with %d dims", name, ndim);
    if (mr_params_find(p, name)) {
        mr_fail(MR_ERR_ARG, "parameter '%s' declared twice", name);
        return -1;
    }
    if (!mr_grow(&p->items, &p->capacity, (size_t)p->count + 1, sizeof *p->items, 256)) {
        mr_fail(MR_ERR_NOMEM, "cannot declare parameter '%s'", name);
        return -1;
    }
    mr_param *q = &p->items[p->count];
    memset(q, 0, sizeof *q);
    strcpy(q->name, name);
    q->t.ndim = ndim;
    q->t.numel = 1;
    for (int i = 0; i < ndim; i++) {
        q->t.shape[i] = shape[i];
        q->t.numel *= shape[i];
    }
    q->t.is_param = true;
    q->trainable_kind = trainable_kind;
    q->frozen = !trainable_kind;
    q->offset = p->total;
    /* Keep every parameter 64-byte aligned inside the flat buffers. */
    p->total += ((size_t)q->t.numel + 15) / 16 * 16;
    return p->count++;
}

void mr_params_set_frozen(mr_params *p, mr_param *param, bool frozen) {
    param->frozen = frozen || !param->trainable_kind;
    param->t.requires_grad = !param->frozen;
    /* A frozen parameter has no gradient buffer, so no op can spend work on it. */
    param->t.grad = param->frozen ? NULL : p->grads + param->offset;
}

mr_status mr_params_finalize(mr_params *p) {
    size_t floats = p->total ? p->total : 16;
    /* One zeroed block for the three buffers. A block this size comes fresh from the system,
     * zero without being written, and a page is backed only once something writes it: an
     * inference model (predict, evaluate) never writes its gradients or momentum, so they cost
     * it no memory. calloc's alignment is 16 bytes; the buffers start at the next 64. */
    p->block = calloc(3 * floats + 16, sizeof(float));
    if (!p->block)
        return mr_fail(MR_ERR_NOMEM,
                       "cannot allocate %zu parameters (%.1f MiB each for values, "
                       "gradients and momentum)",
                       p->total, (double)(floats * sizeof(float)) / (1024.0 * 1024.0));
    p->values = (float *)(((uintptr_t)p->block + 63) & ~(uintptr_t)63);
    p->grads = p->values + floats;
    p->momentum = p->grads + floats;
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        q->t.name = q->name;
        q->t.data = p->values + q->offset;
        mr_params_set_frozen(p, q, q->frozen);
    }
    p->finalized = true;
    return MR_OK;
}

mr_param *mr_params_find(mr_params *p, const char *name) {
    for (int i = 0; i < p->count; i++)
        if (!strcmp(p->items[i].name, name)) return &p->items[i];
    return NULL;
}

mr_tensor *mr_params_tensor(mr_params *p, const char *name) {
    mr_param *q = mr_params_find(p, name);
    MR_REQUIRE(q, "no parameter named '%s'", name);
    return &q->t;
}

void mr_param_layer(const char *name, char *layer, size_t size) {
    const char *slash = strrchr(name, '/');
    size_t n = slash ? (size_t)(slash - name) : strlen(name);
    if (n >= size) n = size - 1;
    memcpy(layer, name, n);
    layer[n] = '\0';
}

mr_status mr_params_set_trainable(mr_params *p, const char *layer_regex, int *n_trainable) {
    char anchored[512];
    snprintf(anchored, sizeof anchored, "^(%s)$", layer_regex);
    regex_t re;
    int rc = regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[128];
        regerror(rc, &re, msg, sizeof msg);
        return mr_fail(MR_ERR_CONFIG, "layer pattern '%s' is not a valid regex: %s", layer_regex,
                       msg);
    }
    int count = 0;
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        char layer[MR_PARAM_NAME_MAX];
        mr_param_layer(q->name, layer, sizeof layer);
        mr_params_set_frozen(p, q, regexec(&re, layer, 0, NULL, 0) != 0);
        if (!q->frozen) count++;
    }
    regfree(&re);
    if (n_trainable) *n_trainable = count;
    return MR_OK;
}

void mr_params_zero_grads(mr_params *p) {
    /* The trainable parameters' alone: nothing writes or reads a frozen one's gradient, so its
     * pages are never backed (training the heads leaves the backbone's unbacked). */
    for (int i = 0; i < p->count; i++)
        if (!p->items[i].frozen) mr_zero_floats(p->items[i].t.grad, p->items[i].t.numel);
}

void mr_params_back_momentum(mr_params *p) {
    /* An update reads the momentum before writing it. On a page never written, the read maps the
     * system's shared zero page and the write then has to replace it, which interrupts every
     * core the process runs on to drop the old mapping: the first step of ResNet-50 spent 0.6-0.9
     * s there against 0.04 s for later ones. Backing the pages for writing first costs one
     * ordinary fault each. A kernel without MADV_POPULATE_WRITE (before Linux 5.14) refuses it,
     * and the update then pays the slow way, with the same results. */
#ifdef MADV_POPULATE_WRITE
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        if (q->frozen || q->momentum_backed) continue;
        uintptr_t start = (uintptr_t)(p->momentum + q->offset) & ~(page - 1);
        uintptr_t end = (uintptr_t)(p->momentum + q->offset + q->t.numel);
        if (end > start) (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
        q->momentum_backed = true;
    }
#else
    (void)p;
#endif
}

size_t mr_params_count_trainable(const mr_params *p) {
    size_t n = 0;
    for (int i = 0; i < p->count; i++)
        if (!p->items[i].frozen) n += (size_t)p->items[i].t.numel;
    return n;
}
