#include "core/util/assert.h"

#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static _Thread_local int current_shard = -1;

void ts_shard_id_set(int shard_id)
{
    current_shard = shard_id;
}

int ts_shard_id(void)
{
    return current_shard;
}

#ifdef TS_DEBUG
void ts_testcase_hit(int line)
{
    /* An opaque side effect so the branch in TS_TESTCASE is not folded away. */
    __asm__ volatile("" : : "r"(line) : "memory");
}
#endif

_Noreturn void ts_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    void *frames[64];
    fprintf(stderr, "assertion failed: %s:%d: %s: %s (shard %d)\n", file, line, func, expr,
            current_shard);
    fflush(stderr);
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    abort();
}
