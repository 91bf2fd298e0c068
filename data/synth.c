/* The synthetic breast-ultrasound generator: layered tissue, lesions drawn from their integer
 * outlines with posterior enhancement or shadowing, correlated Rayleigh speckle, compression to
 * 8 bits; the standard and hard presets (the hard one adds small, faint and several lesions and
 * per-image gain and depth curves); and the writer of a train/val set of PNGs plus VIA JSON. */

/* Every image draws from its own xoshiro stream keyed by (seed, index), so output is
 * byte-identical for the same options and image k does not depend on how many are written.
 * (Same machine and C library: libm's pow/exp/sin may differ in the last bit elsewhere.)
 * The hard preset's draws sit on its own branches (`hard ? ... : ...`), so the standard
 * preset's stream, and its output, are what they were before the hard preset existed. */
#include "synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/file.h"
#include "../core/rng.h"
#include "raster.h"
#include "via_write.h"

#define PI 3.14159265358979323846

void mr_synth_preset_defaults(mr_synth_options *o, mr_synth_preset p) {
    memset(o, 0, sizeof *o);
    o->n_images = 100;
    o->seed = 1;
    o->preset = p;
    o->size = 256;
    o->val_fraction = 0.2;
    o->lesion_max = 0.35;
    o->malignant_fraction = 0.4;
    if (p == MR_SYNTH_HARD) {
        /* 3% of the side is 8 px at 256: about the smallest lesion a radiologist reports. */
        o->lesion_min = 0.03;
        o->normal_fraction = 0.15;
        o->two_lesion_fraction = 0.3;
        o->max_lesions = 3;
        o->ambiguous_fraction = 0.1;
    } else {
        o->lesion_min = 0.15;
        o->normal_fraction = 0.2;
        o->two_lesion_fraction = 0.1;
        o->max_lesions = 2;
        o->ambiguous_fraction = 0.0;
    }
}

void mr_synth_defaults(mr_synth_options *o) {
    mr_synth_preset_defaults(o, MR_SYNTH_STANDARD);
}

static const char *const preset_names[] = {"standard", "hard"};

bool mr_synth_preset_from_name(const char *name, mr_synth_preset *p) {
    for (int i = 0; i < 2; i++)
        if (name && !strcmp(name, preset_names[i])) {
            *p = (mr_synth_preset)i;
            return true;
        }
    return false;
}

const char *mr_synth_preset_name(mr_synth_preset p) {
    return p == MR_SYNTH_HARD ? preset_names[1] : preset_names[0];
}

static mr_status check_options(const mr_synth_options *o, int need_out) {
    if (need_out && (!o->out_dir || !o->out_dir[0]))
        return mr_fail(MR_ERR_ARG, "no output folder given (--out DIR)");
    if (need_out && o->n_images < 1)
        return mr_fail(MR_ERR_ARG, "--images must be at least 1, got %d", o->n_images);
    if (o->preset != MR_SYNTH_STANDARD && o->preset != MR_SYNTH_HARD)
        return mr_fail(MR_ERR_ARG, "unknown preset %d (expected standard or hard)", (int)o->preset);
    if (o->size < 64 || o->size > 4096)
        return mr_fail(MR_ERR_ARG, "--size must be in [64, 4096] pixels, got %d", o->size);
    if (!(o->val_fraction >= 0.0 && o->val_fraction < 1.0))
        return mr_fail(MR_ERR_ARG, "--val-fraction must be in [0, 1), got %g", o->val_fraction);
    if (!(o->lesion_min >= 0.02 && o->lesion_min <= o->lesion_max && o->lesion_max <= 0.6))
        return mr_fail(MR_ERR_ARG,
                       "lesion width fractions must satisfy 0.02 <= min <= max <= 0.6, "
                       "got %g and %g",
                       o->lesion_min, o->lesion_max);
    if (o->lesion_max * o->size < MR_SYNTH_MIN_LESION_PX)
        return mr_fail(MR_ERR_ARG,
                       "--lesion-max %g of %d px is %.1f px; lesions need at least %d px",
                       o->lesion_max, o->size, o->lesion_max * o->size, MR_SYNTH_MIN_LESION_PX);
    if (o->max_lesions < 1 || o->max_lesions > MR_SYNTH_MAX_LESIONS)
        return mr_fail(MR_ERR_ARG, "--max-lesions must be in [1, %d], got %d", MR_SYNTH_MAX_LESIONS,
                       o->max_lesions);
    const double fr[4] = {o->normal_fraction, o->malignant_fraction, o->two_lesion_fraction,
                          o->ambiguous_fraction};
    static const char *const fr_names[4] = {"--normal-fraction", "--malignant-fraction",
                                            "two_lesion_fraction", "ambiguous_fraction"};
    for (int i = 0; i < 4; i++)
        if (!(fr[i] >= 0.0 && fr[i] <= 1.0))
            return mr_fail(MR_ERR_ARG, "%s must be in [0, 1], got %g", fr_names[i], fr[i]);
    return MR_OK;
}

/* ---- random helpers ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Streams keyed by a hash of (seed, index, purpose), so neighbouring seeds do not share images
 * shifted by one. */
static void stream_seed(mr_rng *rng, uint64_t seed, uint64_t index, uint64_t purpose) {
    mr_rng_seed(rng, mix64(mix64(seed) ^ mix64(index * 0x2545f4914f6cdd1dull + purpose)));
}

static double unif(mr_rng *r, double a, double b) {
    return a + (b - a) * mr_rng_uniform_double(r);
}

static double smoothstep01(double t) {
    if (t <= 0.0) return 0.0;
    if (t >= 1.0) return 1.0;
    return t * t * (3.0 - 2.0 * t);
}

/* ---- fields ---------------------------------------------------------------------------- */

