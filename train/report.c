/* log.jsonl upkeep and report.html: the step and epoch lines read back with a tiny key lookup
 * (the log is our own flat JSON), drawn as inline SVG into one self-contained page. */
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/file.h"
#include "../core/text.h"
#include "../core/util.h"
#include "../losses/losses.h"

/* The number after "key": in a flat JSON line, or NAN (absent, null or not a number). */
static double field(const char *line, const char *key) {
    char pattern[80];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(line, pattern);
    if (!at) return NAN;
    char *end;
    double v = strtod(at + strlen(pattern), &end);
    return end == at + strlen(pattern) ? (double)NAN : v;
}

static bool is_type(const char *line, const char *type) {
    char pattern[40];
    snprintf(pattern, sizeof pattern, "\"type\":\"%s\"", type);
    return strstr(line, pattern) != NULL;
}

mr_status mr_report_trim_log(const char *path, long last_step, int next_epoch) {
    FILE *in = fopen(path, "r");
    if (!in) return MR_OK;
    mr_text out = {0};
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        bool keep = is_type(line, "step") ? field(line, "step") <= (double)last_step
                                          : field(line, "epoch") <= (double)next_epoch;
        if (keep) mr_text_printf(&out, "%s", line);
    }
    bool bad = ferror(in) != 0;
    fclose(in);
    /* Rewritten through the one atomic writer (core/file.h), like report.html. */
    mr_status st = bad ? mr_fail(MR_ERR_IO, "%s: cannot read the step log", path)
                       : mr_text_write_atomic(&out, path);
    mr_text_free(&out);
    return st;
}

typedef struct {
    double *x, *y;
    int n;
    size_t cap; /* of x and y */
    bool failed;
} series;

