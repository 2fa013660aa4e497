/*
 * wal_kill: the WAL's durability contract against real crashes on a real disk.
 *
 *   wal_kill_test [--rounds N] [--seed S] [--time-limit SECONDS] [--keep]
 *   wal_kill_test --state NAME|all
 *
 * --keep leaves the directory in place at the end, and keeps a log that failed to reopen
 * as DIR.roundN (the run continues in an emptied DIR). --state runs one of the
 * deterministic crash states instead (see "crash states" below): the exact on-disk
 * states that the random rounds reach only by chance.
 *
 * Each round forks a child that opens the WAL in a temporary directory (io_uring
 * backend, 1 MiB segments so that segments roll and are deleted across kills) and
 * loops: appends entries to four groups (1 to 8 at a time, 1 to 4096 bytes each, their
 * size and bytes a function of (group, index, term) so that anyone can check them), saves
 * hard states, and now and then overwrites a suffix in a new term (a Raft conflict, as an
 * implied truncation or an explicit wal_truncate) or compacts a group. The parent reads
 * the child's reports for a random 5 to 100 ms, kills it with SIGKILL (that PID only),
 * reopens the WAL itself and checks that every operation the child reported durable is
 * there: entry terms and data, compaction points and hard states. The next round's
 * child reopens the same directory and carries on.
 *
 * The pipe protocol (child to parent), one line per write(2), each far below PIPE_BUF so
 * that a kill never leaves half a line:
 *
 *   A <group> <first> <n> <term>     about to append n entries from index first
 *   H <group> <term> <vote> <commit> about to save a hard state
 *   T <group> <index>                about to truncate from index
 *   C <group> <index>                about to compact up to index
 *   D <ops>                          the first <ops> operations of this round are durable
 *
 * An A line is n operations (one per entry), the others one each. An intent is written
 * before the WAL call, so the parent knows every operation that can have reached the
 * disk. The check: replaying the round's operations on the parent's model of the log,
 * the recovered state must equal the model after some operation k with D <= k <= the
 * last one announced. Less than D means a durable operation was lost; a state matching
 * no k means the log holds something that was never written. (Durability is reached
 * batch by batch, and a batch boundary always falls between two operations.)
 *
 * The seed fixes every child's workload and the kill windows; the timing of the kills
 * depends on the machine, so a seed replays a run closely but not exactly. It is
 * printed at the start and in every failure message. The last line is "N passed, M
 * failed" (rounds). Exits 0 when every round passed, 1 otherwise, 2 on usage errors, 77
 * when io_uring is not available. Only the children it forked are ever killed (R22).
 * The rounds stop early, with a note, once --time-limit seconds (50) have gone by.
 */
#define _GNU_SOURCE /* pipe2 */
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/mem.h"
#include "core/util/rand.h"
#include "storage/disk/disk_uring.h"
#include "storage/wal/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILL_GROUPS 4u
#define KILL_SEGMENT_BYTES (1024u * 1024u)
#define KILL_ROUNDS_DEFAULT 50u
#define KILL_TIME_LIMIT_S_DEFAULT 50u
#define KILL_WINDOW_MS_MIN 5u
#define KILL_WINDOW_MS_MAX 100u
#define KILL_ENTRY_BYTES_MAX 4096u
#define KILL_APPEND_MAX 8u
/* A group is compacted once it retains more entries than this, down to 128 to 192. */
#define KILL_RETAIN_MAX 256u
/* The child waits for durability when this much is staged and not yet durable, far
 * below the WAL's in-flight bound, so that a call never fails with TS_EFULL. */
#define KILL_BACKLOG_BYTES_MAX (4u * 1024u * 1024u)
/* Operation groups staged and not yet reported durable, in the child. */
#define KILL_PENDING_MAX 4096u
/* A child that was never killed gives up after this long. */
#define KILL_CHILD_S_MAX 30
#define KILL_LINE_BYTES_MAX 96u
/* Entries read back per wal_read call in the parent. */
#define KILL_READ_ENTRIES_MAX 256u
/* Failure messages: a detail, the step that found it, the round's summary of it. */
#define KILL_WHY_BYTES 512u

/* Exit codes of a child that stopped by itself (it should only ever be killed). */
enum { CHILD_EXIT_SETUP = 3, CHILD_EXIT_WAL = 4, CHILD_EXIT_PIPE = 5, CHILD_EXIT_TIME = 6 };

static const uint64_t kill_group_ids[KILL_GROUPS] = {1, 2, 7, 1000};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ entry contents */

static uint64_t entry_key(uint64_t group, uint64_t index, uint64_t term)
{
    uint64_t x = group * 0x9e3779b97f4a7c15ull ^ index * 0xc2b2ae3d27d4eb4full ^
                 term * 0x165667b19e3779f9ull;
    return ts_rand_splitmix(&x);
}

static uint32_t entry_len(uint64_t group, uint64_t index, uint64_t term)
{
    return 1u + (uint32_t)(entry_key(group, index, term) % KILL_ENTRY_BYTES_MAX);
}

static void entry_fill(uint8_t *buf, uint32_t len, uint64_t group, uint64_t index, uint64_t term)
{
    uint64_t x = entry_key(group, index, term);
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t v = ts_rand_splitmix(&x);
        memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
    }
}

/* ------------------------------------------------------------------ the child */

struct child_pending {
    uint64_t ops; /* operations staged once this group of them was */
    uint64_t lsn; /* wal_staged_lsn() then */
};

struct child {
    struct disk *disk;
    struct wal *wal;
    int fd;
    struct ts_rand rand;
    uint64_t ops;
    struct child_pending pending[KILL_PENDING_MAX];
    uint32_t pending_head;
    uint32_t pending_count;
    uint64_t term[KILL_GROUPS];
    uint8_t data[KILL_APPEND_MAX][KILL_ENTRY_BYTES_MAX];
};

static void child_die(int code, const char *what, int rc)
{
    fprintf(stderr, "wal_kill child %d: %s: %s\n", (int)getpid(), what, ts_strerror(rc));
    _exit(code);
}

