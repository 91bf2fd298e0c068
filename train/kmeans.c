/* K-means anchor fitting (YOLOv2's 1 - IoU on box shapes, k-means++, seeded restarts), the
 * clusters-to-config rule for both anchor forms, coverage numbers, and the byte-preserving
 * rewrite of RPN_ANCHOR_SCALES / RPN_ANCHOR_RATIOS in a config file, written atomically. */
#include "kmeans.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/text.h"
#include "../core/file.h"
#include "../core/rng.h"
#include "config.h"

double mr_wh_iou(double w1, double h1, double w2, double h2) {
    if (!(w1 > 0 && h1 > 0 && w2 > 0 && h2 > 0)) return 0.0;
    double inter = (w1 < w2 ? w1 : w2) * (h1 < h2 ? h1 : h2);
    return inter / (w1 * h1 + w2 * h2 - inter);
}

/* ---- k-means -------------------------------------------------------------------------------- */

/* Index of the centre with the highest IoU (ties: lower index), and that IoU. */
static int nearest(const double *box, const double (*c)[2], int k, double *best_iou) {
    int best = 0;
    double b = -1.0;
    for (int j = 0; j < k; j++) {
        double v = mr_wh_iou(box[0], box[1], c[j][0], c[j][1]);
        if (v > b) b = v, best = j;
    }
    *best_iou = b;
    return best;
}

/* One k-means++ seeded Lloyd run; returns the mean best IoU. d2 and assign are (n) scratch. */
static double run_once(const double *wh, int64_t n, int k, int max_iter, mr_rng *rng,
                       double (*c)[2], int64_t *count, int *assign, double *d2, int *iters) {
    /* k-means++: d^2 sampling with d = 1 - IoU, so shapes unlike any chosen centre are likely. */
    int64_t first = (int64_t)mr_rng_below(rng, (uint64_t)n);
    c[0][0] = wh[2 * first], c[0][1] = wh[2 * first + 1];
    for (int64_t i = 0; i < n; i++) {
        double d = 1.0 - mr_wh_iou(wh[2 * i], wh[2 * i + 1], c[0][0], c[0][1]);
        d2[i] = d * d;
    }
    for (int j = 1; j < k; j++) {
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) total += d2[i];
        int64_t pick = n - 1;
        if (total > 0.0) {
            double u = mr_rng_uniform_double(rng) * total, acc = 0.0;
            for (int64_t i = 0; i < n; i++) {
                acc += d2[i];
                if (u < acc && d2[i] > 0.0) {
                    pick = i;
                    break;
                }
            }
        } else { /* every box sits on a centre already: any box will do */
            pick = (int64_t)mr_rng_below(rng, (uint64_t)n);
        }
        c[j][0] = wh[2 * pick], c[j][1] = wh[2 * pick + 1];
        for (int64_t i = 0; i < n; i++) {
            double d = 1.0 - mr_wh_iou(wh[2 * i], wh[2 * i + 1], c[j][0], c[j][1]);
            if (d * d < d2[i]) d2[i] = d * d;
        }
    }

    for (int64_t i = 0; i < n; i++) assign[i] = -1;
    int it = 0;
    for (;; it++) {
        bool changed = false;
        for (int64_t i = 0; i < n; i++) {
            double v;
            int j = nearest(wh + 2 * i, (const double(*)[2])c, k, &v);
            d2[i] = 1.0 - v; /* reused as the distance to the own centre */
            if (j != assign[i]) changed = true, assign[i] = j;
        }
        if (!changed || it >= max_iter) break;
        double sum[MR_KMEANS_MAX_K][2] = {{0}};
        for (int j = 0; j < k; j++) count[j] = 0;
        for (int64_t i = 0; i < n; i++) {
            sum[assign[i]][0] += wh[2 * i];
            sum[assign[i]][1] += wh[2 * i + 1];
            count[assign[i]]++;
        }
        for (int j = 0; j < k; j++) {
            if (count[j] > 0) {
                c[j][0] = sum[j][0] / (double)count[j];
                c[j][1] = sum[j][1] / (double)count[j];
                continue;
            }
            /* Empty cluster: restart it on the box its centre serves worst, which is the box
             * the current solution explains least; when every box is served perfectly the
             * centre may stay (it is then a duplicate and harmless). */
            int64_t worst = -1;
            double wd = 0.0;
            for (int64_t i = 0; i < n; i++)
                if (d2[i] > wd) wd = d2[i], worst = i;
            if (worst >= 0) {
                c[j][0] = wh[2 * worst], c[j][1] = wh[2 * worst + 1];
                d2[worst] = 0.0;
            }
        }
    }
    for (int j = 0; j < k; j++) count[j] = 0;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        count[assign[i]]++;
        total += 1.0 - d2[i];
    }
    *iters = it;
    return total / (double)n;
}