static void push(series *s, double x, double y) {
    if (!isfinite(y) || s->failed) return;
    if ((size_t)s->n == s->cap) {
        /* x and y grow together; cap counts the new size once both have it. */
        size_t cap_x = s->cap, cap_y = s->cap;
        if (!mr_grow(&s->x, &cap_x, (size_t)s->n + 1, sizeof *s->x, 256) ||
            !mr_grow(&s->y, &cap_y, (size_t)s->n + 1, sizeof *s->y, 256)) {
            s->failed = true;
            return;
        }
        s->cap = cap_x;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

static void series_free(series *s) {
    free(s->x);
    free(s->y);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The top of a loss chart: the 98th percentile of the values with some room, so the first
 * steps' spike (20 against about 1 later) does not flatten everything else; never below the
 * largest validation value. */
static double robust_top(const series *a, const series *b) {
    double top = 0.0;
    if (a->n > 0) {
        double *v = malloc(sizeof(double) * (size_t)a->n);
        if (v) {
            memcpy(v, a->y, sizeof(double) * (size_t)a->n);
            qsort(v, (size_t)a->n, sizeof *v, compare_doubles);
            top = v[(int)(0.98 * (a->n - 1))] * 1.25;
            top = fmin(top, v[a->n - 1]);
            free(v);
        }
    }
    for (int i = 0; i < b->n; i++) top = fmax(top, b->y[i]);
    return top > 0.0 ? top : 1.0;
}

/* Chart geometry, shared by the marks drawn on it. */
typedef struct {
    double w, h, left, right, top, bottom, max_x, y0, y1;
} frame;

static double px(const frame *f, double x) {
    return f->left + (f->w - f->left - f->right) * x / f->max_x;
}

static double py(const frame *f, double y) {
    double v = fmin(fmax(y, f->y0), f->y1);
    return f->h - f->bottom - (f->h - f->top - f->bottom) * (v - f->y0) / (f->y1 - f->y0);
}

/* Axes, an epoch tick per epoch (at most about a dozen labelled), and the stage changes. */
static void frame_open(mr_text *o, const frame *f, const char *title, const mr_config *cfg) {
    mr_text_printf(o,
                   "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
                   "class='chart'><title>%s</title>",
                   f->w, f->h, title);
    mr_text_printf(o, "<text x='%.0f' y='15' font-size='13'>%s</text>", f->left, title);
    mr_text_printf(o, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='#888'/>", f->left,
                   f->h - f->bottom, f->w - f->right, f->h - f->bottom);
    mr_text_printf(o, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='#888'/>", f->left,
                   f->top, f->left, f->h - f->bottom);
    mr_text_printf(o, "<text x='4' y='%.0f' font-size='10'>%.3g</text>", f->top + 8, f->y1);
    mr_text_printf(o, "<text x='4' y='%.0f' font-size='10'>%.3g</text>", f->h - f->bottom, f->y0);
    int every = (int)ceil(f->max_x / 12.0);
    for (int e = 0; e <= (int)f->max_x; e++) {
        double x = px(f, e);
        mr_text_printf(o, "<line x1='%.1f' y1='%.0f' x2='%.1f' y2='%.0f' stroke='#888'/>", x,
                       f->h - f->bottom, x, f->h - f->bottom + 4);
        if (e % every == 0)
            mr_text_printf(o,
                           "<text x='%.1f' y='%.0f' font-size='10' text-anchor='middle'>%d"
                           "</text>",
                           x, f->h - f->bottom + 15, e);
    }
    mr_text_printf(o, "<text x='%.0f' y='%.0f' font-size='10' text-anchor='end'>epoch</text>",
                   f->w - f->right, f->h - 2);
    for (int i = 0; i + 1 < cfg->n_stages; i++) {
        double x = px(f, cfg->stages[i].until_epoch);
        if (cfg->stages[i].until_epoch >= f->max_x) break;
        mr_text_printf(o,
                       "<line x1='%.1f' y1='%.0f' x2='%.1f' y2='%.0f' stroke='#6a6' "
                       "stroke-dasharray='4 3'/><text x='%.1f' y='%.0f' font-size='9' "
                       "fill='#484'>%s, lr %g</text>",
                       x, f->top, x, f->h - f->bottom, x + 3, f->top + 10,
                       cfg->stages[i + 1].layers, (double)cfg->stages[i + 1].learning_rate);
    }
}

static void polyline(mr_text *o, const frame *f, const series *s, const char *colour,
                     double width) {
    if (s->n == 0) return;
    mr_text_printf(o, "<polyline fill='none' stroke='%s' stroke-width='%g' points='", colour,
                   width);
    for (int i = 0; i < s->n; i++) mr_text_printf(o, "%.1f,%.1f ", px(f, s->x[i]), py(f, s->y[i]));
    mr_text_printf(o, "'/>");
}

/* One loss: raw steps (light), their running mean (dark), validation per epoch (orange, dots);
 * values above the chart are drawn at its top edge and marked in red with their value. */
static void loss_chart(mr_text *o, const char *title, const series *train, const series *val,
                       double max_x, int window, const mr_config *cfg) {
    frame f = {560, 230, 50, 12, 24, 32, max_x > 0 ? max_x : 1.0, 0.0, robust_top(train, val)};
    frame_open(o, &f, title, cfg);
    polyline(o, &f, train, "#b8cfe8", 1);
    series mean = {0};
    double sum = 0.0;
    for (int i = 0; i < train->n; i++) {
        sum += train->y[i];
        if (i >= window) sum -= train->y[i - window];
        push(&mean, train->x[i], sum / (double)(i < window ? i + 1 : window));
    }
    polyline(o, &f, &mean, "#1f5fa8", 2);
    series_free(&mean);
    polyline(o, &f, val, "#d8572a", 2);
    for (int i = 0; i < val->n; i++)
        mr_text_printf(o, "<circle cx='%.1f' cy='%.1f' r='3' fill='#d8572a'/>", px(&f, val->x[i]),
                       py(&f, val->y[i]));
    double clipped = 0.0;
    int n_clipped = 0;
    for (int i = 0; i < train->n; i++)
        if (train->y[i] > f.y1) {
            n_clipped++;
            clipped = fmax(clipped, train->y[i]);
            mr_text_printf(o, "<circle cx='%.1f' cy='%.0f' r='2.5' fill='#c00'/>",
                           px(&f, train->x[i]), f.top);
        }
    if (n_clipped)
        mr_text_printf(o,
                       "<text x='%.0f' y='%.0f' font-size='10' fill='#c00' text-anchor='end'>"
                       "%d step%s above the chart (up to %.3g)</text>",
                       f.w - f.right, f.top - 2, n_clipped, n_clipped == 1 ? "" : "s", clipped);
    mr_text_printf(o, "</svg>\n");
}

/* One validation metric per epoch, the best epoch marked. */
static void metric_chart(mr_text *o, const char *title, const series *s, double max_x, double y1,
                         int best_epoch, const mr_config *cfg) {
    frame f = {360, 200, 40, 12, 24, 32, max_x > 0 ? max_x : 1.0, 0.0, y1};
    frame_open(o, &f, title, cfg);
    polyline(o, &f, s, "#7a3fa8", 2);
    for (int i = 0; i < s->n; i++)
        mr_text_printf(o, "<circle cx='%.1f' cy='%.1f' r='3' fill='#7a3fa8'/>", px(&f, s->x[i]),
                       py(&f, s->y[i]));
    if (best_epoch > 0)
        mr_text_printf(o,
                       "<line x1='%.1f' y1='%.0f' x2='%.1f' y2='%.0f' stroke='#c80' "
                       "stroke-width='2'/>",
                       px(&f, best_epoch), f.top, px(&f, best_epoch), f.h - f.bottom);
    mr_text_printf(o, "</svg>\n");
}

static void base64(mr_text *o, const unsigned char *data, size_t n) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char quad[5] = {0};
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (i + 1 < n ? (unsigned)data[i + 1] << 8 : 0) |
                     (i + 2 < n ? data[i + 2] : 0);
        quad[0] = digits[v >> 18 & 63];
        quad[1] = digits[v >> 12 & 63];
        quad[2] = i + 1 < n ? digits[v >> 6 & 63] : '=';
        quad[3] = i + 2 < n ? digits[v & 63] : '=';
        mr_text_printf(o, "%s", quad);
    }
}

/* The validation panels, inlined so the page stands alone. */
static void inline_panels(mr_text *o, const char *run_dir) {
    for (int k = 1; k <= 16; k++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/overlay_%d.png", run_dir, k);
        char *data = NULL;
        size_t n = 0;
        mr_status st = mr_read_file(path, "validation panel", (size_t)64 << 20, &data, &n);
        if (st == MR_ERR_IO) break; /* no panel k: the panels end */
        if (st == MR_OK && n > 0) {
            if (k == 1) mr_text_printf(o, "<h2>Validation images</h2><div class='panels'>\n");
            mr_text_printf(o, "<img alt='validation panel %d' src='data:image/png;base64,", k);
            base64(o, (const unsigned char *)data, n);
            mr_text_printf(o, "'>\n");
        }
        free(data);
    }
    mr_text_printf(o, "</div>\n");
}

static void html_escaped(mr_text *o, const char *s) {
    for (; *s; s++) {
        if (*s == '<')
            mr_text_printf(o, "&lt;");
        else if (*s == '>')
            mr_text_printf(o, "&gt;");
        else if (*s == '&')
            mr_text_printf(o, "&amp;");
        else if (*s == '\'')
            mr_text_printf(o, "&#39;");
        else
            mr_text_printf(o, "%c", *s);
    }
}

/* A time of the log ("2026-12-03T02:15:11Z") as seconds since 1970, or NAN. */
static double log_time(const char *line) {
    const char *at = strstr(line, "\"time\":\"");
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!at || !strptime(at + 8, "%Y-%m-%dT%H:%M:%SZ", &tm)) return (double)NAN;
    return (double)timegm(&tm);
}

