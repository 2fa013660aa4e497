/*
 * btree_bench: storage/btree side by side with LMDB (liblmdb-dev) in one run, on one
 * thread: N keys of 16 bytes (--keys; default 200,000, see "Run time" below) with 100-byte
 * values.
 *
 * Keys are 16 bytes: the big-endian 64-bit index i, then a big-endian 64-bit hash of i,
 * so byte order is index order. Phases, each on both engines:
 *   seq insert   put keys 0..N-1 in order into an empty tree (plain put on both sides;
 *                LMDB gets no MDB_APPEND, Tessera has no such mode)
 *   rand insert  put the same N keys in a random permutation into an empty tree
 *   rand get     get every key once in another random permutation (the rand-insert tree)
 *   scan 100     N/100 range scans of 100 keys from random start keys
 *   rand delete  delete every key in a third random permutation
 * Writes are batched by 1,000 operations: LMDB commits one write transaction per 1,000
 * operations; Tessera calls btree_checkpoint every 1,000 operations. Reads: LMDB one
 * read-only transaction per 1,000 gets or 10 scans. The last partial batch is committed
 * or checkpointed inside the timed region.
 *
 * Two modes:
 *   no-sync   LMDB with MDB_NOSYNC (commits write pages to the page cache, no fsync)
 *             against Tessera with btree_config.no_sync on the io_uring backend: every
 *             checkpoint writes its dirty pages, its free list and its meta page to the
 *             page cache, no fdatasync. Like for like: both engines pay write(2)-class
 *             costs and no flush. Tessera's page cache is given 1 GiB so that, like
 *             LMDB's mmap over the OS page cache, the whole tree stays in memory.
 *   durable   LMDB with default flags (fdatasync at every commit) against Tessera
 *             checkpointing on the io_uring backend (dirty pages, fdatasync, meta page,
 *             fdatasync). As the disk, not the CPU, sets these figures, this mode runs
 *             on --durable-keys keys (default 100,000) to bound the run time; gets are
 *             not run here (they do no I/O: every page stays in memory).
 * Scans use a cursor on both sides (btree_cursor_seek/next; MDB_SET_RANGE/MDB_NEXT).
 *
 * Run time: the 1 M keys is the default for the no-sync rows (about a minute
 * per run on this VM); the durable rows are bounded by --durable-keys.
 *
 * Method (STYLE R24): --runs runs (default 3, at least 3); in each run every (mode,
 * engine) pair is run in turn on a fresh database in a fresh directory under a temporary
 * directory made in /tmp (removed at the end), so machine drift hits both engines alike.
 * Reported per phase: ops/s median, MAD, min and max over the runs, and the ratio of the
 * medians Tessera / LMDB (> 1: Tessera is better). Nothing is dead code: every get checks
 * the value's length and its embedded index and folds its bytes into a checksum, scans
 * go into a checksum of their own, and the get checksums of both engines must agree (both
 * are printed at the end).
 *
 * Expected, back of the envelope. A 1 M-key tree of ~130-byte cells in 4 KiB pages is
 * ~40,000 leaves, height 3-4; the upper levels stay in cache, the leaf does not. A get
 * is ~4 binary searches of ~5-7 16-byte compares plus one cache miss per level: ~0.5-1
 * us, so ~1-2 M gets/s for both engines (LMDB walks the mmap directly; Tessera goes
 * through its page-number-indexed frame table, one array lookup per level). A random insert in LMDB copies the
 * leaf-to-root path once per transaction per page touched: with 1,000 random puts in a
 * 40,000-leaf tree nearly every put dirties its own 4 KiB leaf, ~1,000 pages (4 MB)
 * copied and written per commit, ~1-2 us per put: ~300,000-600,000/s with MDB_NOSYNC.
 * Tessera copies on write the same way and writes each dirty page once per checkpoint;
 * expect the same order. Sequential inserts touch one leaf per ~30 keys:
 * ~2-3x faster than random on both. Durable: each commit is a ~4 MB write and two
 * fdatasyncs, ~10-20 ms on this VM's disk for random inserts (~50,000-100,000/s), far
 * less for sequential ones (one or two leaves per commit, ~1-2 ms, ~500,000/s).
 *
 * Hardware where the figures in bench/RESULTS.md were taken: a 2-vCPU VM, AMD EPYC, ext4
 * on a virtio disk, kernel 6.x, shared and noisy (compare within one run only). gcc 12
 * -O2, jemalloc 5.3 (release build), liburing 2.3, LMDB 0.9.24 (Debian).
 *
 * Run: cmake --preset release && cmake --build build/release --target btree_bench &&
 *      ./build/release/bench/micro/btree_bench [--keys N] [--durable-keys N] [--runs N]
 *      [--only-nosync]
 */