/* Separable Gaussian blur in place, borders replicated. */
static mr_status blur(float *img, int w, int h, double sx, double sy) {
    int rx = (int)ceil(3.0 * sx), ry = (int)ceil(3.0 * sy);
    int rmax = rx > ry ? rx : ry;
    int n = w > h ? w : h;
    double *k = malloc((size_t)(2 * rmax + 1) * sizeof *k);
    float *line = malloc((size_t)n * sizeof *line);
    if (!k || !line) {
        free(k);
        free(line);
        return mr_fail(MR_ERR_NOMEM, "out of memory in blur");
    }
    for (int pass = 0; pass < 2; pass++) {
        double s = pass == 0 ? sx : sy;
        int r = pass == 0 ? rx : ry;
        if (s <= 0.0) continue;
        double sum = 0.0;
        for (int i = -r; i <= r; i++) sum += k[i + r] = exp(-0.5 * (i * i) / (s * s));
        for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
        int len = pass == 0 ? w : h, count = pass == 0 ? h : w;
        for (int j = 0; j < count; j++) {
            for (int i = 0; i < len; i++) line[i] = pass == 0 ? img[j * w + i] : img[i * w + j];
            for (int i = 0; i < len; i++) {
                double acc = 0.0;
                for (int t = -r; t <= r; t++) {
                    int q = i + t;
                    q = q < 0 ? 0 : q >= len ? len - 1 : q;
                    acc += k[t + r] * (double)line[q];
                }
                if (pass == 0)
                    img[j * w + i] = (float)acc;
                else
                    img[i * w + j] = (float)acc;
            }
        }
    }
    free(k);
    free(line);
    return MR_OK;
}

/* Smooth value noise in [0, 1]: a (cells+1)^2 grid of uniforms, smoothstep-bilinear. */
static mr_status value_noise(mr_rng *rng, int s, int cells, float *out) {
    int g = cells + 1;
    double *grid = malloc((size_t)g * (size_t)g * sizeof *grid);
    if (!grid) return mr_fail(MR_ERR_NOMEM, "out of memory in noise");
    for (int i = 0; i < g * g; i++) grid[i] = mr_rng_uniform_double(rng);
    for (int y = 0; y < s; y++) {
        double v = (double)y * cells / s;
        int iy = (int)v;
        double ty = smoothstep01(v - iy);
        for (int x = 0; x < s; x++) {
            double u = (double)x * cells / s;
            int ix = (int)u;
            double tx = smoothstep01(u - ix);
            double a = grid[iy * g + ix], b = grid[iy * g + ix + 1];
            double c = grid[(iy + 1) * g + ix], d = grid[(iy + 1) * g + ix + 1];
            out[y * s + x] = (float)((a + (b - a) * tx) * (1.0 - ty) + (c + (d - c) * tx) * ty);
        }
    }
    free(grid);
    return MR_OK;
}

/* A gently wavy boundary: sum of three sines across the width, amplitude in image fractions. */
typedef struct {
    double amp[3], freq[3], phase[3];
} wave;

static void wave_init(mr_rng *rng, wave *w, double amplitude) {
    for (int k = 0; k < 3; k++) {
        w->amp[k] = amplitude * unif(rng, 0.2, 1.0) / (k + 1);
        w->freq[k] = unif(rng, 0.5, 2.5) * (k + 1);
        w->phase[k] = unif(rng, 0.0, 2.0 * PI);
    }
}

static double wave_at(const wave *w, double xf) {
    double v = 0.0;
    for (int k = 0; k < 3; k++) v += w->amp[k] * sin(2.0 * PI * w->freq[k] * xf + w->phase[k]);
    return v;
}

/* ---- tissue ---------------------------------------------------------------------------- */

/* Echogenicity (0 = anechoic, about 1 = bright reflector) of the lesion-free breast, with depth
 * attenuation already applied. */