mr_status mr_kmeans_wh(const double *wh, int64_t n, const mr_kmeans_options *opt,
                       mr_kmeans_result *out) {
    memset(out, 0, sizeof *out);
    int k = opt->k;
    if (k < 1 || k > MR_KMEANS_MAX_K)
        return mr_fail(MR_ERR_ARG, "k-means: k = %d clusters, expected 1..%d", k, MR_KMEANS_MAX_K);
    if (n < k)
        return mr_fail(MR_ERR_ARG,
                       "k-means: %d clusters need at least %d boxes, got %lld; "
                       "use a smaller --k or more data",
                       k, k, (long long)n);
    for (int64_t i = 0; i < 2 * n; i++)
        if (!(wh[i] > 0.0) || !isfinite(wh[i]))
            return mr_fail(MR_ERR_ARG, "k-means: box %lld has %s %g; sizes must be positive",
                           (long long)(i / 2), i % 2 ? "height" : "width", wh[i]);
    int restarts = opt->restarts > 0 ? opt->restarts : 10;
    int max_iter = opt->max_iter > 0 ? opt->max_iter : 300;
    int *assign = malloc(sizeof(int) * (size_t)n);
    double *d2 = malloc(sizeof(double) * (size_t)n);
    if (!assign || !d2) {
        free(assign), free(d2);
        return mr_fail(MR_ERR_NOMEM, "k-means: out of memory for %lld boxes", (long long)n);
    }
    mr_rng rng;
    mr_rng_seed(&rng, opt->seed);
    out->k = k;
    out->mean_iou = -1.0;
    for (int r = 0; r < restarts; r++) {
        double c[MR_KMEANS_MAX_K][2];
        int64_t count[MR_KMEANS_MAX_K];
        int iters = 0;
        double m = run_once(wh, n, k, max_iter, &rng, c, count, assign, d2, &iters);
        if (m > out->mean_iou) { /* strictly better: the earliest of equal runs stays */
            out->mean_iou = m;
            out->best_restart = r;
            out->iterations = iters;
            memcpy(out->wh, c, sizeof(double) * 2 * (size_t)k);
            memcpy(out->count, count, sizeof(int64_t) * (size_t)k);
        }
    }
    free(assign), free(d2);
    /* Smallest area first (insertion sort keeps equal areas in cluster order). */
    for (int i = 1; i < k; i++)
        for (int j = i;
             j > 0 && out->wh[j][0] * out->wh[j][1] < out->wh[j - 1][0] * out->wh[j - 1][1]; j--) {
            double tw = out->wh[j][0], th = out->wh[j][1];
            int64_t tc = out->count[j];
            out->wh[j][0] = out->wh[j - 1][0], out->wh[j][1] = out->wh[j - 1][1];
            out->count[j] = out->count[j - 1];
            out->wh[j - 1][0] = tw, out->wh[j - 1][1] = th, out->count[j - 1] = tc;
        }
    return MR_OK;
}

void mr_anchor_fit_eval(mr_anchor_fit *fit, const double *wh, int64_t n, const double *shapes,
                        int64_t n_shapes) {
    memset(fit, 0, sizeof *fit);
    fit->n = n;
    if (n <= 0) return;
    int64_t n50 = 0, n70 = 0;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double best = 0.0;
        for (int64_t j = 0; j < n_shapes; j++) {
            double v = mr_wh_iou(wh[2 * i], wh[2 * i + 1], shapes[2 * j], shapes[2 * j + 1]);
            if (v > best) best = v;
        }
        total += best;
        n50 += best >= 0.5;
        n70 += best >= 0.7;
    }
    fit->mean_iou = total / (double)n;
    fit->share_50 = (double)n50 / (double)n;
    fit->share_70 = (double)n70 / (double)n;
}

