/* A minimal protocol-buffers writer: varints, fixed32, length-delimited fields and nested
 * messages appended to one growing byte buffer. It is what the ONNX export (train/export_onnx.c)
 * needs to write a ModelProto, and no more (no reader, no schema, no reflection). Written here
 * rather than taken from libprotobuf: the subset is a few hundred lines of C, while Debian's
 * protobuf is a C++ library with generated code and protoc in the build, which the C11 build
 * avoids; protobuf-c would still need protoc and a copy of onnx.proto. Owns the buffer it grows. */
#ifndef MR_PROTOBUF_H
#define MR_PROTOBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* an allocation failed: every later call does nothing */
    /* Open nested messages: where each one's body starts (after its reserved length bytes). */
    size_t open[32];
    int depth;
} mr_pb;

/* Wire types of the encoding. */
enum { MR_PB_VARINT = 0, MR_PB_FIXED64 = 1, MR_PB_LEN = 2, MR_PB_FIXED32 = 5 };

void mr_pb_init(mr_pb *b);
void mr_pb_free(mr_pb *b);
/* MR_OK, or MR_ERR_NOMEM (message set) when any append failed. */
mr_status mr_pb_status(const mr_pb *b);

/* The bytes of a varint (up to 10), for tests: returns how many were written to out. */
int mr_pb_encode_varint(uint8_t out[10], uint64_t v);

/* Field writers: tag (field number and wire type) then the value. Negative int64 values are
 * written as ten-byte two's-complement varints, as protobuf's int64 is. */
void mr_pb_int(mr_pb *b, int field, int64_t v);
void mr_pb_float(mr_pb *b, int field, float v);
void mr_pb_string(mr_pb *b, int field, const char *s);
void mr_pb_bytes(mr_pb *b, int field, const void *data, size_t len);
/* A packed repeated int64 (one length-delimited field of varints). */
void mr_pb_packed_ints(mr_pb *b, int field, const int64_t *v, int n);

/* A nested message: mr_pb_begin writes the tag and reserves the length, mr_pb_end fills it
 * in (moving the body back over the unused reserved bytes). Nesting is at most 32 deep. */
void mr_pb_begin(mr_pb *b, int field);
void mr_pb_end(mr_pb *b);

#endif
