/*
 * Shared fixtures for the storage/wal unit tests.
 *
 *   struct wt     one simulated disk with one WAL on it, the durable_cb and report_cb
 *                 bookkeeping, and an arena allocator: after disk_sim_crash() the WAL's
 *                 write is abandoned (its callback never runs) so wal_close() may not be
 *                 called, and the arena frees the WAL's memory at once, as a process that
 *                 died would lose it.
 *   struct wm     a reference model of what the WAL promises about each group (snapshot
 *                 point, entry terms and data, hard state), written from wal.h alone.
 *   struct wm_op  one record-producing call, applied to both (wt_do, wm_apply), with the
 *                 staged LSN before and after it so that a crash can be checked against
 *                 the model replayed to the right point.
 *
 * Entry data is generated from a 64-bit tag (wm_data), so the model stores a tag and a
 * length per entry instead of the bytes. Every check takes a context string (seed,
 * step, policy...) that goes into each assertion message, so a failure names its run.
 */
#ifndef TS_TESTS_UNIT_STORAGE_WAL_WAL_TEST_H
#define TS_TESTS_UNIT_STORAGE_WAL_WAL_TEST_H

#include "core/util/mem.h"
#include "core/util/rand.h"
#include "storage/disk/disk_sim.h"
#include "storage/wal/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The WAL's directory on every simulated disk. */
#define WT_DIR "wal"
/* The fixture's read cache: the default (16 MiB) costs more to allocate under ASan than
 * a whole crash run, and a small cache sends more reads to disk. */
#define WT_CACHE_BYTES (256u * 1024u)
/* Segments a test lists at most. */
#define WT_SEGMENTS_MAX 256u

/* ---- Arena allocator ------------------------------------------------------------- */

struct wt_arena {
    struct ts_allocator base;
    void *head; /* the newest block */
    long blocks;
    long bytes;
};

void wt_arena_init(struct wt_arena *a);
/* Frees every block still allocated (a crashed WAL's memory). */
void wt_arena_release(struct wt_arena *a);

/* ---- One disk, one WAL ----------------------------------------------------------- */

struct wt {
    uint64_t seed;
    struct disk_sim *sim;
    struct disk *disk;
    struct wt_arena arena;
    const struct ts_allocator *alloc; /* the WAL's allocator: &arena.base by default */
    struct wal_config cfg;
    struct wal *w;
    uint64_t durable; /* the last LSN durable_cb reported */
    uint32_t durable_calls;
    uint32_t reports;      /* report_cb lines since wt_init */
    uint32_t torn_reports; /* of which about a torn tail */
    char last_report[512];
    char errmsg[512]; /* wal_open's */
    /* Optional: called from durable_cb after the bookkeeping above. */
    void (*durable_hook)(void *data, uint64_t lsn);
    void *hook_data;
    uint64_t durable_floor_; /* private: reports must rise above it */
};

/* Creates the simulated disk (seeded with seed) and the WAL's directory, made durable
 * (the directory of a deployed shard exists before its WAL opens). */
void wt_init(struct wt *t, uint64_t seed, uint64_t segment_bytes);
/* Closes the WAL if it is open (after running the disk), destroys the disk. */
void wt_fini(struct wt *t);
/* wal_open on t->cfg; returns its result, errmsg in t->errmsg. */
int wt_open(struct wt *t);
/* Runs the disk until nothing is in flight, then wal_close; checks nothing leaked. */
void wt_close(struct wt *t);
/* Runs the disk until no request is in flight. */
void wt_run(struct wt *t);
/* wal_flush and run: everything staged becomes durable (asserted). */
void wt_settle(struct wt *t, const char *ctx);
/* Bytes written to the WAL's segment files and not yet synced. */
uint64_t wt_unsynced(struct wt *t);
/* Power loss: disk_sim_crash, then the WAL's memory is dropped (t->w = NULL). */
void wt_crash(struct wt *t, enum disk_sim_crash_policy policy, uint64_t tear_bytes);
/* The segment sequence numbers in the WAL's directory, sorted. */
uint32_t wt_segments(struct wt *t, uint64_t *seqs, uint32_t max);
void wt_segment_path(uint64_t seq, char *path, size_t bytes);
bool wt_segment_exists(struct wt *t, uint64_t seq);
struct wal_stats wt_stats(const struct wt *t);

/* One record of a segment file, as the test reads the format of wal.h. */
struct wt_record {
    uint64_t offset;
    uint8_t type;
    uint64_t group;
    uint32_t len;   /* payload bytes */
    uint64_t index; /* ENTRY: the entry's index */
};
/* Walks a segment's records (BATCH records included) up to the first all-zero header;
 * returns how many it stored in out (at most max). */
uint32_t wt_scan(struct wt *t, uint64_t seq, struct wt_record *out, uint32_t max);