static mr_status draw_tissue(mr_rng *rng, int s, float *e, float *scratch) {
    wave skin_w, fat_w, gland_w, lig_w[4];
    wave_init(rng, &skin_w, 0.004);
    wave_init(rng, &fat_w, 0.03);
    wave_init(rng, &gland_w, 0.04);
    double skin0 = unif(rng, 0.025, 0.04);
    double fat0 = unif(rng, 0.18, 0.3), gland0 = unif(rng, 0.58, 0.72);
    double retro = unif(rng, 0.025, 0.05);
    double dermis_v = unif(rng, 0.45, 0.6), fat_v = unif(rng, 0.18, 0.28);
    double gland_v = unif(rng, 0.5, 0.68), retro_v = unif(rng, 0.15, 0.25);
    double sc = s / 256.0; /* widths below are in pixels of a 256-pixel image */
    double muscle_v = unif(rng, 0.25, 0.35), stria_period = unif(rng, 5.0, 10.0) * sc;
    double stria_tilt = unif(rng, -0.08, 0.08), attenuation = unif(rng, 0.5, 1.1);
    int n_lig = 2 + (int)mr_rng_below(rng, 3);
    double lig_pos[4];
    for (int i = 0; i < n_lig; i++) {
        wave_init(rng, &lig_w[i], 0.05);
        lig_pos[i] = unif(rng, 0.2, 0.9);
    }
    /* Fat lobules and glandular heterogeneity at two scales. */
    float *gland_n = scratch, *fat_n = scratch + (size_t)s * s;
    MR_TRY(value_noise(rng, s, 6, gland_n));
    MR_TRY(value_noise(rng, s, 10, fat_n));
    /* Boundaries depend on the column only: computed once per column, not per pixel. */
    double *col = malloc((size_t)s * (4 + 4) * sizeof *col);
    if (!col) return mr_fail(MR_ERR_NOMEM, "out of memory for the tissue layers");
    double *skin = col, *fat_end = col + s, *gland_end = col + 2 * s, *muscle = col + 3 * s;
    double *lig = col + 4 * s; /* (n_lig, s) */
    for (int x = 0; x < s; x++) {
        double xf = (double)x / s;
        skin[x] = skin0 + wave_at(&skin_w, xf);
        fat_end[x] = fat0 + wave_at(&fat_w, xf);
        gland_end[x] = gland0 + wave_at(&gland_w, xf);
        muscle[x] = gland_end[x] + retro;
        double dermis_end = skin[x] + 0.035;
        for (int k = 0; k < n_lig; k++)
            lig[k * s + x] =
                dermis_end + (fat_end[x] - dermis_end) * lig_pos[k] + wave_at(&lig_w[k], xf);
    }
    double px = sc / s;
    for (int y = 0; y < s; y++) {
        double d = (double)y / s;
        double depth_gain = exp(-attenuation * d);
        for (int x = 0; x < s; x++) {
            size_t i = (size_t)y * s + x;
            double dermis_end = skin[x] + 0.035;
#define STEP(b) smoothstep01((d - (b)) / (2.5 * px) + 0.5)
#define LINE(b, width, height)                                                                     \
    do {                                                                                           \
        double t_ = (d - (b)) / ((width)*px);                                                      \
        if (t_ > -4.0 && t_ < 4.0) v += (height)*exp(-t_ * t_);                                    \
    } while (0)
            double v = 0.04;
            v += (dermis_v - v) * STEP(skin[x]);
            v += (fat_v * (0.7 + 0.6 * (double)fat_n[i]) - v) * STEP(dermis_end);
            v += (gland_v * (0.65 + 0.7 * (double)gland_n[i]) - v) * STEP(fat_end[x]);
            v += (retro_v - v) * STEP(gland_end[x]);
            if (d > muscle[x] - 4.0 * px) {
                double phase = (d - muscle[x]) * s / stria_period + stria_tilt * x / stria_period;
                double stria = pow(0.5 + 0.5 * sin(2.0 * PI * phase), 4.0);
                v += (muscle_v + 0.22 * stria - v) * STEP(muscle[x]);
            }
            LINE(skin[x], 1.2, 0.9);        /* the skin line */
            LINE(muscle[x], 1.5, 0.45);     /* pectoral fascia */
            for (int k = 0; k < n_lig; k++) /* Cooper's ligaments: thin curves through the fat */
                if (lig[k * s + x] <= fat_end[x] + 0.01) LINE(lig[k * s + x], 0.9, 0.22);
#undef STEP
#undef LINE
            e[i] = (float)(v * depth_gain);
        }
    }
    free(col);
    return MR_OK;
}

/* ---- lesions --------------------------------------------------------------------------- */

#define MAX_OUTLINE 256

typedef struct {
    mr_synth_class cls;
    double px[MAX_OUTLINE], py[MAX_OUTLINE]; /* relative to the centre */
    int n;
    double x0, x1, y0, y1; /* bounding box of the relative outline */
} outline;

static void outline_bbox(outline *o) {
    o->x0 = o->y0 = 1e300;
    o->x1 = o->y1 = -1e300;
    for (int i = 0; i < o->n; i++) {
        o->x0 = fmin(o->x0, o->px[i]);
        o->x1 = fmax(o->x1, o->px[i]);
        o->y0 = fmin(o->y0, o->py[i]);
        o->y1 = fmax(o->y1, o->py[i]);
    }
}

/* Benign: an oval wider than tall (aspect 0.5-0.8), smooth or gently lobulated. Malignant:
 * taller than wide (aspect 1.15-1.5), angular or microlobulated margins, often spiculated. The
 * hard preset widens the aspects so that they overlap (0.45-0.95 and 0.8-1.5), as in real scans
 * where many carcinomas are wider than tall. `look` is the class the shape follows. */
static void make_outline(mr_rng *rng, mr_synth_class look, double width, int s, int hard,
                         outline *o) {
    o->cls = look;
    double a = width / 2.0;
    int benign = look == MR_SYNTH_BENIGN;
    double b = a * (hard ? (benign ? unif(rng, 0.45, 0.95) : unif(rng, 0.8, 1.5))
                         : (benign ? unif(rng, 0.5, 0.8) : unif(rng, 1.15, 1.5)));
    double rot = benign ? unif(rng, -0.25, 0.25) : unif(rng, -0.2, 0.2);
    double c[11] = {0}, p[11] = {0};
    int kmax = benign ? 4 : 10;
    for (int k = 2; k <= kmax; k++) {
        c[k] = benign ? unif(rng, -0.03, 0.03) : unif(rng, -1.0, 1.0) * 0.14 / sqrt((double)k);
        p[k] = unif(rng, 0.0, 2.0 * PI);
    }
    if (benign && mr_rng_uniform_double(rng) < 0.3) c[3] = unif(rng, 0.04, 0.08); /* lobulated */
    int n_sp = 0;
    double sp_at[16], sp_len[16], sp_w[16];
    if (!benign && mr_rng_uniform_double(rng) < 0.6) {
        n_sp = 6 + (int)mr_rng_below(rng, 9);
        for (int i = 0; i < n_sp; i++) {
            sp_at[i] = unif(rng, 0.0, 2.0 * PI);
            sp_len[i] = unif(rng, 0.15, 0.45);
            sp_w[i] = unif(rng, 0.05, 0.1);
        }
    }
    /* Enough vertices that a spicule is several vertices wide at every size. */
    o->n = benign ? 64 : 240;
    for (int i = 0; i < o->n; i++) {
        double phi = 2.0 * PI * i / o->n;
        double r = 1.0;
        for (int k = 2; k <= kmax; k++) r += c[k] * cos(k * phi + p[k]);
        for (int j = 0; j < n_sp; j++) {
            double dphi = fabs(remainder(phi - sp_at[j], 2.0 * PI));
            if (dphi < sp_w[j]) r += sp_len[j] * (1.0 - dphi / sp_w[j]);
        }
        if (r < 0.4) r = 0.4;
        double ex = a * r * cos(phi), ey = b * r * sin(phi);
        o->px[i] = ex * cos(rot) - ey * sin(rot);
        o->py[i] = ex * sin(rot) + ey * cos(rot);
    }
    outline_bbox(o);
    /* The requested width is the outline's, spicules included. */
    double fit = width / (o->x1 - o->x0);
    for (int i = 0; i < o->n; i++) o->px[i] *= fit, o->py[i] *= fit;
    outline_bbox(o);
    /* Keep even the tallest spiculated lesion within 70% of the image height. */
    double limit = 0.7 * s, hgt = o->y1 - o->y0;
    if (hgt > limit) {
        for (int i = 0; i < o->n; i++) o->px[i] *= limit / hgt, o->py[i] *= limit / hgt;
        outline_bbox(o);
    }
}

