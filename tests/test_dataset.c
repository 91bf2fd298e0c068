/* The training data stream on small synthetic VIA 2.x sets in temp folders: molded sizes, mask
 * and box placement, class ids, mini masks, negatives, seeded order, augmentation at the sample
 * level, prefetch batches equal to direct samples, resume-exact batches, and error paths. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/image.h"
#include "../data/synth.h"
#include "../train/dataset.h"
#include "testutil.h"

/* ---- synthetic data ------------------------------------------------------------------------ */

/* A grey PNG: background 50, the rect [x1, x2) x [y1, y2) at 200 (no rect when x2 <= x1). */
static void put_png(const char *dir, const char *name, int w, int h, int x1, int y1, int x2,
                    int y2) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, w, h, 1), MR_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            img.pixels[y * w + x] = (x >= x1 && x < x2 && y >= y1 && y < y2) ? 200 : 50;
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK, "%s", mr_last_error());
    mr_image_free(&img);
}

static void put_text(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* The main set, in file order:
 *   0 a.png 64x64: benign rect polygon x 10..30, y 20..40 (bright), malignant circle (48, 48) r 6
 *   1 b.png 80x40 (landscape, padded top and bottom): malignant rect polygon x 20..40, y 10..30
 *   2 neg.png 50x50: no regions (a negative) */
static const char *make_set(void) {
    const char *dir = temp_dir("dataset");
    put_png(dir, "a.png", 64, 64, 10, 20, 30, 40);
    put_png(dir, "b.png", 80, 40, 20, 10, 40, 30);
    put_png(dir, "neg.png", 50, 50, 0, 0, 0, 0);
    put_text(
        dir, "via_region_data.json",
        "{\"a.png1\": {\"filename\": \"a.png\", \"size\": 1, \"file_attributes\": {},\n"
        "  \"regions\": [\n"
        "   {\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [10, 30, 30, 10],"
        " \"all_points_y\": [20, 20, 40, 40]}, \"region_attributes\": {\"class\": \"benign\"}},\n"
        "   {\"shape_attributes\": {\"name\": \"circle\", \"cx\": 48, \"cy\": 48, \"r\": 6},"
        " \"region_attributes\": {\"class\": \"malignant\"}}]},\n"
        " \"b.png2\": {\"filename\": \"b.png\", \"size\": 2, \"file_attributes\": {},\n"
        "  \"regions\": [\n"
        "   {\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [20, 40, 40, 20],"
        " \"all_points_y\": [10, 10, 30, 30]}, \"region_attributes\": {\"class\": "
        "\"malignant\"}}]},\n"
        " \"neg.png3\": {\"filename\": \"neg.png\", \"size\": 3, \"file_attributes\": {},"
        " \"regions\": []}}\n");
    return dir;
}

/* `n` small negatives, for order tests (only the count matters there). */
static const char *make_many(int n) {
    const char *dir = temp_dir("dataset-many");
    char json[16384];
    size_t len = (size_t)snprintf(json, sizeof json, "{");
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "i%02d.png", i);
        put_png(dir, name, 8, 8, 0, 0, 0, 0);
        len += (size_t)snprintf(json + len, sizeof json - len,
                                "%s\"%s%d\": {\"filename\": \"%s\", \"size\": %d, \"regions\": []}",
                                i ? ", " : "", name, i, name, i);
    }
    snprintf(json + len, sizeof json - len, "}\n");
    put_text(dir, "via_region_data.json", json);
    return dir;
}

static mr_config tiny(void) {
    mr_config c;
    load_tiny_matterport(&c);
    return c;
}

static mr_dataset *open_ok(const char *dir, const mr_config *c, bool training) {
    mr_dataset *d = NULL;
    cr_assert_eq(mr_dataset_open(&d, dir, c, training), MR_OK, "%s", mr_last_error());
    return d;
}

/* Mask pixel count and the box of a full (S, S) mask. */
static int64_t mask_sum(const uint8_t *m, int64_t n) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += m[i] != 0;
    return s;
}

static void assert_near(float got, double want, double tol, const char *what) {
    cr_assert(fabs((double)got - want) <= tol, "%s: %g, expected %g +- %g", what, (double)got, want,
              tol);
}

