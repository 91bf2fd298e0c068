/* The optimizer step over the parameter registry's flat buffers. Sums in double so the global
 * norm does not depend on summation order more than it must. */
#include "sgd.h"

#include <math.h>
#include <string.h>

static bool decays(const mr_param *q) {
    /* Matterport: every trainable weight whose name has neither "gamma" nor "beta". */
    return !q->frozen && !strstr(q->name, "gamma") && !strstr(q->name, "beta");
}

double mr_weight_decay_loss(const mr_params *p, float weight_decay) {
    double total = 0.0;
    for (int i = 0; i < p->count; i++) {
        const mr_param *q = &p->items[i];
        if (!decays(q)) continue;
        double sq = 0.0;
        for (int64_t k = 0; k < q->t.numel; k++) sq += (double)q->t.data[k] * (double)q->t.data[k];
        total += (double)weight_decay * sq / (double)q->t.numel;
    }
    return total;
}

void mr_sgd_step(mr_params *p, const mr_sgd *opt, mr_sgd_report *report) {
    memset(report, 0, sizeof *report);
    report->finite = true;
    double norm_sq = 0.0;
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        if (q->frozen) continue;
        float *g = q->t.grad;
        const float *w = q->t.data;
        bool decay = decays(q);
        double sq_w = 0.0;
        float scale = 2.0f * opt->weight_decay / (float)q->t.numel;
        for (int64_t k = 0; k < q->t.numel; k++) {
            if (decay) {
                g[k] += scale * w[k];
                sq_w += (double)w[k] * (double)w[k];
            }
            norm_sq += (double)g[k] * (double)g[k];
        }
        if (decay) report->l2_loss += (double)opt->weight_decay * sq_w / (double)q->t.numel;
        if (report->finite && !isfinite(norm_sq)) {
            report->finite = false;
            snprintf(report->bad_param, sizeof report->bad_param, "%s", q->name);
        }
    }
    report->grad_norm = sqrt(norm_sq);
    if (!report->finite) return;
    float factor = 1.0f;
    if (opt->clip_norm > 0.0f && report->grad_norm > (double)opt->clip_norm) {
        factor = (float)((double)opt->clip_norm / report->grad_norm);
        report->clipped = true;
    }
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        if (q->frozen) continue;
        float *v = p->momentum + q->offset, *w = q->t.data;
        const float *g = q->t.grad;
        for (int64_t k = 0; k < q->t.numel; k++) {
            v[k] = opt->momentum * v[k] - opt->learning_rate * (g[k] * factor);
            w[k] += v[k];
        }
    }
}
