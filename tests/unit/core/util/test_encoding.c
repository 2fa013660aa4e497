/* Tests for core/util/encoding: little-endian loads and stores, LEB128 varints. */
#include "core/util/encoding.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

Test(encoding, le_stores_write_low_byte_first_at_every_alignment)
{
    static const uint8_t want[8] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    for (size_t off = 0; off < 8; off++) {
        uint8_t buf[24];
        memset(buf, 0xEE, sizeof(buf));
        ts_store_le16(buf + off, 0x0708);
        cr_assert(memcmp(buf + off, want, 2) == 0, "le16 at offset %zu", off);
        ts_store_le32(buf + off, 0x05060708u);
        cr_assert(memcmp(buf + off, want, 4) == 0, "le32 at offset %zu", off);
        ts_store_le64(buf + off, UINT64_C(0x0102030405060708));
        cr_assert(memcmp(buf + off, want, 8) == 0, "le64 at offset %zu", off);
        cr_assert_eq(buf[off + 8], 0xEE, "nothing past the value is written");
        if (off > 0) {
            cr_assert_eq(buf[off - 1], 0xEE, "nothing before the value is written");
        }
    }
}

Test(encoding, le_loads_round_trip_at_unaligned_addresses)
{
    uint64_t rng = 1;
    uint8_t buf[32];
    for (int i = 0; i < 10000; i++) {
        uint64_t v = splitmix64(&rng);
        size_t off = (size_t)(splitmix64(&rng) % 17);
        ts_store_le16(buf + off, (uint16_t)v);
        cr_assert_eq(ts_load_le16(buf + off), (uint16_t)v);
        ts_store_le32(buf + off, (uint32_t)v);
        cr_assert_eq(ts_load_le32(buf + off), (uint32_t)v);
        ts_store_le64(buf + off, v);
        cr_assert_eq(ts_load_le64(buf + off), v);
    }
    static const uint8_t bytes[9] = {0xAA, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01};
    cr_assert_eq(ts_load_le16(bytes + 1), 0xCDEF);
    cr_assert_eq(ts_load_le32(bytes + 1), 0x89ABCDEFu);
    cr_assert_eq(ts_load_le64(bytes + 1), UINT64_C(0x0123456789ABCDEF));
}

static void check_varint(uint64_t v, size_t want_len)
{
    uint8_t buf[TS_VARINT_BYTES_MAX + 6];
    memset(buf, 0xEE, sizeof(buf));
    size_t n = ts_varint_put(buf + 3, v); /* an odd offset on purpose */
    cr_assert_eq(n, want_len, "length of %llu", (unsigned long long)v);
    cr_assert_eq(ts_varint_len(v), want_len, "ts_varint_len(%llu)", (unsigned long long)v);
    cr_assert_eq(buf[3 + n], 0xEE, "put writes exactly its length");
    uint64_t got = ~v;
    cr_assert_eq(ts_varint_get(buf + 3, n, &got), (int)n);
    cr_assert_eq(got, v);
    /* Extra bytes after the varint are not consumed. */
    cr_assert_eq(ts_varint_get(buf + 3, sizeof(buf) - 3, &got), (int)n);
    cr_assert_eq(got, v);
}

Test(encoding, varint_round_trips_at_boundaries)
{
    check_varint(0, 1);
    check_varint(1, 1);
    check_varint(127, 1);
    check_varint(128, 2);
    check_varint(16383, 2);
    check_varint(16384, 3);
    check_varint(UINT32_MAX, 5);
    check_varint(UINT64_C(1) << 35, 6);
    check_varint((UINT64_C(1) << 56) - 1, 8);
    check_varint(UINT64_C(1) << 56, 9);
    check_varint((UINT64_C(1) << 63) - 1, 9);
    check_varint(UINT64_C(1) << 63, 10);
    check_varint(UINT64_MAX, 10);
    for (unsigned bits = 1; bits < 64; bits++) {
        uint64_t p = UINT64_C(1) << bits;
        check_varint(p - 1, (bits + 6) / 7);
        check_varint(p, (bits + 7) / 7);
    }
}

Test(encoding, varint_round_trips_random_values)
{
    uint64_t rng = 2;
    for (int i = 0; i < 10000; i++) {
        uint64_t v = splitmix64(&rng) >> (splitmix64(&rng) % 64);
        uint8_t buf[TS_VARINT_BYTES_MAX];
        size_t n = ts_varint_put(buf, v);
        uint64_t got = 0;
        cr_assert_eq(ts_varint_get(buf, n, &got), (int)n);
        cr_assert_eq(got, v);
    }
}

Test(encoding, varint_rejects_truncated_input)
{
    uint8_t buf[TS_VARINT_BYTES_MAX];
    size_t n = ts_varint_put(buf, UINT64_MAX);
    cr_assert_eq(n, TS_VARINT_BYTES_MAX);
    uint64_t got = 12345;
    for (size_t len = 0; len < n; len++) {
        cr_assert_eq(ts_varint_get(buf, len, &got), -1, "cut at %zu bytes", len);
    }
    cr_assert_eq(got, 12345, "out is untouched on failure");
    n = ts_varint_put(buf, 300);
    cr_assert_eq(ts_varint_get(buf, n - 1, &got), -1);
}

Test(encoding, varint_rejects_eleven_bytes_and_overflow)
{
    uint8_t eleven[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    uint64_t got = 7;
    cr_assert_eq(ts_varint_get(eleven, sizeof(eleven), &got), -1);
    /* The tenth byte may only carry bit 63. */
    uint8_t over[10] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02};
    cr_assert_eq(ts_varint_get(over, sizeof(over), &got), -1);
    over[9] = 0x7F;
    cr_assert_eq(ts_varint_get(over, sizeof(over), &got), -1);
    over[9] = 0x81; /* a continuation bit on the tenth byte */
    cr_assert_eq(ts_varint_get(over, sizeof(over), &got), -1);
    cr_assert_eq(got, 7);
    over[9] = 0x01;
    cr_assert_eq(ts_varint_get(over, sizeof(over), &got), 10);
    cr_assert_eq(got, UINT64_MAX);
}

Test(encoding, varint_rejects_overlong_encodings)
{
    uint64_t got = 7;
    uint8_t zero_two[2] = {0x80, 0x00};
    cr_assert_eq(ts_varint_get(zero_two, sizeof(zero_two), &got), -1, "0 has one encoding");
    uint8_t one_three[3] = {0x81, 0x80, 0x00};
    cr_assert_eq(ts_varint_get(one_three, sizeof(one_three), &got), -1);
    cr_assert_eq(got, 7, "nothing is written on failure");
    uint8_t zero[1] = {0x00};
    cr_assert_eq(ts_varint_get(zero, sizeof(zero), &got), 1);
    cr_assert_eq(got, 0);
}
