/*
 * keys: which key an operation touches, and how a key is spelled.
 *
 * Key numbers are 0..keyspace-1. Spelling (--key-format):
 *   decimal  the number in decimal, zero-padded to --key-size bytes ("0000000000000042"):
 *            keys sort in number order (they share their first bytes, so on Tessera's
 *            static layout a small keyspace lies in one range);
 *   varint   etcd's benchmark tool's spelling (tools/benchmark/cmd/put.go): Go's
 *            binary.PutVarint of the number (zigzag, then 7 bits a byte, low first),
 *            zero-padded to --key-size bytes: the first byte varies with the number, so
 *            keys spread over the keyspace as they do in etcd's benchmark.
 * Every key has the same size. ZooKeeper has no flat keyspace: key k is the znode
 * "/tessera-bench/<hex of k's bytes>" (one parent holds every key).
 *
 * Distributions:
 *   uniform     every key number equally likely;
 *   sequential  0, 1, 2, ... (wrapping), numbered by the run's shared op counter;
 *   zipfian     YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record
 *               synthetic databases", SIGMOD 1994) with theta = 0.99: rank r (0-based) has
 *               probability (r+1)^-theta / zeta(n, theta). Rank 0 is the hottest. Ranks are
 *               then spread over the keyspace by a bijection (r * m mod n, m coprime with
 *               n), so that hot keys do not all sit in one range, as YCSB's
 *               ScrambledZipfianGenerator does with an FNV hash (but without its
 *               collisions, so the distribution of keys is exactly that of ranks).
 *
 * Pure: the generator state is read-only once built and may be shared by threads; the
 * randomness comes from the caller's struct ts_rand.
 */
#ifndef TB_KEYS_H
#define TB_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util/rand.h"

#define TB_ZIPF_THETA 0.99

struct tb_zipf {
    uint64_t n;
    double theta;
    double alpha; /* 1 / (1 - theta) */
    double zetan; /* sum over i = 1..n of i^-theta */
    double eta;
    double half_pow_theta; /* 0.5^theta: the mass of rank 1 relative to rank 0 */
};

/* Builds the generator for ranks 0..n-1 (n >= 1, 0 < theta < 1). O(n) for the zeta sum. */
void tb_zipf_init(struct tb_zipf *z, uint64_t n, double theta);

/* A rank in [0, n). */
uint64_t tb_zipf_next(const struct tb_zipf *z, struct ts_rand *r);

/* The exact Zipf probability of rank r: (r+1)^-theta / zetan (what tests compare with). */
double tb_zipf_prob(const struct tb_zipf *z, uint64_t rank);

/* Uniform in [0, 1), 53 random bits. */
double tb_rand_unit(struct ts_rand *r);

/* The multiplier of the rank-to-key bijection for a keyspace of n: coprime with n. */
uint64_t tb_scramble_mult(uint64_t n);

/* Rank r's key number: (r * mult) mod n. A bijection of [0, n) when mult is coprime with n. */
uint64_t tb_scramble(uint64_t rank, uint64_t n, uint64_t mult);

/* Writes key number k as key_size decimal digits, zero-padded, into buf (key_size bytes;
 * no NUL is written). Returns key_size, or 0 when k has more than key_size digits. */
size_t tb_key_format(char *buf, size_t key_size, uint64_t k);

/* Key number k as etcd's benchmark spells it (see the top), into buf (key_size bytes).
 * Returns key_size, or 0 when the varint is longer than key_size. */
size_t tb_key_varint(char *buf, size_t key_size, uint64_t k);
/* The bytes of k's varint (1..10). */
unsigned tb_varint_len(uint64_t k);

/* Writes prefix "/" hex(key) and a NUL into buf (cap bytes). Returns the length without
 * the NUL, or 0 when it does not fit. */
size_t tb_zk_path(char *buf, size_t cap, const char *prefix, const void *key, size_t key_len);

#endif