static void child_say(struct child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void child_say(struct child *c, const char *fmt, ...)
{
    char line[KILL_LINE_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof(line)) {
        child_die(CHILD_EXIT_PIPE, "line too long", TS_EINVAL);
    }
    ssize_t w;
    do {
        w = write(c->fd, line, (size_t)n);
    } while (w < 0 && errno == EINTR);
    if (w != n) {
        child_die(CHILD_EXIT_PIPE, "write to the parent", w < 0 ? -errno : -EIO);
    }
}

static void child_durable(void *data, uint64_t durable_lsn)
{
    struct child *c = data;
    TS_ASSERT(durable_lsn == wal_durable_lsn(c->wal));
    TS_ASSERT(durable_lsn <= wal_staged_lsn(c->wal));
    uint64_t ops = 0;
    while (c->pending_count > 0 && c->pending[c->pending_head].lsn <= durable_lsn) {
        ops = c->pending[c->pending_head].ops;
        c->pending_head = (c->pending_head + 1) % KILL_PENDING_MAX;
        c->pending_count--;
    }
    if (ops > 0) {
        child_say(c, "D %" PRIu64 "\n", ops);
    }
}

/* Records that n more operations are staged, up to the WAL's staged LSN. */
static void child_staged(struct child *c, uint64_t n, int rc, const char *what)
{
    if (rc != 0) {
        child_die(CHILD_EXIT_WAL, what, rc);
    }
    TS_ASSERT(c->pending_count < KILL_PENDING_MAX); /* child_loop waits before it fills */
    TS_ASSERT(n > 0 && n <= KILL_APPEND_MAX);
    c->ops += n;
    uint32_t at = (c->pending_head + c->pending_count) % KILL_PENDING_MAX;
    c->pending[at] = (struct child_pending){.ops = c->ops, .lsn = wal_staged_lsn(c->wal)};
    c->pending_count++;
}

static void child_append(struct child *c, uint32_t slot, const struct wal_group_info *gi)
{
    uint64_t id = kill_group_ids[slot];
    uint64_t first = gi->last_index + 1;
    uint64_t room = gi->last_index - gi->snap_index; /* entries retained */
    if (room >= 2 && ts_rand_chance(&c->rand, 1, 25)) {
        /* A Raft conflict: a new leader overwrites a suffix in its own term. */
        first -= 1 + ts_rand_below(&c->rand, room - 1 < 5 ? room - 1 : 5);
        c->term[slot]++;
    }
    uint32_t n = 1 + (uint32_t)ts_rand_below(&c->rand, KILL_APPEND_MAX);
    uint64_t term = c->term[slot];
    struct wal_entry e[KILL_APPEND_MAX];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = entry_len(id, first + i, term);
        entry_fill(c->data[i], len, id, first + i, term);
        e[i] = (struct wal_entry){.term = term, .index = first + i, .data = c->data[i], .len = len};
    }
    child_say(c, "A %" PRIu64 " %" PRIu64 " %u %" PRIu64 "\n", id, first, n, term);
    child_staged(c, n, wal_append(c->wal, id, e, n), "wal_append");
}

static void child_step(struct child *c)
{
    uint32_t slot = (uint32_t)ts_rand_below(&c->rand, KILL_GROUPS);
    uint64_t id = kill_group_ids[slot];
    struct wal_group_info gi = {0};
    bool exists = wal_group_info(c->wal, id, &gi) == 0;
    uint64_t retained = gi.last_index - gi.snap_index;
    uint64_t r = ts_rand_below(&c->rand, 100);
    if (!exists || r < 72 || (r >= 84 && retained == 0) ||
        (r >= 88 && retained <= KILL_RETAIN_MAX)) {
        child_append(c, slot, &gi);
    } else if (r < 84) {
        struct wal_hard_state hs = {
            .term = c->term[slot], .vote = 1 + ts_rand_below(&c->rand, 3), .commit = gi.last_index};
        child_say(c, "H %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", id, hs.term, hs.vote,
                  hs.commit);
        child_staged(c, 1, wal_save_hard_state(c->wal, id, &hs), "wal_save_hard_state");
    } else if (r < 88) {
        uint64_t index = gi.last_index - ts_rand_below(&c->rand, retained < 4 ? retained : 4);
        c->term[slot]++; /* the next appends come from a new leader */
        child_say(c, "T %" PRIu64 " %" PRIu64 "\n", id, index);
        child_staged(c, 1, wal_truncate(c->wal, id, index), "wal_truncate");
    } else {
        uint64_t index = gi.last_index - 128 - ts_rand_below(&c->rand, 64);
        child_say(c, "C %" PRIu64 " %" PRIu64 "\n", id, index);
        child_staged(c, 1, wal_compact(c->wal, id, index), "wal_compact");
    }
}

/* The current term of each group: the highest it has logged or voted in. */
static void child_terms(struct child *c)
{
    for (uint32_t s = 0; s < KILL_GROUPS; s++) {
        struct wal_group_info gi;
        uint64_t term = 1;
        if (wal_group_info(c->wal, kill_group_ids[s], &gi) == 0) {
            uint64_t last_term = 0;
            (void)wal_term(c->wal, gi.group, gi.last_index, &last_term);
            term = last_term > term ? last_term : term;
            term = gi.hard_state.term > term ? gi.hard_state.term : term;
        }
        c->term[s] = term;
    }
}

static void child_loop(struct child *c)
{
    uint64_t deadline = now_ns() + KILL_CHILD_S_MAX * 1000000000ull;
    for (;;) {
        child_step(c);
        int rc = wal_flush(c->wal);
        if (rc == 0) {
            rc = disk_run(c->disk, false);
        }
        while (rc >= 0 &&
               (wal_staged_lsn(c->wal) - wal_durable_lsn(c->wal) > KILL_BACKLOG_BYTES_MAX ||
                c->pending_count >= KILL_PENDING_MAX - 1)) {
            rc = disk_run(c->disk, true);
        }
        if (rc < 0 || wal_error(c->wal) != 0) {
            child_die(CHILD_EXIT_WAL, "disk_run", rc < 0 ? rc : wal_error(c->wal));
        }
        if (now_ns() > deadline) {
            child_die(CHILD_EXIT_TIME, "never killed", TS_ETIMEOUT);
        }
    }
}

