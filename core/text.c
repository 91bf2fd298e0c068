/* The growable text buffer and its JSON helpers. */
#include "text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "file.h"

void mr_text_printf(mr_text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->failed = true;
            return;
        }
        if (t->s && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap <= t->n + (size_t)w) cap *= 2;
        char *grown = realloc(t->s, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        if (!t->s) grown[0] = '\0';
        t->s = grown;
        t->cap = cap;
    }
}

void mr_text_json_string(mr_text *t, const char *s) {
    mr_text_printf(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            mr_text_printf(t, "\\%c", *p);
        else if (*p == '\n')
            mr_text_printf(t, "\\n");
        else if (*p < 0x20)
            mr_text_printf(t, "\\u%04x", *p);
        else
            mr_text_printf(t, "%c", *p);
    }
    mr_text_printf(t, "\"");
}

void mr_text_json_number(mr_text *t, double v, int digits) {
    if (!isfinite(v))
        mr_text_printf(t, "null");
    else
        mr_text_printf(t, "%.*g", digits, v);
}

void mr_text_free(mr_text *t) {
    free(t->s);
    *t = (mr_text){0};
}

mr_status mr_text_write_atomic(const mr_text *t, const char *path) {
    if (t->failed) return mr_fail(MR_ERR_NOMEM, "%s: out of memory building the file", path);
    return mr_write_file_atomic(path, t->s ? t->s : "", t->n, 0644);
}
