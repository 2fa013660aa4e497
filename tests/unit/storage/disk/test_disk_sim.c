/* Tests for storage/disk/disk_sim: the shared contract, then crashes, faults, capacity,
 * bit flips and step-by-step execution, which only the simulator can show. */
#include "storage/disk/disk_sim.h"

#include "core/util/mem.h"
#include "disk_contract.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define SIM_ROOT "root"

/* ---- The contract ------------------------------------------------------------------ */

/* Each check on a fresh simulator, through an allocator that counts live bytes so that
 * destroy is shown to give everything back. */
#define SIM_CONTRACT_TEST(name)                                                                    \
    Test(disk_sim_contract, name)                                                                  \
    {                                                                                              \
        struct ts_failing_allocator fa;                                                            \
        ts_failing_allocator_init(&fa, ts_allocator_default(), -1);                                \
        struct disk_sim *s = NULL;                                                                 \
        cr_assert_eq(disk_sim_create(42, &fa.base, &s), 0);                                        \
        struct disk *d = disk_sim_disk(s);                                                         \
        cr_assert_eq(disk_mkdir(d, SIM_ROOT), 0);                                                  \
        disk_contract_##name(d, SIM_ROOT);                                                         \
        disk_destroy(d);                                                                           \
        cr_assert_eq(fa.live_bytes, 0, "destroy frees everything");                                \
    }
DISK_CONTRACT_CHECKS(SIM_CONTRACT_TEST)

/* ---- Helpers ------------------------------------------------------------------------ */

static struct disk_sim *sim_new(uint64_t seed, bool metadata_durable)
{
    struct disk_sim *s = NULL;
    cr_assert_eq(disk_sim_create(seed, ts_allocator_default(), &s), 0);
    cr_assert_not_null(s);
    disk_sim_set_metadata_durable(s, metadata_durable);
    return s;
}

static uint32_t sim_open(struct disk_sim *s, const char *path, uint32_t flags)
{
    uint32_t f = UINT32_MAX;
    int rc = disk_open(disk_sim_disk(s), path, flags, &f);
    cr_assert_eq(rc, 0, "open %s: %d", path, rc);
    return f;
}

static int32_t sim_write(struct disk_sim *s, uint32_t f, uint8_t op, uint64_t offset, uint32_t len,
                         int byte)
{
    uint8_t buf[1024];
    cr_assert_leq(len, sizeof(buf));
    memset(buf, byte, len);
    return disk_contract_req(disk_sim_disk(s), op, f, buf, len, offset);
}

/* Reads the whole file at path into buf (cap bytes); returns its size, or -errno. */
static int64_t sim_slurp(struct disk_sim *s, const char *path, uint8_t *buf, size_t cap)
{
    struct disk *d = disk_sim_disk(s);
    uint32_t f;
    int rc = disk_open(d, path, DISK_OPEN_READONLY, &f);
    if (rc != 0) {
        return rc;
    }
    uint64_t size = 0;
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_leq(size, cap);
    cr_assert_eq(disk_pread(d, f, buf, cap, 0), (int64_t)size);
    cr_assert_eq(disk_close(d, f), 0);
    return (int64_t)size;
}

/* True when buf[from, to) is all `byte`. */
static bool run_of(const uint8_t *buf, size_t from, size_t to, int byte)
{
    for (size_t i = from; i < to; i++) {
        if (buf[i] != (uint8_t)byte) {
            return false;
        }
    }
    return true;
}

struct counter {
    int calls;
};

static void count_cb(struct disk_req *req)
{
    struct counter *c = req->data;
    c->calls++;
}

/* ---- Crash policies ----------------------------------------------------------------- */

/* f: 100 synced 'A', then unsynced: 50 'B' at 100 and 10 'C' at 0. */
static struct disk_sim *crash_setup(void)
{
    struct disk_sim *s = sim_new(1, true);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 100, 'A'), 100);
    cr_assert_eq(disk_sim_unsynced_bytes(s, "f"), 0);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 100, 50, 'B'), 50);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 0, 10, 'C'), 10);
    cr_assert_eq(disk_sim_unsynced_bytes(s, "f"), 60);
    return s;
}