static void assert_samples_equal(const mr_sample *a, const mr_sample *b, int64_t S, int64_t C) {
    cr_assert_eq(a->record, b->record);
    cr_assert_eq(a->n, b->n);
    cr_assert_eq(a->mask_h, b->mask_h);
    cr_assert_eq(memcmp(a->image, b->image, sizeof(float) * (size_t)(S * S * C)), 0,
                 "images differ (record %lld)", (long long)a->record);
    cr_assert_eq(memcmp(a->boxes, b->boxes, sizeof(float) * 4 * (size_t)a->n), 0);
    cr_assert_eq(memcmp(a->class_ids, b->class_ids, sizeof(int64_t) * (size_t)a->n), 0);
    cr_assert_eq(memcmp(a->masks, b->masks, (size_t)(a->n * a->mask_h * a->mask_w)), 0);
}

/* ---- samples ------------------------------------------------------------------------------- */

Test(dataset, molded_sizes_boxes_and_classes) {
    mr_config c = tiny();
    c.net.use_mini_mask = false;
    mr_dataset *d = open_ok(make_set(), &c, false);
    cr_assert_eq(mr_dataset_size(d), 3);
    const int64_t S = 128;

    mr_sample s;
    cr_assert_eq(mr_dataset_sample(d, 0, 0, &s), MR_OK, "%s", mr_last_error());
    cr_assert_eq(s.mold.geo.molded_h, S);
    cr_assert_eq(s.mold.geo.molded_w, S);
    cr_assert_float_eq(s.mold.scale, 2.0, 1e-12);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.class_ids[0], 1);
    cr_assert_eq(s.class_ids[1], 2);
    cr_assert_eq(s.mask_h, S);
    cr_assert_eq(s.mask_w, S);
    /* The rect x 10..30, y 20..40 at scale 2, no padding. */
    const double want[4] = {20 * 2.0, 10 * 2.0, 40 * 2.0, 30 * 2.0};
    for (int j = 0; j < 4; j++) assert_near(s.boxes[j], want[j], 1.0, "a.png rect box");
    /* The polygon's mask is its box, filled; and it sits on the bright pixels (at least 0.75^2
     * of the bilinear weight inside its one-pixel border). */
    const uint8_t *m = s.masks;
    int64_t area = (int64_t)((s.boxes[2] - s.boxes[0]) * (s.boxes[3] - s.boxes[1]));
    cr_assert_eq(mask_sum(m, S * S), area);
    for (int64_t y = (int64_t)s.boxes[0] + 1; y < (int64_t)s.boxes[2] - 1; y++)
        for (int64_t x = (int64_t)s.boxes[1] + 1; x < (int64_t)s.boxes[3] - 1; x++)
            cr_assert_gt(s.image[y * S + x] + 100.0f, 125.0f, "(%lld, %lld): %g", (long long)y,
                         (long long)x, (double)s.image[y * S + x]);
    /* The circle (48, 48) r 6: centre 97 in molded pixels, radius 12. */
    const double *cb = s.boxes + 4;
    assert_near((cb[0] + cb[2]) * 0.5, 48.5 * 2.0, 1.0, "circle centre y");
    assert_near((cb[1] + cb[3]) * 0.5, 48.5 * 2.0, 1.0, "circle centre x");
    assert_near(cb[2] - cb[0], 24.0, 2.0, "circle height");
    double circle = (double)mask_sum(s.masks + S * S, S * S);
    cr_assert(fabs(circle - M_PI * 144.0) < 0.08 * M_PI * 144.0, "circle area %g", circle);
    mr_sample_free(&s);
    mr_dataset_close(d);
}