static const char *metric_keys[] = {"val_mask_ap50",    "val_mask_ap", "val_sensitivity",
                                    "val_fp_per_image", "val_dice",    "val_accuracy"};
static const char *metric_titles[] = {"mask AP50",
                                      "mask AP (COCO)",
                                      "sensitivity",
                                      "false positives per image",
                                      "Dice of matched lesions",
                                      "benign/malignant accuracy"};
#define N_METRICS 6

/* What log.jsonl says about the run: per-step and per-epoch series on an x axis in epochs. */
typedef struct {
    series train[MR_LOSS_COUNT + 1], val[MR_LOSS_COUNT + 1]; /* total, then each loss */
    series metric[N_METRICS], epoch_secs;
    double max_x, first_time, last_time; /* last x; first and last record times (NaN: none) */
} run_log;

/* Reads log.jsonl's step and epoch records into *lg (zeroed first). */
static mr_status read_run_log(const char *path, const mr_config *cfg, run_log *lg) {
    memset(lg, 0, sizeof *lg);
    lg->first_time = lg->last_time = NAN;
    FILE *in = fopen(path, "r");
    if (!in) return mr_fail(MR_ERR_IO, "%s: no step log to report on", path);
    char line[8192];
    while (fgets(line, sizeof line, in)) {
        bool step = is_type(line, "step");
        double x = step ? field(line, "step") / (double)cfg->steps_per_epoch : field(line, "epoch");
        if (!isfinite(x)) continue;
        double when = log_time(line);
        if (isfinite(when)) {
            if (!isfinite(lg->first_time)) lg->first_time = when;
            lg->last_time = when;
        }
        lg->max_x = fmax(lg->max_x, x);
        series *s = step ? lg->train : lg->val;
        push(&s[0], x, field(line, step ? "loss" : "val_loss"));
        for (int i = 0; i < MR_LOSS_COUNT; i++) {
            char key[64];
            snprintf(key, sizeof key, "%s%s", step ? "" : "val_", mr_loss_names[i]);
            push(&s[i + 1], x, field(line, key));
        }
        if (!step) {
            for (int m = 0; m < N_METRICS; m++)
                push(&lg->metric[m], x, field(line, metric_keys[m]));
            push(&lg->epoch_secs, x, field(line, "seconds"));
        }
    }
    fclose(in);
    return MR_OK;
}