int64_t mr_anchor_shapes(double *shapes, const float *scales, int n_scales, const float *ratios,
                         int n_ratios) {
    int64_t m = 0;
    for (int s = 0; s < n_scales; s++)
        for (int r = 0; r < n_ratios; r++) {
            double sr = sqrt((double)ratios[r]);
            shapes[2 * m] = (double)scales[s] * sr;
            shapes[2 * m + 1] = (double)scales[s] / sr;
            m++;
        }
    return m;
}

/* ---- clusters -> config values -------------------------------------------------------------- */

/* Whole pixels, or 0.1 px below 10 px, inside the config's accepted 1..4096. */
static float quantise_size(double s) {
    double q = s >= 10.0 ? round(s) : round(s * 10.0) / 10.0;
    if (q < 1.0) q = 1.0;
    if (q > 4096.0) q = 4096.0;
    return (float)q;
}

/* Two significant digits (0.483 -> 0.48, 3.62 -> 3.6), inside the accepted 0.01..100. */
static float quantise_ratio(double r) {
    if (r < 0.01) r = 0.01;
    if (r > 100.0) r = 100.0;
    double f = pow(10.0, 1.0 - floor(log10(r)));
    return (float)(round(r * f) / f);
}

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

mr_status mr_anchors_from_clusters(const mr_kmeans_result *km, bool per_level, int n_levels,
                                   int max_ratios, float *scales, int *n_scales, float *ratios,
                                   int *n_ratios) {
    int k = km->k;
    if (k < 1) return mr_fail(MR_ERR_ARG, "anchors: no clusters");
    if (max_ratios < 1) max_ratios = 1;
    if (per_level && n_levels < 1) return mr_fail(MR_ERR_ARG, "anchors: need at least one level");

    double size[MR_KMEANS_MAX_K];
    for (int j = 0; j < k; j++) size[j] = sqrt(km->wh[j][0] * km->wh[j][1]);
    qsort(size, (size_t)k, sizeof size[0], cmp_double);
    if (per_level) {
        for (int i = 0; i < n_levels; i++) {
            double pos = n_levels > 1 ? (double)i * (double)(k - 1) / (double)(n_levels - 1) : 0.0;
            int lo = (int)floor(pos);
            int hi = lo + 1 < k ? lo + 1 : lo;
            double f = pos - (double)lo;
            scales[i] = quantise_size(exp((1.0 - f) * log(size[lo]) + f * log(size[hi])));
        }
        *n_scales = n_levels;
    } else {
        int m = 0;
        for (int j = 0; j < k; j++) {
            float q = quantise_size(size[j]);
            if (m == 0 || q != scales[m - 1]) scales[m++] = q;
        }
        *n_scales = m;
    }

    /* Ratios: optimal partition of the sorted log ratios into at most max_ratios contiguous
     * groups, minimising the count-weighted squared spread (dynamic programming; k is small). */
    typedef struct {
        double lr, w;
    } item;
    item it[MR_KMEANS_MAX_K];
    for (int j = 0; j < k; j++) {
        it[j].lr = log(km->wh[j][0] / km->wh[j][1]);
        it[j].w = km->count[j] > 0 ? (double)km->count[j] : 1e-9; /* keep empty ones harmless */
    }
    for (int i = 1; i < k; i++) /* insertion sort by log ratio */
        for (int j = i; j > 0 && it[j].lr < it[j - 1].lr; j--) {
            item t = it[j];
            it[j] = it[j - 1];
            it[j - 1] = t;
        }
    int g = max_ratios < k ? max_ratios : k;
    /* cost(a, b): weighted SSE of items a..b-1 via prefix sums. */
    double W[MR_KMEANS_MAX_K + 1] = {0}, S[MR_KMEANS_MAX_K + 1] = {0}, Q[MR_KMEANS_MAX_K + 1] = {0};
    for (int j = 0; j < k; j++) {
        W[j + 1] = W[j] + it[j].w;
        S[j + 1] = S[j] + it[j].w * it[j].lr;
        Q[j + 1] = Q[j] + it[j].w * it[j].lr * it[j].lr;
    }
#define COST(a, b) (Q[b] - Q[a] - (S[b] - S[a]) * (S[b] - S[a]) / (W[b] - W[a]))
    double dp[9][MR_KMEANS_MAX_K + 1];
    int cut[9][MR_KMEANS_MAX_K + 1];
    if (g > 8) g = 8;
    for (int b = 1; b <= k; b++) dp[1][b] = COST(0, b), cut[1][b] = 0;
    for (int m = 2; m <= g; m++)
        for (int b = m; b <= k; b++) {
            dp[m][b] = DBL_MAX;
            for (int a = m - 1; a < b; a++) {
                double v = dp[m - 1][a] + COST(a, b);
                if (v < dp[m][b]) dp[m][b] = v, cut[m][b] = a;
            }
        }
#undef COST
    double means[8];
    for (int m = g, b = k; m >= 1; m--) {
        int a = cut[m][b];
        means[m - 1] = exp((S[b] - S[a]) / (W[b] - W[a]));
        b = a;
    }
    int nr = 0;
    for (int m = 0; m < g; m++) {
        float q = quantise_ratio(means[m]);
        if (nr == 0 || q != ratios[nr - 1]) ratios[nr++] = q;
    }
    *n_ratios = nr;
    return MR_OK;
}

