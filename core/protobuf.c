/* The protocol-buffers writer (core/protobuf.h): appends to a doubling buffer; nested messages
 * reserve a five-byte length (messages under 4 GiB), then close it up to the varint's real
 * size. */
#include "protobuf.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { LEN_RESERVED = 5 };

void mr_pb_init(mr_pb *b) {
    memset(b, 0, sizeof *b);
}

void mr_pb_free(mr_pb *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

mr_status mr_pb_status(const mr_pb *b) {
    if (b->failed)
        return mr_fail(MR_ERR_NOMEM, "protobuf: no memory to grow the buffer past %zu bytes",
                       b->len);
    return MR_OK;
}

static bool reserve(mr_pb *b, size_t more) {
    if (b->failed) return false;
    if (!mr_grow(&b->data, &b->cap, b->len + more, 1, 4096)) {
        b->failed = true;
        return false;
    }
    return true;
}

static void append(mr_pb *b, const void *data, size_t len) {
    if (!reserve(b, len)) return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

int mr_pb_encode_varint(uint8_t out[10], uint64_t v) {
    int n = 0;
    do {
        uint8_t byte = (uint8_t)(v & 0x7f);
        v >>= 7;
        out[n++] = (uint8_t)(byte | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static void varint(mr_pb *b, uint64_t v) {
    uint8_t bytes[10];
    append(b, bytes, (size_t)mr_pb_encode_varint(bytes, v));
}

static void tag(mr_pb *b, int field, int wire) {
    varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

void mr_pb_int(mr_pb *b, int field, int64_t v) {
    tag(b, field, MR_PB_VARINT);
    varint(b, (uint64_t)v);
}

static void fixed32(mr_pb *b, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    append(b, le, 4);
}

void mr_pb_float(mr_pb *b, int field, float v) {
    tag(b, field, MR_PB_FIXED32);
    fixed32(b, v);
}

void mr_pb_bytes(mr_pb *b, int field, const void *data, size_t len) {
    tag(b, field, MR_PB_LEN);
    varint(b, len);
    append(b, data, len);
}

void mr_pb_string(mr_pb *b, int field, const char *s) {
    mr_pb_bytes(b, field, s, strlen(s));
}

void mr_pb_packed_ints(mr_pb *b, int field, const int64_t *v, int n) {
    mr_pb_begin(b, field);
    for (int i = 0; i < n; i++) varint(b, (uint64_t)v[i]);
    mr_pb_end(b);
}

void mr_pb_begin(mr_pb *b, int field) {
    MR_REQUIRE(b->depth < (int)(sizeof b->open / sizeof b->open[0]),
               "protobuf: messages nested more than %d deep", b->depth);
    tag(b, field, MR_PB_LEN);
    if (reserve(b, LEN_RESERVED)) b->len += LEN_RESERVED;
    b->open[b->depth++] = b->len;
}

void mr_pb_end(mr_pb *b) {
    MR_REQUIRE(b->depth > 0, "protobuf: mr_pb_end without mr_pb_begin");
    size_t body = b->open[--b->depth];
    if (b->failed) return;
    size_t len = b->len - body;
    MR_REQUIRE(len < ((size_t)1 << 32), "protobuf: nested message of %zu bytes (4 GiB at most)",
               len);
    uint8_t bytes[10];
    int n = mr_pb_encode_varint(bytes, len);
    size_t start = body - LEN_RESERVED;
    memcpy(b->data + start, bytes, (size_t)n);
    if (n < LEN_RESERVED) memmove(b->data + start + n, b->data + body, len);
    b->len = start + (size_t)n + len;
}
