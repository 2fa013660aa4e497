#include "core/util/crc32c.h"

#include "core/util/assert.h"
#include "core/util/encoding.h"

/*
 * Tables.
 *
 * The CRC register update is linear over GF(2): the register after feeding a byte n and
 * then k zero bytes into a zero register is the XOR, over the bits i set in n, of the
 * register for the byte (1 << i) alone. So each 256-entry table is determined by eight
 * constants, the images of the eight single bits, and the compiler expands the table from
 * them (ENTRY_ below). The constants were computed with the bitwise definition
 * (reg = (reg >> 1) ^ (reg & 1 ? 0x82F63B78 : 0), eight steps per byte) and are checked
 * by the unit tests against a bitwise implementation and the standard test vectors.
 *
 * slice[k][n]: the register after byte n followed by k zero bytes. slice[0] is the usual
 * byte-at-a-time table; slicing-by-8 looks the first byte of an 8-byte word up in
 * slice[7] and the last in slice[0].
 *
 * shift[j][n]: the register (n << 8j) advanced over HW_BLOCK_BYTES zero bytes. XORing
 * shift[0..3] over the four bytes of a register moves it past a block of zeros, which is
 * how the three hardware streams are joined.
 */
#define POLY 0x82F63B78u
#define HW_BLOCK_BYTES 256u

#define BIT_(n, i, v) ((((n) >> (i)) & 1u) != 0 ? (v) : 0u)
#define ENTRY_(n, b0, b1, b2, b3, b4, b5, b6, b7)                                                  \
    (BIT_(n, 0, b0) ^ BIT_(n, 1, b1) ^ BIT_(n, 2, b2) ^ BIT_(n, 3, b3) ^ BIT_(n, 4, b4) ^          \
     BIT_(n, 5, b5) ^ BIT_(n, 6, b6) ^ BIT_(n, 7, b7))
#define E4_(n, ...)                                                                                \
    ENTRY_((n), __VA_ARGS__), ENTRY_((n) + 1, __VA_ARGS__), ENTRY_((n) + 2, __VA_ARGS__),          \
        ENTRY_((n) + 3, __VA_ARGS__)
#define E16_(n, ...)                                                                               \
    E4_((n), __VA_ARGS__), E4_((n) + 4, __VA_ARGS__), E4_((n) + 8, __VA_ARGS__),                   \
        E4_((n) + 12, __VA_ARGS__)
#define E64_(n, ...)                                                                               \
    E16_((n), __VA_ARGS__), E16_((n) + 16, __VA_ARGS__), E16_((n) + 32, __VA_ARGS__),              \
        E16_((n) + 48, __VA_ARGS__)
#define TABLE_(...)                                                                                \
    {                                                                                              \
        E64_(0, __VA_ARGS__), E64_(64, __VA_ARGS__), E64_(128, __VA_ARGS__),                       \
            E64_(192, __VA_ARGS__)                                                                 \
    }

/* clang-format off */
/* Images of bits 0..7 of a byte followed by k zero bytes, k = 0..7. */
#define SLICE0_ 0xf26b8303u, 0xe13b70f7u, 0xc79a971fu, 0x8ad958cfu, 0x105ec76fu, 0x20bd8edeu, \
    0x417b1dbcu, 0x82f63b78u
#define SLICE1_ 0x13a29877u, 0x274530eeu, 0x4e8a61dcu, 0x9d14c3b8u, 0x3fc5f181u, 0x7f8be302u, \
    0xff17c604u, 0xfbc3faf9u
#define SLICE2_ 0xa541927eu, 0x4f6f520du, 0x9edea41au, 0x38513ec5u, 0x70a27d8au, 0xe144fb14u, \
    0xc76580d9u, 0x8b277743u
#define SLICE3_ 0xdd45aab8u, 0xbf672381u, 0x7b2231f3u, 0xf64463e6u, 0xe964b13du, 0xd725148bu, \
    0xaba65fe7u, 0x52a0c93fu
#define SLICE4_ 0x38116facu, 0x7022df58u, 0xe045beb0u, 0xc5670b91u, 0x8f2261d3u, 0x1ba8b557u, \
    0x37516aaeu, 0x6ea2d55cu
#define SLICE5_ 0xef306b19u, 0xdb8ca0c3u, 0xb2f53777u, 0x6006181fu, 0xc00c303eu, 0x85f4168du, \
    0x0e045bebu, 0x1c08b7d6u
#define SLICE6_ 0x68032cc8u, 0xd0065990u, 0xa5e0c5d1u, 0x4e2dfd53u, 0x9c5bfaa6u, 0x3d5b83bdu, \
    0x7ab7077au, 0xf56e0ef4u
#define SLICE7_ 0x493c7d27u, 0x9278fa4eu, 0x211d826du, 0x423b04dau, 0x847609b4u, 0x0d006599u, \
    0x1a00cb32u, 0x34019664u

/* Images of register bits 8j..8j+7 after HW_BLOCK_BYTES (256) zero bytes, j = 0..3. */
#define SHIFT0_ 0xdcb17aa4u, 0xbc8e83b9u, 0x7cf17183u, 0xf9e2e306u, 0xf629b0fdu, 0xe9bf170bu, \
    0xd69258e7u, 0xa8c8c73fu
#define SHIFT1_ 0x547df88fu, 0xa8fbf11eu, 0x541b94cdu, 0xa837299au, 0x558225c5u, 0xab044b8au, \
    0x53e4e1e5u, 0xa7c9c3cau
#define SHIFT2_ 0x4a7ff165u, 0x94ffe2cau, 0x2c13b365u, 0x582766cau, 0xb04ecd94u, 0x6571edd9u, \
    0xcae3dbb2u, 0x902bc195u
