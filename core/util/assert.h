/*
 * Assertions (STYLE R9, R10).
 *
 * TS_ASSERT is always on: it guards invariants whose violation would corrupt data or
 * lose an acknowledged write, so it stays in release builds. TS_DASSERT runs in debug,
 * sanitizer and coverage builds (TS_DEBUG) only, for checks too costly for the hot path.
 * A failure prints file:line, the function, the expression and the current shard id,
 * dumps a backtrace to stderr and aborts (SIGABRT), which Criterion tests can expect
 * with `.signal = SIGABRT`.
 *
 * TS_TESTCASE(cond) marks a boundary that tests must reach both ways (SQLite's
 * testcase()); it compiles to a branch with a side effect only in TS_DEBUG builds so
 * that branch coverage reports it, and to nothing in release.
 *
 * Operating errors (bad input, full disk, a peer gone) are never asserted: they are
 * returned (STYLE R8).
 */
#ifndef TS_CORE_UTIL_ASSERT_H
#define TS_CORE_UTIL_ASSERT_H

_Noreturn void ts_assert_fail(const char *expr, const char *file, int line, const char *func);

#define TS_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0)) {                                                        \
            ts_assert_fail(#cond, __FILE__, __LINE__, __func__);                                   \
        }                                                                                          \
    } while (0)

#ifdef TS_DEBUG
#define TS_DASSERT(cond) TS_ASSERT(cond)
void ts_testcase_hit(int line);
#define TS_TESTCASE(cond)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            ts_testcase_hit(__LINE__);                                                             \
        }                                                                                          \
    } while (0)
#else
#define TS_DASSERT(cond) ((void)sizeof(!(cond)))
#define TS_TESTCASE(cond) ((void)0)
#endif

/* The one permitted thread-local (STYLE R14): the id of the shard running on this
 * thread, read only by logging and assertions. -1 outside any shard. */
void ts_shard_id_set(int shard_id);
int ts_shard_id(void);

#endif
