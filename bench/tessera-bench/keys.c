/* keys: key choice and spelling (see keys.h). */
#include "bench/tessera-bench/keys.h"

#include <math.h>
#include <string.h>

#include "core/util/assert.h"

/* zeta(n, theta) = sum over i = 1..n of i^-theta, summed from the small terms up so that
 * the large sum loses less precision. */
static double zeta(uint64_t n, double theta)
{
    double sum = 0.0;
    for (uint64_t i = n; i >= 1; i--) {
        sum += pow((double)i, -theta);
    }
    return sum;
}

void tb_zipf_init(struct tb_zipf *z, uint64_t n, double theta)
{
    TS_ASSERT(n >= 1);
    TS_ASSERT(theta > 0.0 && theta < 1.0);
    z->n = n;
    z->theta = theta;
    z->alpha = 1.0 / (1.0 - theta);
    z->zetan = zeta(n, theta);
    z->half_pow_theta = pow(0.5, theta);
    double zeta2 = 1.0 + z->half_pow_theta;
    /* YCSB: eta = (1 - (2/n)^(1-theta)) / (1 - zeta2/zetan). For n <= 2 the formula
     * divides by zero; those ranks are answered before eta is used. */
    z->eta = n > 2 ? (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / z->zetan) : 0.0;
    TS_ASSERT(z->zetan >= 1.0);
}

double tb_rand_unit(struct ts_rand *r)
{
    return (double)(ts_rand_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t tb_zipf_next(const struct tb_zipf *z, struct ts_rand *r)
{
    double u = tb_rand_unit(r);
    double uz = u * z->zetan;
    if (uz < 1.0 || z->n == 1) {
        return 0;
    }
    if (uz < 1.0 + z->half_pow_theta || z->n == 2) {
        return 1;
    }
    uint64_t rank = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha));
    rank = rank < z->n ? rank : z->n - 1; /* u < 1 keeps it below n; rounding might not */
    TS_DASSERT(rank < z->n);
    return rank;
}

double tb_zipf_prob(const struct tb_zipf *z, uint64_t rank)
{
    TS_ASSERT(rank < z->n);
    return pow((double)(rank + 1), -z->theta) / z->zetan;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

uint64_t tb_scramble_mult(uint64_t n)
{
    TS_ASSERT(n >= 1);
    if (n == 1) {
        return 1;
    }
    /* Start near n / golden ratio, which scatters consecutive ranks far apart. */
    uint64_t m = (uint64_t)((double)n * 0.6180339887498949) | 1u;
    while (gcd(m, n) != 1) {
        m++;
    }
    TS_ASSERT(m >= 1);
    return m;
}

uint64_t tb_scramble(uint64_t rank, uint64_t n, uint64_t mult)
{
    TS_DASSERT(rank < n);
    return (uint64_t)(((unsigned __int128)rank * mult) % n);
}

size_t tb_key_format(char *buf, size_t key_size, uint64_t k)
{
    TS_ASSERT(buf != NULL);
    TS_ASSERT(key_size >= 1);
    size_t i = key_size;
    do {
        if (i == 0) {
            return 0;
        }
        buf[--i] = (char)('0' + k % 10);
        k /= 10;
    } while (k != 0);
    memset(buf, '0', i);
    return key_size;
}

unsigned tb_varint_len(uint64_t k)
{
    uint64_t ux = k << 1; /* zigzag of a non-negative int64 (k < 2^63) */
    unsigned n = 1;
    while (ux >= 0x80) {
        ux >>= 7;
        n++;
    }
    return n;
}

size_t tb_key_varint(char *buf, size_t key_size, uint64_t k)
{
    TS_ASSERT(buf != NULL);
    TS_ASSERT(k < (UINT64_C(1) << 63));
    if (tb_varint_len(k) > key_size) {
        return 0;
    }
    uint64_t ux = k << 1;
    size_t i = 0;
    while (ux >= 0x80) {
        buf[i++] = (char)(uint8_t)(ux | 0x80);
        ux >>= 7;
    }
    buf[i++] = (char)(uint8_t)ux;
    memset(buf + i, 0, key_size - i);
    return key_size;
}

size_t tb_zk_path(char *buf, size_t cap, const char *prefix, const void *key, size_t key_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t plen = strlen(prefix);
    size_t len = plen + 1 + 2 * key_len;
    if (len + 1 > cap) {
        return 0;
    }
    memcpy(buf, prefix, plen);
    buf[plen] = '/';
    const uint8_t *k = key;
    for (size_t i = 0; i < key_len; i++) {
        buf[plen + 1 + 2 * i] = hex[k[i] >> 4];
        buf[plen + 2 + 2 * i] = hex[k[i] & 15];
    }
    buf[len] = '\0';
    return len;
}
