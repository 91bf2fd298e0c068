/* report.html: built from a run's log and panels, one self-contained page; rendered by a real
 * browser (Debian's headless Chromium), which must load it without console errors and show
 * charts that carry data. A screenshot goes to the build folder for people to look at. */
#include <stdio.h>
#include <string.h>

#include "../data/image.h"
#include "../train/report.h"
#include "testutil.h"

/* A run folder with a 3-epoch log (a first-step spike, per-epoch metrics) and one panel. */
static void make_run(const char *dir, mr_config *cfg) {
    mr_config_defaults(cfg);
    snprintf(cfg->name, sizeof cfg->name, "browser-test");
    cfg->epochs = 4;
    cfg->steps_per_epoch = 10;
    cfg->net.num_classes = 3;
    /* Heads for two epochs, then everything at a tenth of the rate. */
    cfg->n_stages = 2;
    snprintf(cfg->stages[0].layers, sizeof cfg->stages[0].layers, "heads");
    cfg->stages[0].until_epoch = 2;
    cfg->stages[0].learning_rate = 0.001f;
    snprintf(cfg->stages[1].layers, sizeof cfg->stages[1].layers, "all");
    cfg->stages[1].until_epoch = 4;
    cfg->stages[1].learning_rate = 0.0001f;
    snprintf(cfg->class_names[1], sizeof cfg->class_names[1], "benign");
    snprintf(cfg->class_names[2], sizeof cfg->class_names[2], "malignant");
    char path[700];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int e = 1; e <= 3; e++) {
        for (int s = 1; s <= 10; s++) {
            int step = (e - 1) * 10 + s;
            double loss = step == 1 ? 19.5 : 2.0 / (1.0 + 0.1 * step);
            fprintf(f,
                    "{\"type\":\"step\",\"epoch\":%d,\"step\":%d,\"loss\":%g,\"rpn_class_loss\":"
                    "%g,\"rpn_bbox_loss\":%g,\"mrcnn_class_loss\":%g,\"mrcnn_bbox_loss\":%g,"
                    "\"mrcnn_mask_loss\":%g,\"time\":\"2026-12-03T02:%02d:%02dZ\"}\n",
                    e, step, loss, loss / 5, loss / 5, loss / 5, loss / 5, loss / 5, step / 60,
                    step % 60);
        }
        fprintf(f,
                "{\"type\":\"epoch\",\"epoch\":%d,\"loss\":1.0,\"val_loss\":%g,\"val_mask_ap50\":"
                "%g,\"val_mask_ap\":0.2,\"val_sensitivity\":0.5,\"val_fp_per_image\":0.7,"
                "\"val_dice\":0.8,\"val_accuracy\":0.9,\"seconds\":20,"
                "\"time\":\"2026-12-03T02:%02d:00Z\"}\n",
                e, 1.5 - 0.1 * e, e == 2 ? 0.6 : 0.4, e);
    }
    fclose(f);
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 64, 32, 3), MR_OK);
    memset(img.pixels, 128, 64 * 32 * 3);
    snprintf(path, sizeof path, "%s/overlay_1.png", dir);
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK, "%s", mr_last_error());
    mr_image_free(&img);
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

Test(report, page_is_self_contained_with_marked_best_epoch_and_clipped_spike) {
    const char *dir = temp_dir("report");
    mr_config cfg;
    make_run(dir, &cfg);
    mr_report_run run = {.n_train = 30, .n_val = 8, .normals = 5, .finished = false};
    run.lesions[1] = 20;
    run.lesions[2] = 11;
    cr_assert_eq(mr_report_write(dir, &cfg, &run), MR_OK, "%s", mr_last_error());
    char path[700];
    snprintf(path, sizeof path, "%s/report.html", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    static char html[1 << 20];
    size_t n = fread(html, 1, sizeof html - 1, f);
    html[n] = '\0';
    fclose(f);
    cr_assert_eq(count(html, "<svg"), 6 + 6, "six metric and six loss charts");
    cr_assert_eq(count(html, "src='data:image/png;base64,"), 1, "the panel is inlined");
    cr_assert_null(strstr(html, "src='overlay"), "no file references: the page stands alone");
    cr_assert(strstr(html, "best epoch</th><td>2 by validation mask AP50, then mask AP"),
              "best epoch 2");
    cr_assert(strstr(html, "1 step above the chart (up to 19.5)"), "the spike is marked");
    cr_assert(strstr(html, "projected finish"), "a running run projects its finish");
    cr_assert(strstr(html, "20 benign, 11 malignant; 5 normal images"), "data summary");
    /* Epoch 2's checkpoint is named beside the best epoch; it was pruned (never written here). */
    cr_assert(strstr(html, "checkpoint ckpt-e0002-s00000020.h5 (pruned)"), "the kept checkpoint");
    /* Each loss chart: the raw steps and their running mean, epoch ticks 0..3 labelled, and the
     * change to the second stage marked where it happens. */
    cr_assert_eq(count(html, "stroke='#1f5fa8' stroke-width='2'"), 6, "a running mean per loss");
    cr_assert_eq(count(html, "text-anchor='middle'>3</text>"), 12, "epoch ticks on every chart");
    cr_assert_eq(count(html, "fill='#484'>all, lr 0.0001</text>"), 12, "the stage change");
}

Test(report, renders_in_headless_chromium, .timeout = 120) {
    if (access("/usr/bin/chromium", X_OK) != 0)
        cr_skip_test("/usr/bin/chromium missing: `make test` installs it (package chromium)");
    const char *dir = temp_dir("browser");
    mr_config cfg;
    make_run(dir, &cfg);
    mr_report_run run = {.n_train = 30, .n_val = 8, .normals = 5, .finished = true};
    cr_assert_eq(mr_report_write(dir, &cfg, &run), MR_OK, "%s", mr_last_error());
    /* The screenshot lands beside the binary under test (build/ or build-asan/). */
    char shot[1200] = "build/report-screenshot.png";
    const char *bin = getenv("MRCNN_BIN");
    if (bin && strrchr(bin, '/'))
        snprintf(shot, sizeof shot, "%.*s/report-screenshot.png", (int)(strrchr(bin, '/') - bin),
                 bin);
    char cmd[4096], out[1 << 16];
    snprintf(cmd, sizeof cmd,
             "timeout 90 /usr/bin/chromium --headless --no-sandbox --disable-gpu "
             "--user-data-dir='%s/profile' --enable-logging=stderr --v=0 --window-size=1280,2400 "
             "--screenshot='%s' 'file://%s/report.html' 2>&1 && timeout 90 /usr/bin/chromium "
             "--headless --no-sandbox --disable-gpu --user-data-dir='%s/profile' "
             "--enable-logging=stderr --v=0 --dump-dom 'file://%s/report.html' 2>&1",
             dir, shot, dir, dir, dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "chromium failed: %.2000s", out);
    cr_assert_null(strstr(out, "CONSOLE"), "console messages: %.2000s", out);
    cr_assert_null(strstr(out, "Uncaught"), "%.2000s", out);
    /* The DOM as the browser built it: charts whose lines carry points, the panel decoded. */
    cr_assert_geq(count(out, "<polyline"), 12, "%.500s", out);
    cr_assert(strstr(out, "points=\"") && count(out, ",") > 200, "lines with data");
    cr_assert_eq(count(out, "data:image/png;base64,"), 1);
    FILE *s = fopen(shot, "rb");
    cr_assert_not_null(s, "screenshot %s written", shot);
    fseek(s, 0, SEEK_END);
    cr_assert_gt(ftell(s), 10000, "a screenshot of a page with content");
    fclose(s);
}
