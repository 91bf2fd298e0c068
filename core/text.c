/* The growable text buffer and its JSON helpers; string copy, edit distance, line:column. */
#include "text.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "util.h"

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
        bool was_empty = !t->s;
        if (!mr_grow(&t->s, &t->cap, t->n + (size_t)w + 1, 1, 4096)) {
            t->failed = true;
            return;
        }
        if (was_empty) t->s[0] = '\0';
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

void mr_format(char *dst, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

char *mr_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

size_t mr_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return SIZE_MAX;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
#define SAME(x, y) (tolower((unsigned char)(x)) == tolower((unsigned char)(y)))
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + !SAME(a[i - 1], b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && SAME(a[i - 1], b[j - 2]) && SAME(a[i - 2], b[j - 1]) &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1; /* two neighbours swapped: "cofnig" */
            d[i][j] = best;
        }
#undef SAME
    return d[la][lb];
}

void mr_text_pos(const char *text, size_t len, size_t offset, int64_t *line, int64_t *col) {
    if (offset > len) offset = len;
    int64_t l = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < offset; i++)
        if (text[i] == '\n') {
            l++;
            line_start = i + 1;
        }
    *line = l;
    *col = (int64_t)(offset - line_start) + 1;
}
