/* `mrcnn check-data`: loads the data the way `train` will (the same config rules, the same
 * --data resolution, every image decoded) and prints, for each annotation set, the counts, the
 * kinds of image file, instances per class, box sizes and every problem found, repeated ones
 * grouped; so bad data fails here and not at hour 9. Exits 1 when any error was found (train
 * would refuse the data), 2 on bad arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/config.h"
#include "../train/data_source.h"
#include "cli.h"

/* "a,b , c" -> cfg CLASS_NAMES {"BG", "a", "b", "c"} (a leading "BG" is optional). */
static mr_status set_classes(mr_config *cfg, const char *list) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 1;
    for (char *tok = buf; tok;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = '\0';
        while (*tok == ' ') tok++;
        size_t l = strlen(tok);
        while (l && tok[l - 1] == ' ') tok[--l] = '\0';
        if (*tok && !(n == 1 && !strcmp(tok, "BG"))) {
            if (n >= MR_MAX_CLASSES)
                return mr_fail(MR_ERR_ARG, "--classes lists more than %d classes",
                               MR_MAX_CLASSES - 1);
            if (l >= sizeof cfg->class_names[n])
                return mr_fail(MR_ERR_ARG, "--classes: '%s' is longer than %zu characters", tok,
                               sizeof cfg->class_names[n] - 1);
            memcpy(cfg->class_names[n++], tok, l + 1); /* fits: checked above */
        }
        tok = comma ? comma + 1 : NULL;
    }
    if (n < 2) return mr_fail(MR_ERR_ARG, "--classes lists no class");
    cfg->net.num_classes = n;
    return MR_OK;
}

static void print_kinds(const mr_report *r, int channels) {
    if (!r->n_kinds) return;
    printf("image files:");
    for (int k = 0; k < r->n_kinds; k++) {
        char kind[400];
        mr_data_describe_kind(&r->kinds[k], channels, kind, sizeof kind);
        printf("%s %lld image%s: %s", k ? ";" : "", (long long)r->kinds[k].count,
               r->kinds[k].count == 1 ? "" : "s", kind);
    }
    printf("\n");
}

static void print_set(const mr_data_check_set *s, const mr_config *cfg, bool split) {
    const mr_annotations *a = &s->ann;
    const mr_report *r = &a->report;
    printf("%s data: %s (%s)\n", s->role, a->source ? a->source : "?",
           mr_ann_format_name(a->format));
    if (a->attributes_path) printf("attributes: %s\n", a->attributes_path);
    if (r->images_note) printf("images found: %s\n", r->images_note);
    if (a->single_class) {
        printf("classes: single class (every region is class 1)\n");
    } else {
        printf("classes:");
        for (int i = 0; i < a->n_classes; i++) printf("%s %s", i ? "," : "", a->class_names[i]);
        printf("\n");
    }

    int64_t n_inst = 0, labelled = 0;
    int64_t *per_class = calloc((size_t)a->n_classes + 1, sizeof *per_class);
    double wmin = 0, wmax = 0, hmin = 0, hmax = 0;
    bool any = false;
    for (int64_t i = 0; i < a->n; i++) {
        const mr_image_record *rec = &a->records[i];
        labelled += rec->image_label_name != NULL;
        for (int64_t k = 0; k < rec->n_instances; k++) {
            const mr_instance *inst = &rec->instances[k];
            double box[4];
            mr_annotations_bbox(inst, box);
            double w = box[3] - box[1], h = box[2] - box[0];
            if (!any || w < wmin) wmin = w;
            if (!any || w > wmax) wmax = w;
            if (!any || h < hmin) hmin = h;
            if (!any || h > hmax) hmax = h;
            any = true;
            n_inst++;
            if (per_class && inst->class_id >= 0 && inst->class_id < a->n_classes)
                per_class[inst->class_id]++;
        }
    }
    printf("images: %lld (%lld negatives without instances, %lld with an image-level label)\n",
           (long long)a->n, (long long)r->n_negatives, (long long)labelled);
    print_kinds(r, cfg->net.image_channels);
    if (split)
        printf("split: %lld for training, %lld held out for validation (seeded by SEED %llu, "
               "VALIDATION_SPLIT %g; the same images train holds out)\n",
               (long long)s->n_train, (long long)s->n_val, (unsigned long long)cfg->seed,
               (double)cfg->validation_split);
    printf("instances: %lld\n", (long long)n_inst);
    for (int c = 1; per_class && c < a->n_classes; c++)
        printf("  %-20s %lld\n", a->class_names[c], (long long)per_class[c]);
    free(per_class);
    /* Image-level labels ("normal" for BUSI negatives), counted by text. */
    const char *labels[16];
    int64_t counts[16];
    int n_labels = 0;
    for (int64_t i = 0; i < a->n; i++) {
        const char *l = a->records[i].image_label_name;
        if (!l) continue;
        int k = 0;
        while (k < n_labels && strcmp(labels[k], l)) k++;
        if (k == n_labels && n_labels < 16) labels[n_labels] = l, counts[n_labels++] = 0;
        if (k < n_labels) counts[k]++;
    }
    if (n_labels) {
        printf("image labels:");
        for (int k = 0; k < n_labels; k++)
            printf("%s %s %lld", k ? "," : "", labels[k], (long long)counts[k]);
        printf("\n");
    }
    if (any)
        printf("box size: width %.1f-%.1f px, height %.1f-%.1f px\n", wmin, wmax, hmin, hmax);
    else
        printf("box size: no instances\n");
    printf("regions: %lld seen; skipped %lld points, %lld polylines/lines, %lld temporal or "
           "file-level, %lld other; %lld degenerate; %lld wholly outside their image; %lld "
           "rejected by errors\n",
           (long long)r->n_regions, (long long)r->n_skipped_point, (long long)r->n_skipped_polyline,
           (long long)r->n_skipped_temporal, (long long)r->n_skipped_other,
           (long long)r->n_degenerate, (long long)r->n_outside, (long long)r->n_rejected);
    printf("clipped: %lld points in %lld regions reaching outside their image\n",
           (long long)r->n_clipped_points, (long long)r->n_clipped_regions);
    printf("problems: %lld errors, %lld warnings\n", (long long)r->n_errors,
           (long long)r->n_warnings);
    for (int64_t i = 0; i < r->n_issues; i++)
        printf("%s: %s\n", r->issues[i].level == MR_ISSUE_ERROR ? "error" : "warning",
               r->issues[i].text);
    if (r->n_issues_dropped)
        printf("(%lld more problems not listed)\n", (long long)r->n_issues_dropped);
}

