/*
 * The Tessera side of the conformance tests, behind a plain C interface.
 *
 * Tessera's codec headers are C11 (compound literals, _Static_assert) and do not compile
 * as C++, while the oracle tests are C++ because flatc's generated verifier and its
 * Parser/GenerateText are C++. This module is the seam: the C++ tests call these
 * functions and never include net/proto headers themselves.
 *
 * A struct cf_codec holds one builder and one JSON buffer, reused across calls so that
 * the loops of the tests do not allocate per message. It belongs to one thread.
 *
 * Ownership: every returned pointer is a view that the codec owns, valid until the next
 * call on the same codec or cf_codec_free().
 */
#ifndef TS_TESTS_CONFORMANCE_CF_TESSERA_H
#define TS_TESTS_CONFORMANCE_CF_TESSERA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cf_codec;

/* Returns NULL when out of memory. */
struct cf_codec *cf_codec_new(void);
void cf_codec_free(struct cf_codec *c);

/* The message kinds of proto_gen_rand.h: "Request.PutRequest", "RaftBatch"... */
uint32_t cf_variant_count(void);
const char *cf_variant_name(uint32_t variant);

/*
 * Builds the random Message of `variant` that `seed` determines (the same seed and
 * variant always give the same message), as a frame (u32 length + buffer) when `frame`,
 * else as a bare buffer. Returns 0 and a view of the bytes, or a Tessera error code.
 */
int cf_build_random(struct cf_codec *c, uint64_t seed, uint32_t variant, bool frame,
                    const uint8_t **out, size_t *out_len);

/*
 * Verifies and decodes buf with proto_message_decode and, on success, dumps it with
 * proto_message_json. Returns 0 and a view of the NUL-terminated JSON, or the decode
 * error with its reason in errmsg (NUL-terminated, truncated to errmsg_bytes).
 * Borrows buf.
 */
int cf_decode_json(struct cf_codec *c, const uint8_t *buf, size_t len, bool frame,
                   const char **json, char *errmsg, size_t errmsg_bytes);

#ifdef __cplusplus
}
#endif

#endif
