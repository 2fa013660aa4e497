/* rate: the open-loop schedule (see rate.h). */
#include "bench/tessera-bench/rate.h"

#include <stddef.h>

#include "core/util/assert.h"

void tb_rate_init(struct tb_rate *r, uint64_t start_ns, double ops_per_s)
{
    TS_ASSERT(r != NULL);
    TS_ASSERT(ops_per_s >= 0.0);
    r->start_ns = start_ns;
    r->ops_per_s = ops_per_s;
}

uint64_t tb_rate_due_ns(const struct tb_rate *r, uint64_t n)
{
    if (r->ops_per_s == 0.0) {
        return r->start_ns;
    }
    double offset = (double)n * 1e9 / r->ops_per_s;
    TS_ASSERT(offset < 1.8e19); /* fits in uint64_t: a run is at most a week */
    return r->start_ns + (uint64_t)offset;
}

uint64_t tb_rate_wait_ns(const struct tb_rate *r, uint64_t n, uint64_t now_ns)
{
    uint64_t due = tb_rate_due_ns(r, n);
    return due > now_ns ? due - now_ns : 0;
}

uint64_t tb_rate_latency_ns(const struct tb_rate *r, uint64_t due_ns, uint64_t start_ns,
                            uint64_t end_ns)
{
    uint64_t from = r->ops_per_s > 0.0 ? due_ns : start_ns;
    TS_ASSERT(r->ops_per_s == 0.0 || due_ns <= start_ns);
    return end_ns > from ? end_ns - from : 0;
}
