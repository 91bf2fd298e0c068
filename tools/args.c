/* The shared option parser for every verb (--name VALUE and --name=VALUE, hidden aliases with a
 * deprecation note, did-you-mean for misspellings, examples in --help) and the status -> exit
 * code rule with its "mrcnn VERB: " error line. */
#include "cli.h"

#include "../core/file.h"
#include "../core/text.h"
#include "../core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *current_verb;

void mr_cli_set_verb(const char *verb) {
    current_verb = verb;
}

int mr_cli_missing(const char *what) {
    fprintf(stderr, "mrcnn %s: %s (see mrcnn %s --help)\n", current_verb, what, current_verb);
    return 2;
}

static void print_usage(FILE *out, const mr_cli_help *h, const mr_opt *opts, int n_opts) {
    fprintf(out, "usage: mrcnn %s %s\n", h->verb, h->usage);
    int width = 18;
    for (int i = 0; i < n_opts; i++)
        if (opts[i].help && (int)strlen(opts[i].name) > width) width = (int)strlen(opts[i].name);
    for (int i = 0; i < n_opts; i++)
        if (opts[i].help) fprintf(out, "  %-*s %s\n", width, opts[i].name, opts[i].help);
    if (!h->examples || !h->examples[0]) return;
    fprintf(out, "\nexamples:\n");
    for (const char *line = h->examples; *line;) {
        size_t len = strcspn(line, "\n");
        fprintf(out, "  %.*s\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

static bool push(mr_str_list *list, const char *item) {
    if (!mr_grow(&list->items, &list->cap, (size_t)list->count + 1, sizeof *list->items, 16))
        return false;
    list->items[list->count++] = item;
    return true;
}

const char *mr_cli_closest_option(const char *name, const mr_opt *opts, int n_opts) {
    while (*name == '-') name++;
    size_t len = strlen(name);
    if (!len) return NULL;
    /* A third of the name may be wrong, at most 3 edits: "--confg" finds --config, "--x" finds
     * nothing. A name that starts an option (--val for --val-split) is found as well. */
    size_t limit = len / 3 > 3 ? 3 : len / 3;
    if (limit < 1) limit = 1;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (int k = 0; k < n_opts; k++) {
        if (!opts[k].help) continue;
        const char *cand = opts[k].name + 2;
        size_t dist = mr_edit_distance(name, cand);
        if (len >= 3 && dist > 0 && !strncmp(cand, name, len)) dist = 1;
        if (dist < best_d) best = opts[k].name, best_d = dist;
    }
    return best;
}

bool mr_parse_args(const mr_cli_help *h, int argc, char **argv, const mr_opt *opts, int n_opts,
                   mr_str_list *positional, int *exit_code) {
    const char *verb = h->verb;
    *exit_code = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout, h, opts, n_opts);
            return false;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (positional && push(positional, argv[i])) {
                mr_path_tidy(argv[i]);
                continue;
            }
            fprintf(stderr, "mrcnn %s: unexpected argument '%s' (see mrcnn %s --help)\n", verb, a,
                    verb);
            *exit_code = 2;
            return false;
        }
        /* --name=value: the name is what comes before the first '='. */
        const char *eq = strchr(a, '=');
        size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
        const mr_opt *o = NULL;
        for (int k = 0; k < n_opts; k++)
            if (strlen(opts[k].name) == name_len && !strncmp(opts[k].name, a, name_len))
                o = &opts[k];
        if (!o) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)name_len, a);
            const char *near = mr_cli_closest_option(name, opts, n_opts);
            if (near)
                fprintf(stderr,
                        "mrcnn %s: unknown option '%s'; did you mean %s? (see mrcnn %s --help)\n",
                        verb, name, near, verb);
            else
                fprintf(stderr, "mrcnn %s: unknown option '%s' (see mrcnn %s --help)\n", verb, name,
                        verb);
            *exit_code = 2;
            return false;
        }
        if (!o->help) {
            /* A hidden alias: name the option now spelt for the same thing, if there is one. */
            for (int k = 0; k < n_opts; k++)
                if (opts[k].help && opts[k].target == o->target) {
                    fprintf(stderr,
                            "mrcnn %s: note: %s is the old name of %s; scripts should use %s\n",
                            verb, o->name, opts[k].name, opts[k].name);
                    break;
                }
        }
        if (o->kind == MR_OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "mrcnn %s: option %s takes no value, got '%s'\n", verb, o->name, a);
                *exit_code = 2;
                return false;
            }
            *(bool *)o->target = true;
            continue;
        }
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, "mrcnn %s: option %s needs a value\n", verb, o->name);
            *exit_code = 2;
            return false;
        }
        const char *v = eq ? eq + 1 : argv[++i];
        a = o->name;
        char *end = NULL;
        errno = 0;
        switch (o->kind) {
        case MR_OPT_STRING:
            *(const char **)o->target = v;
            break;
        case MR_OPT_PATH:
            /* v points into argv[i], which the program owns. */
            mr_path_tidy((char *)v);
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
    const char *msg = mr_last_error()[0] ? mr_last_error() : mr_status_name(st);
    if (current_verb)
        fprintf(stderr, "mrcnn %s: %s\n", current_verb, msg);
    else
        fprintf(stderr, "mrcnn: %s\n", msg);
    /* 128 + SIGINT, what a shell reports for a program Ctrl-C ended: scripts can tell a stopped
     * run (state saved, resumable) from a failed one. */
    if (st == MR_ERR_INTERRUPTED) return 130;
    return st == MR_ERR_ARG ? 2 : 1;
}
