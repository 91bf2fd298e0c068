/* `mrcnn synth`: writes a synthetic breast-ultrasound set (PNG + VIA 2.x JSON in train/ and
 * val/) through data/synth.h and prints what it wrote. --preset picks the defaults and the way
 * images are drawn; the individual options given explicitly override the preset's values. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../data/synth.h"
#include "cli.h"

/* True when `dir` exists and holds anything; `first` gets one of its entries for the message.
 * A folder that does not exist yet, or cannot be listed, is left to the writer to report. */
static bool folder_has_entries(const char *dir, char *first, size_t size) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(first, size, "%s", e->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

int cmd_synth(int argc, char **argv) {
    mr_synth_options o;
    mr_synth_defaults(&o);
    const char *out = NULL, *preset = "standard";
    long images = o.n_images, seed = (long)o.seed, size = o.size, max_lesions = LONG_MIN;
    /* NaN and LONG_MIN: not given, so the preset's value stands. */
    double val = o.val_fraction, lmin = NAN, lmax = NAN, normal = NAN, malignant = NAN;
    const mr_opt opts[] = {
        {"--out", MR_OPT_PATH, &out,
         "new or empty output folder; train/ and val/ are created in it"},
        {"--images", MR_OPT_INT, &images, "number of images over train and val (100)"},
        {"--seed", MR_OPT_INT, &seed, "random seed; the same seed writes the same bytes (1)"},
        {"--preset", MR_OPT_STRING, &preset,
         "standard, or hard: small, faint, several lesions, varied gain (standard)"},
        {"--size", MR_OPT_INT, &size, "image width and height in pixels (256)"},
        {"--val-fraction", MR_OPT_DOUBLE, &val, "share of images written to val/ (0.2)"},
        {"--lesion-min", MR_OPT_DOUBLE, &lmin,
         "smallest lesion width / image width (standard 0.15, hard 0.03)"},
        {"--lesion-max", MR_OPT_DOUBLE, &lmax, "largest lesion width / image width (0.35)"},
        {"--normal-fraction", MR_OPT_DOUBLE, &normal,
         "share of images without a lesion (standard 0.2, hard 0.15)"},
        {"--malignant-fraction", MR_OPT_DOUBLE, &malignant, "malignant share of lesions (0.4)"},
        {"--max-lesions", MR_OPT_INT, &max_lesions,
         "most lesions in one image, 1 to 3 (standard 2, hard 3)"},
    };
    static const mr_cli_help help = {
        "synth", "--out DIR [--images N] [--seed S] [--preset standard|hard] [--size PX] [options]",
        "mrcnn synth --out synth\n"
        "mrcnn synth --out synth-hard --images 400 --seed 7 --preset hard\n"
        "mrcnn synth --out small --images 20 --size 128 --val-fraction 0.25\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!out) return mr_cli_missing("--out DIR is required");
    mr_synth_preset p;
    if (!mr_synth_preset_from_name(preset, &p)) {
        fprintf(stderr, "mrcnn synth: --preset must be standard or hard, got '%s'\n", preset);
        return 2;
    }
    if (images < 1 || images > 10000000 || size < 1 || size > 100000 || seed < 0) {
        fprintf(stderr, "mrcnn synth: --images must be in [1, 10000000], --size positive and "
                        "--seed non-negative\n");
        return 2;
    }
    if (max_lesions != LONG_MIN && (max_lesions < 1 || max_lesions > MR_SYNTH_MAX_LESIONS)) {
        fprintf(stderr, "mrcnn synth: --max-lesions must be in [1, %d], got %ld\n",
                MR_SYNTH_MAX_LESIONS, max_lesions);
        return 2;
    }
    /* synth writes a whole data set: into a folder already holding one it would replace the
     * annotation files and leave the old images beside them unannotated, or mix two sets. */
    char first[256];
    if (folder_has_entries(out, first, sizeof first)) {
        fprintf(stderr,
                "mrcnn synth: %s is not empty (it holds '%s'); give a new or empty folder, "
                "nothing was written\n",
                out, first);
        return 2;
    }
    mr_synth_preset_defaults(&o, p);
    o.out_dir = out;
    o.n_images = (int)images;
    o.seed = (uint64_t)seed;
    o.size = (int)size;
    o.val_fraction = val;
    if (!isnan(lmin)) o.lesion_min = lmin;
    if (!isnan(lmax)) o.lesion_max = lmax;
    if (!isnan(normal)) o.normal_fraction = normal;
    if (!isnan(malignant)) o.malignant_fraction = malignant;
    if (max_lesions != LONG_MIN) o.max_lesions = (int)max_lesions;
    mr_synth_summary s;
    mr_status st = mr_synth_write_summary(&o, &s);
    if (st != MR_OK) return mr_exit_code(st);
    printf("synth: wrote %d images of %dx%d px (seed %lu, preset %s) to %s\n", o.n_images, o.size,
           o.size, (unsigned long)o.seed, mr_synth_preset_name(p), out);
    printf("  train %d, val %d\n", s.train_images, s.val_images);
    printf("  benign %d images (%d lesions), malignant %d images (%d lesions), normal %d images\n",
           s.benign_images, s.benign_lesions, s.malignant_images, s.malignant_lesions,
           s.normal_images);
    if (s.lesion_width_max > 0)
        printf("  lesion widths %d to %d px\n", s.lesion_width_min, s.lesion_width_max);
    printf("  annotations: %s/train/via_region_data.json, %s/val/via_region_data.json\n", out, out);
    return 0;
}