Test(disk_sim, crash_drop_loses_unsynced_writes_and_keeps_synced_ones)
{
    struct disk_sim *s = crash_setup();
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    uint8_t buf[256];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 100);
    cr_assert(run_of(buf, 0, 100, 'A'));
    cr_assert_eq(disk_sim_unsynced_bytes(s, "f"), 0);
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, crash_keep_keeps_unsynced_writes)
{
    struct disk_sim *s = crash_setup();
    disk_sim_crash(s, DISK_SIM_CRASH_KEEP, 0);
    uint8_t buf[256];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 150);
    cr_assert(run_of(buf, 0, 10, 'C'));
    cr_assert(run_of(buf, 10, 100, 'A'));
    cr_assert(run_of(buf, 100, 150, 'B'));
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, crash_tear_keeps_exactly_tear_bytes_of_the_last_write)
{
    struct disk_sim *s = sim_new(1, true);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 100, 'A'), 100);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 100, 50, 'B'), 50);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 150, 50, 'C'), 50);
    /* Overlapping writes: the torn one must not take the earlier one's bytes with it. */
    uint32_t g = sim_open(s, "g", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, g, DISK_OP_WRITE, 0, 64, 'x'), 64);
    cr_assert_eq(sim_write(s, g, DISK_OP_WRITE, 0, 64, 'y'), 64);
    disk_sim_crash(s, DISK_SIM_CRASH_TEAR, 20);
    uint8_t buf[256];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 170);
    cr_assert(run_of(buf, 0, 100, 'A'));
    cr_assert(run_of(buf, 100, 150, 'B'), "earlier unsynced writes are kept");
    cr_assert(run_of(buf, 150, 170, 'C'), "the last keeps tear_bytes");
    cr_assert_eq(sim_slurp(s, "g", buf, sizeof(buf)), 64);
    cr_assert(run_of(buf, 0, 20, 'y'));
    cr_assert(run_of(buf, 20, 64, 'x'));
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, crash_tear_longer_than_the_write_keeps_it_whole)
{
    struct disk_sim *s = sim_new(1, true);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 0, 30, 'q'), 30);
    disk_sim_crash(s, DISK_SIM_CRASH_TEAR, 1000);
    uint8_t buf[64];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 30);
    cr_assert(run_of(buf, 0, 30, 'q'));
    disk_destroy(disk_sim_disk(s));
}

struct outcome {
    uint8_t buf[1024];
    int64_t size;
};

/* Synced bytes, then 20 overlapping unsynced writes, then a RANDOM crash. */
static void random_outcome(uint64_t seed, struct outcome *out)
{
    struct disk_sim *s = sim_new(seed, true);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 256, 0xee), 256);
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t len = 16 + i * 5;
        cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, (i * 97) % 512, len, (int)i + 1), len);
    }
    disk_sim_crash(s, DISK_SIM_CRASH_RANDOM, 0);
    memset(out->buf, 0, sizeof(out->buf));
    out->size = sim_slurp(s, "f", out->buf, sizeof(out->buf));
    cr_assert_geq(out->size, 256);
    disk_destroy(disk_sim_disk(s));
}

static bool outcome_eq(const struct outcome *a, const struct outcome *b)
{
    return a->size == b->size && memcmp(a->buf, b->buf, sizeof(a->buf)) == 0;
}

Test(disk_sim, crash_random_is_deterministic_for_a_seed)
{
    static struct outcome a, b;
    int distinct = 0;
    struct outcome first;
    for (uint64_t seed = 1; seed <= 16; seed++) {
        random_outcome(seed, &a);
        random_outcome(seed, &b);
        cr_assert(outcome_eq(&a, &b), "seed %llu replays exactly", (unsigned long long)seed);
        if (seed == 1) {
            first = a;
        } else if (!outcome_eq(&a, &first)) {
            distinct++;
        }
    }
    cr_assert_gt(distinct, 0, "different seeds crash differently");
}

