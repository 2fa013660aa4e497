/*
 * shard/host.c's layout: how the keyspace is cut into ranges, and --initial-cluster.
 *
 * host_range_start() and host_range_of_key() must agree: range r holds exactly the keys
 * in [start(r), start(r + 1)), range 1 starts at the empty key and the last range runs
 * to the end of the keyspace. The reference here is a binary search over the starts
 * with memcmp order, checked against every 1- and 2-byte key, the empty key, keys on
 * and around every boundary, and random longer keys.
 */
#include "shard/host.h"

#include "core/util/err.h"
#include "core/util/rand.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Range layout -------------------------------------------------------------------------- */

static const uint32_t range_counts[] = {1, 2, 3, 7, 8, 64, 1000, TS_HOST_RANGES_MAX};

/* Byte-string order (memcmp, then the shorter first). */
static int bytes_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl ? 1 : 0;
}

struct layout {
    struct host_cluster c;
    uint32_t ranges;
    uint8_t (*start)[2]; /* start[r - 1]: range r's first key */
    uint32_t *start_len;
};

static struct layout *layout_new(uint32_t ranges)
{
    struct layout *l = calloc(1, sizeof *l);
    cr_assert_not_null(l);
    const char *why = NULL;
    int rc = host_cluster_parse("1=127.0.0.1:7001", 1, ranges, &l->c, &why);
    cr_assert_eq(rc, 0, "ranges %u: %s", ranges, why);
    cr_assert_eq(l->c.ranges, ranges);
    l->ranges = ranges;
    l->start = calloc(ranges, sizeof *l->start);
    l->start_len = calloc(ranges, sizeof *l->start_len);
    cr_assert_not_null(l->start);
    cr_assert_not_null(l->start_len);
    for (uint32_t r = 1; r <= ranges; r++) {
        l->start_len[r - 1] = host_range_start(&l->c, r, l->start[r - 1]);
        cr_assert(l->start_len[r - 1] <= 2, "ranges %u: range %u starts with %u bytes", ranges, r,
                  l->start_len[r - 1]);
    }
    return l;
}

static void layout_free(struct layout *l)
{
    free(l->start);
    free(l->start_len);
    free(l);
}

