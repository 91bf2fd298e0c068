/* log.jsonl upkeep and report.html: the step and epoch lines read back with a tiny key lookup
 * (the log is our own flat JSON), drawn as SVG polylines; both files rewritten through the one
 * atomic writer (core/file.h). */
#include "report.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    mr_status st = bad ? mr_fail(MR_ERR_IO, "%s: cannot read the step log", path)
                       : mr_text_write_atomic(&out, path);
    mr_text_free(&out);
    return st;
}

typedef struct {
    double (*xy)[2]; /* (n, 2) x, y */
    size_t n, cap;
    bool failed; /* out of memory: the report is not written */
} series;

static void push(series *s, double x, double y) {
    if (!isfinite(y) || s->failed) return;
    if (!mr_grow(&s->xy, &s->cap, s->n + 1, sizeof *s->xy, 256)) {
        s->failed = true;
        return;
    }
    s->xy[s->n][0] = x;
    s->xy[s->n][1] = y;
    s->n++;
}

/* One chart: the training series (light) and its validation counterpart (dots + line). */
static void chart(mr_text *out, const char *title, const series *train, const series *val,
                  double max_x) {
    const double w = 520, h = 220, left = 50, right = 10, top = 24, bottom = 28;
    double ymax = 0.0;
    for (size_t i = 0; i < train->n; i++) ymax = fmax(ymax, train->xy[i][1]);
    for (size_t i = 0; i < val->n; i++) ymax = fmax(ymax, val->xy[i][1]);
    if (ymax <= 0.0) ymax = 1.0;
    if (max_x <= 0.0) max_x = 1.0;
    mr_text_printf(out, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f'>", w,
                   h);
    mr_text_printf(out, "<text x='%.0f' y='16' font-size='13' font-family='sans-serif'>%s</text>",
                   left, title);
    mr_text_printf(out, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='#999'/>", left,
                   h - bottom, w - right, h - bottom);
    mr_text_printf(out, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='#999'/>", left, top,
                   left, h - bottom);
    mr_text_printf(out, "<text x='4' y='%.0f' font-size='10'>%.3g</text>", top + 8, ymax);
    mr_text_printf(out, "<text x='4' y='%.0f' font-size='10'>0</text>", h - bottom);
    mr_text_printf(out, "<text x='%.0f' y='%.0f' font-size='10'>epoch %.0f</text>", w - right - 60,
                   h - 8, max_x);
    const series *sets[2] = {train, val};
    const char *colour[2] = {"#7aa6d8", "#d8572a"};
    for (int k = 0; k < 2; k++) {
        if (sets[k]->n == 0) continue;
        mr_text_printf(out, "<polyline fill='none' stroke='%s' stroke-width='%s' points='",
                       colour[k], k ? "2" : "1");
        for (size_t i = 0; i < sets[k]->n; i++)
            mr_text_printf(out, "%.1f,%.1f ", left + (w - left - right) * sets[k]->xy[i][0] / max_x,
                           h - bottom - (h - top - bottom) * sets[k]->xy[i][1] / ymax);
        mr_text_printf(out, "'/>");
    }
    mr_text_printf(out, "</svg>\n");
}

mr_status mr_report_write(const char *run_dir, const mr_config *cfg) {
    char path[1200];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    FILE *in = fopen(path, "r");
    if (!in) return mr_fail(MR_ERR_IO, "%s: no step log to report on", path);
    series train[MR_LOSS_COUNT + 1], val[MR_LOSS_COUNT + 1];
    memset(train, 0, sizeof train);
    memset(val, 0, sizeof val);
    char line[4096];
    double max_x = 0.0;
    while (fgets(line, sizeof line, in)) {
        bool step = is_type(line, "step");
        double x = step ? field(line, "step") / (double)cfg->steps_per_epoch : field(line, "epoch");
        if (!isfinite(x)) continue;
        max_x = fmax(max_x, x);
        series *s = step ? train : val;
        push(&s[0], x, field(line, step ? "loss" : "val_loss"));
        for (int i = 0; i < MR_LOSS_COUNT; i++) {
            char key[64];
            snprintf(key, sizeof key, "%s%s", step ? "" : "val_", mr_loss_names[i]);
            push(&s[i + 1], x, field(line, key));
        }
    }
    fclose(in);
    snprintf(path, sizeof path, "%s/report.html", run_dir);
    mr_text html = {0}, *out = &html;
    mr_text_printf(out,
                   "<!doctype html><html><head><meta charset='utf-8'><title>mrcnn run %s</title>"
                   "<style>body{font-family:sans-serif;margin:24px}svg{margin:6px;border:1px solid "
                   "#eee}img{margin:6px;max-width:400px}</style></head><body>\n",
                   cfg->name);
    mr_text_printf(
        out,
        "<h1>%s</h1><p>%d classes, %s, %dx%d input, %d epochs of %d steps. Blue: "
        "training loss per step; orange: validation loss per epoch.</p>\n",
        cfg->name, cfg->net.num_classes, cfg->net.backbone_depth == 50 ? "ResNet-50" : "ResNet-101",
        cfg->net.image_max_dim, cfg->net.image_max_dim, cfg->epochs, cfg->steps_per_epoch);
    chart(out, "total loss", &train[0], &val[0], max_x);
    for (int i = 0; i < MR_LOSS_COUNT; i++)
        chart(out, mr_loss_names[i], &train[i + 1], &val[i + 1], max_x);
    /* Overlays written by the trainer or `mrcnn predict` into the run folder. */
    DIR *dir = opendir(run_dir);
    bool heading = false;
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "overlay", 7) || n < 4 || strcmp(e->d_name + n - 4, ".png"))
            continue;
        if (!heading) mr_text_printf(out, "<h2>validation overlays</h2>\n");
        heading = true;
        mr_text_printf(out, "<img src='%s' alt='%s'>\n", e->d_name, e->d_name);
    }
    if (dir) closedir(dir);
    mr_text_printf(out, "</body></html>\n");
    bool failed = false;
    for (int i = 0; i <= MR_LOSS_COUNT; i++) {
        failed |= train[i].failed || val[i].failed;
        free(train[i].xy);
        free(val[i].xy);
    }
    mr_status st = failed ? mr_fail(MR_ERR_NOMEM, "%s: out of memory reading the step log", path)
                          : mr_text_write_atomic(&html, path);
    mr_text_free(&html);
    return st;
}