Test(disk_sim, requests_in_flight_at_crash_never_call_back)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk *d = disk_sim_disk(s);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    uint8_t buf[3][16];
    struct disk_req req[3];
    struct counter c = {0};
    for (int i = 0; i < 3; i++) {
        memset(buf[i], 'a' + i, sizeof(buf[i]));
        req[i] = (struct disk_req){.op = DISK_OP_WRITE_FDATASYNC,
                                   .file = f,
                                   .buf = buf[i],
                                   .len = 16,
                                   .offset = (uint64_t)i * 16,
                                   .cb = count_cb,
                                   .data = &c};
        disk_submit(d, &req[i]);
    }
    cr_assert(disk_sim_step(s));
    cr_assert(disk_sim_step(s));
    cr_assert_eq(c.calls, 1, "the first request is complete");
    cr_assert(disk_sim_step(s)); /* the second's write, not its sync */
    cr_assert_eq(disk_inflight(d), 2);
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    cr_assert_eq(disk_inflight(d), 0);
    cr_assert_eq(disk_run(d, true), 0);
    cr_assert(!disk_sim_step(s));
    cr_assert_eq(c.calls, 1, "abandoned requests never call back");
    uint64_t size;
    cr_assert_eq(disk_size(d, f, &size), -EBADF, "the crash closed every handle");
    uint8_t got[64];
    cr_assert_eq(sim_slurp(s, "f", got, sizeof(got)), 16);
    cr_assert(run_of(got, 0, 16, 'a'));
    disk_destroy(d);
}

Test(disk_sim, the_disk_is_usable_after_a_crash)
{
    struct disk_sim *s = crash_setup();
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    uint32_t f = sim_open(s, "f", 0);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 100, 10, 'Z'), 10);
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    uint8_t buf[256];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 110);
    cr_assert(run_of(buf, 100, 110, 'Z'));
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, truncate_and_allocate_are_durable_at_once)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk *d = disk_sim_disk(s);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    uint32_t g = sim_open(s, "g", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 100, 'A'), 100);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 100, 100, 'B'), 100);
    cr_assert_eq(disk_truncate(d, f, 150), 0);
    cr_assert_eq(disk_sim_unsynced_bytes(s, "f"), 50, "the unsynced write was clipped");
    cr_assert_eq(disk_allocate(d, g, 4096), 0);
    disk_sim_crash(s, DISK_SIM_CRASH_KEEP, 0);
    uint8_t buf[4096];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 150);
    cr_assert(run_of(buf, 0, 100, 'A'));
    cr_assert(run_of(buf, 100, 150, 'B'));
    cr_assert_eq(sim_slurp(s, "g", buf, sizeof(buf)), 4096);
    cr_assert(run_of(buf, 0, 4096, 0));
    disk_destroy(d);
}

/* ---- Metadata durability ------------------------------------------------------------ */

