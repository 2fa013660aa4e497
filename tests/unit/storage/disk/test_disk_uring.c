/* Tests for storage/disk/disk_uring: the shared contract on a real file system (in a
 * fresh directory under /tmp), then what only the kernel backend has: the in-flight
 * cap and its backlog, short writes, blocking waits, creation failures. Each test
 * creates its ring itself: Criterion forks per test, and a SINGLE_ISSUER ring belongs
 * to the thread that made it. */
#define _GNU_SOURCE /* nftw */
#include "storage/disk/disk_uring.h"

#include "core/util/mem.h"
#include "disk_contract.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct uring_env {
    struct disk *d;
    char root[64];
    struct ts_failing_allocator fa; /* counts live bytes: destroy must give all back */
};

static void env_open(struct uring_env *env, const struct disk_uring_config *cfg)
{
    snprintf(env->root, sizeof(env->root), "/tmp/ts-disk-XXXXXX");
    cr_assert_not_null(mkdtemp(env->root), "mkdtemp: %s", strerror(errno));
    ts_failing_allocator_init(&env->fa, ts_allocator_default(), -1);
    int rc = disk_uring_create(cfg, &env->fa.base, &env->d);
    if (rc == -ENOSYS || rc == -EPERM) {
        rmdir(env->root);
        cr_skip_test("io_uring is not available here: %s", strerror(-rc));
    }
    cr_assert_eq(rc, 0, "disk_uring_create: %s", strerror(-rc));
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void env_close(struct uring_env *env)
{
    disk_destroy(env->d);
    cr_assert_eq(env->fa.live_bytes, 0, "destroy frees everything");
    cr_assert_eq(nftw(env->root, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0, "cleanup");
}

static uint32_t env_file(struct uring_env *env, const char *name, uint32_t flags)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", env->root, name);
    uint32_t f = UINT32_MAX;
    int rc = disk_open(env->d, path, flags, &f);
    cr_assert_eq(rc, 0, "open %s: %d", path, rc);
    return f;
}

/* ---- The contract ------------------------------------------------------------------ */

/* A small ring and a small in-flight cap, so that the contract's bursts go through the
 * backlog and through a full submission queue. */
#define URING_CONTRACT_TEST(name)                                                                  \
    Test(disk_uring_contract, name)                                                                \
    {                                                                                              \
        struct uring_env env;                                                                      \
        struct disk_uring_config cfg = {.ring_entries = 8, .inflight_max = 16};                    \
        env_open(&env, &cfg);                                                                      \
        disk_contract_##name(env.d, env.root);                                                     \
        env_close(&env);                                                                           \
    }
DISK_CONTRACT_CHECKS(URING_CONTRACT_TEST)

Test(disk_uring, the_default_configuration_takes_more_than_its_cap)
{
    struct uring_env env;
    env_open(&env, &(struct disk_uring_config){0});
    disk_contract_many_requests_in_flight(env.d, env.root); /* 300 > 256 */
    env_close(&env);
}

/* ---- Backlog order, waiting --------------------------------------------------------- */

struct counter {
    int calls;
};

static void count_cb(struct disk_req *req)
{
    struct counter *c = req->data;
    c->calls++;
}

Test(disk_uring, the_backlog_issues_requests_in_submission_order)
{
    struct uring_env env;
    env_open(&env, &(struct disk_uring_config){.inflight_max = 1});
    uint32_t f = env_file(&env, "order", DISK_OPEN_CREATE);
    uint8_t bufs[10][32];
    struct disk_req reqs[10];
    struct counter c = {0};
    for (int i = 0; i < 10; i++) {
        memset(bufs[i], '0' + i, sizeof(bufs[i]));
        reqs[i] = (struct disk_req){
            .op = DISK_OP_WRITE, .file = f, .buf = bufs[i], .len = 32, .cb = count_cb, .data = &c};
        disk_submit(env.d, &reqs[i]);
    }
    cr_assert_eq(disk_inflight(env.d), 10);
    cr_assert_eq(disk_contract_drain(env.d), 10);
    uint8_t got[32];
    cr_assert_eq(disk_pread(env.d, f, got, sizeof(got), 0), 32);
    cr_assert_eq(got[0], '9', "one at a time, in order: the last write wins");
    cr_assert_eq(disk_close(env.d, f), 0);
    env_close(&env);
}

Test(disk_uring, run_with_wait_blocks_until_a_completion)
{
    struct uring_env env;
    env_open(&env, &(struct disk_uring_config){0});
    uint32_t f = env_file(&env, "wait", DISK_OPEN_CREATE);
    uint8_t buf[4096];
    memset(buf, 'w', sizeof(buf));
    struct counter c = {0};
    struct disk_req req = {.op = DISK_OP_WRITE_FDATASYNC,
                           .file = f,
                           .buf = buf,
                           .len = sizeof(buf),
                           .cb = count_cb,
                           .data = &c};
    disk_submit(env.d, &req);
    cr_assert_eq(disk_run(env.d, true), 1, "one call is enough");
    cr_assert_eq(c.calls, 1);
    cr_assert_eq(req.res, 4096);
    /* Without wait, polling gets there too (DEFER_TASKRUN needs us to ask). */
    disk_submit(env.d, &req);
    int total = 0;
    for (int i = 0; i < 1000000 && total == 0; i++) {
        int n = disk_run(env.d, false);
        cr_assert_geq(n, 0);
        total += n;
    }
    cr_assert_eq(total, 1);
    cr_assert_eq(c.calls, 2);
    cr_assert_eq(disk_close(env.d, f), 0);
    env_close(&env);
}

/* ---- Short writes ------------------------------------------------------------------- */

/* RLIMIT_FSIZE cuts a write that crosses the limit short: the kernel writes up to it and
 * reports fewer bytes. The backend must then write the remainder, which fails with
 * EFBIG; a backend that took the short count as the answer would report 4096. */
static void short_write_case(uint8_t op)
{
    struct uring_env env;
    env_open(&env, &(struct disk_uring_config){0});
    uint32_t f = env_file(&env, "short", DISK_OPEN_CREATE);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, rl;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    rl = saved;
    rl.rlim_cur = 4096;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    static uint8_t buf[8192];
    memset(buf, 's', sizeof(buf));
    int32_t res = disk_contract_req(env.d, op, f, buf, sizeof(buf), 0);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    cr_assert_eq(res, -EFBIG, "the remainder was resubmitted (res %d)", res);
    uint64_t size = 0;
    cr_assert_eq(disk_size(env.d, f, &size), 0);
    cr_assert_eq(size, 4096, "the first 4096 bytes were written");
    /* Below the limit again, the same request goes through. */
    cr_assert_eq(disk_contract_req(env.d, op, f, buf, sizeof(buf), 0), 8192);
    cr_assert_eq(disk_close(env.d, f), 0);
    env_close(&env);
}

Test(disk_uring, a_short_write_is_resubmitted_for_its_remainder)
{
    short_write_case(DISK_OP_WRITE);
}

Test(disk_uring, a_short_write_linked_to_a_sync_is_resubmitted_with_its_sync)
{
    short_write_case(DISK_OP_WRITE_FDATASYNC);
}

/* ---- Creation, limits, teardown ----------------------------------------------------- */

Test(disk_uring, creation_fails_cleanly_without_memory)
{
    for (long fail_after = 0; fail_after < 3; fail_after++) {
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), fail_after);
        struct disk *d = NULL;
        int rc = disk_uring_create(&(struct disk_uring_config){0}, &fa.base, &d);
        if (rc == -ENOSYS || rc == -EPERM) {
            cr_skip_test("io_uring is not available here: %s", strerror(-rc));
        }
        cr_assert_eq(rc, -ENOMEM, "fail_after %ld", fail_after);
        cr_assert_eq(fa.live_bytes, 0);
    }
}