/* Frees the series; true when any of them ran out of memory while growing. */
static bool run_log_free(run_log *lg) {
    bool failed = lg->epoch_secs.failed;
    for (int i = 0; i <= MR_LOSS_COUNT; i++) {
        failed = failed || lg->train[i].failed || lg->val[i].failed;
        series_free(&lg->train[i]);
        series_free(&lg->val[i]);
    }
    for (int m = 0; m < N_METRICS; m++) {
        failed = failed || lg->metric[m].failed;
        series_free(&lg->metric[m]);
    }
    series_free(&lg->epoch_secs);
    return failed;
}

/* The best epoch (0: none yet): by mask AP50 when measured (ties to the better mask AP), else
 * by validation loss; *by names the rule. */
static int best_epoch(const run_log *lg, const char **by) {
    int best = 0;
    *by = "validation loss";
    if (lg->metric[0].n > 0) {
        *by = "validation mask AP50, then mask AP";
        /* Ties in AP50 (several epochs at 1.0 on easy data) go to the better mask AP. */
        for (int i = 0; i < lg->metric[0].n; i++) {
            bool ap_known = lg->metric[1].n == lg->metric[0].n;
            if (!best || lg->metric[0].y[i] > lg->metric[0].y[best - 1] ||
                (lg->metric[0].y[i] == lg->metric[0].y[best - 1] && ap_known &&
                 lg->metric[1].y[i] > lg->metric[1].y[best - 1]))
                best = i + 1;
        }
        best = (int)lg->metric[0].x[best - 1];
    } else if (lg->val[0].n > 0) {
        int b = 0;
        for (int i = 1; i < lg->val[0].n; i++)
            if (lg->val[0].y[i] < lg->val[0].y[b]) b = i;
        best = (int)lg->val[0].x[b];
    }
    return best;
}