Test(dataset, non_square_image_is_padded_and_placed) {
    mr_config c = tiny();
    c.net.use_mini_mask = false;
    mr_dataset *d = open_ok(make_set(), &c, false);
    const int64_t S = 128;
    mr_sample s;
    cr_assert_eq(mr_dataset_sample(d, 1, 0, &s), MR_OK, "%s", mr_last_error());
    /* 80x40: 128/40 would make the long side 256 > 128, so scale = 128/80 = 1.6 -> 128x64,
     * 32 rows of padding above. */
    cr_assert_float_eq(s.mold.scale, 1.6, 1e-12);
    cr_assert_eq(s.mold.resized_h, 64);
    cr_assert_eq(s.mold.top, 32);
    cr_assert_eq(s.mold.left, 0);
    for (int64_t x = 0; x < S; x++) {
        cr_assert_eq(s.image[0 * S + x], -100.0f, "top padding");
        cr_assert_eq(s.image[(S - 1) * S + x], -100.0f, "bottom padding");
    }
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.class_ids[0], 2);
    const double want[4] = {10 * 1.6 + 32, 20 * 1.6, 30 * 1.6 + 32, 40 * 1.6};
    for (int j = 0; j < 4; j++) assert_near(s.boxes[j], want[j], 1.0, "b.png rect box");
    /* Nothing of the mask in the padding. */
    for (int64_t y = 0; y < 32; y++)
        for (int64_t x = 0; x < S; x++) cr_assert_eq(s.masks[y * S + x], 0);
    mr_sample_free(&s);
    mr_dataset_close(d);
}

Test(dataset, mini_masks_and_negatives) {
    mr_config c = tiny(); /* USE_MINI_MASK on, MINI_MASK_SHAPE 28 */
    mr_dataset *d = open_ok(make_set(), &c, true);
    mr_sample s;
    cr_assert_eq(mr_dataset_sample(d, 0, 0, &s), MR_OK, "%s", mr_last_error());
    cr_assert_eq(s.mask_h, 28);
    cr_assert_eq(s.mask_w, 28);
    cr_assert_eq(s.n, 2);
    /* A filled rect minimises to an all-ones mini mask. */
    cr_assert_eq(mask_sum(s.masks, 28 * 28), 28 * 28);
    int64_t circle = mask_sum(s.masks + 28 * 28, 28 * 28);
    cr_assert(circle > 500 && circle < 28 * 28, "circle mini mask %lld", (long long)circle);
    mr_sample_free(&s);

    cr_assert_eq(mr_dataset_sample(d, 2, 0, &s), MR_OK, "%s", mr_last_error());
    cr_assert_eq(s.n, 0);
    cr_assert_not_null(s.boxes);
    cr_assert_not_null(s.class_ids);
    cr_assert_not_null(s.masks);
    cr_assert_eq(s.mold.scale, 128.0 / 50.0);
    mr_sample_free(&s);
    cr_assert_eq(mr_dataset_sample(d, 3, 0, &s), MR_ERR_ARG);
    mr_dataset_close(d);
}