int cmd_check_data(int argc, char **argv) {
    mr_cli_data d = MR_CLI_DATA_INIT;
    const char *config = NULL, *classes = NULL, *attribute = NULL, *images = NULL;
    const char *attributes = NULL;
    bool no_images = false;
    const mr_opt opts[] = {
        MR_CLI_DATA_OPTS(d),
        {"--config", MR_OPT_STRING, &config,
         "the training config: its classes, DATASET, IMAGE_ROOT and image rules apply"},
        {"--classes", MR_OPT_STRING, &classes,
         "class names, comma-separated (overrides CLASS_NAMES; default: 1 class)"},
        {"--attribute", MR_OPT_STRING, &attribute,
         "region attribute holding the class (overrides CLASS_ATTRIBUTE)"},
        {"--images", MR_OPT_STRING, &images, "the same as --image-root (its older name)"},
        {"--attributes", MR_OPT_STRING, &attributes, "VIA attribute definitions (option labels)"},
        {"--allow-missing-images", MR_OPT_FLAG, &no_images,
         "missing image files are not errors (sizes stay unknown; train would refuse them)"},
    };
    int code = 0;
    if (!mr_parse_args("check-data", "--data PATH [--config C] [options]", argc, argv, opts,
                       (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!d.data && !config) {
        fprintf(stderr, "mrcnn check-data: --data PATH or a --config with DATASET is required "
                        "(see mrcnn check-data --help)\n");
        return 2;
    }
    if (!d.image_root) d.image_root = images;

    mr_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return mr_exit_code(mr_fail(MR_ERR_NOMEM, "out of memory"));
    mr_config_defaults(cfg);
    mr_status st = config ? mr_config_load(config, cfg) : MR_OK;
    if (st == MR_OK && classes) st = set_classes(cfg, classes);
    if (st == MR_OK && attribute)
        snprintf(cfg->class_attribute, sizeof cfg->class_attribute, "%s", attribute);
    const mr_data_args args = mr_cli_data_args(&d);
    if (st == MR_OK) st = mr_data_resolve(cfg, &args);
    if (st != MR_OK) {
        free(cfg);
        return mr_exit_code(st);
    }

    const mr_dataset_extra extra = {.attributes_path = attributes,
                                    .allow_missing_images = no_images};
    mr_data_check chk;
    st = mr_data_check_load(cfg, &extra, &chk);
    int64_t errors = 0, warnings = 0;
    for (int i = 0; i < chk.n_sets; i++) {
        const mr_data_check_set *s = &chk.sets[i];
        errors += s->ann.report.n_errors;
        warnings += s->ann.report.n_warnings;
        /* A fatal error (an unreadable or malformed file, a config that cannot match any
         * label) has no report worth printing: its one line comes last. */
        if (s->status != MR_OK && s->ann.report.n_errors == 0) continue;
        if (i) printf("\n");
        print_set(s, cfg, chk.n_sets == 1);
    }
    if (st == MR_OK)
        printf("\nverdict: train will accept this data (%lld warning%s)\n", (long long)warnings,
               warnings == 1 ? "" : "s");
    else if (errors)
        printf("\nverdict: %lld error%s; train would stop on %s\n", (long long)errors,
               errors == 1 ? "" : "s", errors == 1 ? "it" : "them");
    else
        printf("\nverdict: train would stop on the error below\n");
    fflush(stdout);
    mr_data_check_free(&chk);
    free(cfg);
    return mr_exit_code(st);
}