/* Creates d/f with 10 synced bytes; d itself is made durable. */
static struct disk_sim *meta_setup(bool metadata_durable)
{
    struct disk_sim *s = sim_new(1, metadata_durable);
    struct disk *d = disk_sim_disk(s);
    cr_assert_eq(disk_mkdir(d, "d"), 0);
    cr_assert_eq(disk_sync_dir(d, "."), 0);
    uint32_t f = sim_open(s, "d/f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 10, 'm'), 10);
    cr_assert_eq(disk_close(d, f), 0);
    return s;
}

Test(disk_sim, unsynced_file_creation_disappears_after_a_crash)
{
    struct disk_sim *s = meta_setup(false);
    disk_sim_crash(s, DISK_SIM_CRASH_KEEP, 0);
    uint8_t buf[16];
    cr_assert_eq(sim_slurp(s, "d/f", buf, sizeof(buf)), -ENOENT);
    cr_assert_eq(sim_slurp(s, "d", buf, sizeof(buf)), -EISDIR, "the synced directory stays");
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, sync_dir_makes_file_creation_durable)
{
    struct disk_sim *s = meta_setup(false);
    cr_assert_eq(disk_sync_dir(disk_sim_disk(s), "d"), 0);
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    uint8_t buf[16];
    cr_assert_eq(sim_slurp(s, "d/f", buf, sizeof(buf)), 10);
    cr_assert(run_of(buf, 0, 10, 'm'));
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, metadata_durable_makes_file_creation_durable)
{
    struct disk_sim *s = meta_setup(true);
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    uint8_t buf[16];
    cr_assert_eq(sim_slurp(s, "d/f", buf, sizeof(buf)), 10);
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, an_unsynced_directory_takes_its_files_with_it)
{
    struct disk_sim *s = sim_new(1, false);
    struct disk *d = disk_sim_disk(s);
    cr_assert_eq(disk_mkdir(d, "e"), 0);
    cr_assert_eq(disk_mkdir(d, "e/sub"), 0);
    uint32_t f = sim_open(s, "e/sub/f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 10, 'm'), 10);
    cr_assert_eq(disk_sync_dir(d, "e/sub"), 0);
    cr_assert_eq(disk_sync_dir(d, "e"), 0); /* but never "." */
    disk_sim_crash(s, DISK_SIM_CRASH_KEEP, 0);
    uint8_t buf[16];
    cr_assert_eq(sim_slurp(s, "e/sub/f", buf, sizeof(buf)), -ENOENT);
    cr_assert_eq(disk_mkdir(d, "e/sub"), -ENOENT);
    cr_assert_eq(disk_mkdir(d, "e"), 0, "e is gone");
    disk_destroy(d);
}

Test(disk_sim, a_removed_file_comes_back_without_sync_dir)
{
    struct disk_sim *s = meta_setup(false);
    struct disk *d = disk_sim_disk(s);
    cr_assert_eq(disk_sync_dir(d, "d"), 0);
    cr_assert_eq(disk_remove(d, "d/f"), 0);
    uint8_t buf[16];
    cr_assert_eq(sim_slurp(s, "d/f", buf, sizeof(buf)), -ENOENT);
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    cr_assert_eq(sim_slurp(s, "d/f", buf, sizeof(buf)), 10, "the removal was not durable");
    cr_assert(run_of(buf, 0, 10, 'm'));
    cr_assert_eq(disk_remove(d, "d/f"), 0);
    cr_assert_eq(disk_sync_dir(d, "d"), 0);
    disk_sim_crash(s, DISK_SIM_CRASH_DROP, 0);
    cr_assert_eq(sim_slurp(s, "d/f", buf, sizeof(buf)), -ENOENT, "now it was");
    disk_destroy(d);
}

Test(disk_sim, a_recreated_file_reverts_to_the_old_one)
{
    struct disk_sim *s = meta_setup(false);
    struct disk *d = disk_sim_disk(s);
    cr_assert_eq(disk_sync_dir(d, "d"), 0);
    cr_assert_eq(disk_remove(d, "d/f"), 0);
    uint32_t f = sim_open(s, "d/f", DISK_OPEN_CREATE | DISK_OPEN_EXCL);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 20, 'n'), 20);
    disk_sim_crash(s, DISK_SIM_CRASH_KEEP, 0);
    uint8_t buf[32];
    cr_assert_eq(sim_slurp(s, "d/f", buf, sizeof(buf)), 10, "the durable name is the old file");
    cr_assert(run_of(buf, 0, 10, 'm'));
    disk_destroy(d);
}

struct remover {
    struct disk *d;
    int removed;
};

static int remove_each(void *arg, const char *name)
{
    struct remover *r = arg;
    cr_assert_eq(disk_remove(r->d, name), 0, "remove %s", name);
    r->removed++;
    return 0;
}

Test(disk_sim, a_list_callback_may_remove_what_it_is_shown)
{
    struct disk_sim *s = sim_new(1, false);
    struct disk *d = disk_sim_disk(s);
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(disk_close(d, sim_open(s, names[i], DISK_OPEN_CREATE)), 0);
    }
    struct remover r = {.d = d};
    cr_assert_eq(disk_list(d, ".", remove_each, &r), 0);
    cr_assert_eq(r.removed, 4);
    r.removed = 0;
    cr_assert_eq(disk_list(d, ".", remove_each, &r), 0);
    cr_assert_eq(r.removed, 0, "all gone");
    disk_destroy(d);
}

