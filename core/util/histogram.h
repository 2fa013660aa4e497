/*
 * Latency histogram with log-linear buckets (in the manner of HdrHistogram), used by the
 * benchmarks to record latencies in nanoseconds.
 *
 * Buckets cover every uint64_t value, so nothing is clamped or dropped:
 *  - values 0..127 have one bucket each (exact);
 *  - each power-of-two range [2^g, 2^(g+1)), g = 7..63, is split into 128 equal
 *    sub-buckets of width 2^(g-7).
 * That is 58 groups of 128 = 7424 buckets of 8 bytes, about 58 KiB, held inline in the
 * struct: a histogram never allocates, and the caller places it (a benchmark's stack or
 * state). A value is reported as its bucket's midpoint, which is within width/2 of every
 * value in the bucket, i.e. within 1/256 (0.39%) of the true value: comfortably inside the
 * 1% the benchmarks need. Recording is a count-leading-zeros, a shift and an increment.
 *
 * Percentiles use the nearest-rank definition: the p-th percentile of n samples is the
 * sample of rank max(1, ceil(p * n / 100)) in sorted order (computed in double, multiplying
 * first), so p = 0 gives the minimum and p = 100 the maximum. Ranks 1 and n are answered
 * exactly (min and max are kept); any other rank gets its sample's bucket midpoint, clamped
 * to [min, max], within 0.39% of the exact nearest-rank percentile. min, max, count and
 * mean are exact (the sum is kept in 128 bits).
 *
 * A histogram is plain data owned by one thread; merge several threads' histograms after
 * they stop. All values of an empty histogram (min, max, mean, percentiles) are 0.
 */
#ifndef TS_CORE_UTIL_HISTOGRAM_H
#define TS_CORE_UTIL_HISTOGRAM_H

#include <stdint.h>

/* log2 of the sub-buckets per power of two; the relative error is 2^-(bits+1). */
#define TS_HISTOGRAM_SUB_BITS 7u
#define TS_HISTOGRAM_SUB_COUNT (1u << TS_HISTOGRAM_SUB_BITS)
/* Group 0 holds 0..127 exactly; groups 1..57 are the powers 2^7..2^63. */
#define TS_HISTOGRAM_BUCKETS ((64u - TS_HISTOGRAM_SUB_BITS + 1u) * TS_HISTOGRAM_SUB_COUNT)

struct ts_histogram {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    unsigned __int128 sum;
    uint64_t buckets[TS_HISTOGRAM_BUCKETS];
};

/* Empties h. ts_histogram_reset is the same operation under the name a reuse reads as. */
void ts_histogram_init(struct ts_histogram *h);
void ts_histogram_reset(struct ts_histogram *h);

void ts_histogram_record(struct ts_histogram *h, uint64_t value);

/* Records value n times (n = 0 records nothing). */
void ts_histogram_record_n(struct ts_histogram *h, uint64_t value, uint64_t n);

/* Adds every sample of src to dst. Borrows src, which is unchanged (it may be dst). */
void ts_histogram_merge(struct ts_histogram *dst, const struct ts_histogram *src);

uint64_t ts_histogram_count(const struct ts_histogram *h);
uint64_t ts_histogram_min(const struct ts_histogram *h);
uint64_t ts_histogram_max(const struct ts_histogram *h);
double ts_histogram_mean(const struct ts_histogram *h);

/* The p-th percentile, 0 <= p <= 100, as defined above. */
uint64_t ts_histogram_percentile(const struct ts_histogram *h, double p);

/* The bucket a value falls in, and the value a bucket reports (its midpoint). Exposed for
 * tests and for printing a distribution. */
uint32_t ts_histogram_bucket(uint64_t value);
uint64_t ts_histogram_bucket_value(uint32_t bucket);

#endif
