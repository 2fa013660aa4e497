/* Tests for core/util/assert: both tiers, the failure report and the shard id (STYLE R9). */
#include "core/util/assert.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

Test(assert, true_condition_does_nothing)
{
    int evaluated = 0;
    TS_ASSERT(++evaluated == 1);
    TS_ASSERT(true);
    cr_assert_eq(evaluated, 1, "TS_ASSERT evaluates its condition exactly once");
}

Test(assert, false_condition_aborts, .signal = SIGABRT)
{
    int x = 1;
    TS_ASSERT(x == 2);
}

#ifdef TS_DEBUG
Test(assert, dassert_is_active_in_debug_builds, .signal = SIGABRT)
{
    int x = 1;
    TS_DASSERT(x == 2);
}

Test(assert, dassert_true_evaluates_once_in_debug_builds)
{
    int evaluated = 0;
    TS_DASSERT(++evaluated == 1);
    cr_assert_eq(evaluated, 1);
}
#else
Test(assert, dassert_is_compiled_out_in_release_builds)
{
    int evaluated = 0;
    TS_DASSERT(++evaluated == 100);
    cr_assert_eq(evaluated, 0, "the condition must not even be evaluated");
}
#endif

Test(assert, testcase_marker_is_harmless)
{
    for (int i = 0; i < 3; i++) {
        TS_TESTCASE(i == 1);
    }
    cr_assert(true);
}

/* Runs TS_ASSERT(1 == 2) as shard 7 in a child whose stderr is a pipe, and returns the
 * first line it printed. */
static void failing_child_report(char *out, size_t cap, int *status)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        ts_shard_id_set(7);
        TS_ASSERT(1 == 2);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fds[0], out + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
    }
    out[len] = '\0';
    close(fds[0]);
    cr_assert_eq(waitpid(pid, status, 0), pid);
    char *nl = strchr(out, '\n');
    if (nl != NULL) {
        *nl = '\0';
    }
}

Test(assert, failure_reports_location_expression_and_shard)
{
    char report[8192];
    int status = 0;
    failing_child_report(report, sizeof(report), &status);
    cr_assert(WIFSIGNALED(status));
    cr_assert_eq(WTERMSIG(status), SIGABRT);
    cr_assert(strncmp(report, "assertion failed: ", 18) == 0, "got: %s", report);
    cr_assert_not_null(strstr(report, "test_assert.c:"), "got: %s", report);
    cr_assert_not_null(strstr(report, ": failing_child_report: 1 == 2 (shard 7)"), "got: %s",
                       report);
}

Test(assert, shard_id_defaults_to_minus_one_and_round_trips)
{
    cr_assert_eq(ts_shard_id(), -1);
    ts_shard_id_set(3);
    cr_assert_eq(ts_shard_id(), 3);
    ts_shard_id_set(0);
    cr_assert_eq(ts_shard_id(), 0);
    ts_shard_id_set(-1);
    cr_assert_eq(ts_shard_id(), -1);
}

static void *read_shard_id(void *arg)
{
    int *seen = arg;
    seen[0] = ts_shard_id();
    ts_shard_id_set(9);
    seen[1] = ts_shard_id();
    return NULL;
}

Test(assert, shard_id_is_per_thread)
{
    ts_shard_id_set(5);
    int seen[2] = {0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, read_shard_id, seen), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(seen[0], -1, "a new thread starts outside any shard");
    cr_assert_eq(seen[1], 9);
    cr_assert_eq(ts_shard_id(), 5, "another thread's set does not leak here");
}
