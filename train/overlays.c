/* Validation panels: ground truth | prediction, captioned, enlarged when small. */
#include "overlays.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/draw.h"
#include "../data/image.h"

void mr_mask_agreement(const uint8_t *a, const uint8_t *b, int64_t n, double *iou, double *dice) {
    int64_t both = 0, either = 0, sum = 0;
    for (int64_t i = 0; i < n; i++) {
        bool x = a[i] != 0, y = b[i] != 0;
        both += x && y;
        either += x || y;
        sum += (int64_t)x + (int64_t)y;
    }
    *iou = either ? (double)both / (double)either : (double)NAN;
    *dice = sum ? 2.0 * (double)both / (double)sum : (double)NAN;
}

/* The annotated lesions drawn like detections (fill, outline, class label), and their union. */
static void draw_ground_truth(mr_image *img, const mr_image_record *rec, uint8_t *mask,
                              uint8_t *one, const char *const *class_names, int n_classes) {
    const int64_t n = (int64_t)img->width * img->height;
    for (int64_t k = 0; k < rec->n_instances; k++) {
        const mr_region *inst = &rec->instances[k];
        memset(one, 0, (size_t)n);
        mr_shape_rasterize(&inst->shape, one, img->width, img->height, 1);
        mr_color c = mr_draw_class_color(inst->class_id);
        mr_draw_mask_fill(img, one, c, 0.35f);
        mr_draw_mask_outline(img, one, c);
        for (int64_t i = 0; i < n; i++) mask[i] |= one[i];
        const char *name =
            inst->class_id >= 0 && inst->class_id < n_classes ? class_names[inst->class_id] : "?";
        mr_draw_label(img, (int)inst->box[1], (int)inst->box[0] - 12, name, 1, 2,
                      mr_draw_text_color(c), c, NULL);
    }
}

/* dst (scale x larger) <- src, nearest neighbour, at column offset x0 below row y0. */
static void blit_scaled(mr_image *dst, const mr_image *src, int scale, int x0, int y0) {
    for (int y = 0; y < src->height * scale; y++)
        for (int x = 0; x < src->width * scale; x++) {
            const uint8_t *s = src->pixels + ((size_t)(y / scale) * src->width + x / scale) * 3;
            uint8_t *d = dst->pixels + ((size_t)(y0 + y) * dst->width + x0 + x) * 3;
            memcpy(d, s, 3);
        }
}

mr_status mr_write_validation_panel(const mr_image_record *rec, const mr_instances *det, int epoch,
                                    const char *const *class_names, int n_classes,
                                    int64_t max_pixels, const char *out_png,
                                    mr_panel_scores *scores) {
    mr_image gt = {0}, pred = {0}, panel = {0};
    MR_TRY(mr_image_load_limited(rec->path, 3, max_pixels, &gt));
    const int w = gt.width, h = gt.height;
    const int64_t n = (int64_t)w * h;
    if (det->image_h != h || det->image_w != w) {
        mr_image_free(&gt);
        return mr_fail(MR_ERR_ARG, "%s: detections are %lldx%lld, the image %dx%d", rec->path,
                       (long long)det->image_w, (long long)det->image_h, w, h);
    }
    uint8_t *truth = calloc((size_t)n, 1), *predicted = calloc((size_t)n, 1);
    uint8_t *one = malloc((size_t)n);
    mr_status st = truth && predicted && one ? mr_image_alloc(&pred, w, h, 3)
                                             : mr_fail(MR_ERR_NOMEM, "%s: out of memory", out_png);
    if (st == MR_OK) {
        memcpy(pred.pixels, gt.pixels, (size_t)n * 3);
        draw_ground_truth(&gt, rec, truth, one, class_names, n_classes);
        mr_draw_detections(&pred, det, class_names, n_classes);
        for (int64_t k = 0; k < det->n; k++)
            for (int64_t i = 0; i < n; i++) predicted[i] |= det->masks[k * n + i];
        mr_mask_agreement(truth, predicted, n, &scores->iou, &scores->dice);
        scores->n_gt = rec->n_instances;
        scores->n_det = det->n;

        const int side = w > h ? w : h;
        const int scale = side >= MR_PANEL_MIN_SIDE ? 1 : (MR_PANEL_MIN_SIDE + side - 1) / side;
        const int gap = 8, top = 44, half = w * scale;
        st = mr_image_alloc(&panel, 2 * half + gap, top + h * scale, 3);
        if (st == MR_OK) {
            memset(panel.pixels, 255, (size_t)panel.width * panel.height * 3);
            blit_scaled(&panel, &gt, scale, 0, top);
            blit_scaled(&panel, &pred, scale, half + gap, top);
            char line[512], agreement[96];
            const char *name = strrchr(rec->path, '/') ? strrchr(rec->path, '/') + 1 : rec->path;
            snprintf(line, sizeof line, "%s  epoch %d", name, epoch);
            if (isnan(scores->iou))
                snprintf(agreement, sizeof agreement, "no lesion, no detection");
            else if (rec->n_instances == 0)
                snprintf(agreement, sizeof agreement, "no lesion: %lld false positive%s",
                         (long long)det->n, det->n == 1 ? "" : "s");
            else
                snprintf(agreement, sizeof agreement, "IoU %.2f  Dice %.2f", scores->iou,
                         scores->dice);
            const mr_color ink = {20, 20, 20};
            mr_draw_text(&panel, 2, 2, line, 2, ink);
            mr_draw_text(&panel, 2, 24, "ground truth", 2, ink);
            mr_draw_text(&panel, half + gap, 24, "prediction", 2, ink);
            int tw = 0, th = 0;
            mr_draw_text_size(agreement, 2, &tw, &th);
            mr_draw_text(&panel, panel.width - tw - 2, 2, agreement, 2, ink);
            st = mr_image_write_png(out_png, &panel);
        }
    }
    mr_image_free(&panel);
    mr_image_free(&pred);
    mr_image_free(&gt);
    free(truth);
    free(predicted);
    free(one);
    return st;
}
