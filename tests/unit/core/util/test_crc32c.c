/* Tests for core/util/crc32c: test vectors, the two implementations against each other and
 * against the bitwise definition, and extension. */
#include "core/util/crc32c.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RANDOM_BUFFERS 10000
#define LEN_MAX 4096
#define ALIGN_MAX 64

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void fill_random(uint8_t *buf, size_t len, uint64_t *rng)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)splitmix64(rng);
    }
}

/* The definition: one bit at a time, reflected polynomial 0x82F63B78. */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc >> 1) ^ ((crc & 1u) != 0 ? 0x82F63B78u : 0u);
        }
    }
    return ~crc;
}

typedef uint32_t crc_fn(uint32_t, const void *, size_t);

static void check_vectors(crc_fn *fn, const char *name)
{
    uint8_t buf[48];
    cr_assert_eq(fn(0, "123456789", 9), 0xE3069283u, "%s: check value", name);
    cr_assert_eq(fn(0, NULL, 0), 0u, "%s: empty", name);
    cr_assert_eq(fn(0xDEADBEEFu, buf, 0), 0xDEADBEEFu, "%s: empty extends nothing", name);
    /* RFC 3720, B.4. */
    memset(buf, 0, 32);
    cr_assert_eq(fn(0, buf, 32), 0x8A9136AAu, "%s: 32 zeros", name);
    memset(buf, 0xFF, 32);
    cr_assert_eq(fn(0, buf, 32), 0x62A8AB43u, "%s: 32 ones", name);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)i;
    }
    cr_assert_eq(fn(0, buf, 32), 0x46DD794Eu, "%s: incrementing", name);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)(31 - i);
    }
    cr_assert_eq(fn(0, buf, 32), 0x113FDB5Cu, "%s: decrementing", name);
}

Test(crc32c, test_vectors_sw)
{
    check_vectors(ts_crc32c_sw, "sw");
    check_vectors(ts_crc32c, "dispatch");
}

Test(crc32c, test_vectors_hw)
{
    if (!ts_crc32c_hw_available()) {
        cr_skip_test("this CPU has no SSE4.2: nothing to test for ts_crc32c_hw");
    }
    check_vectors(ts_crc32c_hw, "hw");
}

Test(crc32c, sw_matches_the_bitwise_definition)
{
    uint64_t rng = 11;
    uint8_t *buf = malloc(LEN_MAX + ALIGN_MAX);
    cr_assert_not_null(buf);
    for (int i = 0; i < 2000; i++) {
        size_t len = (size_t)(splitmix64(&rng) % (LEN_MAX + 1));
        size_t align = (size_t)(splitmix64(&rng) % ALIGN_MAX);
        uint32_t seed = (uint32_t)splitmix64(&rng);
        fill_random(buf + align, len, &rng);
        cr_assert_eq(ts_crc32c_sw(seed, buf + align, len), crc32c_bitwise(seed, buf + align, len),
                     "len %zu align %zu", len, align);
    }
    free(buf);
}

Test(crc32c, hw_matches_sw_on_random_buffers)
{
    if (!ts_crc32c_hw_available()) {
        cr_skip_test("this CPU has no SSE4.2: ts_crc32c_hw cannot be compared");
    }
    uint64_t rng = 12;
    uint8_t *buf = malloc(LEN_MAX + ALIGN_MAX);
    cr_assert_not_null(buf);
    for (int i = 0; i < RANDOM_BUFFERS; i++) {
        size_t len = (size_t)(splitmix64(&rng) % (LEN_MAX + 1));
        size_t align = (size_t)(splitmix64(&rng) % ALIGN_MAX);
        uint32_t seed = (i % 2 == 0) ? 0 : (uint32_t)splitmix64(&rng);
        fill_random(buf + align, len, &rng);
        uint32_t sw = ts_crc32c_sw(seed, buf + align, len);
        cr_assert_eq(ts_crc32c_hw(seed, buf + align, len), sw, "len %zu align %zu", len, align);
        cr_assert_eq(ts_crc32c(seed, buf + align, len), sw, "len %zu align %zu", len, align);
    }
    free(buf);
}

Test(crc32c, hw_matches_sw_on_a_large_buffer)
{
    if (!ts_crc32c_hw_available()) {
        cr_skip_test("this CPU has no SSE4.2: ts_crc32c_hw cannot be compared");
    }
    size_t len = (size_t)1 << 20;
    uint8_t *buf = malloc(len + 8);
    cr_assert_not_null(buf);
    uint64_t rng = 13;
    fill_random(buf, len + 8, &rng);
    for (size_t align = 0; align < 8; align++) {
        cr_assert_eq(ts_crc32c_hw(0, buf + align, len), ts_crc32c_sw(0, buf + align, len));
    }
    free(buf);
}

/* Splits buf into random pieces and checks that extending piece by piece equals one call. */
static void check_incremental(crc_fn *fn, const char *name, uint64_t *rng)
{
    uint8_t buf[3 * LEN_MAX];
    fill_random(buf, sizeof(buf), rng);
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)(splitmix64(rng) % (sizeof(buf) + 1));
        uint32_t whole = fn(0, buf, len);
        uint32_t crc = 0;
        size_t off = 0;
        while (off < len) {
            size_t piece = (size_t)(splitmix64(rng) % (len - off + 1));
            crc = fn(crc, buf + off, piece);
            off += piece;
        }
        cr_assert_eq(crc, whole, "%s: len %zu", name, len);
    }
}

Test(crc32c, extension_equals_one_shot)
{
    uint64_t rng = 14;
    check_incremental(ts_crc32c_sw, "sw", &rng);
    check_incremental(ts_crc32c, "dispatch", &rng);
    if (ts_crc32c_hw_available()) {
        check_incremental(ts_crc32c_hw, "hw", &rng);
    }
    cr_assert_eq(ts_crc32c(ts_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

Test(crc32c, detects_every_single_bit_flip)
{
    uint8_t buf[1024];
    uint64_t rng = 15;
    fill_random(buf, sizeof(buf), &rng);
    uint32_t good = ts_crc32c(0, buf, sizeof(buf));
    for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_neq(ts_crc32c(0, buf, sizeof(buf)), good, "bit %zu", bit);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}
