/*
 * shard/disk.c and the loop's synchronous tag wait: the disk on the shard's own ring.
 *
 * The storage/disk contract runs unchanged against the attached backend (the modules
 * above cannot tell it from the standalone one), then what only sharing a ring brings:
 * other subsystems' completions reaped during a synchronous disk wait are set aside and
 * dispatched by the next iteration, in order, never re-entrantly; callbacks of
 * asynchronous requests run from the loop's iterations alone; a B-tree whose misses wait
 * on the shared ring while other traffic flows.
 */
#define _GNU_SOURCE /* nftw */
#include "shard/disk.h"

#include "../storage/disk/disk_contract.h"
#include "core/util/err.h"
#include "storage/btree/btree.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TAG_OTHER 9u
#define OTHER_MAX 4096u

struct env {
    struct shard_loop *l;
    struct disk *d;
    char root[64];
};

static void env_open(struct env *e, const struct disk_uring_config *cfg)
{
    snprintf(e->root, sizeof(e->root), "/tmp/ts-sdisk-XXXXXX");
    cr_assert_not_null(mkdtemp(e->root), "mkdtemp: %s", strerror(errno));
    struct shard_loop_config lc = {.shard_id = 0, .sq_entries = 8, .cq_entries = 16};
    int rc = shard_loop_create(&lc, &e->l);
    cr_assert_eq(rc, 0, "shard_loop_create: %s", ts_strerror(rc));
    rc = shard_disk_create(e->l, cfg, &e->d);
    cr_assert_eq(rc, 0, "shard_disk_create: %s", ts_strerror(rc));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void env_close(struct env *e)
{
    disk_destroy(e->d);
    shard_loop_destroy(e->l);
    nftw(e->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- The contract, attached ------------------------------------------------------------ */

/* A small SQ (8), CQ (16) and in-flight cap, so that the contract's bursts go through the
 * backlog, a full SQ and the stash. */
#define ATTACHED_CONTRACT_TEST(name)                                                               \
    Test(shard_disk_contract, name)                                                                \
    {                                                                                              \
        struct env e;                                                                              \
        struct disk_uring_config cfg = {.inflight_max = 16};                                       \
        env_open(&e, &cfg);                                                                        \
        disk_contract_##name(e.d, e.root);                                                         \
        env_close(&e);                                                                             \
    }
DISK_CONTRACT_CHECKS(ATTACHED_CONTRACT_TEST)

/* ---- Other tags during a synchronous wait --------------------------------------------- */

struct other {
    struct env *e;
    uint32_t seen[OTHER_MAX];
    uint32_t n;
    uint32_t next_value; /* the next NOP's value */
    bool in_wait;        /* a handler running now would be re-entrant */
    uint32_t wait_at;    /* the handler of this value runs a synchronous disk wait */
    uint32_t burst;      /* NOPs it queues first */
    uint32_t after;      /* NOPs it queues after the wait (more than the SQ: some complete at
                            once, and are newer than the set-aside ones) */
    uint32_t file;
    int waits;
};

static void queue_nops(struct other *o, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        struct io_uring_sqe *sqe = shard_loop_sqe(o->e->l);
        cr_assert_not_null(sqe);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, shard_udata(TAG_OTHER, o->next_value++));
    }
}

static void sync_write(struct other *o)
{
    static uint8_t buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    o->in_wait = true;
    int32_t res = disk_contract_req(o->e->d, DISK_OP_WRITE_FDATASYNC, o->file, buf, sizeof(buf), 0);
    o->in_wait = false;
    cr_assert_eq(res, (int32_t)sizeof(buf));
    o->waits++;
}

static void on_other(void *ctx, struct io_uring_cqe *cqe)
{
    struct other *o = ctx;
    cr_assert(!o->in_wait, "a handler ran inside a synchronous wait");
    cr_assert_lt(o->n, OTHER_MAX);
    uint32_t v = (uint32_t)shard_udata_value(cqe->user_data);
    o->seen[o->n++] = v;
    if (v == o->wait_at) {
        queue_nops(o, o->burst); /* they complete while the disk waits */
        sync_write(o);
        queue_nops(o, o->after);
    }
}

static uint32_t open_file(struct env *e, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", e->root, name);
    uint32_t f = UINT32_MAX;
    cr_assert_eq(disk_open(e->d, path, DISK_OPEN_CREATE, &f), 0);
    return f;
}

Test(shard_disk, other_completions_wait_for_the_next_iteration_in_order)
{
    struct env e;
    env_open(&e, NULL);
    static struct other o;
    memset(&o, 0, sizeof(o));
    o.e = &e;
    o.wait_at = UINT32_MAX;
    o.file = open_file(&e, "f");
    cr_assert_eq(shard_loop_register(e.l, TAG_OTHER, on_other, &o), 0);

    queue_nops(&o, 100);
    sync_write(&o); /* the NOPs complete first: all of them are set aside */
    cr_assert_eq(o.n, 0, "no other handler ran during the wait");
    for (int i = 0; i < 10 && o.n < 100; i++) {
        cr_assert_eq(shard_loop_run_once(e.l, false), 0);
    }
    cr_assert_eq(o.n, 100);
    for (uint32_t i = 0; i < 100; i++) {
        cr_assert_eq(o.seen[i], i, "order at %u", i);
    }
    cr_assert_eq(disk_close(e.d, o.file), 0);
    env_close(&e);
}

Test(shard_disk, a_wait_inside_a_handler_keeps_the_order_of_the_batch_and_the_stash)
{
    struct env e;
    env_open(&e, NULL);
    static struct other o;
    memset(&o, 0, sizeof(o));
    o.e = &e;
    o.file = open_file(&e, "f");
    o.wait_at = 50; /* in the middle of a reaped batch */
    o.burst = 300;  /* more than the CQ (16): the stash grows */
    o.after = 20;   /* more than the SQ (8) */
    cr_assert_eq(shard_loop_register(e.l, TAG_OTHER, on_other, &o), 0);

    queue_nops(&o, 100);
    for (int i = 0; i < 1000 && o.n < 420; i++) {
        cr_assert_eq(shard_loop_run_once(e.l, o.n < 100), 0);
    }
    cr_assert_eq(o.waits, 1);
    cr_assert_eq(o.n, 420);
    for (uint32_t i = 0; i < 420; i++) {
        cr_assert_eq(o.seen[i], i, "order at %u", i);
    }
    cr_assert_eq(disk_close(e.d, o.file), 0);
    env_close(&e);
}

/* ---- Asynchronous requests complete through the loop ------------------------------------ */

struct async_done {
    struct shard_loop *l;
    int calls;
    int32_t res;
};

static void on_async(struct disk_req *req)
{
    struct async_done *a = req->data;
    a->calls++;
    a->res = req->res;
    shard_loop_stop(a->l);
}

Test(shard_disk, asynchronous_requests_complete_from_the_loop_alone)
{
    struct env e;
    env_open(&e, NULL);
    uint32_t f = open_file(&e, "a");
    static uint8_t buf[8192];
    memset(buf, 7, sizeof(buf));
    struct async_done a = {.l = e.l};
    struct disk_req req = {.op = DISK_OP_WRITE_FDATASYNC,
                           .file = f,
                           .buf = buf,
                           .len = sizeof(buf),
                           .cb = on_async,
                           .data = &a};
    disk_submit(e.d, &req);
    cr_assert_eq(a.calls, 0);
    cr_assert_eq(shard_loop_run(e.l), 0); /* the callback stops it */
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.res, (int32_t)sizeof(buf));
    uint8_t back[8192];
    cr_assert_eq(disk_pread(e.d, f, back, sizeof(back), 0), (int64_t)sizeof(back));
    cr_assert_arr_eq(back, buf, sizeof(buf));
    cr_assert_eq(disk_close(e.d, f), 0);
    env_close(&e);
}

