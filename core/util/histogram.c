#include "core/util/histogram.h"

#include "core/util/assert.h"

#include <stddef.h>
#include <string.h>

_Static_assert(TS_HISTOGRAM_BUCKETS == 58u * 128u, "the layout in histogram.h");
_Static_assert(TS_HISTOGRAM_BUCKETS <= UINT32_MAX, "bucket indexes fit uint32_t");
_Static_assert(TS_HISTOGRAM_SUB_BITS >= 6, "2^-(bits+1) must stay below 1%");

void ts_histogram_init(struct ts_histogram *h)
{
    TS_ASSERT(h != NULL);
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
    TS_DASSERT(h->count == 0);
    TS_DASSERT(h->buckets[TS_HISTOGRAM_BUCKETS - 1] == 0);
}

void ts_histogram_reset(struct ts_histogram *h)
{
    ts_histogram_init(h);
}

uint32_t ts_histogram_bucket(uint64_t value)
{
    if (value < TS_HISTOGRAM_SUB_COUNT) {
        return (uint32_t)value;
    }
    uint32_t g = 63u - (uint32_t)__builtin_clzll(value); /* 2^g <= value < 2^(g+1) */
    uint32_t shift = g - TS_HISTOGRAM_SUB_BITS;
    uint32_t sub = (uint32_t)(value >> shift) & (TS_HISTOGRAM_SUB_COUNT - 1u);
    uint32_t bucket = ((shift + 1u) << TS_HISTOGRAM_SUB_BITS) + sub;
    TS_DASSERT(g >= TS_HISTOGRAM_SUB_BITS);
    TS_DASSERT(bucket < TS_HISTOGRAM_BUCKETS);
    return bucket;
}

uint64_t ts_histogram_bucket_value(uint32_t bucket)
{
    TS_ASSERT(bucket < TS_HISTOGRAM_BUCKETS);
    uint32_t group = bucket >> TS_HISTOGRAM_SUB_BITS;
    uint64_t sub = bucket & (TS_HISTOGRAM_SUB_COUNT - 1u);
    if (group == 0) {
        return sub;
    }
    uint32_t shift = group - 1u;
    uint64_t low = (TS_HISTOGRAM_SUB_COUNT + sub) << shift;
    uint64_t width = UINT64_C(1) << shift;
    uint64_t mid = low + (width - 1u) / 2u;
    TS_DASSERT(ts_histogram_bucket(low) == bucket);
    TS_DASSERT(ts_histogram_bucket(low + (width - 1u)) == bucket);
    return mid;
}

void ts_histogram_record_n(struct ts_histogram *h, uint64_t value, uint64_t n)
{
    TS_ASSERT(h != NULL);
    if (n == 0) {
        return;
    }
    TS_ASSERT(h->count + n > h->count); /* 2^64 samples: never in practice */
    uint32_t bucket = ts_histogram_bucket(value);
    h->buckets[bucket] += n;
    h->count += n;
    h->sum += (unsigned __int128)value * n;
    h->min = value < h->min ? value : h->min;
    h->max = value > h->max ? value : h->max;
    TS_DASSERT(h->min <= h->max);
}

void ts_histogram_record(struct ts_histogram *h, uint64_t value)
{
    ts_histogram_record_n(h, value, 1);
}

void ts_histogram_merge(struct ts_histogram *dst, const struct ts_histogram *src)
{
    TS_ASSERT(dst != NULL);
    TS_ASSERT(src != NULL);
    if (src->count == 0) {
        return;
    }
    TS_ASSERT(dst->count + src->count > dst->count);
    uint64_t src_count = src->count; /* src may be dst */
    for (uint32_t i = 0; i < TS_HISTOGRAM_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src_count;
    dst->sum += src->sum;
    dst->min = src->min < dst->min ? src->min : dst->min;
    dst->max = src->max > dst->max ? src->max : dst->max;
    TS_DASSERT(dst->count >= src_count);
    TS_DASSERT(dst->min <= dst->max);
}

uint64_t ts_histogram_count(const struct ts_histogram *h)
{
    TS_ASSERT(h != NULL);
    return h->count;
}

uint64_t ts_histogram_min(const struct ts_histogram *h)
{
    TS_ASSERT(h != NULL);
    return h->count == 0 ? 0 : h->min;
}

uint64_t ts_histogram_max(const struct ts_histogram *h)
{
    TS_ASSERT(h != NULL);
    return h->max;
}

double ts_histogram_mean(const struct ts_histogram *h)
{
    TS_ASSERT(h != NULL);
    if (h->count == 0) {
        return 0.0;
    }
    return (double)h->sum / (double)h->count;
}

/* The nearest rank (1-based) of the p-th percentile of count samples. */
static uint64_t percentile_rank(uint64_t count, double p)
{
    TS_DASSERT(count > 0);
    TS_DASSERT(p >= 0.0);
    double x = p * (double)count / 100.0;
    if (x <= 1.0) {
        return 1;
    }
    if (x >= (double)count) {
        return count;
    }
    uint64_t r = (uint64_t)x; /* ceil without libm: 1 <= x < count here */
    return (double)r < x ? r + 1 : r;
}

uint64_t ts_histogram_percentile(const struct ts_histogram *h, double p)
{
    TS_ASSERT(h != NULL);
    TS_ASSERT(p >= 0.0); /* also false for NaN */
    TS_ASSERT(p <= 100.0);
    if (h->count == 0) {
        return 0;
    }
    uint64_t rank = percentile_rank(h->count, p);
    if (rank == 1) {
        return h->min; /* the first and last samples are known exactly */
    }
    if (rank == h->count) {
        return h->max;
    }
    uint64_t seen = 0;
    uint32_t i = 0;
    for (; i < TS_HISTOGRAM_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            break;
        }
    }
    TS_ASSERT(i < TS_HISTOGRAM_BUCKETS); /* the buckets add up to count >= rank */
    uint64_t v = ts_histogram_bucket_value(i);
    v = v < h->min ? h->min : v;
    v = v > h->max ? h->max : v;
    TS_DASSERT(v >= h->min);
    TS_DASSERT(v <= h->max);
    return v;
}
