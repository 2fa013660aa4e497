#include "core/util/hlc.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <stddef.h>

_Static_assert(TS_HLC_LOGICAL_BITS == 16, "the layout in hlc.h is 48 + 16 bits");
_Static_assert(TS_HLC_PHYSICAL_MS_MAX + TS_HLC_DRIFT_MS_MAX > TS_HLC_PHYSICAL_MS_MAX,
               "physical_now_ms + drift_ms_max cannot overflow");

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

void ts_hlc_init(struct ts_hlc *c, uint64_t drift_ms_max, uint64_t floor)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(drift_ms_max <= TS_HLC_DRIFT_MS_MAX);
    TS_ASSERT(floor < UINT64_MAX);
    c->last = floor;
    c->drift_ms_max = drift_ms_max;
}

uint64_t ts_hlc_now(struct ts_hlc *c, uint64_t physical_now_ms)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(physical_now_ms <= TS_HLC_PHYSICAL_MS_MAX);
    /* Reaching 2^64 - 1 takes 2^48 ms of stamps, or a received stamp the drift guard
     * lets through only near the end of the 48-bit epoch. */
    TS_ASSERT(c->last < UINT64_MAX);
    uint64_t stamp = max_u64(c->last + 1, ts_hlc_pack(physical_now_ms, 0));
    TS_TESTCASE(ts_hlc_logical(c->last) == TS_HLC_LOGICAL_MAX);
    TS_DASSERT(stamp > c->last);
    TS_DASSERT(ts_hlc_physical_ms(stamp) >= physical_now_ms);
    c->last = stamp;
    return stamp;
}

int ts_hlc_update(struct ts_hlc *c, uint64_t received, uint64_t physical_now_ms, uint64_t *out)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(out != NULL);
    TS_ASSERT(physical_now_ms <= TS_HLC_PHYSICAL_MS_MAX);
    TS_ASSERT(c->last < UINT64_MAX);
    if (ts_hlc_physical_ms(received) > physical_now_ms + c->drift_ms_max) {
        return TS_EINVAL;
    }
    if (received == UINT64_MAX) {
        return TS_EINVAL; /* No stamp is greater: only reachable near the 48-bit epoch end. */
    }
    uint64_t stamp = max_u64(max_u64(c->last, received) + 1, ts_hlc_pack(physical_now_ms, 0));
    TS_TESTCASE(received >= c->last);
    TS_DASSERT(stamp > c->last);
    TS_DASSERT(stamp > received);
    c->last = stamp;
    *out = stamp;
    return 0;
}
