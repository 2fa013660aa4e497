/*
 * proto_bench: what the two sides of the codec benchmark share (C and C++).
 *
 * The benchmark (proto_bench.cc, which has the full description) is split in two
 * translation units: proto_bench_ts.c drives Tessera's C codec, compiled as C exactly
 * like the library, and proto_bench.cc drives flatc's C++ code and times both. Each side
 * exposes the same four operations per message kind, called through a function
 * pointer so that both pay the same call per message:
 *
 *   encode  build the message from struct pb_content into the side's reused builder;
 *           returns the finished size-prefixed buffer's length
 *   verify  verify the last encoded buffer; returns 1 if accepted, 0 if not
 *   decode  read every field of the last verified buffer; returns their sum
 *   full    encode + verify + decode; returns the sum (PB_REJECTED if rejected)
 *
 * The sum adds every scalar field and, for every byte vector, its length plus the sum
 * of its bytes (pb_bytes_sum, shared so that both sides pay the same for it). Equal
 * sums on both sides, for both sides' buffers, show the two carry the same content.
 */
#ifndef TS_BENCH_MICRO_PROTO_BENCH_H
#define TS_BENCH_MICRO_PROTO_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PB_PUT_KEY_BYTES 8u
#define PB_PUT_VALUE_BYTES 256u
#define PB_BATCH_ENTRIES 64u
#define PB_ENTRY_DATA_BYTES 64u
/* Returned by a sum when the buffer was rejected. */
#define PB_REJECTED UINT64_MAX

/* Message{body: Request{id, range_id, epoch, op: PutRequest{key, value}}} */
struct pb_put {
    uint64_t id;
    uint64_t range_id;
    uint64_t generation;
    uint64_t conf_version;
    uint8_t key[PB_PUT_KEY_BYTES];
    uint8_t value[PB_PUT_VALUE_BYTES];
};

struct pb_entry {
    uint64_t term;
    uint64_t index;
    uint8_t data[PB_ENTRY_DATA_BYTES];
};

/* Message{body: RaftBatch{from_node, to_node, cluster_id, messages: [RaftMessage{
 * group_id, type Append, from, to, term, log_term, index, commit, entries}]}};
 * every entry has type Normal. */
struct pb_batch {
    uint64_t from_node;
    uint64_t to_node;
    uint64_t cluster_id;
    uint64_t group_id;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    struct pb_entry entries[PB_BATCH_ENTRIES];
};

struct pb_content {
    struct pb_put put;
    struct pb_batch batch;
};

typedef uint64_t (*pb_op)(void *ctx);

/* Byte vectors count as their length plus the sum of their bytes, read 8 at a time. */
static inline uint64_t pb_bytes_sum(const uint8_t *p, uint32_t n)
{
    uint64_t s = n;
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        s += w;
    }
    for (; i < n; i++) {
        s += p[i];
    }
    return s;
}

/* Tessera's side (proto_bench_ts.c). The context borrows content, which must outlive
 * it. pb_ts_new returns NULL when out of memory. */
void *pb_ts_new(const struct pb_content *content);
void pb_ts_free(void *ctx);
uint64_t pb_ts_put_encode(void *ctx);
uint64_t pb_ts_put_verify(void *ctx);
uint64_t pb_ts_put_decode(void *ctx);
uint64_t pb_ts_put_full(void *ctx);
uint64_t pb_ts_batch_encode(void *ctx);
uint64_t pb_ts_batch_verify(void *ctx);
uint64_t pb_ts_batch_decode(void *ctx);
uint64_t pb_ts_batch_full(void *ctx);
/* The last encoded buffer: a view valid until the next encode. */
const uint8_t *pb_ts_buffer(void *ctx, size_t *len);
/* Verifies and reads any buffer (a frame) as the message kind; PB_REJECTED if rejected. */
uint64_t pb_ts_put_sum(const uint8_t *buf, size_t len);
uint64_t pb_ts_batch_sum(const uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
