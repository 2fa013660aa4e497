/*
 * tests/e2e/suite: the start every end-to-end suite shares (Criterion .init).
 *
 * e2e_suite_up starts n tesserad nodes with the given shards, ranges and extra options
 * (NULL-terminated; NULL keeps what the caller set in c->extra, as the other fields
 * set before a start, e.g. tmpfs_bytes), skips the test when tesserad cannot run here (no io_uring),
 * and asserts that the cluster started and that every range serves a write within
 * E2E_READY_TIMEOUT_MS. The suite's .fini calls e2e_cluster_stop.
 */
#ifndef TS_TESTS_E2E_SUITE_H
#define TS_TESTS_E2E_SUITE_H

#include "tests/e2e/cluster.h"

#include <criterion/criterion.h>

static inline void e2e_suite_up(struct e2e_cluster *c, uint32_t n, uint32_t shards, uint32_t ranges,
                                const char *const *extra)
{
    for (uint32_t i = 0; extra != NULL && i < E2E_EXTRA_ARGS_MAX; i++) {
        c->extra[i] = extra[i];
        if (extra[i] == NULL) {
            break;
        }
    }
    int rc = e2e_cluster_start(c, TESSERAD_PATH, n, shards, ranges);
    if (rc == E2E_SKIP) {
        cr_skip_test("tesserad cannot start here (io_uring)");
    }
    cr_assert_eq(rc, 0, "the cluster did not start");
    cr_assert_eq(e2e_cluster_wait_ready(c, E2E_READY_TIMEOUT_MS), 0,
                 "the cluster did not serve writes in time");
}

#endif