static _Noreturn void child_main(const char *dir, uint64_t seed, uint32_t round, int fd)
{
    /* Die with the parent, so that no child outlives a crashed test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct child *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        child_die(CHILD_EXIT_SETUP, "calloc", TS_ENOMEM);
    }
    c->fd = fd;
    ts_rand_seed(&c->rand, seed ^ (0x5851f42d4c957f2dull * (round + 1)));
    struct disk_uring_config dcfg = {0};
    int rc = disk_uring_create(&dcfg, ts_allocator_default(), &c->disk);
    if (rc != 0) {
        child_die(CHILD_EXIT_SETUP, "disk_uring_create", rc);
    }
    struct wal_config cfg = {
        .dir = dir, .segment_bytes = KILL_SEGMENT_BYTES, .durable_cb = child_durable, .data = c};
    char errmsg[KILL_WHY_BYTES] = "";
    rc = wal_open(&cfg, c->disk, ts_allocator_default(), &c->wal, errmsg, sizeof(errmsg));
    if (rc != 0) {
        fprintf(stderr, "wal_kill child: %s\n", errmsg);
        child_die(CHILD_EXIT_SETUP, "wal_open", rc);
    }
    child_terms(c);
    child_loop(c);
    _exit(CHILD_EXIT_TIME);
}

/* ------------------------------------------------------------------ the model */

enum { OP_ENTRY = 1, OP_HARD_STATE, OP_TRUNCATE, OP_COMPACT };

struct op {
    uint8_t kind;
    uint8_t slot;
    uint64_t a; /* ENTRY: index; HARD_STATE: term; TRUNCATE, COMPACT: index */
    uint64_t b; /* ENTRY: term; HARD_STATE: vote */
    uint64_t c; /* HARD_STATE: commit */
};

struct mgroup {
    bool exists;
    uint64_t snap_index;
    uint64_t snap_term;
    uint64_t *terms; /* entry snap_index + 1 + i has terms[i] */
    uint64_t count;
    uint64_t cap;
    bool has_hs;
    struct wal_hard_state hs;
};

struct model {
    struct mgroup g[KILL_GROUPS];
};

static void model_reset(struct model *m)
{
    for (uint32_t s = 0; s < KILL_GROUPS; s++) {
        free(m->g[s].terms);
        m->g[s] = (struct mgroup){0};
    }
}

static uint64_t mgroup_last(const struct mgroup *g)
{
    return g->snap_index + g->count;
}

static void mgroup_push(struct mgroup *g, uint64_t term)
{
    if (g->count == g->cap) {
        g->cap = g->cap == 0 ? 256 : g->cap * 2;
        g->terms = realloc(g->terms, g->cap * sizeof(*g->terms));
        if (g->terms == NULL) {
            fprintf(stderr, "wal_kill: out of memory\n");
            exit(1);
        }
    }
    g->terms[g->count++] = term;
}

/* Applies one operation as wal_apply does. Returns 0, or -1 when the operation is not
 * valid on this state (the WAL would have refused it). */
static int model_apply(struct model *m, const struct op *op)
{
    TS_ASSERT(op->slot < KILL_GROUPS);
    struct mgroup *g = &m->g[op->slot];
    uint64_t last = mgroup_last(g);
    switch (op->kind) {
    case OP_ENTRY:
        if (op->a <= g->snap_index || op->a > last + 1) {
            return -1;
        }
        g->count = op->a - g->snap_index - 1;
        mgroup_push(g, op->b);
        break;
    case OP_HARD_STATE:
        g->has_hs = true;
        g->hs = (struct wal_hard_state){.term = op->a, .vote = op->b, .commit = op->c};
        break;
    case OP_TRUNCATE:
        if (!g->exists || op->a <= g->snap_index) {
            return -1;
        }
        g->count = op->a <= last ? op->a - g->snap_index - 1 : g->count;
        break;
    default:
        if (!g->exists || op->a <= g->snap_index || op->a > last) {
            return -1;
        }
        uint64_t drop = op->a - g->snap_index;
        g->snap_term = g->terms[drop - 1];
        memmove(g->terms, g->terms + drop, (g->count - drop) * sizeof(*g->terms));
        g->count -= drop;
        g->snap_index = op->a;
        break;
    }
    g->exists = true;
    TS_ASSERT(g->count <= g->cap);
    return 0;
}

/* ------------------------------------------------------------------ one round's reports */

struct oplog {
    struct op *ops;
    size_t n;
    size_t cap;
    uint64_t durable; /* the highest D reported */
    char partial[KILL_LINE_BYTES_MAX * 2];
    size_t partial_len;
    char bad[KILL_LINE_BYTES_MAX * 2]; /* the first line that did not parse */
};

static void oplog_push(struct oplog *l, struct op op)
{
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 4096 : l->cap * 2;
        l->ops = realloc(l->ops, l->cap * sizeof(*l->ops));
        if (l->ops == NULL) {
            fprintf(stderr, "wal_kill: out of memory\n");
            exit(1);
        }
    }
    l->ops[l->n++] = op;
}

static int slot_of(uint64_t id)
{
    for (uint32_t s = 0; s < KILL_GROUPS; s++) {
        if (kill_group_ids[s] == id) {
            return (int)s;
        }
    }
    return -1;
}

static int oplog_line(struct oplog *l, const char *line)
{
    uint64_t g = 0, a = 0, b = 0, c = 0, d = 0;
    char k = line[0];
    int f = sscanf(line + 1, " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &g, &a, &b, &c);
    int slot = slot_of(g);
    if (k == 'D' && f == 1) {
        d = g;
        l->durable = d > l->durable ? d : l->durable;
        return d <= l->n ? 0 : -1;
    }
    if (slot < 0 || !((k == 'A' && f == 4 && b <= KILL_APPEND_MAX) || (k == 'H' && f == 4) ||
                      ((k == 'T' || k == 'C') && f == 2))) {
        return -1;
    }
    if (k == 'A') {
        for (uint64_t i = 0; i < b; i++) {
            oplog_push(l, (struct op){OP_ENTRY, (uint8_t)slot, a + i, c, 0});
        }
    } else if (k == 'H') {
        oplog_push(l, (struct op){OP_HARD_STATE, (uint8_t)slot, a, b, c});
    } else {
        oplog_push(l, (struct op){k == 'T' ? OP_TRUNCATE : OP_COMPACT, (uint8_t)slot, a, 0, 0});
    }
    return 0;
}

/* Feeds bytes read from the pipe; whole lines are parsed, the rest is kept. */
static void oplog_feed(struct oplog *l, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (l->partial_len + 1 < sizeof(l->partial)) {
                l->partial[l->partial_len++] = p[i];
            }
            continue;
        }
        l->partial[l->partial_len] = 0;
        if (oplog_line(l, l->partial) != 0 && l->bad[0] == 0) {
            snprintf(l->bad, sizeof(l->bad), "%s", l->partial);
        }
        l->partial_len = 0;
    }
}

/* ------------------------------------------------------------------ checking the log */

/* What the recovered WAL says about one group (read once per check). */
struct wsig {
    bool exists;
    struct wal_group_info info;
    uint64_t last_term;
};

struct checker {
    struct disk *disk;
    struct wal *wal;
    struct wsig sig[KILL_GROUPS];
    uint8_t *buf; /* KILL_READ_ENTRIES_MAX entries of data */
    uint8_t expect[KILL_ENTRY_BYTES_MAX];
    struct wal_entry entries[KILL_READ_ENTRIES_MAX];
    bool torn; /* recovery reported a torn tail */
};

static void checker_report(void *data, const char *line)
{
    struct checker *ck = data;
    if (strstr(line, "torn tail") != NULL) {
        ck->torn = true;
    }
}