Test(shard_disk, a_second_disk_on_the_same_loop_is_refused)
{
    struct env e;
    env_open(&e, NULL);
    struct disk *d2 = NULL;
    cr_assert_eq(shard_disk_create(e.l, NULL, &d2), TS_EINVAL);
    cr_assert_null(d2);
    env_close(&e);
}

/* ---- A B-tree on the shared ring --------------------------------------------------------- */

#define TREE_KEYS 3000u

static void key_of(char *k, uint32_t i)
{
    snprintf(k, 16, "k%08u", i);
}

Test(shard_disk, btree_misses_wait_on_the_shared_ring_while_other_traffic_flows)
{
    struct env e;
    env_open(&e, NULL);
    static struct other o;
    memset(&o, 0, sizeof(o));
    o.e = &e;
    o.wait_at = UINT32_MAX;
    cr_assert_eq(shard_loop_register(e.l, TAG_OTHER, on_other, &o), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/tree", e.root);
    struct btree_config bc = {.path = path, .cache_bytes = 16 * 4096};
    char err[256];
    struct btree *t = NULL;
    cr_assert_eq(btree_open(&bc, e.d, ts_allocator_default(), &t, err, sizeof(err)), 0, "%s", err);
    char k[16];
    char v[200];
    memset(v, 'v', sizeof(v));
    for (uint32_t i = 0; i < TREE_KEYS; i++) {
        key_of(k, i);
        memcpy(v, k, 9);
        cr_assert_eq(btree_put(t, k, 9, v, sizeof(v)), 0);
    }
    cr_assert_eq(btree_checkpoint(t, "u", 1), 0);
    btree_close(t);

    cr_assert_eq(btree_open(&bc, e.d, ts_allocator_default(), &t, err, sizeof(err)), 0, "%s", err);
    o.in_wait = true; /* every handler call from here to the end of the reads is re-entrant */
    for (uint32_t i = 0; i < TREE_KEYS; i++) {
        if (i % 100 == 0) {
            queue_nops(&o, 20);
        }
        key_of(k, i);
        char back[256];
        uint32_t len = 0;
        cr_assert_eq(btree_get(t, k, 9, back, sizeof(back), &len), 0, "key %u", i);
        cr_assert_eq(len, sizeof(v));
        cr_assert_eq(memcmp(back, k, 9), 0);
    }
    o.in_wait = false;
    struct btree_stats st;
    btree_get_stats(t, &st);
    cr_assert_gt(st.cache_misses, 100, "the reads went to the disk (%llu misses)",
                 (unsigned long long)st.cache_misses);
    for (int i = 0; i < 100 && o.n < o.next_value; i++) {
        cr_assert_eq(shard_loop_run_once(e.l, false), 0);
    }
    cr_assert_eq(o.n, o.next_value);
    for (uint32_t i = 0; i < o.n; i++) {
        cr_assert_eq(o.seen[i], i, "order at %u", i);
    }
    btree_close(t);
    env_close(&e);
}