/* ---- Faults and capacity ------------------------------------------------------------ */

Test(disk_sim, eio_on_the_third_write)
{
    struct disk_sim *s = sim_new(1, true);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    disk_sim_fail(s, DISK_SIM_FAULT_WRITE, EIO, 2, false);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 0, 10, '1'), 10);
    uint8_t tmp[10];
    cr_assert_eq(disk_contract_req(disk_sim_disk(s), DISK_OP_READ, f, tmp, 10, 0), 10,
                 "reads do not count down a write fault");
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 10, 10, '2'), 10);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 20, 10, '3'), -EIO);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 20, 10, '4'), 10, "not sticky");
    uint8_t buf[64];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 30);
    cr_assert(run_of(buf, 20, 30, '4'));
    disk_destroy(disk_sim_disk(s));
}

Test(disk_sim, sticky_enospc_until_cleared)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk *d = disk_sim_disk(s);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 0, 10, 'a'), 10);
    disk_sim_fail(s, DISK_SIM_FAULT_WRITE | DISK_SIM_FAULT_ALLOCATE, ENOSPC, 0, true);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 10, 10, 'b'), -ENOSPC);
        cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 10, 10, 'b'), -ENOSPC);
    }
    cr_assert_eq(disk_allocate(d, f, 4096), -ENOSPC);
    cr_assert_eq(disk_contract_req(d, DISK_OP_FDATASYNC, f, NULL, 0, 0), 0, "syncs still work");
    uint8_t buf[64];
    cr_assert_eq(sim_slurp(s, "f", buf, sizeof(buf)), 10, "failed writes changed nothing");
    disk_sim_fail_clear(s);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 10, 10, 'b'), 10);
    cr_assert_eq(disk_allocate(d, f, 4096), 0);
    disk_destroy(d);
}

Test(disk_sim, faults_on_reads_syncs_opens_and_allocations)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk *d = disk_sim_disk(s);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    uint8_t buf[16];
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 0, 16, 'r'), 16);
    disk_sim_fail(s, DISK_SIM_FAULT_READ, EIO, 0, false);
    cr_assert_eq(disk_pread(d, f, buf, sizeof(buf), 0), -EIO);
    cr_assert_eq(disk_pread(d, f, buf, sizeof(buf), 0), 16);
    disk_sim_fail(s, DISK_SIM_FAULT_READ, EIO, 0, false);
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, buf, 16, 0), -EIO);
    disk_sim_fail(s, DISK_SIM_FAULT_SYNC, EIO, 0, false);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 16, 16, 's'), -EIO);
    cr_assert_eq(disk_sim_unsynced_bytes(s, "f"), 32, "written, never synced");
    disk_sim_fail(s, DISK_SIM_FAULT_OPEN, EIO, 1, false);
    uint32_t g;
    cr_assert_eq(disk_open(d, "f", 0, &g), 0);
    cr_assert_eq(disk_close(d, g), 0);
    cr_assert_eq(disk_open(d, "f", 0, &g), -EIO, "the second open fails");
    cr_assert_eq(disk_open(d, "f", 0, &g), 0);
    cr_assert_eq(disk_close(d, g), 0);
    disk_sim_fail(s, DISK_SIM_FAULT_ALLOCATE, ENOSPC, 0, false);
    cr_assert_eq(disk_allocate(d, f, 1 << 20), -ENOSPC);
    cr_assert_eq(disk_allocate(d, f, 1 << 20), 0);
    disk_sim_fail(s, DISK_SIM_FAULT_SYNC, EIO, 0, false);
    cr_assert_eq(disk_sync_dir(d, "."), -EIO, "sync_dir is a sync");
    disk_destroy(d);
}

