/*
 * Little-endian fixed-width and varint encoding helpers.
 *
 * Every on-disk and wire format in Tessera is little-endian. Loads and stores go through
 * memcpy so they are safe at any alignment; compilers turn them into single moves. The
 * host is required to be little-endian (checked below): Tessera targets x86-64 and
 * AArch64, and a big-endian port would add byte swaps here and nowhere else.
 *
 * Varints are LEB128 (7 bits a byte, low first, high bit = more), at most 10 bytes for
 * 64 bits.
 */
#ifndef TS_CORE_UTIL_ENCODING_H
#define TS_CORE_UTIL_ENCODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Tessera needs a little-endian host");

#define TS_VARINT_BYTES_MAX 10u

static inline uint16_t ts_load_le16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint32_t ts_load_le32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint64_t ts_load_le64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void ts_store_le16(void *p, uint16_t v)
{
    memcpy(p, &v, sizeof(v));
}

static inline void ts_store_le32(void *p, uint32_t v)
{
    memcpy(p, &v, sizeof(v));
}

static inline void ts_store_le64(void *p, uint64_t v)
{
    memcpy(p, &v, sizeof(v));
}

/* Writes v to dst (which has room for TS_VARINT_BYTES_MAX) and returns the length. */
static inline size_t ts_varint_put(uint8_t *dst, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        dst[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    dst[n++] = (uint8_t)v;
    return n;
}

/* Bytes ts_varint_put would write for v. */
static inline size_t ts_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/*
 * Reads a varint from src[0..len). Returns the bytes consumed (> 0), or -1 when the
 * input ends inside the varint, is longer than 10 bytes, overflows 64 bits, or is
 * overlong (a final zero byte after the first: every value has one encoding). Borrows
 * src.
 */
static inline int ts_varint_get(const uint8_t *src, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < TS_VARINT_BYTES_MAX; i++) {
        uint64_t b = src[i];
        if (i == TS_VARINT_BYTES_MAX - 1 && b > 1) {
            return -1;
        }
        v |= (b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            if (b == 0 && i > 0) {
                return -1; /* overlong: one value, one encoding */
            }
            *out = v;
            return (int)(i + 1);
        }
    }
    return -1;
}

#endif
