/* The shared option parser for every verb and the status -> exit code rule. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_usage(FILE *out, const char *verb, const char *usage, const mr_opt *opts,
                        int n_opts) {
    fprintf(out, "usage: mrcnn %s %s\n", verb, usage);
    for (int i = 0; i < n_opts; i++) fprintf(out, "  %-18s %s\n", opts[i].name, opts[i].help);
}

static bool push(mr_str_list *list, const char *item) {
    const char **grown = realloc((void *)list->items, sizeof *grown * (size_t)(list->count + 1));
    if (!grown) return false;
    grown[list->count++] = item;
    list->items = grown;
    return true;
}

bool mr_parse_args(const char *verb, const char *usage, int argc, char **argv, const mr_opt *opts,
                   int n_opts, mr_str_list *positional, int *exit_code) {
    *exit_code = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout, verb, usage, opts, n_opts);
            return false;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (positional && push(positional, a)) continue;
            fprintf(stderr, "mrcnn %s: unexpected argument '%s' (see mrcnn %s --help)\n", verb, a,
                    verb);
            *exit_code = 2;
            return false;
        }
        const mr_opt *o = NULL;
        for (int k = 0; k < n_opts; k++)
            if (!strcmp(opts[k].name, a)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "mrcnn %s: unknown option '%s' (see mrcnn %s --help)\n", verb, a, verb);
            *exit_code = 2;
            return false;
        }
        if (o->kind == MR_OPT_FLAG) {
            *(bool *)o->target = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mrcnn %s: option %s needs a value\n", verb, a);
            *exit_code = 2;
            return false;
        }
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        switch (o->kind) {
        case MR_OPT_STRING:
            *(const char **)o->target = v;
            break;
        case MR_OPT_LIST:
            if (!push((mr_str_list *)o->target, v)) {
                fprintf(stderr, "mrcnn %s: out of memory\n", verb);
                *exit_code = 1;
                return false;
            }
            break;
        case MR_OPT_INT: {
            long n = strtol(v, &end, 10);
            if (errno || end == v || *end) {
                fprintf(stderr, "mrcnn %s: option %s expects an integer, got '%s'\n", verb, a, v);
                *exit_code = 2;
                return false;
            }
            *(long *)o->target = n;
            break;
        }
        case MR_OPT_DOUBLE: {
            double d = strtod(v, &end);
            if (errno || end == v || *end) {
                fprintf(stderr, "mrcnn %s: option %s expects a number, got '%s'\n", verb, a, v);
                *exit_code = 2;
                return false;
            }
            *(double *)o->target = d;
            break;
        }
        case MR_OPT_FLAG:
            break;
        }
    }
    return true;
}

mr_data_args mr_cli_data_args(const mr_cli_data *d) {
    return (mr_data_args){.data = d->data,
                          .image_root = d->image_root,
                          .has_val_split = !isnan(d->val_split),
                          .val_split = (float)d->val_split};
}

int mr_exit_code(mr_status st) {
    if (st == MR_OK) return 0;
    fprintf(stderr, "mrcnn: %s\n", mr_last_error()[0] ? mr_last_error() : mr_status_name(st));
    return st == MR_ERR_ARG ? 2 : 1;
}