Test(dataset, too_many_instances_are_subsampled_with_a_seed) {
    const char *dir = temp_dir("dataset-many-gt");
    put_png(dir, "m.png", 64, 64, 0, 0, 0, 0);
    char json[4096];
    size_t len = (size_t)snprintf(
        json, sizeof json, "{\"m.png1\": {\"filename\": \"m.png\", \"size\": 1, \"regions\": [");
    for (int i = 0; i < 6; i++)
        len += (size_t)snprintf(json + len, sizeof json - len,
                                "%s{\"shape_attributes\": {\"name\": \"rect\", \"x\": %d, \"y\": 4,"
                                " \"width\": 6, \"height\": 6}, \"region_attributes\": {\"class\":"
                                " \"%s\"}}",
                                i ? ", " : "", 2 + 10 * i, i % 2 ? "malignant" : "benign");
    snprintf(json + len, sizeof json - len, "]}}\n");
    put_text(dir, "via.json", json);
    mr_config c = tiny();
    c.net.max_gt_instances = 3;
    c.net.use_mini_mask = false;
    mr_dataset *d = open_ok(dir, &c, true);
    mr_sample a, b;
    cr_assert_eq(mr_dataset_sample(d, 0, 0, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_dataset_sample(d, 0, 0, &b), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.n, 3);
    assert_samples_equal(&a, &b, 128, 1);
    /* Kept in annotation order: boxes move right. */
    cr_assert_lt(a.boxes[1], a.boxes[5]);
    cr_assert_lt(a.boxes[5], a.boxes[9]);
    for (int i = 0; i < 3; i++) {
        int64_t k =
            (int64_t)lround(((double)a.boxes[4 * i + 1] / 2.0 - 2.0) / 10.0); /* which rect */
        cr_assert_eq(a.class_ids[i], k % 2 ? 2 : 1);
    }
    mr_sample_free(&a);
    mr_sample_free(&b);
    mr_dataset_close(d);
}

/* ---- order --------------------------------------------------------------------------------- */

static void assert_permutation(const mr_dataset *d, int epoch, int64_t from, int64_t n) {
    int seen[64] = {0};
    for (int64_t p = from; p < from + n; p++) {
        int64_t r = mr_dataset_record_at(d, epoch, p);
        cr_assert(r >= 0 && r < n, "record %lld", (long long)r);
        cr_assert_eq(seen[r]++, 0, "record %lld twice in epoch %d", (long long)r, epoch);
    }
}

Test(dataset, order_is_a_seeded_permutation_per_epoch) {
    const char *dir = make_many(20);
    mr_config c = tiny();
    mr_dataset *d = open_ok(dir, &c, true), *same = open_ok(dir, &c, true);
    c.seed = 8;
    mr_dataset *other = open_ok(dir, &c, true);
    mr_dataset *val = open_ok(dir, &c, false);
    const int64_t n = mr_dataset_size(d);
    cr_assert_eq(n, 20);
    for (int e = 0; e < 3; e++) {
        assert_permutation(d, e, 0, n);
        assert_permutation(d, e, n, n); /* a second pass through a long epoch */
    }
    int diff_epoch = 0, diff_cycle = 0, diff_seed = 0, identity = 0;
    for (int64_t p = 0; p < n; p++) {
        int64_t r0 = mr_dataset_record_at(d, 0, p);
        diff_epoch += r0 != mr_dataset_record_at(d, 1, p);
        diff_cycle += r0 != mr_dataset_record_at(d, 0, p + n);
        diff_seed += r0 != mr_dataset_record_at(other, 0, p);
        identity += r0 == p;
        cr_assert_eq(r0, mr_dataset_record_at(same, 0, p));
        cr_assert_eq(mr_dataset_record_at(val, 3, p), p);
        cr_assert_eq(mr_dataset_record_at(val, 3, p + n), p);
    }
    cr_assert_gt(diff_epoch, 0);
    cr_assert_gt(diff_cycle, 0);
    cr_assert_gt(diff_seed, 0);
    cr_assert_lt(identity, n);
    /* Asking out of order (another thread, a resumed run) gives the same answers. */
    int64_t late = mr_dataset_record_at(d, 2, 5);
    (void)mr_dataset_record_at(d, 0, 0);
    cr_assert_eq(mr_dataset_record_at(d, 2, 5), late);
    /* Seeds: nonzero and odd when training with AUGMENT, 0 for validation. */
    cr_assert_eq(mr_dataset_augment_seed(d, 0, 0) & 1u, 1u);
    cr_assert_neq(mr_dataset_augment_seed(d, 0, 0), mr_dataset_augment_seed(d, 0, 1));
    cr_assert_neq(mr_dataset_augment_seed(d, 0, 0), mr_dataset_augment_seed(d, 1, 0));
    cr_assert_eq(mr_dataset_augment_seed(val, 0, 0), 0u);
    mr_dataset_close(d);
    mr_dataset_close(same);
    mr_dataset_close(other);
    mr_dataset_close(val);
}

/* ---- augmentation at the sample level ------------------------------------------------------ */

Test(dataset, augmented_masks_stay_on_the_lesion) {
    mr_config c = tiny();
    c.net.use_mini_mask = false;
    mr_dataset *d = open_ok(make_set(), &c, true);
    const int64_t S = 128;
    mr_sample plain;
    cr_assert_eq(mr_dataset_sample(d, 0, 0, &plain), MR_OK, "%s", mr_last_error());
    int moved = 0;
    for (uint64_t seed = 1; seed < 40; seed += 2) {
        mr_sample s, again;
        cr_assert_eq(mr_dataset_sample(d, 0, seed, &s), MR_OK, "%s", mr_last_error());
        cr_assert_eq(mr_dataset_sample(d, 0, seed, &again), MR_OK, "%s", mr_last_error());
        assert_samples_equal(&s, &again, S, 1);
        cr_assert_eq(s.n, 2);
        moved += memcmp(s.boxes, plain.boxes, sizeof(float) * 4) != 0;
        /* The bright rect: inside its mask the pixels are brighter than the tissue around. */
        double in = 0, out = 0;
        int64_t n_in = 0, n_out = 0;
        const double *b = s.boxes;
        for (int64_t y = 0; y < S; y++)
            for (int64_t x = 0; x < S; x++) {
                double v = (double)s.image[y * S + x];
                if (s.masks[y * S + x])
                    in += v, n_in++;
                else if (y >= b[0] - 8 && y < b[2] + 8 && x >= b[1] - 8 && x < b[3] + 8)
                    out += v, n_out++;
            }
        cr_assert_gt(n_in, 0);
        cr_assert_gt(in / (double)n_in, out / (double)n_out + 60.0, "seed %llu: in %g out %g",
                     (unsigned long long)seed, in / (double)n_in, out / (double)n_out);
        /* Boxes come from the augmented masks. */
        for (int64_t k = 0; k < s.n; k++) {
            const uint8_t *m = s.masks + k * S * S;
            const double *bk = s.boxes + 4 * k;
            cr_assert_eq(m[(int64_t)bk[0] * S + (int64_t)((bk[1] + bk[3]) / 2)] |
                             m[(int64_t)((bk[0] + bk[2]) / 2) * S + (int64_t)bk[1]],
                         1);
        }
        mr_sample_free(&s);
        mr_sample_free(&again);
    }
    cr_assert_gt(moved, 10);
    /* Validation never augments, whatever the seed. */
    mr_dataset *val = open_ok(make_set(), &c, false);
    mr_sample v;
    cr_assert_eq(mr_dataset_sample(val, 0, 12345, &v), MR_OK, "%s", mr_last_error());
    assert_samples_equal(&v, &plain, S, 1);
    mr_sample_free(&v);
    mr_dataset_close(val);
    mr_sample_free(&plain);
    mr_dataset_close(d);
}

Test(dataset, lesion_pushed_out_of_the_frame_is_dropped) {
    const char *dir = temp_dir("dataset-edge");
    put_png(dir, "e.png", 64, 64, 0, 30, 3, 36);
    put_text(dir, "via.json",
             "{\"e.png1\": {\"filename\": \"e.png\", \"size\": 1, \"regions\": [\n"
             " {\"shape_attributes\": {\"name\": \"rect\", \"x\": 0, \"y\": 30, \"width\": 2,"
             " \"height\": 6}, \"region_attributes\": {\"class\": \"benign\"}},\n"
             " {\"shape_attributes\": {\"name\": \"rect\", \"x\": 28, \"y\": 28, \"width\": 8,"
             " \"height\": 8}, \"region_attributes\": {\"class\": \"malignant\"}}]}}\n");
    mr_config c = tiny();
    c.augment = mr_augment_none();
    c.augment.translate = 0.3f;
    mr_dataset *d = open_ok(dir, &c, true);
    int dropped = 0, kept = 0;
    for (uint64_t seed = 1; seed < 80; seed += 2) {
        mr_sample s;
        cr_assert_eq(mr_dataset_sample(d, 0, seed, &s), MR_OK, "%s", mr_last_error());
        cr_assert(s.n == 1 || s.n == 2);
        if (s.n == 1) {
            cr_assert_eq(s.class_ids[0], 2, "the centre lesion stays");
            dropped++;
        } else {
            kept++;
        }
        for (int64_t k = 0; k < s.n; k++) {
            cr_assert_gt(s.boxes[4 * k + 2], s.boxes[4 * k]);
            cr_assert_gt(mask_sum(s.masks + k * 28 * 28, 28 * 28), 0);
        }
        mr_sample_free(&s);
    }
    cr_assert_gt(dropped, 0);
    cr_assert_gt(kept, 0);
    mr_dataset_close(d);
}

/* ---- prefetch ------------------------------------------------------------------------------ */

Test(dataset, prefetched_batches_equal_direct_samples) {
    mr_config c = tiny(); /* BATCH_SIZE 2, augmentation on */
    mr_dataset *d = open_ok(make_set(), &c, true);
    const int64_t S = 128, B = 2;
    const int spe = 2; /* 4 positions per epoch over 3 records: the epoch wraps */
    cr_assert_eq(mr_dataset_start(d, 0, 0, spe), MR_OK, "%s", mr_last_error());
    for (int k = 0; k < 5; k++) {
        mr_batch *b;
        cr_assert_eq(mr_dataset_next(d, &b), MR_OK, "%s", mr_last_error());
        cr_assert_eq(b->epoch, k / spe);
        cr_assert_eq(b->step, k % spe);
        cr_assert_eq(b->size, B);
        cr_assert_eq(b->image_side, S);
        cr_assert_eq(b->channels, 1);
        for (int64_t i = 0; i < B; i++) {
            int64_t pos = b->step * B + i;
            mr_sample s;
            int64_t rec = mr_dataset_record_at(d, b->epoch, pos);
            cr_assert_eq(mr_dataset_sample(d, rec, mr_dataset_augment_seed(d, b->epoch, pos), &s),
                         MR_OK, "%s", mr_last_error());
            assert_samples_equal(&b->samples[i], &s, S, 1);
            cr_assert_eq(b->samples[i].image, b->images + i * S * S);
            const mr_instances *g = &b->gt[i];
            cr_assert_eq(g->n, s.n);
            cr_assert_eq(g->boxes, b->samples[i].boxes);
            cr_assert_eq(g->masks, b->samples[i].masks);
            cr_assert_eq(g->mask_h, 28);
            cr_assert_eq(g->image_h, S);
            cr_assert_eq(g->image_w, S);
            mr_sample_free(&s);
        }
        mr_dataset_release(d, b);
    }
    mr_dataset_stop(d); /* with batches still queued: freed, no leak */
    mr_dataset_stop(d); /* twice is harmless */
    mr_dataset_close(d);
}

/* The batch (epoch, step) is the same bytes however the stream got there. */
Test(dataset, resumed_stream_gives_identical_batches) {
    mr_config c = tiny();
    mr_dataset *d = open_ok(make_set(), &c, true);
    const int spe = 5;
    const size_t image_bytes = sizeof(float) * 2 * 128 * 128;
    cr_assert_eq(mr_dataset_start(d, 0, 0, spe), MR_OK);
    mr_batch *from_start = NULL;
    for (int k = 0; k <= spe + 3; k++) {
        mr_batch *b;
        cr_assert_eq(mr_dataset_next(d, &b), MR_OK, "%s", mr_last_error());
        if (k < spe + 3)
            mr_dataset_release(d, b);
        else
            from_start = b;
    }
    cr_assert_eq(from_start->epoch, 1);
    cr_assert_eq(from_start->step, 3);
    mr_dataset_stop(d);

    /* A fresh dataset, as after a restart, started right at (1, 3). */
    mr_dataset *r = open_ok(make_set(), &c, true);
    cr_assert_eq(mr_dataset_start(r, 1, 3, spe), MR_OK);
    mr_batch *resumed;
    cr_assert_eq(mr_dataset_next(r, &resumed), MR_OK, "%s", mr_last_error());
    cr_assert_eq(resumed->epoch, 1);
    cr_assert_eq(resumed->step, 3);
    cr_assert_eq(memcmp(resumed->images, from_start->images, image_bytes), 0);
    for (int i = 0; i < 2; i++)
        assert_samples_equal(&resumed->samples[i], &from_start->samples[i], 128, 1);
    /* Then the stream rolls over into the next epoch. */
    mr_batch *b;
    cr_assert_eq(mr_dataset_next(r, &b), MR_OK);
    cr_assert_eq(b->step, 4);
    mr_dataset_release(r, b);
    cr_assert_eq(mr_dataset_next(r, &b), MR_OK);
    cr_assert_eq(b->epoch, 2);
    cr_assert_eq(b->step, 0);
    mr_dataset_release(r, b);
    /* Restarting the same dataset elsewhere also works. */
    cr_assert_eq(mr_dataset_start(r, 1, 3, spe), MR_OK);
    cr_assert_eq(mr_dataset_next(r, &b), MR_OK);
    cr_assert_eq(memcmp(b->images, from_start->images, image_bytes), 0);
    mr_dataset_release(r, b);
    mr_dataset_release(r, resumed);
    mr_dataset_release(d, from_start);
    mr_dataset_close(r);
    mr_dataset_close(d);
}

/* ---- errors -------------------------------------------------------------------------------- */

Test(dataset, missing_image_fails_with_its_path) {
    const char *dir = make_set();
    mr_config c = tiny();
    mr_dataset *d = open_ok(dir, &c, false);
    char gone[1024];
    snprintf(gone, sizeof gone, "%s/b.png", dir);
    cr_assert_eq(unlink(gone), 0);
    mr_sample s;
    cr_assert_eq(mr_dataset_sample(d, 1, 0, &s), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "b.png"), "%s", mr_last_error());
    cr_assert_null(s.image);

    /* Through the prefetcher: validation order is file order, so batch 0 holds a.png and the
     * missing b.png; the error comes from next() with the path. */
    cr_assert_eq(mr_dataset_start(d, 0, 0, 3), MR_OK);
    mr_batch *b;
    cr_assert_eq(mr_dataset_next(d, &b), MR_ERR_IO);
    cr_assert_null(b);
    cr_assert(strstr(mr_last_error(), "b.png"), "%s", mr_last_error());
    cr_assert(strstr(mr_last_error(), "epoch 0, step 0"), "%s", mr_last_error());
    cr_assert_eq(mr_dataset_next(d, &b), MR_ERR_IO, "the stream stays failed");
    mr_dataset_close(d); /* stops the finished thread */
}

