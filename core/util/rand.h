/*
 * A seeded pseudo-random generator (xoshiro256**), passed in wherever randomness is
 * needed so that every run is reproducible from one seed (STYLE R15, R21): election
 * timeouts, simulation schedules, fault injection, test inputs. Not for secrets.
 *
 * The state is seeded through splitmix64 so that nearby seeds give unrelated streams.
 * Pure: no clock, no entropy, no shared state; each user owns its struct ts_rand.
 */
#ifndef TS_CORE_UTIL_RAND_H
#define TS_CORE_UTIL_RAND_H

#include <stdint.h>

struct ts_rand {
    uint64_t s[4];
};

static inline uint64_t ts_rand_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void ts_rand_seed(struct ts_rand *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        r->s[i] = ts_rand_splitmix(&seed);
    }
}

static inline uint64_t ts_rand_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t ts_rand_u64(struct ts_rand *r)
{
    uint64_t *s = r->s;
    uint64_t result = ts_rand_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ts_rand_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias is below 2^-32 for the
 * n Tessera uses). */
static inline uint64_t ts_rand_below(struct ts_rand *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)ts_rand_u64(r) * n) >> 64);
}

/* True with probability num/den. */
static inline int ts_rand_chance(struct ts_rand *r, uint64_t num, uint64_t den)
{
    return ts_rand_below(r, den) < num;
}

#endif
