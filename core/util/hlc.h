/*
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
 *
 * Revisions in Tessera are HLC stamps. Within a range they must be strictly increasing,
 * including when the machine's clock stands still or steps backwards (NTP, a VM
 * migration), and a stamp must be greater than any stamp the range has seen from a peer,
 * so that causally later writes get larger revisions. An HLC gives both while staying
 * close to wall-clock time, which makes revisions readable and lets a client ask for
 * "the state at time T".
 *
 * Stamp layout: one uint64_t, compared as an integer.
 *
 *     bits 63..16  physical time, milliseconds since the Unix epoch (48 bits, ~8900 years)
 *     bits 15..0   logical counter (65536 stamps per millisecond)
 *
 * Packing makes the merge rule integer arithmetic: the next stamp is
 * max(physical_now << 16, last + 1, received + 1). When the logical counter overflows,
 * "+ 1" carries into the physical part, which is the documented overflow behaviour: the
 * physical part moves one millisecond ahead of the real clock and the counter restarts at
 * 0. The clock thus runs ahead of real time only while a range issues more than 65536
 * stamps a millisecond, and falls back to it when the real clock catches up.
 *
 * Drift guard: a remote stamp whose physical part is more than drift_ms_max ahead of the
 * local physical clock is rejected with TS_EINVAL and the clock is left unchanged.
 * Accepting it would drag every later revision on this range into the future (and one
 * corrupt or hostile stamp near 2^64 would exhaust the stamp space). TS_EINVAL, rather
 * than a dedicated "clock skew" code, because err.h has no such code yet and the caller's
 * handling is the same as for any invalid message: drop it and report the peer.
 *
 * Purity: hlc.c never reads a clock. The caller passes physical time in milliseconds
 * (CLOCK_REALTIME in a shard, a simulated clock in tests). One struct ts_hlc belongs to
 * one range (or one shard) and is used by that shard's thread only.
 */
#ifndef TS_CORE_UTIL_HLC_H
#define TS_CORE_UTIL_HLC_H

#include <stdint.h>

#define TS_HLC_LOGICAL_BITS 16u
#define TS_HLC_LOGICAL_MAX ((1u << TS_HLC_LOGICAL_BITS) - 1u)

/* Physical time must stay below 2^48 ms: a larger value means the caller passed
 * microseconds or nanoseconds, which is asserted. */
#define TS_HLC_PHYSICAL_MS_MAX ((UINT64_C(1) << (64u - TS_HLC_LOGICAL_BITS)) - 1u)

/* The drift guard may not be set above about 50 days: a guard that large is no guard, and
 * the bound keeps physical_now + drift_ms_max far from overflowing the stamp. */
#define TS_HLC_DRIFT_MS_MAX (UINT64_C(1) << 32)

struct ts_hlc {
    uint64_t last;         /* The greatest stamp issued or received; 0 before any. */
    uint64_t drift_ms_max; /* How far ahead a remote stamp may be. */
};

static inline uint64_t ts_hlc_pack(uint64_t physical_ms, uint32_t logical)
{
    return (physical_ms << TS_HLC_LOGICAL_BITS) | (logical & TS_HLC_LOGICAL_MAX);
}

static inline uint64_t ts_hlc_physical_ms(uint64_t stamp)
{
    return stamp >> TS_HLC_LOGICAL_BITS;
}

static inline uint32_t ts_hlc_logical(uint64_t stamp)
{
    return (uint32_t)(stamp & TS_HLC_LOGICAL_MAX);
}

/*
 * Starts a clock whose stamps will all be greater than floor. Pass the greatest revision
 * the range has persisted, so that revisions keep increasing across a restart even if the
 * machine's clock went back while the process was down; 0 for a new range.
 * drift_ms_max <= TS_HLC_DRIFT_MS_MAX.
 */
void ts_hlc_init(struct ts_hlc *c, uint64_t drift_ms_max, uint64_t floor);

/* Returns a new stamp for a local event: greater than every stamp this clock has issued
 * or received, and at least physical_now_ms << 16. physical_now_ms <=
 * TS_HLC_PHYSICAL_MS_MAX; it may go backwards or stand still between calls. */
uint64_t ts_hlc_now(struct ts_hlc *c, uint64_t physical_now_ms);

/*
 * Merges a stamp received from a peer and returns, in *out, a new stamp greater than
 * both `received` and every stamp this clock has issued or received. Returns 0, or
 * TS_EINVAL when received's physical part is more than drift_ms_max ahead of
 * physical_now_ms (the clock and *out are then unchanged).
 */
int ts_hlc_update(struct ts_hlc *c, uint64_t received, uint64_t physical_now_ms, uint64_t *out);

/* The greatest stamp issued or received so far, without issuing a new one. */
static inline uint64_t ts_hlc_last(const struct ts_hlc *c)
{
    return c->last;
}

#endif