/* A centre that keeps the lesion inside the image, below the dermis and above the bottom,
 * preferably in the glandular depth range (standard) or anywhere from the subcutaneous fat to the
 * deep gland (hard). Returns 0 when it cannot fit. */
static int place(mr_rng *rng, const outline *o, int s, int hard, double *cx, double *cy) {
    double m = 0.03 * s;
    double xlo = m - o->x0, xhi = s - 1 - m - o->x1;
    double ylo = 0.1 * s - o->y0, yhi = 0.92 * s - o->y1;
    if (xlo > xhi || ylo > yhi) return 0;
    double plo = fmax(ylo, (hard ? 0.12 : 0.3) * s), phi = fmin(yhi, 0.6 * s);
    if (plo <= phi) ylo = plo, yhi = phi;
    *cx = unif(rng, xlo, xhi);
    *cy = unif(rng, ylo, yhi);
    return 1;
}

/* Rounds the placed outline to integer pixels (the annotation) and drops repeated vertices. */
static mr_status finish_lesion(const outline *o, double cx, double cy, int s, mr_synth_lesion *l) {
    l->cls = o->cls;
    l->xs = malloc((size_t)o->n * sizeof *l->xs);
    l->ys = malloc((size_t)o->n * sizeof *l->ys);
    if (!l->xs || !l->ys) return mr_fail(MR_ERR_NOMEM, "out of memory for an outline");
    int n = 0;
    for (int i = 0; i < o->n; i++) {
        long x = lround(cx + o->px[i]), y = lround(cy + o->py[i]);
        x = x < 0 ? 0 : x > s - 1 ? s - 1 : x;
        y = y < 0 ? 0 : y > s - 1 ? s - 1 : y;
        if (n > 0 && l->xs[n - 1] == x && l->ys[n - 1] == y) continue;
        l->xs[n] = (int)x;
        l->ys[n] = (int)y;
        n++;
    }
    while (n > 1 && l->xs[n - 1] == l->xs[0] && l->ys[n - 1] == l->ys[0]) n--;
    l->n_points = n;
    return MR_OK;
}

typedef struct {
    int x0, y0, x1, y1;
} box;

static box lesion_box(const mr_synth_lesion *l) {
    box b = {l->xs[0], l->ys[0], l->xs[0], l->ys[0]};
    for (int i = 1; i < l->n_points; i++) {
        b.x0 = l->xs[i] < b.x0 ? l->xs[i] : b.x0;
        b.x1 = l->xs[i] > b.x1 ? l->xs[i] : b.x1;
        b.y0 = l->ys[i] < b.y0 ? l->ys[i] : b.y0;
        b.y1 = l->ys[i] > b.y1 ? l->ys[i] : b.y1;
    }
    return b;
}

/* Buffers for drawing one image, each (s, s). */
typedef struct {
    float *e, *alpha, *tex, *re, *im;
    uint8_t *mask;
} canvas;

/* The hard preset's look of one lesion, relative to the tissue around it. */
typedef struct {
    double contrast;  /* interior echogenicity / the surrounding tissue's */
    double hetero;    /* interior texture amplitude */
    double margin;    /* blur of the margin, pixels of a 256-pixel image */
    double rim;       /* echogenic capsule (benign look) or halo (malignant look), 0 for none */
    double posterior; /* + enhancement, - shadowing, 0 none */
} hard_look;

