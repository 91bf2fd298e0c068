/* VIA 1.x/2.x CSV exports: an RFC 4180 reader (quoted fields, "" escapes, newlines inside
 * quotes, CRLF) and the row grouping by filename; each cell of JSON goes through the shared VIA
 * region parser. region_count and region_id are ignored: real files get them wrong. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "via_internal.h"

typedef struct {
    const char *s;
    size_t len, pos;
    int64_t line;      /* 1-based line of s[pos] */
    size_t line_start; /* offset of that line's first byte */
    char *buf;         /* the current row's fields, unescaped, NUL-separated */
    size_t cap, used;
    size_t *offs; /* field k starts at buf + offs[k] */
    int nf;
    size_t capf;
    int64_t row_line;
} csv_reader;

static mr_status put_char(csv_reader *r, char c) {
    if (!mr_grow(&r->buf, &r->cap, r->used + 2, 1, 4096))
        return mr_fail(MR_ERR_NOMEM, "out of memory reading a CSV row");
    r->buf[r->used++] = c;
    return MR_OK;
}

static mr_status start_field(csv_reader *r) {
    if (!mr_grow(&r->offs, &r->capf, (size_t)r->nf + 1, sizeof *r->offs, 16))
        return mr_fail(MR_ERR_NOMEM, "out of memory reading a CSV row");
    r->offs[r->nf++] = r->used;
    return MR_OK;
}

static void newline(csv_reader *r, size_t at) {
    r->line++;
    r->line_start = at + 1;
}

static int64_t col_of(const csv_reader *r, size_t at) {
    return (int64_t)(at - r->line_start) + 1;
}

/* Reads one row into r->buf / r->offs. Quoting errors are fatal: after one, the rest of the file
 * cannot be split into rows reliably. */
