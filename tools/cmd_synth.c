/* `mrcnn synth`: writes a synthetic breast-ultrasound set (PNG + VIA 2.x JSON in train/ and
 * val/) through data/synth.h and prints what it wrote. */
#include <stdio.h>

#include "../data/synth.h"
#include "cli.h"

int cmd_synth(int argc, char **argv) {
    mr_synth_options o;
    mr_synth_defaults(&o);
    const char *out = NULL;
    long images = o.n_images, seed = (long)o.seed, size = o.size;
    double val = o.val_fraction, lmin = o.lesion_min, lmax = o.lesion_max;
    double normal = o.normal_fraction, malignant = o.malignant_fraction;
    const mr_opt opts[] = {
        {"--out", MR_OPT_STRING, &out, "output folder; train/ and val/ are created in it"},
        {"--images", MR_OPT_INT, &images, "number of images over train and val (100)"},
        {"--seed", MR_OPT_INT, &seed, "random seed; the same seed writes the same bytes (1)"},
        {"--size", MR_OPT_INT, &size, "image width and height in pixels (256)"},
        {"--val-fraction", MR_OPT_DOUBLE, &val, "share of images written to val/ (0.2)"},
        {"--lesion-min", MR_OPT_DOUBLE, &lmin, "smallest lesion width / image width (0.15)"},
        {"--lesion-max", MR_OPT_DOUBLE, &lmax, "largest lesion width / image width (0.35)"},
        {"--normal-fraction", MR_OPT_DOUBLE, &normal, "share of images without a lesion (0.2)"},
        {"--malignant-fraction", MR_OPT_DOUBLE, &malignant,
         "malignant share of the images with a lesion (0.4)"},
    };
    int code = 0;
    if (!mr_parse_args("synth", "--out DIR --images N --seed S [options]", argc, argv, opts,
                       (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!out) {
        fprintf(stderr, "mrcnn synth: --out DIR is required (see mrcnn synth --help)\n");
        return 2;
    }
    if (images < 1 || images > 10000000 || size < 1 || size > 100000 || seed < 0) {
        fprintf(stderr, "mrcnn synth: --images must be in [1, 10000000], --size positive and "
                        "--seed non-negative\n");
        return 2;
    }
    o.out_dir = out;
    o.n_images = (int)images;
    o.seed = (uint64_t)seed;
    o.size = (int)size;
    o.val_fraction = val;
    o.lesion_min = lmin;
    o.lesion_max = lmax;
    o.normal_fraction = normal;
    o.malignant_fraction = malignant;
    mr_synth_summary s;
    mr_status st = mr_synth_write_summary(&o, &s);
    if (st != MR_OK) return mr_exit_code(st);
    printf("synth: wrote %d images of %dx%d px (seed %lu) to %s\n", o.n_images, o.size, o.size,
           (unsigned long)o.seed, out);
    printf("  train %d, val %d\n", s.train_images, s.val_images);
    printf("  benign %d images (%d lesions), malignant %d images (%d lesions), normal %d images\n",
           s.benign_images, s.benign_lesions, s.malignant_images, s.malignant_lesions,
           s.normal_images);
    printf("  annotations: %s/train/via_region_data.json, %s/val/via_region_data.json\n", out, out);
    return 0;
}