static void draw_hard_look(mr_rng *rng, int benign, double width256, double around, hard_look *h) {
    /* Relative to `around` (a lower quartile, so 1.1 is about the surroundings' mean): mostly
     * clearly hypoechoic, a quarter faint up to isoechoic. The smaller the lesion and the darker
     * its surroundings (below 0.15, dark fat) the lower the ceiling: a few faint pixels, or a
     * faint lesion in dark fat, would be invisible rather than hard. */
    double ceiling = fmin(1.15, 0.3 + 0.025 * width256) * fmin(1.0, around / 0.15);
    double c = mr_rng_uniform_double(rng) < 0.25
                   ? unif(rng, 0.8, 1.15)
                   : 0.12 + 0.6 * pow(mr_rng_uniform_double(rng), 1.2);
    h->contrast = fmin(ceiling, c);
    /* A faint lesion keeps the cues a trained eye uses: a sharp margin with an echogenic capsule
     * or halo and, when nearly isoechoic, a posterior feature. Fuzzy margins are for lesions that
     * stand out by their contrast, and at most a tenth of the width, as a wider blur would wipe
     * out a small lesion. */
    int faint = h->contrast > 0.6, isoechoic = h->contrast > 0.8;
    h->hetero = benign ? unif(rng, 0.1, 0.6) : unif(rng, 0.6, 1.4);
    double sharp = benign ? 0.8 : 0.5;
    h->margin = h->contrast < 0.5 && mr_rng_uniform_double(rng) < 0.35
                    ? fmax(sharp, fmin(unif(rng, 1.2, 2.5), 0.1 * width256))
                    : sharp;
    h->rim = faint || mr_rng_uniform_double(rng) < 0.5 ? unif(rng, faint ? 0.5 : 0.15, 1.0) : 0.0;
    double lo = isoechoic ? 0.3 : 0.15;
    h->posterior = !isoechoic && mr_rng_uniform_double(rng) < 0.25 ? 0.0
                   : benign                                        ? unif(rng, lo, 1.0)
                                                                   : -unif(rng, lo, 0.8);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Echogenicity of the tissue around box `b`: the lower quartile of the bands beside and above
 * it, so that a lesion at a layer boundary is measured against the darker layer (usually fat,
 * the reference of BI-RADS echogenicity) and does not vanish into it. The band below is left
 * out: attenuation darkens it whatever the tissue. `scratch` holds s * s floats. */
static double surround_echo(const float *e, int s, box b, float *scratch) {
    int m = (b.x1 - b.x0 + b.y1 - b.y0) / 8 + 3;
    const box bands[3] = {{b.x0 - m, b.y0, b.x0 - 1, b.y1},
                          {b.x1 + 1, b.y0, b.x1 + m, b.y1},
                          {b.x0, b.y0 - m, b.x1, b.y0 - 1}};
    size_t n = 0;
    for (int k = 0; k < 3; k++) {
        int x0 = bands[k].x0 < 0 ? 0 : bands[k].x0;
        int x1 = bands[k].x1 > s - 1 ? s - 1 : bands[k].x1;
        int y0 = bands[k].y0 < 0 ? 0 : bands[k].y0;
        int y1 = bands[k].y1 > s - 1 ? s - 1 : bands[k].y1;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) scratch[n++] = e[(size_t)y * s + x];
    }
    if (n == 0) return 0.3;
    qsort(scratch, n, sizeof *scratch, cmp_float);
    return (double)scratch[n / 4];
}

/* Draws lesion `l` into the echogenicity map: the interior (rasterised from the integer outline,
 * so the annotation is the drawn lesion), its margin, and what it does to the tissue below. The
 * lesion looks like class `look`, which is its label except for the ambiguous share. The
 * standard preset draws absolute echogenicities; the hard one draws a hard_look. */
static mr_status draw_lesion(mr_rng *rng, int s, const mr_synth_lesion *l, mr_synth_class look,
                             int hard, canvas *cv) {
    size_t np = (size_t)s * s;
    int benign = look == MR_SYNTH_BENIGN;
    double xs[MAX_OUTLINE], ys[MAX_OUTLINE];
    for (int i = 0; i < l->n_points; i++) xs[i] = l->xs[i], ys[i] = l->ys[i];
    memset(cv->mask, 0, np);
    mr_raster_polygon(cv->mask, s, s, xs, ys, l->n_points, 1);
    box b = lesion_box(l);
    double hgt = b.y1 - b.y0 + 1;
    double sc = s / 256.0; /* blur widths are given for a 256-pixel image */
    hard_look h = {0};
    double around = 0.0;
    if (hard) {
        around = surround_echo(cv->e, s, b, cv->alpha);
        draw_hard_look(rng, benign, (b.x1 - b.x0 + 1) / sc, around, &h);
    }

    /* Interior: benign nearly uniform and dark; malignant darker on average and heterogeneous,
     * sometimes with microcalcifications. */
    double base = hard     ? h.contrast * around
                  : benign ? unif(rng, 0.09, 0.2)
                           : unif(rng, 0.06, 0.16);
    double hetero = hard ? h.hetero : benign ? 0.2 : 1.2;
    MR_TRY(value_noise(rng, s, benign ? 4 : 3 + (int)(s / (hgt / 2.5 + 1.0)), cv->tex));
    for (size_t i = 0; i < np; i++) cv->alpha[i] = cv->mask[i];
    double margin = (hard ? h.margin : benign ? 0.8 : 0.5) * sc;
    MR_TRY(blur(cv->alpha, s, s, margin, margin));
    double capsule = hard                                         ? (benign ? h.rim * around : 0.0)
                     : benign && mr_rng_uniform_double(rng) < 0.6 ? unif(rng, 0.1, 0.3)
                                                                  : 0.0;
    for (size_t i = 0; i < np; i++) {
        double a = cv->alpha[i];
        if (a < 1e-4) continue;
        double inner = base * (1.0 + hetero * ((double)cv->tex[i] - 0.5));
        double v = (double)cv->e[i] * (1.0 - a) + inner * a;
        /* A thin echogenic capsule at the margin; the hard preset keeps it outside the outline,
         * where it would otherwise fill a small lesion's interior. */
        if (!hard || !cv->mask[i]) v += capsule * 4.0 * a * (1.0 - a);
        cv->e[i] = (float)v;
    }
    if (!benign) {
        /* Echogenic halo: a thick bright rim outside the margin. */
        double halo = hard ? 0.6 * h.rim * around : unif(rng, 0.1, 0.25);
        if (halo > 0.0) {
            for (size_t i = 0; i < np; i++) cv->alpha[i] = cv->mask[i];
            MR_TRY(blur(cv->alpha, s, s, 2.5 * sc, 2.5 * sc));
            for (size_t i = 0; i < np; i++)
                if (!cv->mask[i]) cv->e[i] += (float)(2.0 * halo * (double)cv->alpha[i]);
        }
        /* Calcifications: up to six, fewer in a small lesion (hard preset). */
        uint64_t calc_cap = hard ? 1 + (uint64_t)fmin(6.0, (b.x1 - b.x0 + 1) * hgt / 150.0) : 7;
        int n_calc = (int)mr_rng_below(rng, calc_cap);
        for (int k = 0, tries = 0; k < n_calc && tries < 100; tries++) {
            int x = b.x0 + (int)mr_rng_below(rng, (uint64_t)(b.x1 - b.x0 + 1));
            int y = b.y0 + (int)mr_rng_below(rng, (uint64_t)(b.y1 - b.y0 + 1));
            if (!cv->mask[(size_t)y * s + x]) continue;
            cv->e[(size_t)y * s + x] = (float)unif(rng, 0.6, 1.0);
            k++;
        }
    }

    /* Posterior acoustic enhancement (benign) or shadowing (malignant): below each column of the
     * lesion, in proportion to the chord it crosses, rising over a few pixels and fading with
     * depth (a shadow persists deeper than an enhancement). */
    double gain = hard ? h.posterior : benign ? unif(rng, 0.6, 1.0) : -unif(rng, 0.55, 0.8);
    double fade = (benign ? unif(rng, 0.8, 1.5) : unif(rng, 2.0, 4.0)) * hgt;
    if (gain == 0.0) return MR_OK;
    float *weight = cv->re, *bottom = cv->im; /* rows 0 of the speckle buffers, free until then */
    double max_chord = 1.0;
    for (int x = 0; x < s; x++) {
        int chord = 0, bot = -1;
        for (int y = b.y0; y <= b.y1; y++)
            if (cv->mask[(size_t)y * s + x]) chord++, bot = y;
        weight[x] = (float)chord;
        bottom[x] = (float)(bot >= 0 ? bot : b.y1);
        if (chord > max_chord) max_chord = chord;
    }
    for (int x = 0; x < s; x++) weight[x] = (float)((double)weight[x] / max_chord);
    MR_TRY(blur(weight, s, 1, 2.0 * sc, 0.0));
    for (int x = 0; x < s; x++) {
        double w = weight[x];
        if (w < 1e-3) continue;
        for (int y = (int)bottom[x] + 1; y < s; y++) {
            double t = y - (double)bottom[x];
            double f = 1.0 + gain * w * (1.0 - exp(-t / (3.0 * sc))) * exp(-t / fade);
            cv->e[(size_t)y * s + x] *= (float)f;
        }
    }
    return MR_OK;
}