static mr_status next_row(const mr_ann_loader *ld, csv_reader *r, bool *got) {
    *got = false;
    /* Blank lines between rows are harmless. */
    while (r->pos < r->len && (r->s[r->pos] == '\n' || r->s[r->pos] == '\r')) {
        if (r->s[r->pos] == '\n') newline(r, r->pos);
        r->pos++;
    }
    if (r->pos >= r->len) return MR_OK;
    r->used = 0;
    r->nf = 0;
    r->row_line = r->line;
    for (;;) {
        MR_TRY(start_field(r));
        if (r->pos < r->len && r->s[r->pos] == '"') {
            size_t open = r->pos;
            int64_t open_line = r->line, open_col = col_of(r, open);
            r->pos++;
            for (;;) {
                if (r->pos >= r->len)
                    return mr_fail(MR_ERR_FORMAT,
                                   "%s:%lld:%lld: bad CSV quoting: the quoted field opened at line "
                                   "%lld, column %lld is never closed",
                                   ld->file, (long long)open_line, (long long)open_col,
                                   (long long)open_line, (long long)open_col);
                char c = r->s[r->pos];
                if (c == '"') {
                    if (r->pos + 1 < r->len && r->s[r->pos + 1] == '"') {
                        MR_TRY(put_char(r, '"'));
                        r->pos += 2;
                        continue;
                    }
                    r->pos++;
                    break;
                }
                if (c == '\0')
                    return mr_fail(MR_ERR_FORMAT, "%s:%lld:%lld: a NUL byte inside the CSV file",
                                   ld->file, (long long)r->line, (long long)col_of(r, r->pos));
                if (c == '\n') newline(r, r->pos);
                MR_TRY(put_char(r, c));
                r->pos++;
            }
            if (r->pos < r->len && r->s[r->pos] != ',' && r->s[r->pos] != '\n' &&
                r->s[r->pos] != '\r') {
                char c = r->s[r->pos];
                return mr_fail(MR_ERR_FORMAT,
                               "%s:%lld:%lld: bad CSV quoting at line %lld, column %lld: '%c' "
                               "after the closing quote of a field (a quote inside a quoted field "
                               "is written \"\")",
                               ld->file, (long long)r->line, (long long)col_of(r, r->pos),
                               (long long)r->line, (long long)col_of(r, r->pos),
                               c >= 0x20 && c < 0x7f ? c : '?');
            }
        } else {
            while (r->pos < r->len) {
                char c = r->s[r->pos];
                if (c == ',' || c == '\n' || c == '\r') break;
                if (c == '"')
                    return mr_fail(MR_ERR_FORMAT,
                                   "%s:%lld:%lld: bad CSV quoting at line %lld, column %lld: a "
                                   "quote inside an unquoted field (quote the whole field and "
                                   "double the quotes inside)",
                                   ld->file, (long long)r->line, (long long)col_of(r, r->pos),
                                   (long long)r->line, (long long)col_of(r, r->pos));
                if (c == '\0')
                    return mr_fail(MR_ERR_FORMAT, "%s:%lld:%lld: a NUL byte inside the CSV file",
                                   ld->file, (long long)r->line, (long long)col_of(r, r->pos));
                MR_TRY(put_char(r, c));
                r->pos++;
            }
        }
        MR_TRY(put_char(r, '\0'));
        if (r->pos < r->len && r->s[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->len && r->s[r->pos] == '\r') r->pos++;
        if (r->pos < r->len && r->s[r->pos] == '\n') {
            newline(r, r->pos);
            r->pos++;
        }
        break;
    }
    *got = true;
    return MR_OK;
}

static const char *field(const csv_reader *r, int k) {
    return k >= 0 && k < r->nf ? r->buf + r->offs[k] : "";
}

enum { COL_FILENAME, COL_SIZE, COL_FATTRS, COL_SHAPE, COL_RATTRS, N_COLS };

/* A JSON cell: "" and "{}" are empty (an image without regions has one such row). */
static mr_status parse_cell(mr_ann_loader *ld, const csv_reader *r, int col, const char *name,
                            cJSON **out) {
    *out = NULL;
    const char *t = field(r, col);
    if (!t[0]) return MR_OK;
    char what[400], qf[300];
    snprintf(what, sizeof what, "%s:%lld: field '%s'", mr_ann_quote(qf, sizeof qf, ld->file),
             (long long)r->row_line, name);
    return mr_via_parse(ld, what, t, strlen(t), out, false);
}

mr_status mr_ann_load_csv(mr_ann_loader *ld, const char *text, size_t len) {
    csv_reader r;
    memset(&r, 0, sizeof r);
    r.s = text;
    r.len = len;
    r.line = 1;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) r.pos = r.line_start = 3;
    mr_strmap groups = {0};
    int64_t *counts = NULL;
    size_t cap_counts = 0;
    bool got = false;
    mr_status st = next_row(ld, &r, &got);
    if (st == MR_OK && !got) st = mr_fail(MR_ERR_FORMAT, "%s: the CSV file is empty", ld->file);
    int col[N_COLS] = {-1, -1, -1, -1, -1};
    int n_header = r.nf;
    if (st == MR_OK) {
        static const char *const names[N_COLS] = {"filename", "file_size", "file_attributes",
                                                  "region_shape_attributes", "region_attributes"};
        for (int k = 0; k < r.nf; k++) {
            const char *h = field(&r, k);
            if (k == 0 && h[0] == '#') h++;
            for (int c = 0; c < N_COLS; c++)
                if (!strcmp(h, names[c]) && col[c] < 0) col[c] = k;
        }
        if (col[COL_FILENAME] < 0 || col[COL_SHAPE] < 0) {
            char q[200];
            st = mr_fail(MR_ERR_FORMAT,
                         "%s:1: not a VIA CSV export: the header '%s...' lacks the column '%s' "
                         "(expected filename,file_size,file_attributes,region_count,region_id,"
                         "region_shape_attributes,region_attributes)",
                         ld->file, mr_ann_quote(q, 60, field(&r, 0)),
                         col[COL_FILENAME] < 0 ? "filename" : "region_shape_attributes");
        }
        ld->out->format = field(&r, 0)[0] == '#' ? MR_ANN_VIA1_CSV : MR_ANN_VIA2_CSV;
    }
    if (st == MR_OK) st = mr_via_load_attributes(ld, true);
    while (st == MR_OK) {
        st = next_row(ld, &r, &got);
        if (st != MR_OK || !got) break;
        char where[600], qk[200];
        if (r.nf != n_header) {
            ld->out->report.n_regions++;
            mr_ann_region_error(ld, MR_ERR_FORMAT,
                                "%s:%lld: expected %d comma-separated fields like the header, "
                                "found %d (unquoted commas inside a JSON cell?)",
                                ld->file, (long long)r.row_line, n_header, r.nf);
            continue;
        }
        const char *filename = field(&r, col[COL_FILENAME]);
        if (!filename[0]) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s:%lld: field 'filename' is empty", ld->file,
                         (long long)r.row_line);
            continue;
        }
        int64_t rec = mr_strmap_get(&groups, filename);
        snprintf(where, sizeof where, "%s:%lld: image '%s'", ld->file, (long long)r.row_line,
                 mr_ann_quote(qk, sizeof qk, filename));
        if (rec < 0) {
            /* The key VIA would have given the image: filename + size. */
            const char *size = field(&r, col[COL_SIZE]);
            size_t lf = strlen(filename), ls = strlen(size);
            char *key = malloc(lf + ls + 1);
            if (!key) {
                st = mr_fail(MR_ERR_NOMEM, "out of memory");
                break;
            }
            memcpy(key, filename, lf);
            memcpy(key + lf, size, ls + 1);
            st = mr_ann_add_record(ld, key, filename, NULL, NULL, 0, 0, &rec);
            free(key);
            if (st != MR_OK) break;
            mr_ann_check_file_bytes(ld, rec, strtoll(size, NULL, 10));
            if ((st = mr_strmap_put(&groups, filename, rec)) != MR_OK) break;
            size_t old_cap = cap_counts;
            if (!mr_grow(&counts, &cap_counts, (size_t)rec + 1, sizeof *counts, 64)) {
                st = mr_fail(MR_ERR_NOMEM, "out of memory");
                break;
            }
            memset(counts + old_cap, 0, sizeof *counts * (cap_counts - old_cap));
            cJSON *fa = NULL;
            if (col[COL_FATTRS] >= 0 &&
                parse_cell(ld, &r, col[COL_FATTRS], "file_attributes", &fa) == MR_OK) {
                st = mr_via_file_attributes(ld, rec, fa, where);
                cJSON_Delete(fa);
                if (st != MR_OK) break;
            }
        }
        cJSON *sa = NULL, *ra = NULL;
        if (parse_cell(ld, &r, col[COL_SHAPE], "region_shape_attributes", &sa) != MR_OK) {
            ld->out->report.n_regions++;
            ld->out->report.n_rejected++;
            continue;
        }
        if (!sa || (cJSON_IsObject(sa) && !sa->child)) {
            cJSON_Delete(sa); /* the row of an image without regions */
            continue;
        }
        if (col[COL_RATTRS] >= 0 &&
            parse_cell(ld, &r, col[COL_RATTRS], "region_attributes", &ra) != MR_OK) {
            ld->out->report.n_regions++;
            ld->out->report.n_rejected++;
            cJSON_Delete(sa);
            continue;
        }
        int64_t region = counts[rec]++;
        char rwhere[700];
        snprintf(rwhere, sizeof rwhere, "%s region %lld", where, (long long)region);
        st = mr_via_region(ld, rec, sa, ra, region, rwhere);
        cJSON_Delete(sa);
        cJSON_Delete(ra);
    }
    mr_strmap_free(&groups);
    free(counts);
    free(r.buf);
    free(r.offs);
    return st;
}
