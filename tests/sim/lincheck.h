/*
 * tests/sim/lincheck: a linearizability checker for histories of a key-value store whose
 * keys are registers of uint64 values (STYLE R21, "linearizability").
 *
 * The simulator records each client operation twice: lin_invoke() when the client sends
 * it and lin_return() when the answer arrives (or lin_lost() when it never will: a
 * timeout, a crashed client). lin_check() then decides whether some total order of the
 * operations exists that respects real time (an operation that returned before another
 * was invoked comes first) and the sequential semantics of a register.
 *
 * Method: Wing & Gong's search with Lowe's improvements ("Testing for linearizability",
 * 2017), as Porcupine implements it. The history is split per key (P-compositionality:
 * a history is linearizable if and only if each key's sub-history is). Each key's ops
 * become a list of invocation and return events sorted by time. The search walks the
 * list and linearizes an invoked op as soon as the register allows it ("just in time"),
 * keeping an undo stack to backtrack when it meets the return of an op it has not
 * linearized. A cache of (set of linearized ops, register value) pairs, the set stored
 * as a bitset, prunes every configuration already explored.
 *
 * Time rules. Times are the caller's clock and need not be recorded in order. Two
 * events at the same time are concurrent: at equal times invocations sort before
 * returns, so an op invoked at the instant another returns may be ordered either way.
 * A lost op has return time +infinity: it may take effect at any point after its
 * invocation, or never.
 *
 * Reductions, each of which keeps the search complete (a linearization exists if and
 * only if one of the restricted form exists; lincheck.c gives the arguments, and a
 * test compares the checker with a brute-force search on millions of small
 * histories). A lost GET is dropped. A read the register allows is taken alone, with
 * no alternative tried (partial-order reduction). A lost write is linearized only just
 * before an op it serves. A lost write whose value nobody reads or expects only ever
 * serves to make a failed CAS legal, so it is kept out of the search and inserted just
 * before such a CAS (or dropped when the key has no failed CAS). Without these, lost
 * writes multiply the configurations of an illegal history exponentially.
 *
 * Ownership: a struct lin_history owns its ops; lin_check() only reads them (it may be
 * called again after more ops are recorded). Allocation failure aborts (TS_ASSERT):
 * this is test code. Not thread-safe.
 */
#ifndef TS_TESTS_SIM_LINCHECK_H
#define TS_TESTS_SIM_LINCHECK_H

#include <stddef.h>
#include <stdint.h>

enum lin_op_kind { LIN_PUT = 0, LIN_GET = 1, LIN_CAS = 2 };
enum lin_result { LIN_OK = 0, LIN_ILLEGAL = 1, LIN_UNKNOWN = 2 };

struct lin_history;

/* Returns an empty history, owned by the caller (lin_history_free()). Aborts on OOM. */
struct lin_history *lin_history_new(void);
void lin_history_free(struct lin_history *h);

/* Records an invocation at `time` (non-decreasing across calls is NOT required; times are
 * the simulator's clock). Registers hold uint64 values; 0 means absent (a key never put).
 * PUT: arg1 = value (nonzero). GET: args unused. CAS: arg1 = expected (0 = absent),
 * arg2 = new value (nonzero). Returns an op id. */
uint32_t lin_invoke(struct lin_history *h, uint32_t client, uint8_t kind, uint64_t key,
                    uint64_t arg1, uint64_t arg2, uint64_t time);

/* Records the response. PUT: result ignored. GET: the value read (0 = absent).
 * CAS: 1 = swapped, 0 = not swapped (the value differed). time >= the invocation's. */
void lin_return(struct lin_history *h, uint32_t op, uint64_t result, uint64_t time);

/* The outcome is unknown (timeout, crash): the op may take effect at any point after its
 * invocation, or never. A GET or a failed CAS that is lost can simply be dropped; a lost
 * PUT/CAS must be allowed to take effect or not. Ops neither returned nor lost when
 * lin_check runs are treated as lost. */
void lin_lost(struct lin_history *h, uint32_t op);

/* Checks the whole history, partitioned per key (P-compositionality, as Porcupine does).
 * steps_max bounds the search per key (0 = unbounded); exceeding it gives LIN_UNKNOWN.
 * On LIN_ILLEGAL writes a one-paragraph explanation into why (key, the ops of that key
 * around the point where no linearization exists, with client, kind, args, result,
 * invoke/return times). On LIN_UNKNOWN it names the key that exhausted steps_max; on
 * LIN_OK it writes an empty string. why may be NULL when why_len is 0. */
enum lin_result lin_check(struct lin_history *h, uint64_t steps_max, char *why, size_t why_len);

/* The number of ops recorded so far. */
size_t lin_history_ops(const struct lin_history *h);

#endif