static void checker_sign(struct checker *ck)
{
    for (uint32_t s = 0; s < KILL_GROUPS; s++) {
        struct wsig *w = &ck->sig[s];
        *w = (struct wsig){0};
        w->exists = wal_group_info(ck->wal, kill_group_ids[s], &w->info) == 0;
        if (w->exists) {
            (void)wal_term(ck->wal, w->info.group, w->info.last_index, &w->last_term);
        }
    }
}

/* The cheap comparison: positions, terms at the ends, hard state. Writes the first
 * difference to why (may be NULL). */
static bool sig_match(const struct checker *ck, const struct model *m, char *why, size_t bytes)
{
    for (uint32_t s = 0; s < KILL_GROUPS; s++) {
        const struct mgroup *g = &m->g[s];
        const struct wsig *w = &ck->sig[s];
        uint64_t last_term = g->count > 0 ? g->terms[g->count - 1] : g->snap_term;
        const struct wal_hard_state *hs = &w->info.hard_state;
        bool same = g->exists == w->exists;
        same = same && (!g->exists ||
                        (g->snap_index == w->info.snap_index && g->snap_term == w->info.snap_term &&
                         mgroup_last(g) == w->info.last_index && last_term == w->last_term &&
                         g->has_hs == w->info.has_hard_state));
        same = same && (!g->has_hs || (g->hs.term == hs->term && g->hs.vote == hs->vote &&
                                       g->hs.commit == hs->commit));
        if (!same) {
            if (why != NULL) {
                snprintf(why, bytes,
                         "group %" PRIu64 ": expected exists %d snap %" PRIu64 "/%" PRIu64
                         " last %" PRIu64 " (term %" PRIu64 ") hs %d %" PRIu64 "/%" PRIu64
                         "/%" PRIu64 ", recovered exists %d snap %" PRIu64 "/%" PRIu64
                         " last %" PRIu64 " (term %" PRIu64 ") hs %d %" PRIu64 "/%" PRIu64
                         "/%" PRIu64,
                         kill_group_ids[s], g->exists, g->snap_index, g->snap_term, mgroup_last(g),
                         last_term, g->has_hs, g->hs.term, g->hs.vote, g->hs.commit, w->exists,
                         w->info.snap_index, w->info.snap_term, w->info.last_index, w->last_term,
                         w->info.has_hard_state, hs->term, hs->vote, hs->commit);
            }
            return false;
        }
    }
    return true;
}

static void read_done(struct wal_read_req *req)
{
    *(bool *)req->data = true;
}

/* Reads entries [lo, hi) of one group back and compares them with the model. */
static int check_entries(struct checker *ck, const struct mgroup *g, uint64_t id, uint64_t lo,
                         uint64_t hi, char *why, size_t bytes)
{
    bool done = false;
    struct wal_read_req rr = {.group = id,
                              .lo = lo,
                              .hi = hi,
                              .buf = ck->buf,
                              .buf_bytes = KILL_READ_ENTRIES_MAX * KILL_ENTRY_BYTES_MAX,
                              .entries = ck->entries,
                              .cb = read_done,
                              .data = &done};
    int rc = 0;
    if (wal_read(ck->wal, &rr) == 0) { /* completes later, through read_done */
        while (rc >= 0 && !done) {
            rc = disk_run(ck->disk, true);
        }
    }
    rc = rc < 0 ? rc : rr.res;
    if (rc != 0 || rr.count == 0) {
        snprintf(why, bytes, "group %" PRIu64 ": wal_read [%" PRIu64 ", %" PRIu64 "): %s", id, lo,
                 hi, rc != 0 ? ts_strerror(rc) : "no entries");
        return -1;
    }
    for (uint32_t i = 0; i < rr.count; i++) {
        const struct wal_entry *e = &ck->entries[i];
        uint64_t term = g->terms[e->index - g->snap_index - 1];
        uint32_t len = entry_len(id, e->index, term);
        entry_fill(ck->expect, len, id, e->index, term);
        if (e->index != lo + i || e->term != term || e->len != len ||
            memcmp(e->data, ck->expect, len) != 0) {
            snprintf(why, bytes,
                     "group %" PRIu64 " entry %" PRIu64 ": expected term %" PRIu64
                     " and %u bytes, read entry %" PRIu64 " term %" PRIu64 " %u bytes%s",
                     id, lo + i, term, len, e->index, e->term, e->len,
                     e->len == len ? " (data differs)" : "");
            return -1;
        }
    }
    return (int)rr.count;
}

/* The full comparison: every retained entry's term and data. */
static int full_check(struct checker *ck, const struct model *m, char *why, size_t bytes)
{
    for (uint32_t s = 0; s < KILL_GROUPS; s++) {
        const struct mgroup *g = &m->g[s];
        uint64_t id = kill_group_ids[s];
        for (uint64_t i = 0; i < g->count; i++) {
            uint64_t term = 0;
            int rc = wal_term(ck->wal, id, g->snap_index + 1 + i, &term);
            if (rc != 0 || term != g->terms[i]) {
                snprintf(why, bytes,
                         "group %" PRIu64 " entry %" PRIu64 ": expected term %" PRIu64
                         ", wal_term gives %" PRIu64 " (%s)",
                         id, g->snap_index + 1 + i, g->terms[i], term, ts_strerror(rc));
                return -1;
            }
        }
        uint64_t lo = g->snap_index + 1, hi = mgroup_last(g) + 1;
        while (lo < hi) {
            uint64_t end = hi - lo > KILL_READ_ENTRIES_MAX ? lo + KILL_READ_ENTRIES_MAX : hi;
            int n = check_entries(ck, g, id, lo, end, why, bytes);
            if (n < 0) {
                return -1;
            }
            lo += (uint64_t)n;
        }
    }
    return 0;
}

/* Rebuilds the model from the recovered log (terms only: the data is a function of
 * (group, index, term) and was checked). */
static void model_load(struct model *m, const struct checker *ck)
{
    model_reset(m);
    for (uint32_t s = 0; s < KILL_GROUPS; s++) {
        const struct wsig *w = &ck->sig[s];
        struct mgroup *g = &m->g[s];
        if (!w->exists) {
            continue;
        }
        g->exists = true;
        g->snap_index = w->info.snap_index;
        g->snap_term = w->info.snap_term;
        g->has_hs = w->info.has_hard_state;
        g->hs = w->info.hard_state;
        for (uint64_t i = w->info.first_index; i <= w->info.last_index; i++) {
            uint64_t term = 0;
            (void)wal_term(ck->wal, w->info.group, i, &term);
            mgroup_push(g, term);
        }
    }
}

/* ------------------------------------------------------------------ rounds */