Test(dataset, annotation_errors_fail_open_with_a_count_and_a_hint) {
    const char *dir = temp_dir("dataset-bad");
    put_png(dir, "a.png", 16, 16, 0, 0, 0, 0);
    put_text(dir, "via.json",
             "{\"a.png1\": {\"filename\": \"a.png\", \"size\": 1, \"regions\": [\n"
             " {\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1, \"width\": 5,"
             " \"height\": 5}, \"region_attributes\": {\"class\": \"cyst\"}}]},\n"
             " \"gone.png2\": {\"filename\": \"gone.png\", \"size\": 2, \"regions\": []}}\n");
    mr_config c = tiny();
    mr_dataset *d = (mr_dataset *)1;
    mr_status st = mr_dataset_open(&d, dir, &c, true);
    cr_assert_neq(st, MR_OK);
    cr_assert_null(d);
    const char *msg = mr_last_error();
    cr_assert(strstr(msg, "2 errors"), "%s", msg);
    cr_assert(strstr(msg, "check-data --data"), "%s", msg);
    cr_assert(strstr(msg, "cyst") || strstr(msg, "gone.png"), "%s", msg);

    cr_assert_neq(mr_dataset_open(&d, "/nonexistent/mrcnn/data", &c, true), MR_OK);
    cr_assert(strstr(mr_last_error(), "/nonexistent/mrcnn/data"), "%s", mr_last_error());
}

