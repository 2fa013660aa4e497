/*
 * rate: the open-loop schedule of a worker under --rate, the guard against coordinated
 * omission. Operation n (0-based) of a worker is due at start + n / rate; the schedule
 * does not move when the target is slow, so an operation started late because every slot
 * was busy is measured from its due time, and the queueing it suffered counts as latency.
 * A rate of 0 is the open throttle: every operation is due at once and latency is
 * measured from the actual send.
 *
 * Due times are computed from n, not accumulated, so nothing drifts over a long run
 * (double holds n * 1e9 / rate exactly up to 2^53 ns, 104 days).
 *
 * Pure: the caller passes the clock readings.
 */
#ifndef TB_RATE_H
#define TB_RATE_H

#include <stdint.h>

struct tb_rate {
    uint64_t start_ns;
    double ops_per_s; /* 0: open throttle */
};

void tb_rate_init(struct tb_rate *r, uint64_t start_ns, double ops_per_s);

/* When operation n is due (start_ns for every n at the open throttle). */
uint64_t tb_rate_due_ns(const struct tb_rate *r, uint64_t n);

/* 0 when operation n may start at now_ns, else the nanoseconds until it may. */
uint64_t tb_rate_wait_ns(const struct tb_rate *r, uint64_t n, uint64_t now_ns);

/* The latency of an operation started at start_ns and completed at end_ns: from its due
 * time when the rate is set, else from start_ns. */
uint64_t tb_rate_latency_ns(const struct tb_rate *r, uint64_t due_ns, uint64_t start_ns,
                            uint64_t end_ns);

#endif