static int boxes_apart(box a, box b, int gap) {
    return a.x1 + gap < b.x0 || b.x1 + gap < a.x0 || a.y1 + gap < b.y0 || b.y1 + gap < a.y0;
}

/* Pixels of the lesion's mask; an outline that rounds to (almost) nothing is no annotation. */
static int64_t lesion_area(const mr_synth_lesion *l, int s, uint8_t *mask) {
    double xs[MAX_OUTLINE], ys[MAX_OUTLINE];
    for (int i = 0; i < l->n_points; i++) xs[i] = l->xs[i], ys[i] = l->ys[i];
    memset(mask, 0, (size_t)s * s);
    return mr_raster_polygon(mask, s, s, xs, ys, l->n_points, 1);
}

/* ---- acquisition (hard preset) --------------------------------------------------------- */

#define TGC_KNOTS 5

/* How one image was acquired: the operator's gain and time-gain-compensation sliders, the
 * tissue's attenuation beyond the average, a near field the TGC left darker or brighter, and
 * sometimes poor probe contact darkening one side. */
typedef struct {
    double gain, attenuation;
    double tgc[TGC_KNOTS]; /* log gain at evenly spaced depths from the skin to the bottom */
    double near_gain, near_depth;
    double contact_loss, contact_width;
    int contact_left;
} scan;

static void draw_scan(mr_rng *rng, scan *sc) {
    sc->gain = unif(rng, 0.7, 1.3);
    sc->attenuation = unif(rng, -0.3, 0.7);
    for (int k = 0; k < TGC_KNOTS; k++) sc->tgc[k] = unif(rng, -0.3, 0.3);
    int near = mr_rng_uniform_double(rng) < 0.5;
    sc->near_gain = near ? unif(rng, 0.45, 1.6) : 1.0;
    sc->near_depth = unif(rng, 0.06, 0.2);
    sc->contact_loss = mr_rng_uniform_double(rng) < 0.15 ? unif(rng, 0.3, 0.7) : 0.0;
    sc->contact_width = unif(rng, 0.05, 0.2);
    sc->contact_left = mr_rng_uniform_double(rng) < 0.5;
}

/* Gain at relative depth d and relative column xf, both in [0, 1). */
static double scan_gain(const scan *sc, double d, double xf) {
    double t = d * (TGC_KNOTS - 1);
    int k = (int)t;
    if (k > TGC_KNOTS - 2) k = TGC_KNOTS - 2;
    double tgc = sc->tgc[k] + (sc->tgc[k + 1] - sc->tgc[k]) * smoothstep01(t - k);
    double g = sc->gain * exp(tgc - sc->attenuation * d);
    g *= 1.0 + (sc->near_gain - 1.0) * (1.0 - smoothstep01(d / sc->near_depth));
    double edge = sc->contact_left ? xf : 1.0 - xf;
    g *= 1.0 - sc->contact_loss * (1.0 - smoothstep01(edge / sc->contact_width));
    return g;
}

void mr_synth_sample_free(mr_synth_sample *smp) {
    mr_image_free(&smp->image);
    for (int i = 0; i < MR_SYNTH_MAX_LESIONS; i++) {
        free(smp->lesions[i].xs);
        free(smp->lesions[i].ys);
    }
    memset(smp, 0, sizeof *smp);
}