/* The page's head and the run summary table. */
static void write_summary(mr_text *o, const char *run_dir, const mr_config *cfg,
                          const mr_report_run *run, const run_log *lg, int best, const char *by) {
    mr_text_printf(o, "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mrcnn "
                      "run ");
    html_escaped(o, cfg->name);
    mr_text_printf(o, "</title><style>body{font-family:sans-serif;margin:24px;color:#222}"
                      "svg{margin:4px;border:1px solid #eee;font-family:sans-serif}"
                      "table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}"
                      ".panels img{margin:6px;max-width:100%%;image-rendering:pixelated}"
                      "</style></head><body>\n<h1>");
    html_escaped(o, cfg->name);
    mr_text_printf(o, "</h1>\n<table>\n<tr><th>config</th><td>");
    html_escaped(o, cfg->source);
    if (cfg->description[0]) {
        mr_text_printf(o, ": ");
        html_escaped(o, cfg->description);
    }
    mr_text_printf(o,
                   "</td></tr>\n<tr><th>network</th><td>%s (%d filters) + FPN, %dx%d "
                   "px, %d channel%s</td></tr>\n",
                   mr_net_backbone_title(&cfg->net), cfg->net.backbone_filters,
                   cfg->net.image_max_dim, cfg->net.image_max_dim, cfg->net.image_channels,
                   cfg->net.image_channels == 1 ? "" : "s");
    mr_text_printf(o, "<tr><th>data</th><td>%lld training, %lld validation images; lesions:",
                   (long long)run->n_train, (long long)run->n_val);
    for (int k = 1; k < cfg->net.num_classes; k++) {
        mr_text_printf(o, "%s %lld ", k > 1 ? "," : "", (long long)run->lesions[k]);
        html_escaped(o, cfg->class_names[k]);
    }
    mr_text_printf(o, "; %lld normal images</td></tr>\n<tr><th>stages</th><td>",
                   (long long)run->normals);
    for (int i = 0; i < cfg->n_stages; i++) {
        mr_text_printf(o, "%sepochs %d-%d: layers \"", i ? "; " : "",
                       i ? cfg->stages[i - 1].until_epoch + 1 : 1, cfg->stages[i].until_epoch);
        html_escaped(o, cfg->stages[i].layers);
        mr_text_printf(o, "\", learning rate %g", (double)cfg->stages[i].learning_rate);
    }
    mr_text_printf(o, "</td></tr>\n");
    double wall = isfinite(lg->first_time) ? lg->last_time - lg->first_time : (double)NAN;
    if (isfinite(wall))
        mr_text_printf(o, "<tr><th>wall time</th><td>%.0f min for %.0f of %d epochs</td></tr>\n",
                       wall / 60.0, floor(lg->max_x), cfg->epochs);
    if (!run->finished && lg->epoch_secs.n > 0 && isfinite(lg->last_time)) {
        double per_epoch = 0.0;
        for (int i = 0; i < lg->epoch_secs.n; i++) per_epoch += lg->epoch_secs.y[i];
        per_epoch /= lg->epoch_secs.n;
        time_t finish = (time_t)(lg->last_time + per_epoch * (cfg->epochs - floor(lg->max_x)));
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&finish));
        mr_text_printf(o, "<tr><th>projected finish</th><td>%s (%.0f s an epoch)</td></tr>\n", when,
                       per_epoch);
    }
    if (best > 0) {
        mr_text_printf(o, "<tr><th>best epoch</th><td>%d by %s:", best, by);
        for (int m = 0; m < N_METRICS; m++)
            for (int i = 0; i < lg->metric[m].n; i++)
                if ((int)lg->metric[m].x[i] == best)
                    mr_text_printf(o, " %s %.3f;", metric_titles[m], lg->metric[m].y[i]);
        for (int i = 0; i < lg->val[0].n; i++)
            if ((int)lg->val[0].x[i] == best)
                mr_text_printf(o, " validation loss %.4f", lg->val[0].y[i]);
        char kept[1300];
        snprintf(kept, sizeof kept, "ckpt-e%04d-s%08lld.h5", best,
                 (long long)best * cfg->steps_per_epoch);
        char kept_path[2600];
        snprintf(kept_path, sizeof kept_path, "%s/%s", run_dir, kept);
        mr_text_printf(o, "; checkpoint %s%s</td></tr>\n", kept,
                       access(kept_path, F_OK) == 0 ? "" : " (pruned)");
    }
    mr_text_printf(o, "</table>\n");
}

/* Per-epoch validation metrics, then the losses. */
static void write_charts(mr_text *o, const mr_config *cfg, const run_log *lg, int best) {
    if (lg->metric[0].n > 0) {
        mr_text_printf(o, "<h2>Validation, each epoch</h2><p>Measured on the validation images; "
                          "the orange line marks the best epoch.</p>\n");
        for (int m = 0; m < N_METRICS; m++) {
            double top = 1.0;
            if (m == 3)
                for (int i = 0; i < lg->metric[m].n; i++) top = fmax(top, lg->metric[m].y[i]);
            metric_chart(o, metric_titles[m], &lg->metric[m], lg->max_x, top, best, cfg);
        }
    }
    int window = cfg->steps_per_epoch >= 10 ? cfg->steps_per_epoch / 5 : 2;
    mr_text_printf(o,
                   "<h2>Losses</h2><p>Light blue: each training step; dark blue: running mean "
                   "over %d steps; orange: validation, each epoch; green dashes: stage "
                   "changes.</p>\n",
                   window);
    loss_chart(o, "total loss", &lg->train[0], &lg->val[0], lg->max_x, window, cfg);
    for (int i = 0; i < MR_LOSS_COUNT; i++)
        loss_chart(o, mr_loss_names[i], &lg->train[i + 1], &lg->val[i + 1], lg->max_x, window, cfg);
}

mr_status mr_report_write(const char *run_dir, const mr_config *cfg, const mr_report_run *run) {
    char path[1200];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    run_log lg;
    mr_status st = read_run_log(path, cfg, &lg);
    if (st != MR_OK) {
        run_log_free(&lg);
        return st;
    }
    const char *by = NULL;
    int best = best_epoch(&lg, &by);
    mr_text o = {0};
    write_summary(&o, run_dir, cfg, run, &lg, best, by);
    write_charts(&o, cfg, &lg, best);
    inline_panels(&o, run_dir);
    mr_text_printf(&o, "</body></html>\n");
    bool failed = run_log_free(&lg);
    snprintf(path, sizeof path, "%s/report.html", run_dir);
    st = failed ? mr_fail(MR_ERR_NOMEM, "%s: out of memory", path) : mr_text_write_atomic(&o, path);
    mr_text_free(&o);
    return st;
}
