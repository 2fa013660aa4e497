/* Tests for core/util/histogram: bucket layout, percentile accuracy against sorted samples
 * from several distributions, exact min/max/mean, merge and reset. */
#include "core/util/histogram.h"

#include <criterion/criterion.h>

#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLES 100000

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double unit(uint64_t *rng)
{
    return ((double)(splitmix64(rng) >> 11) + 1.0) / 9007199254740992.0;
}

static struct ts_histogram *histogram_new(void)
{
    struct ts_histogram *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    ts_histogram_init(h);
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile of sorted[0..n), as documented in histogram.h. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double p)
{
    double r = ceil(p * (double)n / 100.0);
    size_t rank = r < 1.0 ? 1 : (r > (double)n ? n : (size_t)r);
    return sorted[rank - 1];
}

enum dist { UNIFORM, EXPONENTIAL, LOGNORMAL, BIMODAL, LOG_UNIFORM, SMALL, DIST_COUNT };
static const char *const dist_names[] = {"uniform", "exponential", "lognormal",
                                         "bimodal", "log-uniform", "small"};

static uint64_t sample(enum dist d, uint64_t *rng)
{
    switch (d) {
    case UNIFORM:
        return 1 + splitmix64(rng) % 1000000;
    case EXPONENTIAL:
        return 1 + (uint64_t)(-log(unit(rng)) * 100000.0);
    case LOGNORMAL: {
        double z = sqrt(-2.0 * log(unit(rng))) * cos(2.0 * M_PI * unit(rng));
        return 1 + (uint64_t)exp(log(50000.0) + 1.5 * z);
    }
    case BIMODAL:
        if (splitmix64(rng) % 10 == 0) {
            return 4000000 + splitmix64(rng) % 2000000;
        }
        return 1500 + splitmix64(rng) % 1000;
    case LOG_UNIFORM: {
        unsigned bits = (unsigned)(splitmix64(rng) % 40);
        uint64_t top = UINT64_C(1) << bits;
        return top | (splitmix64(rng) & (top - 1));
    }
    case SMALL:
    default:
        return splitmix64(rng) % 300;
    }
}

static void check_distribution(enum dist d, uint64_t seed)
{
    static const double ps[] = {0,  0.1, 1,  5,    10,   25,    50,     75,
                                90, 95,  99, 99.5, 99.9, 99.99, 99.999, 100};
    uint64_t rng = seed;
    uint64_t *values = malloc(SAMPLES * sizeof(*values));
    cr_assert_not_null(values);
    struct ts_histogram *h = histogram_new();
    for (size_t i = 0; i < SAMPLES; i++) {
        values[i] = sample(d, &rng);
        ts_histogram_record(h, values[i]);
    }
    qsort(values, SAMPLES, sizeof(*values), cmp_u64);
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]) + 200; i++) {
        double p = i < sizeof(ps) / sizeof(ps[0]) ? ps[i] : unit(&rng) * 100.0;
        uint64_t exact = exact_percentile(values, SAMPLES, p);
        uint64_t got = ts_histogram_percentile(h, p);
        uint64_t err = got > exact ? got - exact : exact - got;
        cr_assert_leq(err * 100, exact, "%s p%g: got %llu exact %llu", dist_names[d], p,
                      (unsigned long long)got, (unsigned long long)exact);
        cr_assert_leq(err * 256, exact, "%s p%g: beyond the documented 1/256", dist_names[d], p);
    }
    cr_assert_eq(ts_histogram_count(h), SAMPLES);
    cr_assert_eq(ts_histogram_min(h), values[0]);
    cr_assert_eq(ts_histogram_max(h), values[SAMPLES - 1]);
    cr_assert_eq(ts_histogram_percentile(h, 0), values[0]);
    cr_assert_eq(ts_histogram_percentile(h, 100), values[SAMPLES - 1]);
    free(h);
    free(values);
}

Test(histogram, percentiles_within_one_percent_of_sorted_samples, .timeout = 120)
{
    for (int d = 0; d < DIST_COUNT; d++) {
        check_distribution((enum dist)d, 1000 + (uint64_t)d);
    }
}

Test(histogram, min_max_mean_are_exact)
{
    struct ts_histogram *h = histogram_new();
    uint64_t rng = 7;
    unsigned __int128 sum = 0;
    uint64_t min = UINT64_MAX;
    uint64_t max = 0;
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t v = splitmix64(&rng) >> (splitmix64(&rng) % 64);
        ts_histogram_record(h, v);
        sum += v;
        min = v < min ? v : min;
        max = v > max ? v : max;
    }
    cr_assert_eq(ts_histogram_min(h), min);
    cr_assert_eq(ts_histogram_max(h), max);
    cr_assert_eq(ts_histogram_mean(h), (double)sum / (double)SAMPLES);
    free(h);

    h = histogram_new();
    ts_histogram_record(h, 3);
    ts_histogram_record(h, 4);
    cr_assert_eq(ts_histogram_mean(h), 3.5);
    ts_histogram_record(h, UINT64_MAX);
    ts_histogram_record(h, UINT64_MAX); /* the sum passes 2^64 */
    cr_assert_eq(ts_histogram_mean(h), ((double)UINT64_MAX * 2.0 + 7.0) / 4.0);
    cr_assert_eq(ts_histogram_max(h), UINT64_MAX);
    cr_assert_eq(ts_histogram_min(h), 3u);
    free(h);
}