Test(disk_sim, capacity_bounds_the_bytes_held)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk *d = disk_sim_disk(s);
    disk_sim_set_capacity(s, 1000);
    uint32_t a = sim_open(s, "a", DISK_OPEN_CREATE);
    uint32_t b = sim_open(s, "b", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, a, DISK_OP_WRITE, 0, 600, 'a'), 600);
    cr_assert_eq(sim_write(s, b, DISK_OP_WRITE, 0, 600, 'b'), -ENOSPC);
    uint64_t size = 1;
    cr_assert_eq(disk_size(d, b, &size), 0);
    cr_assert_eq(size, 0, "the failed write changed nothing");
    cr_assert_eq(sim_write(s, a, DISK_OP_WRITE, 0, 600, 'c'), 600, "overwrites need no room");
    cr_assert_eq(sim_write(s, a, DISK_OP_WRITE, 600, 400, 'c'), 400, "exactly full");
    cr_assert_eq(sim_write(s, a, DISK_OP_WRITE, 1000, 1, 'c'), -ENOSPC);
    cr_assert_eq(sim_write(s, b, DISK_OP_WRITE_FDATASYNC, 0, 1, 'b'), -ENOSPC);
    cr_assert_eq(disk_allocate(d, b, 1), -ENOSPC);
    cr_assert_eq(disk_truncate(d, b, 1), -ENOSPC);
    cr_assert_eq(disk_truncate(d, a, 100), 0);
    cr_assert_eq(sim_write(s, b, DISK_OP_WRITE, 0, 600, 'b'), 600);
    cr_assert_eq(disk_allocate(d, b, 900), 0);
    cr_assert_eq(sim_write(s, b, DISK_OP_WRITE, 600, 300, 'b'), 300, "allocated: no ENOSPC");
    disk_sim_set_capacity(s, 0);
    cr_assert_eq(sim_write(s, b, DISK_OP_WRITE, 10000, 100, 'b'), 100, "0 is unlimited");
    disk_destroy(d);
}

Test(disk_sim, a_write_past_the_file_size_limit_fails)
{
    struct disk_sim *s = sim_new(1, true);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, UINT64_MAX - 4, 8, 'x'), -EFBIG);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 1ull << 40, 8, 'x'), -EFBIG);
    cr_assert_eq(disk_allocate(disk_sim_disk(s), f, 1ull << 40), -EFBIG);
    disk_destroy(disk_sim_disk(s));
}

/* Counts the bits that differ between a and b. */
static int bits_differ(const uint8_t *a, const uint8_t *b, size_t len)
{
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        n += __builtin_popcount((unsigned)(a[i] ^ b[i]));
    }
    return n;
}

Test(disk_sim, flip_bit_changes_exactly_one_bit)
{
    struct disk_sim *s = sim_new(1, true);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE_FDATASYNC, 0, 64, 0x5a), 64);
    cr_assert_eq(sim_write(s, f, DISK_OP_WRITE, 64, 64, 0x5a), 64);
    uint8_t want[128], got[128];
    memset(want, 0x5a, sizeof(want));
    cr_assert_eq(disk_sim_flip_bit(s, "f", 10, 3), 0);
    cr_assert_eq(disk_sim_flip_bit(s, "f", 100, 7), 0);
    cr_assert_eq(sim_slurp(s, "f", got, sizeof(got)), 128);
    cr_assert_eq(bits_differ(want, got, 128), 2);
    cr_assert_eq(got[10], 0x5a ^ 0x08);
    cr_assert_eq(got[100], 0x5a ^ 0x80);
    disk_sim_crash(s, DISK_SIM_CRASH_KEEP, 0);
    cr_assert_eq(sim_slurp(s, "f", got, sizeof(got)), 128);
    cr_assert_eq(bits_differ(want, got, 128), 2, "the flips survive the crash");
    cr_assert_eq(disk_sim_flip_bit(s, "f", 10, 3), 0, "flipping back");
    cr_assert_eq(sim_slurp(s, "f", got, sizeof(got)), 128);
    cr_assert_eq(bits_differ(want, got, 128), 1);
    cr_assert_eq(disk_sim_flip_bit(s, "nothere", 0, 0), -ENOENT);
    cr_assert_eq(disk_sim_flip_bit(s, "f", 128, 0), -EINVAL, "past the end");
    cr_assert_eq(disk_sim_flip_bit(s, "f", 0, 8), -EINVAL, "no ninth bit");
    disk_destroy(disk_sim_disk(s));
}

/* ---- Step-by-step execution --------------------------------------------------------- */

