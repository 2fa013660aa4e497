#include "tests/unit/net/proto/conformance/cf_tessera.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/mem.h"
#include "core/util/rand.h"
#include "net/proto/proto_gen.h"
#include "net/proto/proto_gen_rand.h"

#include <stdio.h>
#include <stdlib.h>

/* The builder starts small (random messages are a few KiB) and may grow to a frame. */
#define CF_BUILDER_INITIAL_BYTES 4096u

struct cf_codec {
    struct proto_builder builder;
    struct proto_json json;
};

struct cf_codec *cf_codec_new(void)
{
    struct cf_codec *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    const struct ts_allocator *alloc = ts_allocator_default();
    if (proto_builder_init(&c->builder, alloc, CF_BUILDER_INITIAL_BYTES, TS_FRAME_BYTES_MAX) != 0) {
        free(c);
        return NULL;
    }
    proto_json_init(&c->json, alloc);
    return c;
}

void cf_codec_free(struct cf_codec *c)
{
    if (c == NULL) {
        return;
    }
    proto_builder_fini(&c->builder);
    proto_json_fini(&c->json);
    free(c);
}

uint32_t cf_variant_count(void)
{
    return proto_rand_variant_count();
}

const char *cf_variant_name(uint32_t variant)
{
    return proto_rand_variant_name(variant);
}

int cf_build_random(struct cf_codec *c, uint64_t seed, uint32_t variant, bool frame,
                    const uint8_t **out, size_t *out_len)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(variant < proto_rand_variant_count());
    struct ts_rand rng;
    ts_rand_seed(&rng, seed);
    proto_builder_reset(&c->builder);
    proto_ref root = proto_rand_variant(&c->builder, &rng, variant);
    const uint8_t *bytes = NULL;
    uint32_t len = 0;
    int rc = root != 0 ? proto_message_finish(&c->builder, root, frame, &bytes, &len)
                       : (c->builder.err != 0 ? c->builder.err : TS_EINVAL);
    if (rc != 0) {
        return rc;
    }
    TS_ASSERT(bytes != NULL);
    TS_ASSERT(!frame || len % PROTO_FRAME_ALIGN == 0);
    *out = bytes;
    *out_len = len;
    return 0;
}

int cf_decode_json(struct cf_codec *c, const uint8_t *buf, size_t len, bool frame,
                   const char **json, char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(errmsg != NULL && errmsg_bytes > 0);
    errmsg[0] = 0;
    struct proto_message m;
    int rc = proto_message_decode(buf, len, frame, &m, errmsg, errmsg_bytes);
    if (rc != 0) {
        if (errmsg[0] == 0) {
            snprintf(errmsg, errmsg_bytes, "%s", ts_strerror(rc));
        }
        return rc;
    }
    TS_ASSERT(m.tab != NULL);
    /* A fresh dump each time (the runtime has no reset); the previous view ends here. */
    proto_json_fini(&c->json);
    proto_json_init(&c->json, ts_allocator_default());
    proto_message_json(&c->json, m);
    if (c->json.err != 0) {
        snprintf(errmsg, errmsg_bytes, "JSON dump failed: %s", ts_strerror(c->json.err));
        return c->json.err;
    }
    *json = c->json.buf != NULL ? c->json.buf : "";
    return 0;
}