Test(histogram, empty_histogram_reports_zeros)
{
    struct ts_histogram *h = histogram_new();
    cr_assert_eq(ts_histogram_count(h), 0u);
    cr_assert_eq(ts_histogram_min(h), 0u);
    cr_assert_eq(ts_histogram_max(h), 0u);
    cr_assert_eq(ts_histogram_mean(h), 0.0);
    cr_assert_eq(ts_histogram_percentile(h, 50), 0u);
    cr_assert_eq(ts_histogram_percentile(h, 100), 0u);
    free(h);
}

Test(histogram, small_values_are_exact)
{
    struct ts_histogram *h = histogram_new();
    for (uint64_t v = 0; v < 128; v++) {
        ts_histogram_record(h, v);
    }
    for (uint64_t v = 0; v < 128; v++) {
        cr_assert_eq(ts_histogram_percentile(h, (double)(v + 1) * 100.0 / 128.0), v);
    }
    free(h);
}

Test(histogram, bucket_layout)
{
    cr_assert_eq(ts_histogram_bucket(0), 0u);
    cr_assert_eq(ts_histogram_bucket(127), 127u);
    cr_assert_eq(ts_histogram_bucket(128), 128u);
    cr_assert_eq(ts_histogram_bucket(255), 255u);
    cr_assert_eq(ts_histogram_bucket(256), 256u);
    cr_assert_eq(ts_histogram_bucket(257), 256u);
    cr_assert_eq(ts_histogram_bucket(UINT64_MAX), TS_HISTOGRAM_BUCKETS - 1);
    for (uint32_t b = 0; b < TS_HISTOGRAM_BUCKETS; b++) {
        cr_assert_eq(ts_histogram_bucket(ts_histogram_bucket_value(b)), b, "bucket %u", b);
        if (b > 0) {
            cr_assert_gt(ts_histogram_bucket_value(b), ts_histogram_bucket_value(b - 1));
        }
    }
    for (unsigned g = 0; g < 64; g++) {
        uint64_t p = UINT64_C(1) << g;
        uint64_t around[] = {p - 1, p, p + 1, p + p / 2, p + p / 2 - 1, p | (p - 1)};
        for (size_t i = 0; i < sizeof(around) / sizeof(around[0]); i++) {
            uint64_t v = around[i];
            uint64_t rep = ts_histogram_bucket_value(ts_histogram_bucket(v));
            uint64_t err = rep > v ? rep - v : v - rep;
            cr_assert_leq(err, v / 256, "v %llu rep %llu", (unsigned long long)v,
                          (unsigned long long)rep);
        }
    }
}

static void assert_same(const struct ts_histogram *x, const struct ts_histogram *y)
{
    cr_assert_eq(ts_histogram_count(x), ts_histogram_count(y));
    cr_assert_eq(ts_histogram_min(x), ts_histogram_min(y));
    cr_assert_eq(ts_histogram_max(x), ts_histogram_max(y));
    cr_assert_eq(ts_histogram_mean(x), ts_histogram_mean(y));
    cr_assert(memcmp(x->buckets, y->buckets, sizeof(x->buckets)) == 0);
    for (int p = 0; p <= 100; p++) {
        cr_assert_eq(ts_histogram_percentile(x, p), ts_histogram_percentile(y, p));
    }
}

Test(histogram, record_n_equals_n_records)
{
    struct ts_histogram *a = histogram_new();
    struct ts_histogram *b = histogram_new();
    ts_histogram_record_n(a, 12345, 1000);
    ts_histogram_record_n(a, 99, 0); /* records nothing */
    for (int i = 0; i < 1000; i++) {
        ts_histogram_record(b, 12345);
    }
    assert_same(a, b);
    cr_assert_eq(ts_histogram_min(a), 12345u, "n = 0 did not touch min");
    free(a);
    free(b);
}

Test(histogram, merge_equals_recording_everything_in_one)
{
    struct ts_histogram *all = histogram_new();
    struct ts_histogram *a = histogram_new();
    struct ts_histogram *b = histogram_new();
    struct ts_histogram *empty = histogram_new();
    uint64_t rng = 21;
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t v = sample((enum dist)(i % DIST_COUNT), &rng);
        ts_histogram_record(all, v);
        ts_histogram_record(splitmix64(&rng) % 3 == 0 ? a : b, v);
    }
    ts_histogram_merge(a, b);
    assert_same(a, all);
    ts_histogram_merge(a, empty); /* merging nothing changes nothing */
    assert_same(a, all);
    ts_histogram_merge(empty, all); /* into an empty one: a copy */
    assert_same(empty, all);
    ts_histogram_merge(all, all); /* into itself: every count doubles */
    cr_assert_eq(ts_histogram_count(all), 2u * SAMPLES);
    cr_assert_eq(ts_histogram_min(all), ts_histogram_min(a));
    cr_assert_eq(ts_histogram_mean(all), ts_histogram_mean(a));
    free(all);
    free(a);
    free(b);
    free(empty);
}

Test(histogram, reset_empties)
{
    struct ts_histogram *h = histogram_new();
    struct ts_histogram *fresh = histogram_new();
    ts_histogram_record(h, 5);
    ts_histogram_record(h, 1u << 30);
    ts_histogram_reset(h);
    assert_same(h, fresh);
    ts_histogram_record(h, 77);
    cr_assert_eq(ts_histogram_min(h), 77u);
    cr_assert_eq(ts_histogram_max(h), 77u);
    free(h);
    free(fresh);
}

Test(histogram, percentile_out_of_range_aborts, .signal = SIGABRT)
{
    struct ts_histogram *h = histogram_new();
    ts_histogram_record(h, 1);
    (void)ts_histogram_percentile(h, 100.5);
}