Test(disk_uring, an_invalid_configuration_is_refused)
{
    struct disk *d = NULL;
    const struct ts_allocator *a = ts_allocator_default();
    cr_assert_eq(disk_uring_create(&(struct disk_uring_config){.ring_entries = 1}, a, &d), -EINVAL);
    cr_assert_eq(disk_uring_create(&(struct disk_uring_config){.ring_entries = 1u << 20}, a, &d),
                 -EINVAL);
    cr_assert_eq(disk_uring_create(&(struct disk_uring_config){.inflight_max = 1u << 30}, a, &d),
                 -EINVAL);
    cr_assert_null(d);
}

Test(disk_uring, the_file_table_is_bounded)
{
    struct uring_env env;
    env_open(&env, &(struct disk_uring_config){.files_max = 2});
    uint32_t a = env_file(&env, "a", DISK_OPEN_CREATE);
    uint32_t b = env_file(&env, "b", DISK_OPEN_CREATE);
    char path[128];
    snprintf(path, sizeof(path), "%s/c", env.root);
    uint32_t c;
    cr_assert_eq(disk_open(env.d, path, DISK_OPEN_CREATE, &c), -EMFILE);
    cr_assert_eq(disk_close(env.d, a), 0);
    cr_assert_eq(disk_open(env.d, path, DISK_OPEN_CREATE, &c), 0);
    cr_assert_eq(c, a, "the freed handle is reused");
    cr_assert_eq(disk_close(env.d, b), 0);
    cr_assert_eq(disk_close(env.d, c), 0);
    env_close(&env);
}

Test(disk_uring, destroy_with_requests_in_flight_calls_nothing_back)
{
    struct uring_env env;
    env_open(&env, &(struct disk_uring_config){.inflight_max = 8});
    uint32_t f = env_file(&env, "abandon", DISK_OPEN_CREATE);
    static uint8_t buf[32][512];
    static struct disk_req reqs[32];
    struct counter c = {0};
    for (int i = 0; i < 32; i++) {
        reqs[i] = (struct disk_req){.op = DISK_OP_WRITE_FDATASYNC,
                                    .file = f,
                                    .buf = buf[i],
                                    .len = 512,
                                    .offset = (uint64_t)i * 512,
                                    .cb = count_cb,
                                    .data = &c};
        disk_submit(env.d, &reqs[i]);
    }
    cr_assert_geq(disk_run(env.d, false), 0);
    int before = c.calls;
    env_close(&env); /* closes the file too */
    cr_assert_eq(c.calls, before, "no callback from destroy");
}
