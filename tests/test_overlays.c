/* Validation panels: the agreement figures, and a panel written for a small image is enlarged,
 * holds ground truth and prediction side by side, and reports IoU 1 when they coincide. */
#include <math.h>
#include <string.h>

#include "../data/image.h"
#include "../train/overlays.h"
#include "../data/draw.h"
#include "testutil.h"

Test(overlays, mask_agreement) {
    const uint8_t a[6] = {1, 1, 1, 0, 0, 0}, b[6] = {0, 1, 1, 1, 0, 0}, none[6] = {0};
    double iou, dice;
    mr_mask_agreement(a, b, 6, &iou, &dice);
    cr_assert_float_eq(iou, 0.5, 1e-12);
    cr_assert_float_eq(dice, 2.0 * 2.0 / 6.0, 1e-12);
    mr_mask_agreement(none, none, 6, &iou, &dice);
    cr_assert(isnan(iou) && isnan(dice), "nothing to compare: undefined, not perfect");
    mr_mask_agreement(a, none, 6, &iou, &dice);
    cr_assert_float_eq(iou, 0.0, 1e-12);
}

Test(overlays, panel_of_a_small_image_is_enlarged_and_scored) {
    const char *dir = temp_dir("panel");
    char img_path[600], out[600];
    snprintf(img_path, sizeof img_path, "%s/lesion.png", dir);
    snprintf(out, sizeof out, "%s/overlay_1.png", dir);
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 40, 30, 1), MR_OK);
    memset(img.pixels, 90, 40 * 30);
    cr_assert_eq(mr_image_write_png(img_path, &img), MR_OK, "%s", mr_last_error());
    mr_image_free(&img);

    /* One annotated rectangle, rows 10-19 and columns 5-24, and a detection on exactly it. */
    mr_region inst = {.class_id = 1, .box = {10, 5, 20, 25}};
    inst.shape.kind = MR_SHAPE_RECT;
    inst.shape.x = 5, inst.shape.y = 10, inst.shape.w = 20, inst.shape.h = 10;
    mr_image_record rec = {
        .path = img_path, .width = 40, .height = 30, .instances = &inst, .n_instances = 1};
    static uint8_t mask[30 * 40];
    memset(mask, 0, sizeof mask);
    uint8_t truth[30 * 40] = {0};
    mr_shape_rasterize(&inst.shape, truth, 40, 30, 1);
    memcpy(mask, truth, sizeof mask);
    double box[4] = {10, 5, 20, 25};
    int64_t cls = 1;
    float score = 0.9f;
    mr_instances det = {.n = 1,
                        .boxes = box,
                        .class_ids = &cls,
                        .scores = &score,
                        .masks = mask,
                        .image_h = 30,
                        .image_w = 40};
    const char *names[3] = {"BG", "benign", "malignant"};
    mr_panel_scores s;
    cr_assert_eq(mr_write_validation_panel(&rec, &det, 3, names, 3, 1 << 20, out, &s), MR_OK, "%s",
                 mr_last_error());
    cr_assert_float_eq(s.iou, 1.0, 1e-12);
    cr_assert_float_eq(s.dice, 1.0, 1e-12);
    cr_assert_eq(s.n_gt, 1);
    mr_image panel;
    cr_assert_eq(mr_image_load(out, 3, &panel), MR_OK, "%s", mr_last_error());
    int scale = (MR_PANEL_MIN_SIDE + 39) / 40;
    cr_assert_geq(panel.width, 2 * 40 * scale, "enlarged side by side: %d px wide", panel.width);
    cr_assert_geq(panel.height, 30 * scale);
    /* Nearest neighbour: a background pixel of the image is its gray, unblended. */
    const uint8_t *p = panel.pixels + ((size_t)(panel.height - 2) * panel.width + 2) * 3;
    cr_assert(p[0] == 90 && p[1] == 90 && p[2] == 90, "pixel %d %d %d", p[0], p[1], p[2]);
    /* The caption strip above the images reads, pixel for pixel: the image's name and the epoch,
     * the two sides' titles, and the agreement at the right. */
    mr_image want;
    cr_assert_eq(mr_image_alloc(&want, panel.width, 44, 3), MR_OK);
    memset(want.pixels, 255, (size_t)want.width * 44 * 3);
    const mr_color ink = {20, 20, 20};
    mr_draw_text(&want, 2, 2, "lesion.png  epoch 3", 2, ink);
    mr_draw_text(&want, 2, 24, "ground truth", 2, ink);
    mr_draw_text(&want, 40 * scale + 8, 24, "prediction", 2, ink);
    int tw = 0, th = 0;
    mr_draw_text_size("IoU 1.00  Dice 1.00", 2, &tw, &th);
    mr_draw_text(&want, want.width - tw - 2, 2, "IoU 1.00  Dice 1.00", 2, ink);
    cr_assert(!memcmp(want.pixels, panel.pixels, (size_t)want.width * 44 * 3),
              "the caption strip differs from the expected text");
    mr_image_free(&want);
    mr_image_free(&panel);
}