/* ---- Reference model ------------------------------------------------------------- */

struct wm_entry {
    uint64_t term;
    uint64_t tag; /* the data is wm_data(tag, len) */
    uint32_t len;
};

struct wm_group {
    bool exists;
    bool has_hs;
    uint64_t snap_index;
    uint64_t snap_term;
    struct wal_hard_state hs;
    struct wm_entry *ents; /* entry snap_index + 1 + i is ents[i] */
    uint32_t count;
    uint32_t cap;
};

struct wm {
    uint32_t ngroups;
    uint64_t id_mul; /* group id of slot s: 1 + s * id_mul */
    uint32_t live;   /* groups that exist */
    struct wm_group *g;
};

enum wm_kind {
    WM_APPEND = 1,
    WM_HARD_STATE = 2,
    WM_TRUNCATE = 3,
    WM_COMPACT = 4,
    WM_SNAPSHOT = 5,
    WM_REMOVE = 6,
};

struct wm_op {
    uint8_t kind;
    uint32_t slot;
    uint64_t index; /* APPEND: the first entry's; TRUNCATE, COMPACT, SNAPSHOT */
    uint64_t term;  /* SNAPSHOT */
    struct wal_hard_state hs;
    uint32_t n;            /* APPEND */
    struct wm_entry *ents; /* APPEND: n entries, owned by the op (wm_op_free) */
    uint64_t pre_lsn;      /* wal_staged_lsn() before and after the call */
    uint64_t post_lsn;
};

void wm_init(struct wm *m, uint32_t ngroups, uint64_t id_mul);
void wm_fini(struct wm *m);
void wm_copy(struct wm *dst, const struct wm *src);
uint64_t wm_id(const struct wm *m, uint32_t slot);
uint64_t wm_last(const struct wm_group *g);
/* Fills out with the data of an entry. */
void wm_data(uint64_t tag, uint32_t len, uint8_t *out);
/* What the WAL must return for op (0, TS_EINVAL, TS_ENOTFOUND), applying it when 0.
 * An APPEND applies only its first `prefix` entries (UINT32_MAX: all). */
int wm_apply(struct wm *m, const struct wm_op *op, uint32_t prefix);
void wm_op_free(struct wm_op *op);
/* Deep copy of op (the entries too). */
void wm_op_copy(struct wm_op *dst, const struct wm_op *src);

/* Performs op on t's WAL and returns its result (pre/post_lsn are set). */
int wt_do(struct wt *t, const struct wm *m, struct wm_op *op);
/* wt_do and wm_apply; asserts both give the same result, which it returns. */
int wt_apply(struct wt *t, struct wm *m, struct wm_op *op, const char *ctx);

/* Op constructors. An append's entries all get `term`, `len` bytes and tags tag + i. */
struct wm_op wm_append_op(uint32_t slot, uint64_t index, uint32_t n, uint64_t term, uint32_t len,
                          uint64_t tag);
struct wm_op wm_hs_op(uint32_t slot, uint64_t term, uint64_t vote, uint64_t commit);
struct wm_op wm_simple_op(uint8_t kind, uint32_t slot, uint64_t index, uint64_t term);
/* wt_apply of an op made by a constructor, which is then freed; asserts result rc. */
void wt_expect(struct wt *t, struct wm *m, struct wm_op op, int rc, const char *ctx);

/* Compares every group's info and every retained term with the model. */
void wt_check(struct wt *t, const struct wm *m, const char *ctx);
/* Compares one group's info and terms. */
void wt_check_group(struct wt *t, const struct wm *m, uint32_t slot, const char *ctx);
/* Reads [lo, hi) of a group through wal_read (running the disk if it has to) and
 * compares terms and bytes with the model. */
void wt_check_read(struct wt *t, const struct wm *m, uint32_t slot, uint64_t lo, uint64_t hi,
                   const char *ctx);
/* Reads every retained entry of every group (in chunks). */
void wt_check_all_data(struct wt *t, const struct wm *m, const char *ctx);

/* ---- Generators -------------------------------------------------------------------- */

/* A random valid op for the model (appends most often). big_den: one entry in big_den
 * gets up to 4 KiB of data, the rest up to data_max bytes. */
struct wt_gen {
    uint32_t data_max;
    uint32_t big_den;
    uint32_t hot; /* groups drawn more often: slots [0, hot) */
    uint32_t append_pct;
    uint32_t hs_pct;
    uint32_t truncate_pct;
    uint32_t compact_pct;
    uint32_t snapshot_pct;
    uint32_t remove_pct;
};
void wt_gen_op(struct ts_rand *r, const struct wt_gen *gen, const struct wm *m, uint64_t tag,
               struct wm_op *op);

/* Number of seeds: the default, or TS_WAL_SEEDS from the environment (long mode). */
uint64_t wt_seeds(uint64_t dflt);

#endif