#define SHIFT3_ 0x25bbf5dbu, 0x4b77ebb6u, 0x96efd76cu, 0x2833d829u, 0x5067b052u, 0xa0cf60a4u, \
    0x4472b7b9u, 0x88e56f72u

/* clang-format on */

static const uint32_t slice[8][256] = {
    TABLE_(SLICE0_), TABLE_(SLICE1_), TABLE_(SLICE2_), TABLE_(SLICE3_),
    TABLE_(SLICE4_), TABLE_(SLICE5_), TABLE_(SLICE6_), TABLE_(SLICE7_),
};

#if defined(__x86_64__)
static const uint32_t shift[4][256] = {
    TABLE_(SHIFT0_),
    TABLE_(SHIFT1_),
    TABLE_(SHIFT2_),
    TABLE_(SHIFT3_),
};
#endif

_Static_assert(POLY == 0x82F63B78u, "Castagnoli, reflected");
_Static_assert(HW_BLOCK_BYTES % 8 == 0, "the hardware streams advance 8 bytes at a time");

#undef BIT_
#undef ENTRY_
#undef E4_
#undef E16_
#undef E64_
#undef TABLE_

static inline uint32_t byte_step(uint32_t crc, uint8_t b)
{
    return (crc >> 8) ^ slice[0][(crc ^ b) & 0xffu];
}

/* Slicing-by-8 over the raw register (no inversion). */
static uint32_t sw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    TS_DASSERT(p != NULL || len == 0);
    while (len > 0 && ((uintptr_t)p & 7u) != 0) {
        crc = byte_step(crc, *p++);
        len--;
    }
    TS_DASSERT(len == 0 || ((uintptr_t)p & 7u) == 0);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w = ts_load_le64(p) ^ crc;
        crc = slice[7][w & 0xffu] ^ slice[6][(w >> 8) & 0xffu] ^ slice[5][(w >> 16) & 0xffu] ^
              slice[4][(w >> 24) & 0xffu] ^ slice[3][(w >> 32) & 0xffu] ^
              slice[2][(w >> 40) & 0xffu] ^ slice[1][(w >> 48) & 0xffu] ^ slice[0][w >> 56];
    }
    TS_DASSERT(len < 8);
    while (len > 0) {
        crc = byte_step(crc, *p++);
        len--;
    }
    return crc;
}

uint32_t ts_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    TS_ASSERT(data != NULL || len == 0);
    TS_ASSERT(slice[0][0x80] == POLY);
    return ~sw_raw(~crc, data, len);
}

#if defined(__x86_64__)

bool ts_crc32c_hw_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
}

/* Advances a raw register past HW_BLOCK_BYTES zero bytes. */
static inline uint32_t shift_block(uint32_t crc)
{
    return shift[0][crc & 0xffu] ^ shift[1][(crc >> 8) & 0xffu] ^ shift[2][(crc >> 16) & 0xffu] ^
           shift[3][crc >> 24];
}

/* Three streams over consecutive blocks, joined with shift_block. Needs 3 blocks. */
__attribute__((target("sse4.2"))) static uint32_t hw_three_way(uint32_t crc, const uint8_t *p)
{
    uint64_t c0 = crc;
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    for (size_t off = 0; off < HW_BLOCK_BYTES; off += 8) {
        c0 = __builtin_ia32_crc32di(c0, ts_load_le64(p + off));
        c1 = __builtin_ia32_crc32di(c1, ts_load_le64(p + HW_BLOCK_BYTES + off));
        c2 = __builtin_ia32_crc32di(c2, ts_load_le64(p + 2 * HW_BLOCK_BYTES + off));
    }
    TS_DASSERT(c0 <= UINT32_MAX);
    TS_DASSERT(c1 <= UINT32_MAX);
    TS_DASSERT(c2 <= UINT32_MAX);
    crc = shift_block((uint32_t)c0) ^ (uint32_t)c1;
    return shift_block(crc) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2"))) static uint32_t hw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    TS_DASSERT(p != NULL || len == 0);
    while (len > 0 && ((uintptr_t)p & 7u) != 0) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
        len--;
    }
    for (; len >= 3 * HW_BLOCK_BYTES; p += 3 * HW_BLOCK_BYTES, len -= 3 * HW_BLOCK_BYTES) {
        crc = hw_three_way(crc, p);
    }
    uint64_t c = crc;
    for (; len >= 8; p += 8, len -= 8) {
        c = __builtin_ia32_crc32di(c, ts_load_le64(p));
    }
    TS_DASSERT(c <= UINT32_MAX);
    crc = (uint32_t)c;
    while (len > 0) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
        len--;
    }
    return crc;
}

uint32_t ts_crc32c_hw(uint32_t crc, const void *data, size_t len)
{
    TS_ASSERT(data != NULL || len == 0);
    TS_ASSERT(ts_crc32c_hw_available());
    return ~hw_raw(~crc, data, len);
}

uint32_t ts_crc32c(uint32_t crc, const void *data, size_t len)
{
    TS_ASSERT(data != NULL || len == 0);
    if (ts_crc32c_hw_available()) {
        return ~hw_raw(~crc, data, len);
    }
    return ~sw_raw(~crc, data, len);
}

#else /* !__x86_64__ */

bool ts_crc32c_hw_available(void)
{
    return false;
}

uint32_t ts_crc32c_hw(uint32_t crc, const void *data, size_t len)
{
    TS_ASSERT(data != NULL || len == 0);
    TS_ASSERT(ts_crc32c_hw_available());
    return crc;
}

uint32_t ts_crc32c(uint32_t crc, const void *data, size_t len)
{
    TS_ASSERT(data != NULL || len == 0);
    return ~sw_raw(~crc, data, len);
}

#endif