#define _GNU_SOURCE /* mkdtemp */
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/mem.h"
#include "core/util/rand.h"
#include "storage/btree/btree.h"
#include "storage/disk/disk_uring.h"

#include <lmdb.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The bench's own limits (STYLE R19). */
#define BB_KEYS_MAX 10000000u
#define BB_RUNS_MAX 32u
#define BB_KEY_BYTES 16u
#define BB_VALUE_BYTES 100u
#define BB_BATCH_OPS 1000u /* operations per LMDB transaction / Tessera checkpoint */
#define BB_SCAN_KEYS 100u
#define BB_SCANS_PER_TXN 10u
#define BB_PATH_BYTES 256u
#define BB_MAPSIZE_BYTES (4ull << 30)
#define BB_CACHE_BYTES (1ull << 30)

_Static_assert(BB_KEY_BYTES == 16, "keys are two big-endian u64s");
_Static_assert(BB_VALUE_BYTES >= 8, "a value embeds its key's index");

enum bb_mode { BB_NOSYNC = 0, BB_DURABLE = 1, BB_MODES = 2 };
enum bb_engine { BB_TESSERA = 0, BB_LMDB = 1, BB_ENGINES = 2 };
enum bb_phase { BB_SEQ = 0, BB_RAND_INS, BB_RAND_GET, BB_SCAN, BB_DELETE, BB_PHASES };

static const char *const phase_names[BB_PHASES] = {"seq insert", "rand insert", "rand get",
                                                   "scan 100", "rand delete"};
static const char *const mode_names[BB_MODES] = {"no-sync", "durable"};

struct bb_opts {
    uint32_t keys;
    uint32_t durable_keys;
    uint32_t runs;
    bool only_nosync;
};

/* One (mode, engine) database under test. Exactly one of the two sides is set. */
struct bb_db {
    enum bb_engine engine;
    enum bb_mode mode;
    char dir[BB_PATH_BYTES];
    /* Tessera */
    struct disk *disk;
    struct btree *tree;
    /* LMDB */
    MDB_env *env;
    MDB_dbi dbi;
};

struct bb_ctx {
    struct bb_opts o;
    char root[BB_PATH_BYTES / 2]; /* leaves room for a database directory under it */
    uint32_t *seq;                /* 0..n-1 */
    uint32_t *ins;                /* random permutations */
    uint32_t *get;
    uint32_t *del;
    uint32_t *scan; /* random start indexes */
    /* ops/s per [mode][engine][phase][run]; 0: not run */
    double ops[BB_MODES][BB_ENGINES][BB_PHASES][BB_RUNS_MAX];
    uint64_t sum[BB_MODES][BB_ENGINES]; /* checksums of the gets */
    uint64_t scan_sum[2];               /* checksums of each engine's scans */
    uint64_t run_n[BB_MODES];           /* keys per run in each mode */
};

/* ------------------------------------------------------------------ keys and values */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void make_key(uint32_t i, uint8_t *key)
{
    uint64_t x = i;
    put_be64(key, i);
    put_be64(key + 8, ts_rand_splitmix(&x));
}

static void make_value(uint32_t i, uint8_t *val)
{
    put_be64(val, i);
    for (uint32_t b = 8; b < BB_VALUE_BYTES; b++) {
        val[b] = (uint8_t)(i * 31u + b);
    }
}

/* Checks a value read back (its length and embedded index) and folds it into sum. */
static void check_value(uint32_t i, const uint8_t *val, size_t len, uint64_t *sum)
{
    TS_ASSERT(len == BB_VALUE_BYTES);
    TS_ASSERT(get_be64(val) == i);
    *sum = *sum * 1099511628211ull + get_be64(val + 8) + val[BB_VALUE_BYTES - 1];
}

static uint32_t *perm_new(uint32_t n, uint64_t seed, bool shuffle)
{
    uint32_t *p = malloc((size_t)n * sizeof *p);
    TS_ASSERT(p != NULL);
    for (uint32_t i = 0; i < n; i++) {
        p[i] = i;
    }
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    for (uint32_t i = n; shuffle && i > 1; i--) {
        uint32_t j = (uint32_t)ts_rand_below(&r, i);
        uint32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* ------------------------------------------------------------------ open / close */

static void mdb_check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "btree_bench: %s: %s\n", what, mdb_strerror(rc));
        exit(1);
    }
}