/* The reference: the last range whose start is <= key. */
static uint64_t reference_range(const struct layout *l, const uint8_t *key, uint32_t len)
{
    uint32_t lo = 1, hi = l->ranges; /* answer in [lo, hi] */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (bytes_cmp(l->start[mid - 1], l->start_len[mid - 1], key, len) <= 0) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

static void check_key(const struct layout *l, const uint8_t *key, uint32_t len)
{
    uint64_t got = host_range_of_key(&l->c, key, len);
    uint64_t want = reference_range(l, key, len);
    if (got != want) {
        char hex[64] = "";
        for (uint32_t i = 0; i < len && i < 16; i++) {
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02x ", key[i]);
        }
        cr_assert_fail("ranges %u: key [%s] (%u bytes) -> range %llu, want %llu", l->ranges, hex,
                       len, (unsigned long long)got, (unsigned long long)want);
    }
    cr_assert(got >= 1 && got <= l->ranges);
}

Test(host_layout, starts_strictly_increase)
{
    for (uint32_t k = 0; k < sizeof range_counts / sizeof range_counts[0]; k++) {
        struct layout *l = layout_new(range_counts[k]);
        cr_assert_eq(l->start_len[0], 0, "range 1 starts at the empty key");
        for (uint32_t r = 2; r <= l->ranges; r++) {
            cr_assert_eq(l->start_len[r - 1], 2, "ranges %u: range %u", l->ranges, r);
            cr_assert(bytes_cmp(l->start[r - 2], l->start_len[r - 2], l->start[r - 1],
                                l->start_len[r - 1]) < 0,
                      "ranges %u: range %u does not start after range %u", l->ranges, r, r - 1);
        }
        /* Every range is the home of its own start key. */
        for (uint32_t r = 1; r <= l->ranges; r++) {
            cr_assert_eq(host_range_of_key(&l->c, l->start[r - 1], l->start_len[r - 1]), r,
                         "ranges %u: the start of range %u", l->ranges, r);
        }
        layout_free(l);
    }
}

Test(host_layout, every_short_key_maps_to_its_range, .timeout = 60)
{
    for (uint32_t k = 0; k < sizeof range_counts / sizeof range_counts[0]; k++) {
        struct layout *l = layout_new(range_counts[k]);
        check_key(l, NULL, 0);
        cr_assert_eq(host_range_of_key(&l->c, (const uint8_t *)"", 0), 1);
        for (uint32_t a = 0; a < 256; a++) {
            uint8_t key[2] = {(uint8_t)a, 0};
            check_key(l, key, 1);
            for (uint32_t b = 0; b < 256; b++) {
                key[1] = (uint8_t)b;
                check_key(l, key, 2);
            }
        }
        cr_assert_eq(host_range_of_key(&l->c, (const uint8_t *)"\xff\xff", 2), l->ranges,
                     "the last range runs to the end of the keyspace");
        layout_free(l);
    }
}

Test(host_layout, keys_around_every_boundary)
{
    for (uint32_t k = 0; k < sizeof range_counts / sizeof range_counts[0]; k++) {
        struct layout *l = layout_new(range_counts[k]);
        for (uint32_t r = 2; r <= l->ranges; r++) {
            const uint8_t *s = l->start[r - 1];
            uint8_t key[8];
            /* The start followed by anything is in r. */
            memcpy(key, s, 2);
            memset(key + 2, 0, 6);
            check_key(l, key, 3);
            cr_assert_eq(host_range_of_key(&l->c, key, 3), r);
            memset(key + 2, 0xff, 6);
            check_key(l, key, 8);
            cr_assert_eq(host_range_of_key(&l->c, key, 8), r);
            /* The first byte alone sorts before the start: range r - 1 unless the start
             * is exactly {b, 0}, whose predecessor {b} belongs to the range before. */
            check_key(l, s, 1);
            /* Just below the start: the 2-byte predecessor followed by 0xff... */
            uint32_t v = ((uint32_t)s[0] << 8 | s[1]) - 1;
            key[0] = (uint8_t)(v >> 8);
            key[1] = (uint8_t)v;
            check_key(l, key, 8);
            cr_assert_eq(host_range_of_key(&l->c, key, 8), r - 1,
                         "ranges %u: the key just below range %u's start", l->ranges, r);
        }
        layout_free(l);
    }
}

Test(host_layout, random_long_keys)
{
    struct ts_rand rnd;
    const uint64_t seed = 0x5eed0001;
    ts_rand_seed(&rnd, seed);
    for (uint32_t k = 0; k < sizeof range_counts / sizeof range_counts[0]; k++) {
        struct layout *l = layout_new(range_counts[k]);
        for (uint32_t i = 0; i < 20000; i++) {
            uint8_t key[64];
            uint32_t len = 3 + (uint32_t)ts_rand_below(&rnd, sizeof key - 2);
            for (uint32_t j = 0; j < len; j++) {
                key[j] = (uint8_t)ts_rand_u64(&rnd);
            }
            if (ts_rand_chance(&rnd, 1, 4)) {
                /* Start at a boundary so the suffix decides nothing. */
                uint32_t r = 1 + (uint32_t)ts_rand_below(&rnd, l->ranges);
                memcpy(key, l->start[r - 1], l->start_len[r - 1]);
            }
            uint64_t got = host_range_of_key(&l->c, key, len);
            uint64_t want = reference_range(l, key, len);
            cr_assert_eq(got, want, "seed %llx: ranges %u key %u -> %llu, want %llu",
                         (unsigned long long)seed, l->ranges, i, (unsigned long long)got,
                         (unsigned long long)want);
        }
        /* A maximal key. */
        uint8_t top[TS_KV_KEY_BYTES_MAX];
        memset(top, 0xff, sizeof top);
        cr_assert_eq(host_range_of_key(&l->c, top, sizeof top), l->ranges);
        layout_free(l);
    }
}

Test(host_layout, start_of_range_zero_aborts, .signal = SIGABRT)
{
    struct host_cluster c;
    const char *why;
    cr_assert_eq(host_cluster_parse("1=a:1", 1, 8, &c, &why), 0);
    uint8_t buf[2];
    (void)host_range_start(&c, 0, buf);
}

Test(host_layout, start_past_the_last_range_aborts, .signal = SIGABRT)
{
    struct host_cluster c;
    const char *why;
    cr_assert_eq(host_cluster_parse("1=a:1", 1, 8, &c, &why), 0);
    uint8_t buf[2];
    (void)host_range_start(&c, 9, buf);
}

/* ---- host_cluster_parse -------------------------------------------------------------------- */

static int parse_spec(const char *spec, uint64_t self, uint32_t ranges, struct host_cluster *c)
{
    const char *why = NULL;
    int rc = host_cluster_parse(spec, self, ranges, c, &why);
    if (rc != 0) {
        cr_assert_not_null(why, "no reason for refusing \"%s\"", spec);
    }
    return rc;
}

Test(host_cluster, three_members)
{
    const char *spec = "1=127.0.0.1:7001,2=127.0.0.1:7002,30=10.1.2.3:65535";
    struct host_cluster c;
    cr_assert_eq(parse_spec(spec, 2, 64, &c), 0);
    cr_assert_eq(c.n, 3);
    cr_assert_eq(c.self, 2);
    cr_assert_eq(c.ranges, 64);
    cr_assert_eq(c.replicas, 3);
    cr_assert_eq(c.m[0].node_id, 1);
    cr_assert_str_eq(c.m[0].addr, "127.0.0.1:7001");
    cr_assert_eq(c.m[1].node_id, 2);
    cr_assert_str_eq(c.m[1].addr, "127.0.0.1:7002");
    cr_assert_eq(c.m[2].node_id, 30);
    cr_assert_str_eq(c.m[2].addr, "10.1.2.3:65535");
    cr_assert_neq(c.cluster_id, 0);

    /* Every member parsing the same spec agrees on the cluster id. */
    struct host_cluster c1, c30;
    cr_assert_eq(parse_spec(spec, 1, 64, &c1), 0);
    cr_assert_eq(parse_spec(spec, 30, 64, &c30), 0);
    cr_assert_eq(c1.cluster_id, c.cluster_id);
    cr_assert_eq(c30.cluster_id, c.cluster_id);
    cr_assert_eq(c1.self, 1);
    cr_assert_eq(c30.self, 30);

    /* Another spec (one port differs; another member order) is another cluster. */
    struct host_cluster d;
    cr_assert_eq(parse_spec("1=127.0.0.1:7001,2=127.0.0.1:7002,30=10.1.2.3:65534", 2, 64, &d), 0);
    cr_assert_neq(d.cluster_id, c.cluster_id);
    cr_assert_eq(parse_spec("2=127.0.0.1:7002,1=127.0.0.1:7001,30=10.1.2.3:65535", 2, 64, &d), 0);
    cr_assert_neq(d.cluster_id, c.cluster_id);
}

Test(host_cluster, one_two_and_four_members)
{
    struct host_cluster c;
    cr_assert_eq(parse_spec("5=h:1", 5, 1, &c), 0);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.replicas, 1);
    cr_assert_eq(c.m[0].node_id, 5);
    cr_assert_str_eq(c.m[0].addr, "h:1");
    cr_assert_eq(parse_spec("5=h:1,6=h:2", 6, 2, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_eq(c.replicas, 2);
    cr_assert_eq(c.m[1].node_id, 6);
    cr_assert_str_eq(c.m[1].addr, "h:2");
    cr_assert_eq(parse_spec("5=h:1,6=h:2,7=h:3,8=h:4", 8, 2, &c), 0);
    cr_assert_eq(c.n, 4);
    cr_assert_eq(c.replicas, 3, "replicas is min(3, n)");
}

Test(host_cluster, range_bounds)
{
    struct host_cluster c;
    cr_assert_eq(parse_spec("1=h:1", 1, 0, &c), TS_EINVAL);
    cr_assert_eq(parse_spec("1=h:1", 1, TS_HOST_RANGES_MAX + 1, &c), TS_EINVAL);
    cr_assert_eq(parse_spec("1=h:1", 1, UINT32_MAX, &c), TS_EINVAL);
    cr_assert_eq(parse_spec("1=h:1", 1, 1, &c), 0);
    cr_assert_eq(parse_spec("1=h:1", 1, TS_HOST_RANGES_MAX, &c), 0);
    cr_assert_eq(c.ranges, TS_HOST_RANGES_MAX);
}

Test(host_cluster, malformed_specs)
{
    struct host_cluster c;
    const char *bad[] = {
        "",                  /* empty */
        "1",                 /* no '=' */
        "1:127.0.0.1:7001",  /* no '=' */
        "=127.0.0.1:7001",   /* no id */
        "x=127.0.0.1:7001",  /* not a number */
        "0=127.0.0.1:7001",  /* id 0 */
        "1=",                /* no address */
        "1=h:1,2=",          /* no address */
        "1=h:1,,2=h:2",      /* an empty member */
        "1=h:1,2",           /* a member without '=' */
        "1=h:1,1=h:2",       /* duplicate id */
        "1=h:1,2=h:2,1=h:3", /* duplicate id, not adjacent */
    };
    for (uint32_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parse_spec(bad[i], 1, 8, &c), TS_EINVAL, "\"%s\" was accepted", bad[i]);
    }
}

Test(host_cluster, self_must_be_a_member)
{
    struct host_cluster c;
    cr_assert_eq(parse_spec("1=h:1,2=h:2,3=h:3", 4, 8, &c), TS_EINVAL);
    cr_assert_eq(parse_spec("1=h:1,2=h:2,3=h:3", 3, 8, &c), 0);
    /* self 0: no node of its own (the meta range's view of the layout). */
    cr_assert_eq(parse_spec("1=h:1,2=h:2,3=h:3", 0, 8, &c), 0);
    cr_assert_eq(c.layout_n, 3);
}

Test(host_cluster, a_joined_node_hosts_no_replica)
{
    struct host_cluster c;
    cr_assert_eq(parse_spec("1=h:1,2=h:2,3=h:3", 0, 8, &c), 0);
    cr_assert_eq(host_cluster_add(&c, 4, "h:4"), 0);
    cr_assert_eq(c.self, 4);
    cr_assert_eq(c.n, 4);
    cr_assert_eq(c.layout_n, 3);
    cr_assert_eq(c.replicas, 3);
    for (uint64_t r = 1; r <= 8; r++) {
        for (uint32_t k = 0; k < c.replicas; k++) {
            cr_assert_lt(host_replica_member(&c, r, k), 3u, "range %u replica %u", (unsigned)r, k);
        }
    }
    cr_assert_eq(host_cluster_add(&c, 4, "h:5"), TS_EINVAL, "an id taken");
    cr_assert_eq(host_cluster_add(&c, 2, "h:5"), TS_EINVAL, "a layout member's id");
    cr_assert_eq(host_cluster_add(&c, 0, "h:5"), TS_EINVAL, "id 0");
    cr_assert_eq(host_cluster_add(&c, 9, ""), TS_EINVAL, "no address");
}

Test(host_cluster, address_length)
{
    char spec[2 * TS_HOST_ADDR_BYTES];
    struct host_cluster c;
    /* TS_HOST_ADDR_BYTES - 1 characters fit with their NUL; one more does not. */
    snprintf(spec, sizeof spec, "1=%0*d", (int)TS_HOST_ADDR_BYTES - 1, 7);
    cr_assert_eq(parse_spec(spec, 1, 8, &c), 0);
    cr_assert_eq(strlen(c.m[0].addr), TS_HOST_ADDR_BYTES - 1);
    cr_assert_str_eq(c.m[0].addr, spec + 2);
    snprintf(spec, sizeof spec, "1=%0*d", (int)TS_HOST_ADDR_BYTES, 7);
    cr_assert_eq(parse_spec(spec, 1, 8, &c), TS_EINVAL);
    /* The same for a member after the first. */
    snprintf(spec, sizeof spec, "1=h:1,2=%0*d", (int)TS_HOST_ADDR_BYTES, 7);
    cr_assert_eq(parse_spec(spec, 1, 8, &c), TS_EINVAL);
}

/* Writes "1=h:1,2=h:2,...,n=h:n" into buf. */
static void spec_of(char *buf, size_t bytes, uint32_t n)
{
    size_t at = 0;
    for (uint32_t i = 1; i <= n; i++) {
        int w = snprintf(buf + at, bytes - at, "%s%u=h:%u", i > 1 ? "," : "", i, 7000 + i);
        cr_assert(w > 0 && (size_t)w < bytes - at);
        at += (size_t)w;
    }
}

Test(host_cluster, member_limit)
{
    char spec[1024];
    struct host_cluster c;
    spec_of(spec, sizeof spec, TS_RAFT_MEMBERS_MAX);
    cr_assert_eq(parse_spec(spec, TS_RAFT_MEMBERS_MAX, 8, &c), 0);
    cr_assert_eq(c.n, TS_RAFT_MEMBERS_MAX);
    cr_assert_eq(c.m[TS_RAFT_MEMBERS_MAX - 1].node_id, TS_RAFT_MEMBERS_MAX);
    cr_assert_eq(c.replicas, 3);
    spec_of(spec, sizeof spec, TS_RAFT_MEMBERS_MAX + 1);
    cr_assert_eq(parse_spec(spec, 1, 8, &c), TS_EINVAL);
}

/* A node id is a positive decimal number: strtoull alone also takes a minus sign and
 * clamps values past 2^64 - 1, so an id nobody wrote would join the cluster. */
Test(host_cluster, ids_out_of_range_are_refused)
{
    struct host_cluster c;
    const char *bad[] = {
        "-1=h:1",                   /* becomes 2^64 - 1 */
        "1=h:1,-2=h:2",             /* becomes 2^64 - 2 */
        "18446744073709551616=h:1", /* 2^64: clamped to 2^64 - 1 */
    };
    const uint64_t self[] = {UINT64_MAX, 1, UINT64_MAX};
    for (uint32_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parse_spec(bad[i], self[i], 8, &c), TS_EINVAL, "\"%s\" was accepted", bad[i]);
    }
    /* The largest id there is still parses. */
    cr_assert_eq(parse_spec("18446744073709551615=h:1", UINT64_MAX, 8, &c), 0);
    cr_assert_eq(c.m[0].node_id, UINT64_MAX);
}

/* The spec is kept as written: the cluster id is its hash, and a node that joins later
 * gets it from the meta range to derive the same id. */
Test(host_cluster, keeps_the_spec_as_written)
{
    struct host_cluster a, b;
    cr_assert_eq(parse_spec("1=h:1,2=h:2,", 1, 8, &a), 0);
    cr_assert_str_eq(a.spec, "1=h:1,2=h:2,");
    cr_assert_eq(parse_spec(a.spec, 0, 8, &b), 0);
    cr_assert_eq(b.cluster_id, a.cluster_id);
    cr_assert_eq(parse_spec("1=h:1,2=h:2", 1, 8, &b), 0);
    cr_assert_neq(b.cluster_id, a.cluster_id, "another spec, another cluster");
}