Test(dataset, next_without_start_is_an_error) {
    mr_config c = tiny();
    mr_dataset *d = open_ok(make_set(), &c, true);
    mr_batch *b;
    cr_assert_eq(mr_dataset_next(d, &b), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "mr_dataset_start"));
    cr_assert_eq(mr_dataset_start(d, 0, 5, 5), MR_ERR_ARG);
    mr_dataset_close(d);
}

Test(dataset, validation_split_holds_out_a_seeded_share) {
    const char *dir = temp_dir("split");
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = dir;
    o.n_images = 20;
    o.size = 64;
    o.val_fraction = 0.0;
    cr_assert_eq(mr_synth_write(&o), MR_OK, "%s", mr_last_error());
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK);
    snprintf(c.train_data, sizeof c.train_data, "%s/train", dir);
    c.val_data[0] = '\0';
    c.validation_split = 0.25f;
    mr_dataset *train = NULL, *val = NULL, *again = NULL;
    cr_assert_eq(mr_dataset_open(&train, c.train_data, &c, true), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_dataset_open(&val, c.train_data, &c, false), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_dataset_size(train), 15);
    cr_assert_eq(mr_dataset_size(val), 5);
    const mr_annotations *a = mr_dataset_annotations(train), *b = mr_dataset_annotations(val);
    for (int64_t i = 0; i < a->n; i++)
        for (int64_t k = 0; k < b->n; k++)
            cr_assert_str_neq(a->records[i].path, b->records[k].path, "an image on both sides");
    cr_assert_eq(mr_dataset_open(&again, c.train_data, &c, false), MR_OK);
    for (int64_t k = 0; k < b->n; k++)
        cr_assert_str_eq(mr_dataset_annotations(again)->records[k].path, b->records[k].path,
                         "the split is the same every time for the same SEED");
    mr_dataset_close(train);
    mr_dataset_close(val);
    mr_dataset_close(again);
}