static void ts_check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "btree_bench: %s: %s\n", what, ts_strerror(rc));
        exit(1);
    }
}

static void db_open(struct bb_ctx *c, struct bb_db *db, enum bb_engine e, enum bb_mode m)
{
    static const char *const en[BB_ENGINES] = {"tessera", "lmdb"};
    memset(db, 0, sizeof *db);
    db->engine = e;
    db->mode = m;
    snprintf(db->dir, sizeof db->dir, "%s/%s-%s", c->root, en[e], mode_names[m]);
    TS_ASSERT(mkdir(db->dir, 0755) == 0);
    if (e == BB_LMDB) {
        mdb_check(mdb_env_create(&db->env), "mdb_env_create");
        mdb_check(mdb_env_set_mapsize(db->env, BB_MAPSIZE_BYTES), "mdb_env_set_mapsize");
        unsigned flags = m == BB_NOSYNC ? MDB_NOSYNC : 0;
        mdb_check(mdb_env_open(db->env, db->dir, flags, 0644), "mdb_env_open");
        MDB_txn *txn;
        mdb_check(mdb_txn_begin(db->env, NULL, 0, &txn), "mdb_txn_begin");
        mdb_check(mdb_dbi_open(txn, NULL, 0, &db->dbi), "mdb_dbi_open");
        mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
        return;
    }
    const struct ts_allocator *a = ts_allocator_default();
    struct disk_uring_config ucfg = {0};
    ts_check(disk_uring_create(&ucfg, a, &db->disk), "disk_uring_create");
    char path[BB_PATH_BYTES + 16];
    snprintf(path, sizeof path, "%s/tree", db->dir);
    struct btree_config cfg = {
        .path = path, .no_sync = m == BB_NOSYNC, .cache_bytes = BB_CACHE_BYTES};
    char errmsg[256];
    int rc = btree_open(&cfg, db->disk, a, &db->tree, errmsg, sizeof errmsg);
    if (rc != 0) {
        fprintf(stderr, "btree_bench: btree_open: %s: %s\n", ts_strerror(rc), errmsg);
        exit(1);
    }
}

static void rm_dir(const char *dir)
{
    static const char *const files[] = {"tree", "data.mdb", "lock.mdb"};
    char p[BB_PATH_BYTES + 16];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    TS_ASSERT(rmdir(dir) == 0);
}

static void db_close(struct bb_db *db)
{
    if (db->engine == BB_LMDB) {
        mdb_dbi_close(db->env, db->dbi);
        mdb_env_close(db->env);
    } else {
        btree_close(db->tree);
        disk_destroy(db->disk);
    }
    rm_dir(db->dir);
}

/* ------------------------------------------------------------------ Tessera phases */

static void ts_commit(struct bb_db *db, uint64_t done)
{
    ts_check(btree_checkpoint(db->tree, &done, sizeof done), "btree_checkpoint");
}

static void ts_write(struct bb_db *db, const uint32_t *order, uint32_t n, bool del)
{
    uint8_t key[BB_KEY_BYTES], val[BB_VALUE_BYTES];
    for (uint32_t k = 0; k < n; k++) {
        make_key(order[k], key);
        if (del) {
            ts_check(btree_delete(db->tree, key, BB_KEY_BYTES), "btree_delete");
        } else {
            make_value(order[k], val);
            ts_check(btree_put(db->tree, key, BB_KEY_BYTES, val, BB_VALUE_BYTES), "btree_put");
        }
        if ((k + 1) % BB_BATCH_OPS == 0 || k + 1 == n) {
            ts_commit(db, k + 1);
        }
    }
}

static void ts_gets(struct bb_db *db, const uint32_t *order, uint32_t n, uint64_t *sum)
{
    uint8_t key[BB_KEY_BYTES], val[BB_VALUE_BYTES + 8];
    for (uint32_t k = 0; k < n; k++) {
        uint32_t len = 0;
        make_key(order[k], key);
        ts_check(btree_get(db->tree, key, BB_KEY_BYTES, val, sizeof val, &len), "btree_get");
        check_value(order[k], val, len, sum);
    }
}