struct run {
    char dir[64];
    uint64_t seed;
    uint32_t rounds;
    uint32_t time_limit_s;
    bool keep;
    const char *state; /* --state: run a crash state instead of rounds */
    struct ts_rand rand;
    struct model model;
    uint32_t passed;
    uint32_t failed;
    uint32_t torn_tails;
    uint64_t seq_oldest; /* the highest oldest segment seen: segments before it were deleted */
    uint64_t seq_max;    /* the highest segment seen */
    uint64_t ops_total;
    uint64_t durable_total;
};

struct round_result {
    uint32_t window_ms;
    int child_status;
    bool child_killed; /* it died of our SIGKILL, not by itself */
    size_t match_op;   /* the operation count the recovered log matched */
    bool opened;
    bool torn;
    char why[KILL_WHY_BYTES];           /* the child's run */
    char check_why[4 * KILL_WHY_BYTES]; /* the check of the reopened log */
};

/* Reads the child's reports until the window closes. */
static void read_window(int fd, struct oplog *l, uint64_t until_ns)
{
    char buf[16384];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= until_ns) {
            return;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = (int)((until_ns - now + 999999) / 1000000);
        int r = poll(&p, 1, ms);
        if (r <= 0) {
            continue;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            return; /* the child is gone */
        }
        oplog_feed(l, buf, (size_t)n);
    }
}

static void read_rest(int fd, struct oplog *l)
{
    char buf[16384];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) {
            oplog_feed(l, buf, (size_t)n);
        }
    }
}

/* Forks the child, lets it run for the window, kills it, collects its reports. */
static int run_child(struct run *run, uint32_t round, struct oplog *l, struct round_result *res)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(res->why, sizeof(res->why), "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(res->why, sizeof(res->why), "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(run->dir, run->seed, round, fds[1]);
    }
    close(fds[1]);
    read_window(fds[0], l, now_ns() + (uint64_t)res->window_ms * 1000000ull);
    /* Only the PID forked above is ever killed. A child that stopped by itself (an
     * assertion, a WAL error) shows another status, even if it was still a zombie. */
    if (waitpid(pid, &res->child_status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &res->child_status, 0) < 0 && errno == EINTR) {
        }
    }
    res->child_killed = WIFSIGNALED(res->child_status) && WTERMSIG(res->child_status) == SIGKILL;
    read_rest(fds[0], l);
    close(fds[0]);
    return 0;
}

/* Searches the operation count k >= D at which the model equals the recovered log. */
static int match_ops(struct run *run, struct checker *ck, const struct oplog *l,
                     struct round_result *res)
{
    char why_sig[KILL_WHY_BYTES] = "";
    char why_full[2 * KILL_WHY_BYTES] = "";
    for (size_t k = 0;; k++) {
        if (k >= l->durable &&
            sig_match(ck, &run->model, k == l->durable ? why_sig : NULL, sizeof(why_sig))) {
            char why[KILL_WHY_BYTES] = "";
            if (full_check(ck, &run->model, why, sizeof(why)) == 0) {
                res->match_op = k;
                return 0;
            }
            if (why_full[0] == 0) {
                snprintf(why_full, sizeof(why_full), "at operation %zu: %s", k, why);
            }
        }
        if (k == l->n) {
            break;
        }
        if (model_apply(&run->model, &l->ops[k]) != 0) {
            snprintf(res->check_why, sizeof(res->check_why),
                     "operation %zu (kind %u, group %" PRIu64 ", %" PRIu64 ") is not valid on "
                     "the model: the child and the parent disagree about the log",
                     k, l->ops[k].kind, kill_group_ids[l->ops[k].slot], l->ops[k].a);
            return -1;
        }
    }
    snprintf(res->check_why, sizeof(res->check_why),
             "the recovered log matches no state between operation %" PRIu64
             " (reported durable) and %zu (last announced): %s",
             l->durable, l->n, why_full[0] != 0 ? why_full : why_sig);
    return -1;
}

/* Reopens the WAL as a restarting shard would and checks it against the reports. */
static int verify(struct run *run, const struct oplog *l, struct round_result *res)
{
    struct checker *ck = calloc(1, sizeof(*ck));
    uint8_t *buf = malloc((size_t)KILL_READ_ENTRIES_MAX * KILL_ENTRY_BYTES_MAX);
    if (ck == NULL || buf == NULL) {
        fprintf(stderr, "wal_kill: out of memory\n");
        exit(1);
    }
    ck->buf = buf;
    int rc = disk_uring_create(&(struct disk_uring_config){0}, ts_allocator_default(), &ck->disk);
    char errmsg[KILL_WHY_BYTES] = "";
    struct wal_config cfg = {.dir = run->dir,
                             .segment_bytes = KILL_SEGMENT_BYTES,
                             .report_cb = checker_report,
                             .data = ck};
    if (rc == 0) {
        rc = wal_open(&cfg, ck->disk, ts_allocator_default(), &ck->wal, errmsg, sizeof(errmsg));
    }
    res->opened = rc == 0;
    if (rc != 0) {
        snprintf(res->check_why, sizeof(res->check_why), "reopening: %s",
                 errmsg[0] != 0 ? errmsg : ts_strerror(rc));
    } else {
        checker_sign(ck);
        rc = match_ops(run, ck, l, res);
        model_load(&run->model, ck); /* the next child starts from what is on disk */
        res->torn = ck->torn;
        wal_close(ck->wal);
    }
    disk_destroy(ck->disk);
    free(buf);
    free(ck);
    return rc;
}