/* ---- JSON text editing ---------------------------------------------------------------------- */

typedef struct {
    const char *s;
    size_t i, n;
} scan;

static void skip_ws(scan *c) {
    while (c->i < c->n &&
           (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r'))
        c->i++;
}

/* At a '"': moves past the closing quote. */
static bool skip_string(scan *c) {
    c->i++;
    while (c->i < c->n) {
        char ch = c->s[c->i++];
        if (ch == '\\') {
            c->i++;
            continue;
        }
        if (ch == '"') return true;
    }
    return false;
}

/* Moves past one value: a string, a nested array/object, or a bare scalar. */
static bool skip_value(scan *c) {
    if (c->i >= c->n) return false;
    char ch = c->s[c->i];
    if (ch == '"') return skip_string(c);
    if (ch == '{' || ch == '[') {
        int depth = 0;
        while (c->i < c->n) {
            ch = c->s[c->i];
            if (ch == '"') {
                if (!skip_string(c)) return false;
                continue;
            }
            c->i++;
            if (ch == '{' || ch == '[') depth++;
            if (ch == '}' || ch == ']') {
                if (--depth == 0) return true;
            }
        }
        return false;
    }
    size_t start = c->i;
    while (c->i < c->n && !strchr(",}] \t\r\n", c->s[c->i])) c->i++;
    return c->i > start;
}

mr_status mr_json_set_member(const char *text, const char *origin, const char *key,
                             const char *value, char **out) {
    *out = NULL;
    scan c = {text, 0, strlen(text)};
    if (c.n >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) c.i = 3; /* UTF-8 byte order mark */
    skip_ws(&c);
    int64_t col, line;
    if (c.i >= c.n || text[c.i] != '{') {
        mr_text_pos(text, c.n, c.i, &line, &col);
        return mr_fail(MR_ERR_FORMAT, "%s:%lld:%lld: expected a JSON object ('{') of config keys",
                       origin, (long long)line, (long long)col);
    }
    size_t open = c.i++;
    size_t first_key = 0, last_end = 0, close = 0, val_lo = 0, val_hi = 0;
    bool found = false, any = false;
    size_t klen = strlen(key);
    for (;;) {
        skip_ws(&c);
        if (c.i < c.n && text[c.i] == '}' && !any) {
            close = c.i;
            break;
        }
        if (c.i >= c.n || text[c.i] != '"') goto bad;
        size_t ks = c.i;
        if (!skip_string(&c)) goto bad;
        size_t ke = c.i; /* past the closing quote */
        if (!any) first_key = ks;
        any = true;
        skip_ws(&c);
        if (c.i >= c.n || text[c.i] != ':') goto bad;
        c.i++;
        skip_ws(&c);
        size_t vs = c.i;
        if (!skip_value(&c)) goto bad;
        size_t ve = c.i;
        if (ke - ks - 2 == klen && !memcmp(text + ks + 1, key, klen)) {
            if (found) {
                mr_text_pos(text, c.n, ks, &line, &col);
                return mr_fail(MR_ERR_FORMAT, "%s:%lld:%lld: %s appears twice; keep one", origin,
                               (long long)line, (long long)col, key);
            }
            found = true, val_lo = vs, val_hi = ve;
        }
        last_end = ve;
        skip_ws(&c);
        if (c.i < c.n && text[c.i] == ',') {
            c.i++;
            continue;
        }
        if (c.i < c.n && text[c.i] == '}') {
            close = c.i;
            break;
        }
        goto bad;
    }
    (void)close;
    size_t vlen = strlen(value);
    if (found) {
        size_t total = c.n - (val_hi - val_lo) + vlen;
        char *o = malloc(total + 1);
        if (!o) return mr_fail(MR_ERR_NOMEM, "out of memory editing %s", origin);
        memcpy(o, text, val_lo);
        memcpy(o + val_lo, value, vlen);
        memcpy(o + val_lo + vlen, text + val_hi, c.n - val_hi);
        o[total] = '\0';
        *out = o;
        return MR_OK;
    }
    /* Insert as the last member, indented like the first one. */
    char indent[64] = "";
    bool multiline = false;
    size_t at;
    if (any) {
        size_t b = first_key;
        while (b > open + 1 && (text[b - 1] == ' ' || text[b - 1] == '\t')) b--;
        multiline = text[b - 1] == '\n' || text[b - 1] == '\r';
        size_t il = first_key - b < sizeof indent - 1 ? first_key - b : sizeof indent - 1;
        memcpy(indent, text + b, il);
        indent[il] = '\0';
        at = last_end;
    } else {
        multiline = true;
        snprintf(indent, sizeof indent, "  ");
        at = open + 1;
    }
    size_t extra = strlen(indent) + klen + vlen + 16;
    char *o = malloc(c.n + extra + 1);
    if (!o) return mr_fail(MR_ERR_NOMEM, "out of memory editing %s", origin);
    memcpy(o, text, at);
    int w = snprintf(o + at, extra, "%s%s%s\"%s\": %s%s", any ? "," : "",
                     multiline ? "\n" : (any ? " " : ""), multiline ? indent : "", key, value,
                     any ? "" : (multiline ? "\n" : ""));
    memcpy(o + at + (size_t)w, text + at, c.n - at);
    o[at + (size_t)w + c.n - at] = '\0';
    *out = o;
    return MR_OK;
bad:
    mr_text_pos(text, c.n, c.i, &line, &col);
    return mr_fail(MR_ERR_FORMAT,
                   "%s:%lld:%lld: cannot follow the JSON here (expected \"KEY\": value, ',' or "
                   "'}'); fix the file or edit the anchors by hand",
                   origin, (long long)line, (long long)col);
}

void mr_format_float_list(char *buf, size_t size, const float *v, int n) {
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n && used < size; i++) {
        char num[48];
        if (v[i] == rintf(v[i]) && fabsf(v[i]) < 1e7f) {
            snprintf(num, sizeof num, "%.0f", (double)v[i]);
        } else {
            /* The shortest plain decimal that reads back as the same float (no exponent: a
             * config is read by people too). */
            for (int p = 1; p <= 12; p++) {
                snprintf(num, sizeof num, "%.*f", p, (double)v[i]);
                if (strtof(num, NULL) == v[i]) break;
            }
        }
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", num);
    }
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* The config as text, refused when it holds a NUL byte (not a JSON text file). */
static mr_status read_text(const char *path, char **out) {
    size_t n = 0;
    MR_TRY(mr_read_file(path, "config", 16u << 20, out, &n));
    if (strlen(*out) == n) return MR_OK;
    free(*out);
    *out = NULL;
    return mr_fail(MR_ERR_FORMAT, "%s: holds a NUL byte; not a JSON text file", path);
}

mr_status mr_config_write_anchors(const char *path, const float *scales, int n_scales,
                                  const float *ratios, int n_ratios) {
    char *text = NULL, *mid = NULL, *final = NULL;
    char sv[1024], rv[512];
    mr_format_float_list(sv, sizeof sv, scales, n_scales);
    mr_format_float_list(rv, sizeof rv, ratios, n_ratios);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return mr_fail(MR_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    mr_status st = read_text(path, &text);
    if (st == MR_OK) st = mr_json_set_member(text, path, "RPN_ANCHOR_SCALES", sv, &mid);
    if (st == MR_OK) st = mr_json_set_member(mid, path, "RPN_ANCHOR_RATIOS", rv, &final);
    if (st == MR_OK) {
        /* Never write a config the loader would refuse. */
        mr_config *check = malloc(sizeof *check);
        if (!check) {
            st = mr_fail(MR_ERR_NOMEM, "out of memory");
        } else {
            mr_config_defaults(check);
            st = mr_config_parse(final, path, check);
            free(check);
        }
    }
    if (st == MR_OK)
        st = mr_write_file_atomic(path, final, strlen(final), (int)(sb.st_mode & 07777));
    free(text), free(mid), free(final);
    return st;
}