/* Scans 100 keys from each start index with a cursor over the live tree. */
static void ts_scans(struct bb_db *db, const uint32_t *starts, uint32_t scans, uint32_t n,
                     uint64_t *sum)
{
    uint8_t key[BB_KEY_BYTES], val[BB_VALUE_BYTES + 8];
    for (uint32_t s = 0; s < scans; s++) {
        struct btree_cursor cur;
        make_key(starts[s], key);
        int rc = btree_cursor_seek(&cur, db->tree, key, BB_KEY_BYTES);
        uint32_t got = 0;
        for (; rc == 0 && got < BB_SCAN_KEYS; got++) {
            const uint8_t *k;
            uint32_t klen, len = 0;
            btree_cursor_key(&cur, &k, &klen);
            uint32_t i = (uint32_t)get_be64(k);
            TS_ASSERT(klen == BB_KEY_BYTES && i == starts[s] + got);
            ts_check(btree_cursor_value(&cur, val, sizeof val, &len), "btree_cursor_value");
            check_value(i, val, len, sum);
            rc = btree_cursor_next(&cur);
        }
        TS_ASSERT(rc == 0 || rc == TS_ENOTFOUND);
        TS_ASSERT(got == (n - starts[s] < BB_SCAN_KEYS ? n - starts[s] : BB_SCAN_KEYS));
    }
}

/* ------------------------------------------------------------------ LMDB phases */

static void lm_write(struct bb_db *db, const uint32_t *order, uint32_t n, bool del)
{
    uint8_t key[BB_KEY_BYTES], val[BB_VALUE_BYTES];
    MDB_txn *txn = NULL;
    for (uint32_t k = 0; k < n; k++) {
        if (txn == NULL) {
            mdb_check(mdb_txn_begin(db->env, NULL, 0, &txn), "mdb_txn_begin");
        }
        make_key(order[k], key);
        MDB_val mk = {BB_KEY_BYTES, key};
        if (del) {
            mdb_check(mdb_del(txn, db->dbi, &mk, NULL), "mdb_del");
        } else {
            make_value(order[k], val);
            MDB_val mv = {BB_VALUE_BYTES, val};
            mdb_check(mdb_put(txn, db->dbi, &mk, &mv, 0), "mdb_put");
        }
        if ((k + 1) % BB_BATCH_OPS == 0 || k + 1 == n) {
            mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
            txn = NULL;
        }
    }
    TS_ASSERT(txn == NULL);
}

static void lm_gets(struct bb_db *db, const uint32_t *order, uint32_t n, uint64_t *sum)
{
    uint8_t key[BB_KEY_BYTES];
    MDB_txn *txn = NULL;
    for (uint32_t k = 0; k < n; k++) {
        if (txn == NULL) {
            mdb_check(mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin ro");
        }
        make_key(order[k], key);
        MDB_val mk = {BB_KEY_BYTES, key}, mv;
        mdb_check(mdb_get(txn, db->dbi, &mk, &mv), "mdb_get");
        check_value(order[k], mv.mv_data, mv.mv_size, sum);
        if ((k + 1) % BB_BATCH_OPS == 0 || k + 1 == n) {
            mdb_txn_abort(txn);
            txn = NULL;
        }
    }
}

/* Scans 100 keys from each start index (fewer at the end of the key space). */
static void lm_scans(struct bb_db *db, const uint32_t *starts, uint32_t scans, uint32_t n,
                     uint64_t *sum)
{
    uint8_t key[BB_KEY_BYTES];
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    for (uint32_t s = 0; s < scans; s++) {
        if (txn == NULL) {
            mdb_check(mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin ro");
            mdb_check(mdb_cursor_open(txn, db->dbi, &cur), "mdb_cursor_open");
        }
        make_key(starts[s], key);
        MDB_val mk = {BB_KEY_BYTES, key}, mv;
        int rc = mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE);
        uint32_t got = 0;
        for (; rc == 0 && got < BB_SCAN_KEYS; got++) {
            uint32_t i = (uint32_t)get_be64(mk.mv_data);
            TS_ASSERT(i == starts[s] + got);
            check_value(i, mv.mv_data, mv.mv_size, sum);
            rc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT);
        }
        TS_ASSERT(rc == 0 || rc == MDB_NOTFOUND);
        TS_ASSERT(got == (n - starts[s] < BB_SCAN_KEYS ? n - starts[s] : BB_SCAN_KEYS));
        if ((s + 1) % BB_SCANS_PER_TXN == 0 || s + 1 == scans) {
            mdb_cursor_close(cur);
            mdb_txn_abort(txn);
            txn = NULL;
        }
    }
}

