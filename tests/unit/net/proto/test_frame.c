/* net/proto framing: the length prefix parser and stream reassembly. */
#include "helpers.h"

#include "core/util/rand.h"
#include "net/proto/proto_gen_rand.h"

Test(proto_frame, needs_a_whole_header)
{
    uint8_t buf[8] = {16, 0, 0, 0};
    cr_assert_eq(proto_frame_size(buf, 0, TS_FRAME_BYTES_MAX), 0);
    cr_assert_eq(proto_frame_size(buf, 3, TS_FRAME_BYTES_MAX), 0);
}

Test(proto_frame, waits_for_the_whole_frame)
{
    uint8_t buf[32] = {28, 0, 0, 0};
    cr_assert_eq(proto_frame_size(buf, 4, TS_FRAME_BYTES_MAX), 0);
    cr_assert_eq(proto_frame_size(buf, 31, TS_FRAME_BYTES_MAX), 0);
    cr_assert_eq(proto_frame_size(buf, 32, TS_FRAME_BYTES_MAX), 32);
}

Test(proto_frame, rejects_unaligned_and_tiny_lengths)
{
    uint8_t buf[64] = {29, 0, 0, 0};
    cr_assert_eq(proto_frame_size(buf, sizeof(buf), TS_FRAME_BYTES_MAX), TS_EPROTO);
    buf[0] = 12;
    cr_assert_eq(proto_frame_size(buf, sizeof(buf), TS_FRAME_BYTES_MAX), TS_EPROTO);
    buf[0] = 20;
    cr_assert_eq(proto_frame_size(buf, sizeof(buf), TS_FRAME_BYTES_MAX), 24);
}

Test(proto_frame, rejects_oversized_lengths_before_they_arrive)
{
    uint8_t buf[4];
    ts_store_le32(buf, TS_FRAME_BYTES_MAX - 4);
    cr_assert_eq(proto_frame_size(buf, 4, TS_FRAME_BYTES_MAX), 0, "the maximum is allowed");
    ts_store_le32(buf, TS_FRAME_BYTES_MAX - 4 + 8);
    cr_assert_eq(proto_frame_size(buf, 4, TS_FRAME_BYTES_MAX), TS_ETOOBIG);
    ts_store_le32(buf, UINT32_MAX);
    cr_assert_eq(proto_frame_size(buf, 4, TS_FRAME_BYTES_MAX), TS_ETOOBIG);
    ts_store_le32(buf, 1020);
    cr_assert_eq(proto_frame_size(buf, 4, 1024), 0);
    ts_store_le32(buf, 1028);
    cr_assert_eq(proto_frame_size(buf, 4, 1024), TS_ETOOBIG, "a connection may set a lower limit");
}

Test(proto_frame, reassembles_a_stream_cut_anywhere, .timeout = 60)
{
    /* 200 random frames back to back, delivered in random pieces of 1..300 bytes. */
    struct proto_builder b;
    cr_assert_eq(proto_builder_init(&b, ts_allocator_default(), 256, TS_FRAME_BYTES_MAX), 0);
    struct ts_rand r;
    ts_rand_seed(&r, 99);
    size_t cap = 1 << 20, len = 0;
    uint8_t *stream = malloc(cap);
    uint32_t n = 200;
    for (uint32_t i = 0; i < n; i++) {
        proto_builder_reset(&b);
        proto_ref root = proto_rand_variant(&b, &r, i % proto_rand_variant_count());
        const uint8_t *out;
        uint32_t flen;
        cr_assert_eq(proto_message_finish(&b, root, true, &out, &flen), 0);
        cr_assert_lt(len + flen, cap);
        memcpy(stream + len, out, flen);
        len += flen;
    }
    proto_builder_fini(&b);

    uint8_t *inbox = aligned_alloc(8, cap);
    size_t have = 0, fed = 0;
    uint32_t frames = 0;
    while (fed < len || have > 0) {
        size_t piece = 1 + ts_rand_below(&r, 300);
        piece = piece > len - fed ? len - fed : piece;
        memcpy(inbox + have, stream + fed, piece);
        have += piece;
        fed += piece;
        for (;;) {
            int64_t size = proto_frame_size(inbox, have, TS_FRAME_BYTES_MAX);
            cr_assert_geq(size, 0);
            if (size == 0) {
                break;
            }
            struct proto_message m;
            char err[128];
            int rc = proto_message_decode(inbox, (size_t)size, true, &m, err, sizeof(err));
            cr_assert_eq(rc, 0, "frame %u: %s", frames, err);
            frames++;
            memmove(inbox, inbox + size, have - (size_t)size);
            have -= (size_t)size;
        }
        if (piece == 0) {
            break;
        }
    }
    cr_assert_eq(frames, n);
    cr_assert_eq(have, 0);
    free(inbox);
    free(stream);
}