static mr_status generate(const mr_synth_options *o, int64_t index, mr_synth_sample *out,
                          canvas *cv) {
    int s = o->size;
    size_t np = (size_t)s * s;
    mr_rng rng;
    stream_seed(&rng, o->seed, (uint64_t)index, 1);

    /* What this image shows: drawn first so the tissue draws never shift the class choice. Each
     * further lesion comes with the same chance, up to max_lesions. */
    int hard = o->preset == MR_SYNTH_HARD;
    int normal = mr_rng_uniform_double(&rng) < o->normal_fraction;
    mr_synth_class cls =
        mr_rng_uniform_double(&rng) < o->malignant_fraction ? MR_SYNTH_MALIGNANT : MR_SYNTH_BENIGN;
    int want = normal ? 0 : 1;
    while (want > 0 && want < o->max_lesions &&
           mr_rng_uniform_double(&rng) < o->two_lesion_fraction)
        want++;

    MR_TRY(draw_tissue(&rng, s, cv->e, cv->re));

    mr_synth_class look[MR_SYNTH_MAX_LESIONS];
    for (int k = 0; k < want; k++) {
        /* Standard: a further lesion is smaller and the same kind (multifocal disease). Hard:
         * each lesion draws its own kind, and widths are log-uniform, so small lesions are
         * common. Every lesion keeps apart from the others; one that cannot be placed ends the
         * list. An ambiguous lesion looks like the other class but keeps its label. */
        mr_synth_class label = cls;
        if (hard && k > 0)
            label = mr_rng_uniform_double(&rng) < o->malignant_fraction ? MR_SYNTH_MALIGNANT
                                                                        : MR_SYNTH_BENIGN;
        look[k] = label;
        if (o->ambiguous_fraction > 0.0 && mr_rng_uniform_double(&rng) < o->ambiguous_fraction)
            look[k] = label == MR_SYNTH_BENIGN ? MR_SYNTH_MALIGNANT : MR_SYNTH_BENIGN;
        double hi = k == 0 ? o->lesion_max : 0.5 * (o->lesion_min + o->lesion_max);
        outline ol;
        double cx = 0, cy = 0;
        int placed = 0;
        for (int tries = 0; tries < 30 && !placed; tries++) {
            double width = hard ? o->lesion_min * pow(o->lesion_max / o->lesion_min,
                                                      mr_rng_uniform_double(&rng))
                                : unif(&rng, o->lesion_min, hi);
            make_outline(&rng, look[k], fmax(MR_SYNTH_MIN_LESION_PX, width * s), s, hard, &ol);
            ol.cls = label;
            if (!place(&rng, &ol, s, hard, &cx, &cy)) continue;
            mr_synth_lesion *l = &out->lesions[out->n_lesions];
            MR_TRY(finish_lesion(&ol, cx, cy, s, l));
            placed = l->n_points >= 3;
            for (int j = 0; j < k && placed; j++)
                placed = boxes_apart(lesion_box(l), lesion_box(&out->lesions[j]), 6 * s / 256);
            if (placed) placed = lesion_area(l, s, cv->mask) >= 4;
            if (!placed) {
                free(l->xs);
                free(l->ys);
                l->xs = l->ys = NULL;
            }
        }
        if (!placed) break;
        out->n_lesions++;
    }
    for (int k = 0; k < out->n_lesions; k++)
        MR_TRY(draw_lesion(&rng, s, &out->lesions[k], look[k], hard, cv));
    if (hard) {
        scan acq;
        draw_scan(&rng, &acq);
        for (int y = 0; y < s; y++)
            for (int x = 0; x < s; x++)
                cv->e[(size_t)y * s + x] *= (float)scan_gain(&acq, (double)y / s, (double)x / s);
    }

    /* Fully developed speckle: a complex Gaussian field blurred to the resolution cell (wider
     * laterally than axially), its magnitude Rayleigh; multiplicative on the echogenicity. */
    double sc = s / 256.0;
    double sx = (hard ? unif(&rng, 0.8, 2.0) : unif(&rng, 1.0, 1.6)) * sc;
    double sy = (hard ? unif(&rng, 0.5, 1.1) : unif(&rng, 0.6, 0.9)) * sc;
    double gain = hard ? 1.0 : unif(&rng, 0.9, 1.05); /* hard: in the scan's gain */
    /* Compression and electronic noise differ between scanners and settings. */
    double e_power = hard ? unif(&rng, 0.7, 0.9) : 0.8;
    double r_power = hard ? unif(&rng, 0.55, 0.8) : 0.7;
    double noise = hard ? unif(&rng, 0.004, 0.02) : 0.008;
    for (size_t i = 0; i < np; i++) {
        cv->re[i] = mr_rng_normal(&rng);
        cv->im[i] = mr_rng_normal(&rng);
    }
    MR_TRY(blur(cv->re, s, s, sx, sy));
    MR_TRY(blur(cv->im, s, s, sx, sy));
    double mean = 0.0;
    for (size_t i = 0; i < np; i++) {
        double re = cv->re[i], im = cv->im[i];
        cv->alpha[i] = (float)sqrt(re * re + im * im);
        mean += (double)cv->alpha[i];
    }
    mean /= (double)np;
    /* Scanners smooth the envelope (speckle reduction); without it the dark valleys between
     * speckle grains read as a web of thin lines. */
    MR_TRY(blur(cv->alpha, s, s, 0.5 * sc, 0.5 * sc));
    MR_TRY(mr_image_alloc(&out->image, s, s, 1));
    for (size_t i = 0; i < np; i++) {
        /* Compression: echogenicity and speckle through separate power laws, as a scanner's
         * log compression plus compounding leave speckle at lower contrast than the raw
         * Rayleigh envelope; plus a little electronic noise. */
        double e = cv->e[i] > 0.0f ? (double)cv->e[i] : 0.0;
        double r = 0.3 + 0.7 * (double)cv->alpha[i] / mean; /* floor: compounding fills zeros */
        double g = gain * pow(e, e_power) * pow(r, r_power) + noise * (double)mr_rng_normal(&rng);
        long q = lround(255.0 * g);
        out->image.pixels[i] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
    return MR_OK;
}

static void canvas_free(canvas *cv) {
    free(cv->e);
    free(cv->alpha);
    free(cv->tex);
    free(cv->re);
    free(cv->im);
    free(cv->mask);
}

static mr_status canvas_alloc(canvas *cv, int s) {
    size_t np = (size_t)s * s;
    memset(cv, 0, sizeof *cv);
    cv->e = malloc(np * sizeof(float));
    cv->alpha = malloc(np * sizeof(float));
    cv->tex = malloc(np * sizeof(float));
    cv->re = malloc(2 * np * sizeof(float)); /* draw_tissue uses two planes of it */
    cv->im = malloc(np * sizeof(float));
    cv->mask = malloc(np);
    if (!cv->e || !cv->alpha || !cv->tex || !cv->re || !cv->im || !cv->mask) {
        canvas_free(cv);
        return mr_fail(MR_ERR_NOMEM, "out of memory for a %dx%d image", s, s);
    }
    return MR_OK;
}

mr_status mr_synth_generate(const mr_synth_options *o, int64_t index, mr_synth_sample *out) {
    memset(out, 0, sizeof *out);
    MR_TRY(check_options(o, 0));
    canvas cv;
    MR_TRY(canvas_alloc(&cv, o->size));
    mr_status st = generate(o, index, out, &cv);
    canvas_free(&cv);
    if (st != MR_OK) mr_synth_sample_free(out);
    return st;
}

/* ---- writing a set --------------------------------------------------------------------- */

static const char *class_name(mr_synth_class c) {
    return c == MR_SYNTH_MALIGNANT ? "malignant" : "benign";
}

mr_status mr_synth_write_summary(const mr_synth_options *o, mr_synth_summary *summary) {
    MR_TRY(check_options(o, 1));
    mr_synth_summary sum = {0};
    char dirs[2][4096], path[2 * 4096 + 64]; /* room for dir + '/' + name: no truncation */
    if (strlen(o->out_dir) > 4000)
        return mr_fail(MR_ERR_ARG, "output path too long: %.80s...", o->out_dir);
    static const char *split_names[2] = {"train", "val"};
    for (int k = 0; k < 2; k++) {
        if (snprintf(dirs[k], sizeof dirs[k], "%s/%s", o->out_dir, split_names[k]) >=
            (int)sizeof dirs[k])
            return mr_fail(MR_ERR_ARG, "output path too long: %.80s...", o->out_dir);
        MR_TRY(mr_make_dirs(dirs[k]));
    }

    /* Which images go to val: an exact count, chosen by a seeded shuffle. At least one val
     * image whenever a fraction is asked for and there are two images to split. */
    int n = o->n_images;
    int64_t *order = malloc((size_t)n * sizeof *order);
    unsigned char *is_val = calloc((size_t)n, 1);
    mr_via_writer *w[2] = {mr_via_writer_new(), mr_via_writer_new()};
    canvas cv = {0};
    mr_status st = MR_OK;
    if (!order || !is_val || !w[0] || !w[1]) {
        st = mr_fail(MR_ERR_NOMEM, "out of memory for %d images", n);
        goto out;
    }
    int n_val = (int)llround(n * o->val_fraction);
    if (o->val_fraction > 0.0 && n >= 2 && n_val == 0) n_val = 1;
    if (n_val > n - 1) n_val = n - 1;
    for (int i = 0; i < n; i++) order[i] = i;
    mr_rng split_rng;
    stream_seed(&split_rng, o->seed, 0, 2);
    mr_rng_shuffle_i64(&split_rng, order, n);
    for (int i = 0; i < n_val; i++) is_val[order[i]] = 1;

    if ((st = canvas_alloc(&cv, o->size)) != MR_OK) goto out;
    for (int i = 0; i < n; i++) {
        mr_synth_sample smp = {0};
        if ((st = generate(o, i, &smp, &cv)) != MR_OK) {
            mr_synth_sample_free(&smp);
            goto out;
        }
        int k = is_val[i];
        char name[32];
        snprintf(name, sizeof name, "synth_%05d.png", i);
        snprintf(path, sizeof path, "%s/%s", dirs[k], name);
        struct stat sb;
        st = mr_image_write_png(path, &smp.image);
        if (st == MR_OK && stat(path, &sb) != 0)
            st = mr_fail(MR_ERR_IO, "%s: written but cannot stat: %s", path, strerror(errno));
        if (st == MR_OK)
            st = mr_via_writer_add_image(w[k], name, (int64_t)sb.st_size,
                                         smp.n_lesions ? NULL : "normal");
        for (int j = 0; j < smp.n_lesions && st == MR_OK; j++) {
            const mr_synth_lesion *l = &smp.lesions[j];
            st = mr_via_writer_add_polygon(w[k], l->xs, l->ys, l->n_points, class_name(l->cls));
            box b = lesion_box(l);
            int width = b.x1 - b.x0 + 1;
            if (sum.lesion_width_max == 0 || width < sum.lesion_width_min)
                sum.lesion_width_min = width;
            if (width > sum.lesion_width_max) sum.lesion_width_max = width;
            if (l->cls == MR_SYNTH_MALIGNANT)
                sum.malignant_lesions++;
            else
                sum.benign_lesions++;
        }
        if (smp.n_lesions == 0)
            sum.normal_images++;
        else if (smp.lesions[0].cls == MR_SYNTH_MALIGNANT)
            sum.malignant_images++;
        else
            sum.benign_images++;
        if (k)
            sum.val_images++;
        else
            sum.train_images++;
        mr_synth_sample_free(&smp);
        if (st != MR_OK) goto out;
    }
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/via_region_data.json", dirs[k]);
        if ((st = mr_via_writer_save(w[k], path)) != MR_OK) goto out;
    }
    if (summary) *summary = sum;
out:
    canvas_free(&cv);
    mr_via_writer_free(w[0]);
    mr_via_writer_free(w[1]);
    free(order);
    free(is_val);
    return st;
}

mr_status mr_synth_write(const mr_synth_options *o) {
    return mr_synth_write_summary(o, NULL);
}