/* ------------------------------------------------------------------ one run */

static void record(struct bb_ctx *c, struct bb_db *db, enum bb_phase p, uint32_t run, uint64_t t0,
                   uint64_t ops)
{
    double s = (double)(now_ns() - t0) / 1e9;
    TS_ASSERT(s > 0);
    c->ops[db->mode][db->engine][p][run] = (double)ops / s;
}

static void write_phase(struct bb_ctx *c, struct bb_db *db, enum bb_phase p, uint32_t run,
                        const uint32_t *order, uint32_t n, bool del)
{
    uint64_t t0 = now_ns();
    if (db->engine == BB_LMDB) {
        lm_write(db, order, n, del);
    } else {
        ts_write(db, order, n, del);
    }
    record(c, db, p, run, t0, n);
}

static void run_engine(struct bb_ctx *c, enum bb_engine e, enum bb_mode m, uint32_t run)
{
    uint32_t n = (uint32_t)c->run_n[m];
    uint64_t *sum = &c->sum[m][e];
    struct bb_db db;

    db_open(c, &db, e, m);
    write_phase(c, &db, BB_SEQ, run, c->seq, n, false);
    db_close(&db);

    db_open(c, &db, e, m);
    write_phase(c, &db, BB_RAND_INS, run, c->ins, n, false);
    if (m == BB_NOSYNC) {
        uint64_t t0 = now_ns();
        if (e == BB_LMDB) {
            lm_gets(&db, c->get, n, sum);
        } else {
            ts_gets(&db, c->get, n, sum);
        }
        record(c, &db, BB_RAND_GET, run, t0, n);
        t0 = now_ns();
        if (e == BB_LMDB) {
            lm_scans(&db, c->scan, n / BB_SCAN_KEYS, n, &c->scan_sum[e]);
        } else {
            ts_scans(&db, c->scan, n / BB_SCAN_KEYS, n, &c->scan_sum[e]);
        }
        record(c, &db, BB_SCAN, run, t0, n / BB_SCAN_KEYS);
    }
    write_phase(c, &db, BB_DELETE, run, c->del, n, true);
    db_close(&db);
}

/* ------------------------------------------------------------------ report */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct bb_summary {
    double median, mad, min, max;
};

