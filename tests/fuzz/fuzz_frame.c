/*
 * fuzz_frame: a libFuzzer target for the frame decoder (net/proto).
 *
 * The input is a byte stream as it would arrive on one connection. The target cuts it
 * into frames exactly as a connection does: proto_frame_size() on what is left, with
 * the real limit TS_FRAME_BYTES_MAX; every complete frame is decoded with
 * proto_message_decode(frame = true), and every accepted message is walked in full by
 * proto_message_json(), which reads every field through the generated accessors. A
 * frame error (TS_EPROTO, TS_ETOOBIG) ends the stream, as it closes a connection; 0
 * ("need more bytes") ends it too, as the input has no more. Independently, the whole
 * input is decoded as one bare buffer (frame = false), which reaches the verifier with
 * lengths a frame header would have rejected.
 *
 * What counts as a bug: any sanitizer report (out-of-bounds read past what the
 * verifier checked, undefined behaviour, leak), an assertion failure, or a broken
 * contract checked below: a rejected message must leave no view behind, an accepted
 * one must give a view inside the buffer, and a frame size must be a whole, aligned
 * frame that fits in what is left.
 *
 * Built only with TS_FUZZ=ON (clang, -fsanitize=fuzzer); see README.md beside this
 * file for how to run it, and fuzz_seed_corpus.c for the seed corpus.
 */
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/mem.h"
#include "net/proto/proto_gen.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes one buffer and, when accepted, walks every field of it. */
static void decode_and_walk(const uint8_t *buf, size_t len, bool frame)
{
    struct proto_message msg;
    char errmsg[256];
    errmsg[0] = 0;
    int rc = proto_message_decode(buf, len, frame, &msg, errmsg, sizeof(errmsg));
    if (rc != 0) {
        TS_ASSERT(rc == TS_EPROTO);
        TS_ASSERT(msg.tab == NULL);
        TS_ASSERT(errmsg[0] != 0);
        return;
    }
    TS_ASSERT(msg.tab != NULL);
    TS_ASSERT(msg.tab > buf && msg.tab < buf + len);

    struct proto_json json;
    proto_json_init(&json, ts_allocator_default());
    proto_message_json(&json, msg);
    TS_ASSERT(json.err == 0);
    TS_ASSERT(json.len >= 2 && json.buf[0] == '{' && json.buf[json.len - 1] == '}');
    proto_json_fini(&json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The stream: one frame after another, until an error or an incomplete frame. */
    size_t off = 0;
    while (off < size) {
        int64_t n = proto_frame_size(data + off, size - off, TS_FRAME_BYTES_MAX);
        if (n <= 0) {
            TS_ASSERT(n == 0 || n == TS_EPROTO || n == TS_ETOOBIG);
            break;
        }
        TS_ASSERT((uint64_t)n <= size - off);
        TS_ASSERT(n % PROTO_FRAME_ALIGN == 0);
        TS_ASSERT(n <= (int64_t)TS_FRAME_BYTES_MAX);
        decode_and_walk(data + off, (size_t)n, true);
        off += (size_t)n;
    }
    TS_ASSERT(off <= size);

    /* The whole input as one bare buffer. */
    decode_and_walk(data, size, false);
    return 0;
}