struct stepped {
    struct disk_sim *s;
    struct disk_req req;
    uint8_t buf[100];
    struct counter c;
};

static void stepped_start(struct stepped *st)
{
    st->s = sim_new(1, true);
    uint32_t f = sim_open(st->s, "f", DISK_OPEN_CREATE);
    memset(st->buf, 'w', sizeof(st->buf));
    st->req = (struct disk_req){.op = DISK_OP_WRITE_FDATASYNC,
                                .file = f,
                                .buf = st->buf,
                                .len = sizeof(st->buf),
                                .cb = count_cb,
                                .data = &st->c};
    disk_submit(disk_sim_disk(st->s), &st->req);
    cr_assert(disk_sim_step(st->s), "step 1: the write");
    cr_assert_eq(st->c.calls, 0, "not complete yet");
    cr_assert_eq(disk_inflight(disk_sim_disk(st->s)), 1);
    cr_assert_eq(disk_sim_unsynced_bytes(st->s, "f"), 100, "written, not synced");
    uint8_t got[100];
    cr_assert_eq(disk_pread(disk_sim_disk(st->s), f, got, sizeof(got), 0), 100);
    cr_assert(run_of(got, 0, 100, 'w'), "reads see the written image");
}

Test(disk_sim, write_fdatasync_after_its_write_step_is_lost_by_a_drop_crash)
{
    struct stepped st = {0};
    stepped_start(&st);
    disk_sim_crash(st.s, DISK_SIM_CRASH_DROP, 0);
    cr_assert_eq(st.c.calls, 0);
    uint8_t got[128];
    cr_assert_eq(sim_slurp(st.s, "f", got, sizeof(got)), 0, "the write was lost");
    disk_destroy(disk_sim_disk(st.s));
}

Test(disk_sim, write_fdatasync_after_its_sync_step_survives_a_drop_crash)
{
    struct stepped st = {0};
    stepped_start(&st);
    cr_assert(disk_sim_step(st.s), "step 2: the sync");
    cr_assert_eq(st.c.calls, 1);
    cr_assert_eq(st.req.res, 100);
    cr_assert_eq(disk_sim_unsynced_bytes(st.s, "f"), 0);
    cr_assert_eq(disk_inflight(disk_sim_disk(st.s)), 0);
    cr_assert(!disk_sim_step(st.s), "nothing queued");
    disk_sim_crash(st.s, DISK_SIM_CRASH_DROP, 0);
    uint8_t got[128];
    cr_assert_eq(sim_slurp(st.s, "f", got, sizeof(got)), 100);
    cr_assert(run_of(got, 0, 100, 'w'));
    disk_destroy(disk_sim_disk(st.s));
}

/* ---- Bounds, memory and misuse ------------------------------------------------------ */

struct forever {
    struct disk *d;
    int calls;
    bool stop;
};

static void forever_cb(struct disk_req *req)
{
    struct forever *fv = req->data;
    fv->calls++;
    if (!fv->stop) {
        disk_submit(fv->d, req);
    }
}

Test(disk_sim, run_returns_even_when_callbacks_always_resubmit)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk *d = disk_sim_disk(s);
    uint32_t f = sim_open(s, "f", DISK_OPEN_CREATE);
    struct forever fv = {.d = d};
    struct disk_req req = {.op = DISK_OP_FDATASYNC, .file = f, .cb = forever_cb, .data = &fv};
    disk_submit(d, &req);
    int n = disk_run(d, true);
    cr_assert_gt(n, 1);
    cr_assert_eq(n, fv.calls);
    cr_assert_eq(disk_inflight(d), 1, "still going, but disk_run came back");
    fv.stop = true;
    cr_assert_eq(disk_run(d, true), 1);
    cr_assert_eq(disk_inflight(d), 0);
    disk_destroy(d);
}