static void dir_scan(struct run *run, uint64_t *lo, uint64_t *hi)
{
    *lo = UINT64_MAX;
    *hi = 0;
    DIR *d = opendir(run->dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char *end;
        uint64_t seq = strtoull(e->d_name, &end, 16);
        if (end == e->d_name + 16 && strcmp(end, ".wal") == 0) {
            *lo = seq < *lo ? seq : *lo;
            *hi = seq > *hi ? seq : *hi;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    if (*lo != UINT64_MAX && *lo > run->seq_oldest) {
        run->seq_oldest = *lo;
    }
    run->seq_max = *hi > run->seq_max ? *hi : run->seq_max;
}

/* Removes every file of the test directory (and the directory itself with rmdir). */
static void dir_wipe(const char *dir, bool rmdir_too)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    if (rmdir_too) {
        rmdir(dir);
    }
}

/* Empties the directory; with --keep, the log that failed is kept beside it. */
static void dir_reset(const struct run *run, uint32_t round)
{
    char kept[96];
    snprintf(kept, sizeof(kept), "%s.round%u", run->dir, round);
    if (run->keep && rename(run->dir, kept) == 0 && mkdir(run->dir, 0700) == 0) {
        printf("wal_kill: the log of round %u is kept in %s\n", round, kept);
        return;
    }
    dir_wipe(run->dir, false);
}

static void child_status_text(const struct round_result *res, char *out, size_t bytes)
{
    if (WIFEXITED(res->child_status)) {
        snprintf(out, bytes, "exited with %d", WEXITSTATUS(res->child_status));
    } else if (WIFSIGNALED(res->child_status)) {
        snprintf(out, bytes, "died of signal %d", WTERMSIG(res->child_status));
    } else {
        snprintf(out, bytes, "status %d", res->child_status);
    }
}

static bool round_run(struct run *run, uint32_t round)
{
    struct oplog l = {0};
    struct round_result res = {0};
    res.window_ms =
        KILL_WINDOW_MS_MIN +
        (uint32_t)ts_rand_below(&run->rand, KILL_WINDOW_MS_MAX - KILL_WINDOW_MS_MIN + 1);
    int rc = run_child(run, round, &l, &res);
    if (rc == 0 && !res.child_killed) {
        char st[64];
        child_status_text(&res, st, sizeof(st));
        snprintf(res.why, sizeof(res.why), "the child stopped before it was killed (%s)", st);
        rc = -1;
    }
    if (rc == 0 && l.bad[0] != 0) {
        snprintf(res.why, sizeof(res.why), "bad report line from the child: '%s'", l.bad);
        rc = -1;
    }
    int vrc = verify(run, &l, &res);
    rc = rc == 0 ? vrc : rc;
    uint64_t lo, hi;
    dir_scan(run, &lo, &hi);
    run->torn_tails += res.torn ? 1 : 0;
    run->ops_total += l.n;
    run->durable_total += l.durable;
    printf("round %3u: window %3u ms, %6zu ops announced, %6" PRIu64 " durable, recovered at "
           "%6zu%s, segments %" PRIx64 "..%" PRIx64 ": %s\n",
           round, res.window_ms, l.n, l.durable, res.match_op, res.torn ? " (torn tail cut)" : "",
           lo == UINT64_MAX ? 0 : lo, hi, rc == 0 ? "ok" : "FAILED");
    if (rc != 0) {
        bool both = res.why[0] != 0 && res.check_why[0] != 0;
        printf("wal_kill: FAIL round %u (seed %" PRIu64 ", dir %s): %s%s%s\n", round, run->seed,
               run->dir, res.why, both ? "; then " : "", res.check_why);
    }
    if (!res.opened) {
        /* The log cannot be reopened: start the next round from an empty directory. */
        dir_reset(run, round);
        model_reset(&run->model);
    }
    free(l.ops);
    return rc == 0;
}

/* ------------------------------------------------------------------ crash states */

/*
 * Deterministic crash states (--state NAME). Each builds, through the WAL and plain file
 * writes, exactly what a SIGKILL at one precise moment of the random rounds leaves on
 * disk, then reopens the log as a restarting shard would and checks that it opens and
 * holds every durable entry. They pin down, one by one, what the random rounds can only
 * hit by chance. Group 1, term 1, 64 KiB segments; the entries are those of the rounds.
 */
#define STATE_SEGMENT_BYTES (64u * 1024u)

struct state_env {
    struct disk *disk;
    struct wal *wal;
    char dir[64];
    uint8_t data[KILL_ENTRY_BYTES_MAX];
    char why[2 * KILL_WHY_BYTES];
};

static int state_fail(struct state_env *e, const char *what, int rc)
{
    snprintf(e->why, sizeof(e->why), "%s: %s", what, ts_strerror(rc));
    return -1;
}

static int state_open(struct state_env *e)
{
    char errmsg[KILL_WHY_BYTES] = "";
    struct wal_config cfg = {.dir = e->dir, .segment_bytes = STATE_SEGMENT_BYTES};
    int rc = wal_open(&cfg, e->disk, ts_allocator_default(), &e->wal, errmsg, sizeof(errmsg));
    if (rc != 0) {
        snprintf(e->why, sizeof(e->why), "reopening: %s", errmsg);
        return -1;
    }
    return 0;
}

static void state_close(struct state_env *e)
{
    wal_close(e->wal);
    e->wal = NULL;
}

/* Flushes and waits until everything staged is durable. */
static int state_settle(struct state_env *e)
{
    int rc = wal_flush(e->wal);
    while (rc == 0 && !wal_idle(e->wal)) {
        rc = disk_run(e->disk, true);
        rc = rc < 0 ? rc : wal_error(e->wal);
    }
    return rc == 0 ? 0 : state_fail(e, "making the log durable", rc);
}

/* Appends entries first .. first + n - 1 of group 1 (term 1) and makes them durable. */
static int state_append(struct state_env *e, uint64_t first, uint32_t n)
{
    for (uint64_t i = first; i < first + n; i++) {
        uint32_t len = entry_len(1, i, 1);
        entry_fill(e->data, len, 1, i, 1);
        struct wal_entry en = {.term = 1, .index = i, .data = e->data, .len = len};
        int rc = wal_append(e->wal, 1, &en, 1);
        if (rc != 0) {
            return state_fail(e, "wal_append", rc);
        }
    }
    return state_settle(e);
}

/* Appends entries of group 1, one durable batch each, until the log has `segments`
 * segments. Returns the last index, or 0 with e->why set. */
static uint64_t state_fill(struct state_env *e, uint32_t segments)
{
    struct wal_group_info gi = {0};
    (void)wal_group_info(e->wal, 1, &gi);
    uint64_t index = gi.last_index;
    struct wal_stats st;
    for (wal_get_stats(e->wal, &st); st.segments < segments; wal_get_stats(e->wal, &st)) {
        if (state_append(e, ++index, 1) != 0) {
            return 0;
        }
    }
    return index;
}

/* The reopened log holds entries (snap, last] of group 1, with their data. */
static int state_verify(struct state_env *e, uint64_t snap, uint64_t last)
{
    struct wal_group_info gi;
    int rc = wal_group_info(e->wal, 1, &gi);
    if (rc != 0 || gi.snap_index != snap || gi.last_index != last) {
        snprintf(e->why, sizeof(e->why),
                 "group 1 holds (%" PRIu64 ", %" PRIu64 "], expected (%" PRIu64 ", %" PRIu64
                 "] (%s)",
                 gi.snap_index, gi.last_index, snap, last, ts_strerror(rc));
        return -1;
    }
    struct model m = {0};
    struct checker *ck = calloc(1, sizeof(*ck));
    uint8_t *buf = malloc((size_t)KILL_READ_ENTRIES_MAX * KILL_ENTRY_BYTES_MAX);
    if (ck == NULL || buf == NULL) {
        fprintf(stderr, "wal_kill: out of memory\n");
        exit(1);
    }
    *ck = (struct checker){.disk = e->disk, .wal = e->wal, .buf = buf};
    m.g[0] = (struct mgroup){.exists = true, .snap_index = snap};
    for (uint64_t i = snap + 1; i <= last; i++) {
        mgroup_push(&m.g[0], 1);
    }
    rc = full_check(ck, &m, e->why, sizeof(e->why));
    model_reset(&m);
    free(buf);
    free(ck);
    return rc;
}

static void state_file(struct state_env *e, uint64_t seq, char *path, size_t bytes)
{
    snprintf(path, bytes, "%s/%016" PRIx64 ".wal", e->dir, seq);
}

/* Writes `bytes` zeros at `offset` of segment seq (creating it), as a segment that was
 * created and allocated but never written holds, or a write that never happened. */
static int state_zero(struct state_env *e, uint64_t seq, uint64_t offset, uint64_t bytes)
{
    char path[128];
    state_file(e, seq, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -errno : 0;
    for (uint64_t done = 0; rc == 0 && done < bytes;) {
        size_t n = bytes - done < sizeof(e->data) ? (size_t)(bytes - done) : sizeof(e->data);
        memset(e->data, 0, n);
        ssize_t w = pwrite(fd, e->data, n, (off_t)(offset + done));
        rc = w < 0 ? -errno : (w == 0 ? -EIO : 0);
        done += w > 0 ? (uint64_t)w : 0;
    }
    if (rc == 0 && fsync(fd) != 0) {
        rc = -errno;
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc == 0 ? 0 : state_fail(e, path, rc);
}

/* wal_read right after reopening: the entries are on disk, the read cache is empty. */
static int state_read_after_reopen(struct state_env *e)
{
    if (state_append(e, 1, 3) != 0) {
        return -1;
    }
    state_close(e);
    return state_open(e) == 0 ? state_verify(e, 0, 3) : -1;
}

/* Killed after a roll created segment 2 (allocated, synced) and before its first batch
 * was written: the reopened WAL must take writes again and make them durable. */
static int state_unwritten_tail(struct state_env *e)
{
    uint64_t last = state_fill(e, 2);
    if (last == 0) {
        return -1;
    }
    state_close(e);
    /* Segment 2's first batch (its GROUP_STATE records and the last entry) was never
     * written: the file is as wal_segment_create left it, allocated and all zeros. */
    char path[128];
    state_file(e, 2, path, sizeof(path));
    if (unlink(path) != 0 || state_zero(e, 2, 0, STATE_SEGMENT_BYTES) != 0 || state_open(e) != 0) {
        return -1;
    }
    uint64_t kept;
    if (wal_term(e->wal, 1, last - 1, &kept) != 0) {
        snprintf(e->why, sizeof(e->why), "entry %" PRIu64 " is gone", last - 1);
        return -1;
    }
    uint64_t more = state_fill(e, 3); /* writes to segment 2, then rolls to 3 */
    if (more == 0) {
        return -1;
    }
    state_close(e);
    return state_open(e) == 0 ? state_verify(e, 0, more) : -1;
}

/* Killed between creating segment 2 (open with O_CREAT) and allocating it: the file is
 * empty. The log must open, keep its entries and roll past the file later. */
static int state_empty_segment_file(struct state_env *e)
{
    if (state_append(e, 1, 5) != 0) {
        return -1;
    }
    state_close(e);
    char path[128];
    state_file(e, 2, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return state_fail(e, path, -errno);
    }
    close(fd);
    if (state_open(e) != 0 || state_verify(e, 0, 5) != 0) {
        return -1;
    }
    uint64_t last = state_fill(e, 3);
    if (last == 0) {
        return -1;
    }
    state_close(e);
    return state_open(e) == 0 ? state_verify(e, 0, last) : -1;
}

/* A compaction that frees segment 1 is staged, and the kill comes before the COMPACT
 * record is durable: the log on disk still needs segment 1's entries. */
static int state_compact_not_durable(struct state_env *e)
{
    uint64_t last = state_fill(e, 2);
    if (last == 0 || state_append(e, last + 1, 3) != 0) {
        return -1;
    }
    last += 3;
    int rc = wal_compact(e->wal, 1, last - 1); /* staged, never flushed */
    if (rc != 0) {
        return state_fail(e, "wal_compact", rc);
    }
    state_close(e); /* what the kill leaves: nothing staged reached the disk */
    return state_open(e) == 0 ? state_verify(e, 0, last) : -1;
}

static int state_last_offset(void *arg, const struct wal_record_info *r)
{
    uint64_t *offset = arg;
    if (r->seq == 1) {
        *offset = r->offset;
    }
    return 0;
}

/* A roll sealed the batch in flight in segment 1 and created segment 2; the kill tore
 * that batch's write, and segment 2 was never written. The torn batch is the log's
 * tail: it must be cut, not called corruption. */
static int state_torn_before_roll(struct state_env *e)
{
    uint64_t last = state_fill(e, 2); /* entry last opened segment 2 */
    if (last < 3) {
        return last == 0 ? -1 : state_fail(e, "segment 1 too small", TS_EINVAL);
    }
    state_close(e);
    uint64_t offset = 0; /* of entry last - 1: the only record of segment 1's last batch */
    char errmsg[KILL_WHY_BYTES] = "";
    int rc = wal_inspect(e->dir, e->disk, ts_allocator_default(), state_last_offset, NULL, &offset,
                         NULL, errmsg, sizeof(errmsg));
    if (rc != 0) {
        snprintf(e->why, sizeof(e->why), "wal_inspect: %s", errmsg);
        return -1;
    }
    if (state_zero(e, 1, offset, STATE_SEGMENT_BYTES - offset) != 0 ||
        state_zero(e, 2, 0, STATE_SEGMENT_BYTES) != 0 || state_open(e) != 0 ||
        state_verify(e, 0, last - 2) != 0 || state_append(e, last - 1, 2) != 0) {
        return -1;
    }
    state_close(e);
    return state_open(e) == 0 ? state_verify(e, 0, last) : -1;
}

/* Staging ran a segment ahead of the disk: segments 2 and 3 were created, and the kill
 * came before anything was written to either. */
static int state_unwritten_segments(struct state_env *e)
{
    if (state_append(e, 1, 3) != 0) {
        return -1;
    }
    state_close(e);
    if (state_zero(e, 2, 0, STATE_SEGMENT_BYTES) != 0 ||
        state_zero(e, 3, 0, STATE_SEGMENT_BYTES) != 0 || state_open(e) != 0 ||
        state_verify(e, 0, 3) != 0) {
        return -1;
    }
    uint64_t last = state_fill(e, 5);
    if (last == 0) {
        return -1;
    }
    state_close(e);
    return state_open(e) == 0 ? state_verify(e, 0, last) : -1;
}

struct state_case {
    const char *name;
    int (*fn)(struct state_env *e);
};

static const struct state_case state_cases[] = {
    {"read_after_reopen", state_read_after_reopen},
    {"unwritten_tail", state_unwritten_tail},
    {"empty_segment_file", state_empty_segment_file},
    {"compact_not_durable", state_compact_not_durable},
    {"torn_before_roll", state_torn_before_roll},
    {"unwritten_segments", state_unwritten_segments},
};
#define STATE_CASES (sizeof(state_cases) / sizeof(state_cases[0]))

/* Runs one case in this process (a forked child): 0 when it passed. */
static int state_run(const struct state_case *c, const char *dir)
{
    struct state_env *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return 1;
    }
    snprintf(e->dir, sizeof(e->dir), "%s", dir);
    int rc = disk_uring_create(&(struct disk_uring_config){0}, ts_allocator_default(), &e->disk);
    if (rc != 0) {
        rc = state_fail(e, "disk_uring_create", rc);
    } else if ((rc = state_open(e)) == 0) {
        rc = c->fn(e);
    }
    if (e->wal != NULL) {
        state_close(e);
    }
    disk_destroy(e->disk);
    if (rc != 0) {
        printf("wal_kill: FAIL state %s: %s\n", c->name, e->why);
    }
    free(e);
    return rc == 0 ? 0 : 1;
}

/* Runs the named case ("all": every case), each in a child of its own so that an
 * assertion in the WAL fails that case only. */
static int state_main(const char *name)
{
    uint32_t passed = 0, failed = 0;
    for (size_t i = 0; i < STATE_CASES; i++) {
        const struct state_case *c = &state_cases[i];
        if (strcmp(name, "all") != 0 && strcmp(name, c->name) != 0) {
            continue;
        }
        char dir[64] = "/tmp/wal_state.XXXXXX";
        if (mkdtemp(dir) == NULL) {
            printf("wal_kill: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            _exit(state_run(c, dir));
        }
        int status = 0;
        while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        bool ok = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (pid > 0 && WIFSIGNALED(status)) {
            printf("wal_kill: FAIL state %s: died of signal %d\n", c->name, WTERMSIG(status));
        }
        printf("state %s: %s\n", c->name, ok ? "ok" : "FAILED");
        passed += ok ? 1 : 0;
        failed += ok ? 0 : 1;
        dir_wipe(dir, true);
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : (passed + failed == 0 ? 2 : 1);
}

/* ------------------------------------------------------------------ main */

static int usage(void)
{
    fprintf(stderr, "usage: wal_kill_test [--rounds N] [--seed S] [--time-limit SECONDS] "
                    "[--keep]\n       wal_kill_test --state NAME|all\n");
    return 2;
}

static int parse(int argc, char **argv, struct run *run)
{
    run->rounds = KILL_ROUNDS_DEFAULT;
    run->time_limit_s = KILL_TIME_LIMIT_S_DEFAULT;
    run->seed = now_ns() ^ ((uint64_t)getpid() << 32);
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        char *end = NULL;
        if (strcmp(argv[i], "--rounds") == 0 && more) {
            run->rounds = (uint32_t)strtoul(argv[++i], &end, 0);
        } else if (strcmp(argv[i], "--seed") == 0 && more) {
            run->seed = strtoull(argv[++i], &end, 0);
        } else if (strcmp(argv[i], "--time-limit") == 0 && more) {
            run->time_limit_s = (uint32_t)strtoul(argv[++i], &end, 0);
        } else if (strcmp(argv[i], "--keep") == 0) {
            run->keep = true;
        } else if (strcmp(argv[i], "--state") == 0 && more) {
            run->state = argv[++i];
        } else {
            return -1;
        }
        if (end != NULL && (*end != 0 || end == argv[i])) {
            return -1;
        }
    }
    return run->rounds > 0 ? 0 : -1;
}

/* 77 when this kernel (or its seccomp policy) gives no io_uring. */
static int uring_available(void)
{
    struct disk *disk = NULL;
    int rc = disk_uring_create(&(struct disk_uring_config){0}, ts_allocator_default(), &disk);
    if (rc == -ENOSYS || rc == -EPERM) {
        printf("wal_kill: io_uring unavailable (%s): skipped\n", ts_strerror(rc));
        return 77;
    }
    if (rc != 0) {
        printf("wal_kill: disk_uring_create: %s\n", ts_strerror(rc));
        return 1;
    }
    disk_destroy(disk);
    return 0;
}

int main(int argc, char **argv)
{
    struct run *run = calloc(1, sizeof(*run));
    if (run == NULL || parse(argc, argv, run) != 0) {
        free(run);
        return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = uring_available();
    snprintf(run->dir, sizeof(run->dir), "/tmp/wal_kill.XXXXXX");
    if (rc == 0 && run->state != NULL) {
        rc = state_main(run->state);
        free(run);
        return rc == 2 ? usage() : rc;
    }
    if (rc == 0 && mkdtemp(run->dir) == NULL) {
        printf("wal_kill: mkdtemp: %s\n", strerror(errno));
        rc = 1;
    }
    if (rc != 0) {
        free(run);
        return rc;
    }
    printf("wal_kill: seed %" PRIu64 ", %u rounds, dir %s (rerun: --seed %" PRIu64
           " --rounds %u)\n",
           run->seed, run->rounds, run->dir, run->seed, run->rounds);
    ts_rand_seed(&run->rand, run->seed);
    uint64_t start = now_ns();
    uint32_t round = 0;
    for (; round < run->rounds; round++) {
        if (now_ns() - start > (uint64_t)run->time_limit_s * 1000000000ull) {
            printf("wal_kill: time limit of %u s reached after %u rounds\n", run->time_limit_s,
                   round);
            break;
        }
        if (round_run(run, round)) {
            run->passed++;
        } else {
            run->failed++;
        }
    }
    printf("wal_kill: %" PRIu64 " operations announced, %" PRIu64 " reported durable, %u torn "
           "tails cut, oldest segment kept up to %" PRIx64 ", newest %" PRIx64
           ", %.1f s (seed %" PRIu64 ")\n",
           run->ops_total, run->durable_total, run->torn_tails, run->seq_oldest, run->seq_max,
           (double)(now_ns() - start) / 1e9, run->seed);
    printf("%u passed, %u failed\n", run->passed, run->failed);
    if (!run->keep) {
        dir_wipe(run->dir, true);
    }
    model_reset(&run->model);
    rc = run->failed == 0 && run->passed > 0 ? 0 : 1;
    free(run);
    return rc;
}