static double median_sorted(const double *v, uint32_t n)
{
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct bb_summary summarize(const double *runs, uint32_t n)
{
    double v[BB_RUNS_MAX], d[BB_RUNS_MAX];
    memcpy(v, runs, n * sizeof v[0]);
    qsort(v, n, sizeof v[0], cmp_double);
    struct bb_summary s = {.median = median_sorted(v, n), .min = v[0], .max = v[n - 1]};
    for (uint32_t i = 0; i < n; i++) {
        d[i] = v[i] > s.median ? v[i] - s.median : s.median - v[i];
    }
    qsort(d, n, sizeof d[0], cmp_double);
    s.mad = median_sorted(d, n);
    return s;
}

static void print_side(const char *name, const double *runs, uint32_t n, struct bb_summary *out)
{
    if (runs[0] == 0) {
        printf("  %-8s %12s\n", name, "skipped");
        return;
    }
    *out = summarize(runs, n);
    printf("  %-8s %12.0f %10.0f %12.0f %12.0f", name, out->median, out->mad, out->min, out->max);
}

static void print_report(const struct bb_ctx *c)
{
    static const char *const tess[BB_MODES] = {"Tessera checkpoint/1000 ops, no fdatasync",
                                               "Tessera checkpoint/1000 ops on io_uring"};
    static const char *const lmdb[BB_MODES] = {"LMDB txn/1000 ops, MDB_NOSYNC",
                                               "LMDB txn/1000 ops, sync at commit"};
    for (int m = 0; m < BB_MODES; m++) {
        if (c->run_n[m] == 0) {
            continue;
        }
        printf("\n== %s: %" PRIu64 " keys; %s vs %s\n", mode_names[m], c->run_n[m], tess[m],
               lmdb[m]);
        printf("  %-8s %12s %10s %12s %12s   (ops/s over %u runs)\n", "", "median", "MAD", "min",
               "max", c->o.runs);
        for (int p = 0; p < BB_PHASES; p++) {
            const double *tr = c->ops[m][BB_TESSERA][p], *lr = c->ops[m][BB_LMDB][p];
            if (tr[0] == 0 && lr[0] == 0) {
                continue;
            }
            struct bb_summary ts = {0}, ls = {0};
            printf("%s\n", phase_names[p]);
            print_side("tessera", tr, c->o.runs, &ts);
            if (tr[0] != 0) {
                printf("\n");
            }
            print_side("lmdb", lr, c->o.runs, &ls);
            if (tr[0] != 0 && lr[0] != 0) {
                printf("   ratio tessera/lmdb %.2f\n", ts.median / ls.median);
            } else if (lr[0] != 0) {
                printf("   (Tessera: not measured)\n");
            }
        }
    }
    printf("\nget checksums (must be equal): tessera %016" PRIx64 " lmdb %016" PRIx64
           "; scan checksums (must be equal): tessera %016" PRIx64 " lmdb %016" PRIx64 "\n",
           c->sum[BB_NOSYNC][BB_TESSERA], c->sum[BB_NOSYNC][BB_LMDB], c->scan_sum[BB_TESSERA],
           c->scan_sum[BB_LMDB]);
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr, "usage: btree_bench [--keys N] [--durable-keys N] [--runs N] "
                    "[--only-nosync]\n"
                    "  --keys N          keys in the no-sync rows (default 1000000)\n"
                    "  --durable-keys N  keys in the durable rows (default 100000; 0: skip)\n"
                    "  --runs N          runs per phase (default 3, 3..32)\n");
}

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static bool parse_opts(int argc, char **argv, struct bb_opts *o)
{
    *o = (struct bb_opts){.keys = 1000000, .durable_keys = 100000, .runs = 3};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        bool ok = true;
        if (strcmp(argv[i], "--keys") == 0) {
            ok = parse_u32(v, BB_SCAN_KEYS, BB_KEYS_MAX, &o->keys), i++;
        } else if (strcmp(argv[i], "--durable-keys") == 0) {
            ok = parse_u32(v, 0, BB_KEYS_MAX, &o->durable_keys), i++;
        } else if (strcmp(argv[i], "--runs") == 0) {
            ok = parse_u32(v, 3, BB_RUNS_MAX, &o->runs), i++;
        } else if (strcmp(argv[i], "--only-nosync") == 0) {
            o->durable_keys = 0;
        } else {
            ok = false;
        }
        if (!ok) {
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    static struct bb_ctx c; /* large (per-run tables); main's own, not shared */
    if (!parse_opts(argc, argv, &c.o)) {
        usage();
        return 2;
    }
    uint32_t n = c.o.keys > c.o.durable_keys ? c.o.keys : c.o.durable_keys;
    c.run_n[BB_NOSYNC] = c.o.keys;
    c.run_n[BB_DURABLE] = c.o.durable_keys;
    snprintf(c.root, sizeof c.root, "/tmp/btree_bench.XXXXXX");
    TS_ASSERT(mkdtemp(c.root) != NULL);
    /* seq is the identity, so its prefix serves both modes; each mode gets its own random
     * permutations of its key space. */
    c.seq = perm_new(n, 0, false);
    printf("btree_bench: %u keys (no-sync), %u keys (durable), %u-byte keys, %u-byte values, "
           "%u ops per txn/checkpoint, %u runs, LMDB %s, dir %s\n",
           c.o.keys, c.o.durable_keys, BB_KEY_BYTES, BB_VALUE_BYTES, BB_BATCH_OPS, c.o.runs,
           MDB_VERSION_STRING, c.root);
    for (int m = 0; m < BB_MODES; m++) {
        uint32_t mn = (uint32_t)c.run_n[m];
        if (mn == 0) {
            continue;
        }
        c.ins = perm_new(mn, 1, true);
        c.get = perm_new(mn, 2, true);
        c.del = perm_new(mn, 3, true);
        c.scan = perm_new(mn, 4, true);
        for (uint32_t r = 0; r < c.o.runs; r++) {
            uint64_t t0 = now_ns();
            run_engine(&c, BB_TESSERA, (enum bb_mode)m, r);
            run_engine(&c, BB_LMDB, (enum bb_mode)m, r);
            fprintf(stderr, "  %s run %u: %.1f s\n", mode_names[m], r + 1,
                    (double)(now_ns() - t0) / 1e9);
        }
        free(c.ins);
        free(c.get);
        free(c.del);
        free(c.scan);
    }
    print_report(&c);
    TS_ASSERT(c.sum[BB_NOSYNC][BB_TESSERA] == c.sum[BB_NOSYNC][BB_LMDB]);
    free(c.seq);
    TS_ASSERT(rmdir(c.root) == 0);
    return 0;
}