/* A script touching every allocation site; returns false at the first -ENOMEM. */
static bool alloc_script(struct disk_sim *s)
{
    struct disk *d = disk_sim_disk(s);
    uint32_t f;
    uint8_t buf[5000];
    memset(buf, 'z', sizeof(buf));
    if (disk_mkdir(d, "d") != 0 || disk_open(d, "d/f", DISK_OPEN_CREATE, &f) != 0) {
        return false;
    }
    for (uint32_t i = 0; i < 6; i++) {
        int32_t res = disk_contract_req(d, i % 2 ? DISK_OP_WRITE_FDATASYNC : DISK_OP_WRITE, f, buf,
                                        1000 + i * 700, (uint64_t)i * 3000);
        if (res == -ENOMEM) {
            return false;
        }
        cr_assert_eq(res, (int32_t)(1000 + i * 700));
    }
    if (disk_allocate(d, f, 1 << 16) != 0 || disk_truncate(d, f, 1 << 17) != 0) {
        return false;
    }
    for (uint32_t i = 0; i < 12; i++) {
        uint32_t g;
        char name[16];
        snprintf(name, sizeof(name), "d/g%u", i);
        if (disk_open(d, name, DISK_OPEN_CREATE, &g) != 0) {
            return false;
        }
    }
    disk_sim_crash(s, DISK_SIM_CRASH_RANDOM, 0);
    return true;
}

Test(disk_sim, allocation_failures_return_enomem_and_leak_nothing)
{
    bool completed = false;
    for (long fail_after = 0; fail_after < 400 && !completed; fail_after++) {
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), fail_after);
        struct disk_sim *s = NULL;
        int rc = disk_sim_create(7, &fa.base, &s);
        if (rc != 0) {
            cr_assert_eq(rc, -ENOMEM);
            cr_assert_eq(fa.live_bytes, 0);
            continue;
        }
        completed = alloc_script(s);
        disk_destroy(disk_sim_disk(s));
        cr_assert_eq(fa.live_bytes, 0, "fail_after %ld leaks", fail_after);
    }
    cr_assert(completed, "the script eventually runs with enough allocations");
}

static void noop_cb(struct disk_req *req)
{
    (void)req;
}

Test(disk_sim, submitting_an_oversized_request_is_a_caller_bug, .signal = SIGABRT)
{
    struct disk_sim *s = sim_new(1, true);
    uint8_t b = 0;
    struct disk_req req = {.op = DISK_OP_WRITE, .buf = &b, .len = 1u << 31, .cb = noop_cb};
    disk_submit(disk_sim_disk(s), &req);
}

Test(disk_sim, submitting_without_a_callback_is_a_caller_bug, .signal = SIGABRT)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk_req req = {.op = DISK_OP_FDATASYNC};
    disk_submit(disk_sim_disk(s), &req);
}

static int count_names(void *arg, const char *name)
{
    (void)name;
    int *n = arg;
    (*n)++;
    return 0;
}

Test(disk_sim, bad_paths_are_rejected)
{
    struct disk_sim *s = sim_new(1, true);
    struct disk *d = disk_sim_disk(s);
    uint32_t f;
    cr_assert_eq(disk_open(d, "", DISK_OPEN_CREATE, &f), -EINVAL);
    cr_assert_eq(disk_open(d, "a/", DISK_OPEN_CREATE, &f), -EINVAL);
    cr_assert_eq(disk_open(d, ".", 0, &f), -EISDIR);
    cr_assert_eq(disk_mkdir(d, "/"), -EEXIST);
    cr_assert_eq(disk_remove(d, "."), -EISDIR);
    static char longp[5000];
    memset(longp, 'p', sizeof(longp) - 1);
    cr_assert_eq(disk_open(d, longp, DISK_OPEN_CREATE, &f), -ENAMETOOLONG);
    cr_assert_eq(disk_open(d, "/abs", DISK_OPEN_CREATE, &f), 0, "absolute paths work");
    cr_assert_eq(disk_close(d, f), 0);
    int seen = 0;
    cr_assert_eq(disk_list(d, "/", count_names, &seen), 0);
    cr_assert_eq(seen, 1, "\"/abs\" is listed under \"/\"");
    seen = 0;
    cr_assert_eq(disk_list(d, ".", count_names, &seen), 0);
    cr_assert_eq(seen, 0, "and not under \".\"");
    disk_destroy(d);
}
