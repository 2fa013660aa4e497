/*
 * fuzz_seed_corpus DIR [SEED]: writes the seed corpus for fuzz_frame into DIR.
 *
 * One file per message kind (proto_rand_variant: every member of the root union, and
 * for Request and Response every member of theirs), each holding one valid frame built
 * from a seeded generator, so the fuzzer starts from messages that pass verification
 * and reaches every table's accessors from the first run. One more file holds three
 * frames back to back, so that the stream loop is covered from the start too. Every
 * frame is decoded before it is written: the corpus holds valid frames only.
 *
 * The corpus is generated, never committed (no binary files in the repository). The
 * same SEED (default 1) gives the same files. Built in every build type.
 * Exit status: 0, or 1 with a message on stderr.
 */
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/mem.h"
#include "core/util/rand.h"
#include "net/proto/proto_gen.h"
#include "net/proto/proto_gen_rand.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Frames in the one multi-frame seed. */
#define SEED_STREAM_FRAMES 3u

/* Writes len bytes to DIR/name. Returns 0 or -errno. */
static int write_file(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    TS_ASSERT(n > 0);
    if ((size_t)n >= sizeof(path)) {
        return -ENAMETOOLONG;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -errno;
    }
    size_t put = fwrite(buf, 1, len, f);
    int rc = put == len ? 0 : -EIO;
    if (fclose(f) != 0 && rc == 0) {
        rc = -EIO;
    }
    return rc;
}

/* Builds a random frame of the given kind; *out is valid until the next reset. */
static int build_frame(struct proto_builder *b, struct ts_rand *r, uint32_t variant,
                       const uint8_t **out, uint32_t *out_len)
{
    TS_ASSERT(variant < proto_rand_variant_count());
    proto_builder_reset(b);
    proto_ref root = proto_rand_variant(b, r, variant);
    int rc = proto_message_finish(b, root, true, out, out_len);
    if (rc != 0) {
        return rc;
    }
    /* Only valid frames go into the corpus. */
    struct proto_message msg;
    char errmsg[256];
    rc = proto_message_decode(*out, *out_len, true, &msg, errmsg, sizeof(errmsg));
    if (rc != 0) {
        fprintf(stderr, "fuzz_seed_corpus: kind %s does not decode: %s\n",
                proto_rand_variant_name(variant), errmsg);
        return rc;
    }
    TS_ASSERT(proto_frame_size(*out, *out_len, TS_FRAME_BYTES_MAX) == (int64_t)*out_len);
    return 0;
}

/* One file per kind: "NN-Kind.frame". */
static int write_kinds(struct proto_builder *b, struct ts_rand *r, const char *dir)
{
    uint32_t count = proto_rand_variant_count();
    for (uint32_t v = 0; v < count; v++) {
        const uint8_t *buf;
        uint32_t len;
        int rc = build_frame(b, r, v, &buf, &len);
        if (rc != 0) {
            return rc;
        }
        char name[128];
        snprintf(name, sizeof(name), "%02" PRIu32 "-%s.frame", v, proto_rand_variant_name(v));
        rc = write_file(dir, name, buf, len);
        if (rc != 0) {
            fprintf(stderr, "fuzz_seed_corpus: %s/%s: %s\n", dir, name, ts_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* Several frames back to back, as a connection would deliver them. */
static int write_stream(struct proto_builder *b, struct ts_rand *r, const char *dir)
{
    uint8_t *stream = NULL;
    size_t stream_len = 0;
    int rc = 0;
    for (uint32_t i = 0; i < SEED_STREAM_FRAMES && rc == 0; i++) {
        const uint8_t *buf;
        uint32_t len;
        uint32_t variant = (uint32_t)ts_rand_below(r, proto_rand_variant_count());
        rc = build_frame(b, r, variant, &buf, &len);
        if (rc != 0) {
            break;
        }
        uint8_t *grown = realloc(stream, stream_len + len);
        if (grown == NULL) {
            rc = -ENOMEM;
            break;
        }
        stream = grown;
        memcpy(stream + stream_len, buf, len);
        stream_len += len;
    }
    if (rc == 0) {
        rc = write_file(dir, "stream.frames", stream, stream_len);
        if (rc != 0) {
            fprintf(stderr, "fuzz_seed_corpus: %s/stream.frames: %s\n", dir, ts_strerror(rc));
        }
    }
    free(stream);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s DIR [SEED]\n", argv[0]);
        return 1;
    }
    const char *dir = argv[1];
    uint64_t seed = argc == 3 ? strtoull(argv[2], NULL, 0) : 1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz_seed_corpus: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }

    struct proto_builder b;
    if (proto_builder_init(&b, ts_allocator_default(), 4096, TS_FRAME_BYTES_MAX) != 0) {
        fprintf(stderr, "fuzz_seed_corpus: out of memory\n");
        return 1;
    }
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    int rc = write_kinds(&b, &r, dir);
    if (rc == 0) {
        rc = write_stream(&b, &r, dir);
    }
    proto_builder_fini(&b);
    if (rc != 0) {
        return 1;
    }
    printf("fuzz_seed_corpus: %" PRIu32 " kinds + 1 stream written to %s (seed %" PRIu64 ")\n",
           proto_rand_variant_count(), dir, seed);
    return 0;
}
