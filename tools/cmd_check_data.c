/* `mrcnn check-data`: loads annotations and image headers the way training will and prints the
 * counts, instances per class, box sizes and every problem found, one line each, so bad data
 * fails here and not at hour 9. Exits 1 when any error was found, 2 on bad arguments. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/annotations.h"
#include "cli.h"

/* Just CLASS_NAMES and CLASS_ATTRIBUTE from a JSON config; the config module owns the rest. */
typedef struct {
    cJSON *doc;
    const char **classes;
    int n_classes;
    const char *attribute;
} mini_config;

static mr_status read_config(const char *path, mini_config *c) {
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) return mr_fail(MR_ERR_IO, "%s: cannot open config", path);
    size_t cap = 4096, n = 0;
    char *text = malloc(cap + 1);
    while (text) {
        n += fread(text + n, 1, cap - n, f);
        if (n < cap) break;
        char *grown = realloc(text, cap * 2 + 1);
        if (!grown) free(text);
        text = grown;
        cap *= 2;
    }
    fclose(f);
    if (!text) return mr_fail(MR_ERR_NOMEM, "%s: out of memory", path);
    text[n] = '\0';
    const char *end = NULL;
    c->doc = cJSON_ParseWithOpts(text, &end, 1);
    if (!c->doc) {
        long line = 1, col = 1;
        for (const char *p = text; end && p < end && *p; p++, col++)
            if (*p == '\n') line++, col = 0;
        free(text);
        return mr_fail(MR_ERR_CONFIG, "%s:%ld:%ld: malformed JSON at line %ld, column %ld", path,
                       line, col, line, col);
    }
    free(text);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(c->doc, "CLASS_NAMES");
    const cJSON *attr = cJSON_GetObjectItemCaseSensitive(c->doc, "CLASS_ATTRIBUTE");
    if (!cJSON_IsObject(c->doc))
        return mr_fail(MR_ERR_CONFIG, "%s: expected a JSON object of config keys", path);
    if (names) {
        if (!cJSON_IsArray(names))
            return mr_fail(MR_ERR_CONFIG, "%s: CLASS_NAMES must be a list of strings", path);
        int k = cJSON_GetArraySize(names);
        c->classes = calloc((size_t)(k ? k : 1), sizeof *c->classes);
        if (!c->classes) return mr_fail(MR_ERR_NOMEM, "out of memory");
        for (const cJSON *it = names->child; it; it = it->next) {
            if (!cJSON_IsString(it))
                return mr_fail(MR_ERR_CONFIG, "%s: CLASS_NAMES item %d is not a string", path,
                               c->n_classes);
            c->classes[c->n_classes++] = it->valuestring;
        }
    }
    if (attr) {
        if (!cJSON_IsString(attr))
            return mr_fail(MR_ERR_CONFIG, "%s: CLASS_ATTRIBUTE must be a string", path);
        c->attribute = attr->valuestring;
    }
    return MR_OK;
}

static void free_config(mini_config *c) {
    cJSON_Delete(c->doc);
    free((void *)c->classes);
    memset(c, 0, sizeof *c);
}

/* "a,b , c" -> {"a", "b", "c"}, in place. */
static int split_classes(char *list, const char ***out) {
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    const char **v = calloc((size_t)n, sizeof *v);
    if (!v) return -1;
    int k = 0;
    for (char *tok = list; tok;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = '\0';
        while (*tok == ' ') tok++;
        size_t l = strlen(tok);
        while (l && tok[l - 1] == ' ') tok[--l] = '\0';
        if (*tok) v[k++] = tok;
        tok = comma ? comma + 1 : NULL;
    }
    *out = v;
    return k;
}

static void print_report(const mr_annotations *a) {
    const mr_report *r = &a->report;
    printf("data: %s (%s)\n", a->source ? a->source : "?", mr_ann_format_name(a->format));
    if (a->attributes_path) printf("attributes: %s\n", a->attributes_path);
    if (a->single_class) {
        printf("classes: single class (every region is class 1)\n");
    } else {
        printf("classes:");
        for (int i = 0; i < a->n_classes; i++) printf("%s %s", i ? "," : "", a->class_names[i]);
        printf("\n");
    }

    int64_t n_inst = 0, labelled = 0;
    int64_t *per_class = calloc((size_t)a->n_classes, sizeof *per_class);
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
           "file-level, %lld other; %lld degenerate; %lld rejected by errors\n",
           (long long)r->n_regions, (long long)r->n_skipped_point, (long long)r->n_skipped_polyline,
           (long long)r->n_skipped_temporal, (long long)r->n_skipped_other,
           (long long)r->n_degenerate, (long long)r->n_rejected);
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
    const char *data = NULL, *config = NULL, *classes = NULL, *attribute = NULL, *images = NULL;
    const char *attributes = NULL;
    bool no_images = false;
    const mr_opt opts[] = {
        {"--data", MR_OPT_STRING, &data, "annotation file or folder (VIA JSON/CSV, VIA 3, COCO)"},
        {"--config", MR_OPT_STRING, &config, "JSON config: CLASS_NAMES and CLASS_ATTRIBUTE"},
        {"--classes", MR_OPT_STRING, &classes, "class names, comma-separated (default: 1 class)"},
        {"--attribute", MR_OPT_STRING, &attribute, "region attribute holding the class"},
        {"--images", MR_OPT_STRING, &images, "image folder (default: the annotation's folder)"},
        {"--attributes", MR_OPT_STRING, &attributes, "VIA attribute definitions (option labels)"},
        {"--allow-missing-images", MR_OPT_FLAG, &no_images,
         "missing image files are not errors (sizes stay unknown)"},
    };
    int code = 0;
    if (!mr_parse_args("check-data", "--data PATH [options]", argc, argv, opts,
                       (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!data) {
        fprintf(stderr,
                "mrcnn check-data: --data PATH is required (see mrcnn check-data --help)\n");
        return 2;
    }
    mini_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (config) {
        mr_status st = read_config(config, &cfg);
        if (st != MR_OK) {
            free_config(&cfg);
            return mr_exit_code(st);
        }
    }
    mr_load_options opt;
    memset(&opt, 0, sizeof opt);
    opt.class_names = cfg.classes;
    opt.n_class_names = cfg.n_classes;
    opt.class_attribute = attribute ? attribute : cfg.attribute;
    opt.image_root = images;
    opt.attributes_path = attributes;
    opt.allow_missing_images = no_images;
    char *class_copy = NULL;
    const char **class_list = NULL;
    if (classes) {
        class_copy = malloc(strlen(classes) + 1);
        int n =
            class_copy ? (strcpy(class_copy, classes), split_classes(class_copy, &class_list)) : -1;
        if (n < 0) {
            free(class_copy);
            free_config(&cfg);
            return mr_exit_code(mr_fail(MR_ERR_NOMEM, "out of memory"));
        }
        opt.class_names = class_list;
        opt.n_class_names = n;
    }
    mr_annotations a;
    mr_status st = mr_annotations_load(data, &opt, &a);
    /* A fatal error (unreadable or malformed file) has no report worth printing. */
    if (st == MR_OK || a.report.n_errors > 0) print_report(&a);
    fflush(stdout);
    mr_annotations_free(&a);
    free((void *)class_list);
    free(class_copy);
    free_config(&cfg);
    return mr_exit_code(st);
}
