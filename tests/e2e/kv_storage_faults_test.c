/*
 * kv_storage_faults: storage faults under a running tesserad (3 nodes, real processes).
 * The storage modules are tested on the simulated disk; these check what the server
 * makes of the same faults: a clear error and an exit, never a crash, and no
 * acknowledged write lost.
 *
 *   full_disk: node 3's data directory is a tmpfs, in a mount namespace of its own,
 *     with room for its preallocated log segments and little more, so the B-tree's
 *     checkpoints (every 32 applied entries) fill it under a load of 2000-byte values.
 *     Node 2 is stopped meanwhile, so that every write acknowledged before node 3 stops
 *     is durable on node 3. Node 3 must exit 1 (no signal, no sanitizer report) with a
 *     log line naming ENOSPC. Then node 1 is stopped too, node 3's tmpfs is grown (same
 *     files) and nodes 2 and 3 start: node 3 is now the only node holding those writes,
 *     and each must read back linearizably. The two serve new writes; node 1 returns, and
 *     node 3 serves every acknowledged key from its own replicas (serializable reads).
 *   corrupt_btree_page: node 3 stopped cleanly; 16 bytes in the middle of its shard 0
 *     tree's root page (from the newer meta page) flipped. B-tree pages carry a CRC32C
 *     over the whole page, verified on every read (storage/btree/page.h), and the root is
 *     read when the shard loads each range's state at start: node 3 must refuse to
 *     start (exit 1, no crash) with a log line naming the file and the page; nodes 1
 *     and 2 serve and lose no acknowledged write.
 *   corrupt_btree_leaf: the same with the root's first leaf, which holds user keys only,
 *     so the start does not read it: node 3 starts, and the first write into that leaf
 *     must stop it (exit 1, the log naming the file and the page), never a crash and no
 *     lost write.
 *   torn_log_tail: node 3 SIGKILLed under a write load; then the last 256 written bytes
 *     of each shard's last log segment are overwritten: with garbage in shard 0, with
 *     zeros (never written) in shard 1. The log takes a bad final batch for a torn write
 *     (storage/wal/wal.h): node 3 must start, report the cut, and catch up; every
 *     acknowledged write reads back linearizably, and from node 3 serializably. The cut
 *     batch may have been acknowledged already (fdatasynced before the kill), so node 3
 *     may lack entries its leaders count as matched: they must repair it anyway.
 *   corrupt_log_middle: node 3 stopped cleanly; 64 bytes in the middle of shard 0's log
 *     flipped, valid batches after them. That is corruption, not a torn tail: node 3
 *     must refuse to start (exit 1, no crash) with a log line naming the segment file
 *     and the offset; nodes 1 and 2 serve and lose no acknowledged write.
 */
#define _GNU_SOURCE
#include "tests/e2e/suite.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYS_MAX 3000u
#define VALUE_BYTES_MAX 2048u
#define INFLIGHT 16u
#define DRAIN_MS 60000u
#define CONVERGE_MS 60000u
#define WAL_SEGMENT_BYTES (64ull * 1024 * 1024) /* TS_WAL_SEGMENT_BYTES_DEFAULT, preallocated */
#define SHARDS 2u
#define RANGES 4u
/* Node 3's tmpfs: a log segment per shard and this much more. The node starts in it (the
 * cluster file, two B-tree files of a few pages) and fills it within a few hundred
 * 2000-byte values. */
#define FULL_DISK_SLACK_BYTES (256u * 1024u)

static struct e2e_cluster cluster;

static void down(void)
{
    e2e_cluster_stop(&cluster);
}

TestSuite(kv_storage_faults, .fini = down, .timeout = 300);

/* ---- Keys, values, and what the client saw ---------------------------------------------- */

struct slot {
    uint32_t i;
    bool done;
    int status;
    bool acked;
    bool ok; /* read back with its value */
    bool missing;
};

static struct slot S[KEYS_MAX];
static uint32_t value_bytes = 24; /* of every value written or expected */

static size_t key_of(uint32_t i, uint8_t *buf)
{
    buf[0] = (uint8_t)(i * 53u + 7u); /* spreads the keys over the ranges */
    return 1 + (size_t)snprintf((char *)buf + 1, 16, "sf%05u", i);
}

static size_t value_of(uint32_t i, char *buf)
{
    int n = snprintf(buf, VALUE_BYTES_MAX, "value-%05u-", i);
    for (uint32_t k = (uint32_t)n; k < value_bytes; k++) {
        buf[k] = (char)('a' + (i + k) % 26u);
    }
    return value_bytes;
}

static void put_cb(void *data, int status, const struct tessera_response *resp)
{
    (void)resp;
    struct slot *s = data;
    s->done = true;
    s->status = status;
    s->acked = status == 0;
}

static void get_cb(void *data, int status, const struct tessera_response *resp)
{
    struct slot *s = data;
    static char v[VALUE_BYTES_MAX];
    size_t vl = value_of(s->i, v);
    s->done = true;
    s->status = status;
    s->ok = status == 0 && resp->u.get.found && resp->u.get.kv.value_len == vl &&
            memcmp(resp->u.get.kv.value, v, vl) == 0;
    s->missing = status == 0 && !resp->u.get.found;
}

static void drain(struct tessera_client *cl, uint32_t below)
{
    uint64_t deadline = e2e_now_ms() + DRAIN_MS;
    while (tessera_client_inflight(cl) > below && e2e_now_ms() < deadline) {
        (void)tessera_client_run(cl, 50);
    }
    cr_assert_leq(tessera_client_inflight(cl), below, "requests did not finish in time");
}

/* Called before key i is submitted; false stops the load there. */
typedef bool (*load_hook)(uint32_t i);

/* Writes keys [from, to) pipelined (request timeout timeout_ms), until hook (may be NULL)
 * says stop. Returns the end of what was submitted; acked counts the acknowledged. */
static uint32_t write_keys(uint32_t from, uint32_t to, uint32_t timeout_ms, load_hook hook,
                           uint32_t *acked)
{
    struct tessera_client *cl = e2e_client(&cluster, timeout_ms, INFLIGHT);
    cr_assert_not_null(cl);
    static char v[VALUE_BYTES_MAX];
    uint32_t i = from;
    for (; i < to; i++) {
        drain(cl, INFLIGHT - 1);
        if (hook != NULL && !hook(i)) {
            break;
        }
        uint8_t k[24];
        S[i] = (struct slot){.i = i};
        cr_assert_eq(tessera_put_async(cl, k, key_of(i, k), v, value_of(i, v), 0, 0, put_cb, &S[i]),
                     0);
    }
    drain(cl, 0);
    tessera_client_free(cl);
    *acked = 0;
    for (uint32_t j = from; j < i; j++) {
        *acked += S[j].acked;
    }
    fprintf(stderr, "kv_storage_faults: keys %u..%u: %u acknowledged\n", from, i, *acked);
    return i;
}

/* Reads back every acknowledged key of [from, to) linearizably through the whole
 * cluster. Transient errors are retried (bounded); "not found" or another value is a lost
 * write. */
static void read_back(uint32_t from, uint32_t to, const char *when)
{
    struct tessera_client *cl = e2e_client(&cluster, 0, INFLIGHT);
    cr_assert_not_null(cl);
    uint32_t left = 0, checked = 0;
    for (uint32_t i = from; i < to; i++) {
        S[i].ok = false;
        checked += S[i].acked;
    }
    for (int pass = 0; pass < 8; pass++) {
        for (uint32_t i = from; i < to; i++) {
            if (!S[i].acked || S[i].ok) {
                continue;
            }
            drain(cl, INFLIGHT - 1);
            uint8_t k[24];
            S[i].done = false;
            cr_assert_eq(
                tessera_get_async(cl, k, key_of(i, k), TESSERA_LINEARIZABLE, get_cb, &S[i]), 0);
        }
        drain(cl, 0);
        left = 0;
        for (uint32_t i = from; i < to; i++) {
            if (!S[i].acked || S[i].ok) {
                continue;
            }
            cr_assert(!S[i].missing, "%s: acknowledged key %u is missing", when, i);
            cr_assert_neq(S[i].status, 0, "%s: acknowledged key %u has another value", when, i);
            left++;
        }
        if (left == 0) {
            break;
        }
        usleep(500000);
    }
    tessera_client_free(cl);
    cr_assert_eq(left, 0, "%s: %u acknowledged keys could not be read", when, left);
    fprintf(stderr, "kv_storage_faults: %s: %u acknowledged keys of %u..%u read back\n", when,
            checked, from, to);
}

/* Node i serves every acknowledged key of [0, to) from its own replicas (serializable
 * reads pinned to it), within CONVERGE_MS. */
static void converged(uint32_t i, uint32_t to, const char *when)
{
    struct tessera_client *pin = e2e_client_pinned(&cluster, i, 2000);
    cr_assert_not_null(pin);
    static char want[VALUE_BYTES_MAX], got[VALUE_BYTES_MAX];
    uint64_t deadline = e2e_now_ms() + CONVERGE_MS;
    uint32_t left = 1;
    for (uint32_t k = 0; k < to; k++) {
        S[k].ok = false;
    }
    while (left > 0 && e2e_now_ms() < deadline) {
        left = 0;
        for (uint32_t k = 0; k < to; k++) {
            if (!S[k].acked || S[k].ok) {
                continue;
            }
            uint8_t key[24];
            size_t wl = value_of(k, want), gl = 0;
            int rc = tessera_get(pin, key, key_of(k, key), TESSERA_SERIALIZABLE, got, sizeof got,
                                 &gl, NULL, 2000);
            S[k].ok = rc == 0 && gl == wl && memcmp(got, want, gl) == 0;
            left += S[k].ok ? 0 : 1;
        }
        if (left > 0) {
            usleep(200000);
        }
    }
    tessera_client_free(pin);
    cr_assert_eq(left, 0, "%s: node %u does not serve %u acknowledged keys", when, i + 1, left);
    fprintf(stderr, "kv_storage_faults: %s: node %u serves every acknowledged key of 0..%u\n", when,
            i + 1, to);
}

/* ---- Logs, exits, files --------------------------------------------------------------------- */

static bool log_says(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, what) != NULL;
    }
    fclose(f);
    return found;
}

/* A line of the log holding both a and b. */
static bool log_line_says(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, a) != NULL && strstr(line, b) != NULL;
    }
    fclose(f);
    return found;
}

/* Node i stopped by itself with exit status 1: no signal, no sanitizer report, no failed
 * assertion in its log. */
static void exited_1_without_crash(uint32_t i, const char *when)
{
    const struct e2e_node *nd = &cluster.node[i];
    int st = nd->last_status;
    cr_assert(st != -1 && WIFEXITED(st), "%s: node %u was killed by signal %d (see %s)", when,
              i + 1, WIFSIGNALED(st) ? WTERMSIG(st) : -1, nd->log);
    cr_assert_eq(WEXITSTATUS(st), 1, "%s: node %u exited %d, not 1 (see %s)", when, i + 1,
                 WEXITSTATUS(st), nd->log);
    cr_assert(!log_says(nd->log, "Sanitizer") && !log_says(nd->log, "runtime error") &&
                  !log_says(nd->log, "assertion failed"),
              "%s: node %u crashed (see %s)", when, i + 1, nd->log);
}

/* Waits up to timeout_ms for node i to exit by itself. */
static bool wait_exit(uint32_t i, uint32_t timeout_ms)
{
    uint64_t deadline = e2e_now_ms() + timeout_ms;
    while (e2e_node_alive(&cluster, i, NULL)) {
        if (e2e_now_ms() >= deadline) {
            return false;
        }
        usleep(20000);
    }
    return true;
}

static void start(uint32_t ranges)
{
    e2e_suite_up(&cluster, 3, SHARDS, ranges, NULL);
}

/* The path of node i's shard k file or directory `name`. */
static void shard_path(uint32_t i, uint32_t k, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/shard-%u/%s", cluster.node[i].dir, k, name);
}

/* The last (highest-numbered) segment file of a log directory. */
static void last_segment(const char *dir, char *buf, size_t cap)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no log directory %s", dir);
    char best[64] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l == 20 && strcmp(e->d_name + 16, ".wal") == 0 && strcmp(e->d_name, best) > 0) {
            memcpy(best, e->d_name, l + 1);
        }
    }
    closedir(d);
    cr_assert_neq(best[0], 0, "no segment in %s", dir);
    snprintf(buf, cap, "%s/%s", dir, best);
}

/* The end of the written part of a preallocated segment: past its last non-zero byte. */
static uint64_t written_end(int fd)
{
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    static uint8_t buf[1u << 20];
    uint64_t end = (uint64_t)st.st_size;
    while (end > 0) {
        uint64_t lo = end > sizeof buf ? end - sizeof buf : 0;
        ssize_t n = pread(fd, buf, (size_t)(end - lo), (off_t)lo);
        cr_assert_eq(n, (ssize_t)(end - lo));
        for (uint64_t k = end - lo; k > 0; k--) {
            if (buf[k - 1] != 0) {
                return lo + k;
            }
        }
        end = lo;
    }
    return 0;
}

static void overwrite(int fd, uint64_t at, const uint8_t *bytes, size_t n)
{
    cr_assert_eq(pwrite(fd, bytes, n, (off_t)at), (ssize_t)n);
    cr_assert_eq(fsync(fd), 0);
}

/* XORs n bytes at `at` with 0xA5. */
static void flip(int fd, uint64_t at, size_t n)
{
    uint8_t b[256];
    cr_assert_leq(n, sizeof b);
    cr_assert_eq(pread(fd, b, n, (off_t)at), (ssize_t)n);
    for (size_t k = 0; k < n; k++) {
        b[k] ^= 0xA5;
    }
    overwrite(fd, at, b, n);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) {
        v = v << 8 | p[k];
    }
    return v;
}

/* ---- Full disk ------------------------------------------------------------------------------ */

/* Can this process make a mount namespace (root, not forbidden by a container)? */
static bool can_unshare_mounts(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        _exit(unshare(CLONE_NEWNS) == 0 ? 0 : 1);
    }
    int st = 1;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static uint64_t died_at_ms; /* when the load saw node 3 gone (0: not yet) */

/* Goes on while node 3 runs, and for a moment after (requests in flight settle). */
static bool until_node3_stops(uint32_t i)
{
    (void)i;
    if (died_at_ms == 0 && !e2e_node_alive(&cluster, 2, NULL)) {
        died_at_ms = e2e_now_ms();
    }
    return died_at_ms == 0;
}

Test(kv_storage_faults, full_disk)
{
    if (!can_unshare_mounts()) {
        cr_skip_test("cannot create a mount namespace here (needs root)");
    }
    static const char *const extra[] = {"--checkpoint-entries", "32", NULL};
    memset(&cluster, 0, sizeof cluster);
    memcpy(cluster.extra, extra, sizeof extra);
    cluster.tmpfs_bytes[2] = SHARDS * WAL_SEGMENT_BYTES + FULL_DISK_SLACK_BYTES;
    start(RANGES);
    value_bytes = 2000;

    /* Nodes 1 and 3 alone: every acknowledged write is durable on node 3. */
    cr_assert_eq(e2e_node_term(&cluster, 1, E2E_STOP_TIMEOUT_MS), 0, "node 2 stops cleanly");
    cr_assert_eq(e2e_cluster_wait_ready(&cluster, E2E_READY_TIMEOUT_MS), 0);
    uint32_t acked_a = 0;
    died_at_ms = 0;
    uint32_t end_a = write_keys(0, KEYS_MAX / 2, 3000, until_node3_stops, &acked_a);
    cr_assert(wait_exit(2, 10000),
              "node 3 did not stop although its disk is full (%u keys of "
              "%u bytes written)",
              end_a, value_bytes);
    exited_1_without_crash(2, "full disk");
    cr_assert(log_says(cluster.node[2].log, "No space left on device"),
              "node 3's log does not name ENOSPC (see %s)", cluster.node[2].log);
    cr_assert(log_says(cluster.node[2].log, "storage failure"),
              "node 3's log does not say why it stopped (see %s)", cluster.node[2].log);
    cr_assert_gt(acked_a, 0, "nodes 1 and 3 took no write before the disk filled");

    /* Node 3, grown, and node 2: node 3 is the only one holding what was acknowledged. */
    cr_assert_eq(e2e_node_term(&cluster, 0, E2E_STOP_TIMEOUT_MS), 0, "node 1 stops cleanly");
    cr_assert_eq(e2e_node_tmpfs_resize(&cluster, 2, SHARDS * WAL_SEGMENT_BYTES + (64u << 20)), 0);
    cr_assert_eq(e2e_node_restart(&cluster, 2), 0, "node 3 restarts on its own files");
    cr_assert_eq(e2e_node_restart(&cluster, 1), 0, "node 2 restarts");
    cr_assert_eq(e2e_cluster_wait_ready(&cluster, E2E_READY_TIMEOUT_MS), 0);
    read_back(0, end_a, "nodes 2 and 3 after node 3's disk filled");

    /* Nodes 2 and 3 serve; node 1 returns; node 3 converges. */
    uint32_t acked_b = 0;
    uint32_t end_b = write_keys(end_a, end_a + 100, 0, NULL, &acked_b);
    cr_assert_gt(acked_b, 0, "nodes 2 and 3 took no write");
    cr_assert_eq(e2e_node_restart(&cluster, 0), 0, "node 1 restarts");
    read_back(0, end_b, "all three nodes");
    converged(2, end_b, "after the full disk");
    for (uint32_t i = 0; i < cluster.n; i++) {
        cr_assert_eq(e2e_node_term(&cluster, i, E2E_STOP_TIMEOUT_MS), 0,
                     "node %u does not stop cleanly", i + 1);
    }
}

/* ---- Corrupt B-tree page ---------------------------------------------------------------- */

#define PAGE_BYTES 4096u /* TS_BTREE_PAGE_BYTES_DEFAULT */

/* The root page of a B-tree file, from its newer valid meta page (page.h). */
static uint64_t btree_root(int fd)
{
    uint8_t m[2][PAGE_BYTES];
    cr_assert_eq(pread(fd, m, sizeof m, 0), (ssize_t)sizeof m);
    int best = -1;
    for (int k = 0; k < 2; k++) {
        if (memcmp(m[k] + 40, "TSBTREE1", 8) == 0 &&
            (best < 0 || le64(m[k] + 16) > le64(m[best] + 16))) {
            best = k;
        }
    }
    cr_assert_geq(best, 0, "no meta page");
    return le64(m[best] + 56);
}

Test(kv_storage_faults, corrupt_btree_page)
{
    memset(&cluster, 0, sizeof cluster);
    start(RANGES);
    value_bytes = 24;
    uint32_t acked = 0;
    uint32_t end = write_keys(0, 300, 0, NULL, &acked);
    cr_assert_gt(acked, 0);
    cr_assert_eq(e2e_node_term(&cluster, 2, E2E_STOP_TIMEOUT_MS), 0, "node 3 stops cleanly");

    char path[E2E_PATH_BYTES + 64];
    shard_path(2, 0, "data.btree", path, sizeof path);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    uint64_t root = btree_root(fd);
    cr_assert_geq(root, 2, "the tree is empty");
    flip(fd, root * PAGE_BYTES + PAGE_BYTES / 2, 16);
    close(fd);

    cr_assert_neq(e2e_node_restart(&cluster, 2), 0, "node 3 started on a corrupt B-tree");
    cr_assert(wait_exit(2, E2E_STOP_TIMEOUT_MS));
    exited_1_without_crash(2, "corrupt B-tree page");
    char page[32];
    snprintf(page, sizeof page, "page %llu", (unsigned long long)root);
    cr_assert(log_line_says(cluster.node[2].log, path, page),
              "node 3's log names neither %s nor its %s (see %s)", path, page, cluster.node[2].log);

    uint32_t acked2 = 0;
    uint32_t end2 = write_keys(end, end + 100, 0, NULL, &acked2);
    cr_assert_gt(acked2, 0, "nodes 1 and 2 took no write");
    read_back(0, end2, "nodes 1 and 2, node 3 refusing its B-tree");
}

/* The first leaf of a B-tree file of height 2 (the root's leftmost child, its header's
 * link): it holds user keys ('d'...), which sort before the ranges' states ('m'...), so
 * the start does not read it. */
static uint64_t btree_first_leaf(int fd, uint64_t root)
{
    uint8_t m[2][PAGE_BYTES], b[PAGE_BYTES];
    cr_assert_eq(pread(fd, m, sizeof m, 0), (ssize_t)sizeof m);
    int k = le64(m[0] + 16) > le64(m[1] + 16) ? 0 : 1;
    uint32_t height = (uint32_t)m[k][80] | (uint32_t)m[k][81] << 8;
    cr_assert_eq(height, 2u, "the tree's height is %u, not 2", height);
    cr_assert_eq(pread(fd, b, sizeof b, (off_t)(root * PAGE_BYTES)), (ssize_t)sizeof b);
    cr_assert_eq(b[4], 2, "the root is not a branch");
    uint64_t leaf = le64(b + 32);
    cr_assert_geq(leaf, 2u);
    return leaf;
}

/* A leaf that the start does not read: node 3 starts, and the first write that reaches
 * the leaf finds it corrupt: the node must stop (exit 1, the log naming file and page)
 * rather than serve from a tree it knows is damaged; or, if the start reads that leaf
 * after all, refuse to start the same way. Nothing acknowledged is lost. */
Test(kv_storage_faults, corrupt_btree_leaf)
{
    memset(&cluster, 0, sizeof cluster);
    start(RANGES);
    value_bytes = 24;
    uint32_t acked = 0;
    uint32_t end = write_keys(0, 400, 0, NULL, &acked);
    cr_assert_gt(acked, 0);
    cr_assert_eq(e2e_node_term(&cluster, 2, E2E_STOP_TIMEOUT_MS), 0, "node 3 stops cleanly");

    char path[E2E_PATH_BYTES + 64];
    shard_path(2, 0, "data.btree", path, sizeof path);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    uint64_t leaf = btree_first_leaf(fd, btree_root(fd));
    flip(fd, leaf * PAGE_BYTES + PAGE_BYTES / 2, 16);
    close(fd);

    bool started = e2e_node_restart(&cluster, 2) == 0;
    fprintf(stderr, "kv_storage_faults: node 3 %s with leaf %llu of %s corrupt\n",
            started ? "started" : "refused to start", (unsigned long long)leaf, path);
    /* Every key again (the same values): the puts of shard 0's ranges reach the leaf. */
    static bool before[KEYS_MAX];
    for (uint32_t i = 0; i < end; i++) {
        before[i] = S[i].acked;
    }
    uint32_t acked2 = 0;
    (void)write_keys(0, end, 0, NULL, &acked2);
    cr_assert(wait_exit(2, E2E_STOP_TIMEOUT_MS), "node 3 goes on with a corrupt leaf");
    exited_1_without_crash(2, "corrupt B-tree leaf");
    char page[32];
    snprintf(page, sizeof page, "page %llu", (unsigned long long)leaf);
    cr_assert(log_line_says(cluster.node[2].log, path, page),
              "node 3's log names neither %s nor its %s (see %s)", path, page, cluster.node[2].log);
    for (uint32_t i = 0; i < end; i++) {
        S[i].acked = S[i].acked || before[i];
    }
    read_back(0, end, "nodes 1 and 2, node 3 stopped on its corrupt leaf");
}

/* ---- Torn log tail -------------------------------------------------------------------------- */

#define TORN_KEYS 600u
#define TORN_BYTES 256u

static bool kill_node3_halfway(uint32_t i)
{
    if (i == TORN_KEYS / 2) {
        cr_assert_eq(e2e_node_kill(&cluster, 2), 0);
    }
    return true;
}

/* Overwrites the last TORN_BYTES written bytes of node 3's shard k's last segment with
 * garbage or zeros; returns where. */
static uint64_t tear(uint32_t k, bool garbage, char *seg, size_t cap)
{
    char dir[E2E_PATH_BYTES + 64];
    shard_path(2, k, "wal", dir, sizeof dir);
    last_segment(dir, seg, cap);
    int fd = open(seg, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", seg, strerror(errno));
    uint64_t end = written_end(fd);
    cr_assert_gt(end, 4096u, "%s holds almost nothing", seg);
    uint8_t b[TORN_BYTES];
    for (uint32_t x = 0; x < TORN_BYTES; x++) {
        b[x] = garbage ? (uint8_t)(x * 131u + 17u) : 0;
    }
    overwrite(fd, end - TORN_BYTES, b, TORN_BYTES);
    close(fd);
    fprintf(stderr, "kv_storage_faults: %s: %u bytes before %llu %s\n", seg, TORN_BYTES,
            (unsigned long long)end, garbage ? "garbled" : "zeroed");
    return end - TORN_BYTES;
}

Test(kv_storage_faults, torn_log_tail)
{
    static const char *const extra[] = {"--log-level", "info", NULL};
    memset(&cluster, 0, sizeof cluster);
    memcpy(cluster.extra, extra, sizeof extra);
    start(RANGES);
    value_bytes = 24;
    uint32_t acked = 0;
    uint32_t end = write_keys(0, TORN_KEYS, 0, kill_node3_halfway, &acked);
    cr_assert_gt(acked, TORN_KEYS / 2);

    char seg0[E2E_PATH_BYTES + 96], seg1[E2E_PATH_BYTES + 96];
    (void)tear(0, true, seg0, sizeof seg0);
    (void)tear(1, false, seg1, sizeof seg1);
    cr_assert_eq(e2e_node_restart(&cluster, 2), 0, "node 3 does not start after a torn tail");
    cr_assert(log_line_says(cluster.node[2].log, seg0, "torn tail"),
              "node 3's log does not report the torn tail of %s (see %s)", seg0,
              cluster.node[2].log);
    cr_assert(log_line_says(cluster.node[2].log, seg1, "torn tail"),
              "node 3's log does not report the torn tail of %s (see %s)", seg1,
              cluster.node[2].log);
    read_back(0, end, "after node 3's torn tail");
    converged(2, end, "after the torn tail");
    uint32_t acked2 = 0;
    uint32_t end2 = write_keys(end, end + 100, 0, NULL, &acked2);
    cr_assert_eq(acked2, 100u, "the healed cluster does not take every write");
    converged(2, end2, "after more writes");
    cr_assert(e2e_node_alive(&cluster, 2, NULL), "node 3 stopped");
}

/* ---- Corruption in the middle of the log ---------------------------------------------------- */

Test(kv_storage_faults, corrupt_log_middle)
{
    memset(&cluster, 0, sizeof cluster);
    start(RANGES);
    value_bytes = 24;
    uint32_t acked = 0;
    uint32_t end = write_keys(0, 300, 0, NULL, &acked);
    cr_assert_gt(acked, 0);
    cr_assert_eq(e2e_node_term(&cluster, 2, E2E_STOP_TIMEOUT_MS), 0, "node 3 stops cleanly");

    char dir[E2E_PATH_BYTES + 64], seg[E2E_PATH_BYTES + 96];
    shard_path(2, 0, "wal", dir, sizeof dir);
    last_segment(dir, seg, sizeof seg);
    int fd = open(seg, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", seg, strerror(errno));
    uint64_t written = written_end(fd);
    cr_assert_gt(written, 16384u, "%s holds almost nothing", seg);
    uint64_t at = (written / 2) & ~7ull;
    flip(fd, at, 64);
    close(fd);
    fprintf(stderr, "kv_storage_faults: %s: 64 bytes at %llu of %llu flipped\n", seg,
            (unsigned long long)at, (unsigned long long)written);

    cr_assert_neq(e2e_node_restart(&cluster, 2), 0, "node 3 started on a corrupt log");
    cr_assert(wait_exit(2, E2E_STOP_TIMEOUT_MS));
    exited_1_without_crash(2, "corrupt log");
    cr_assert(log_line_says(cluster.node[2].log, seg, "corrupt log"),
              "node 3's log does not name %s as corrupt (see %s)", seg, cluster.node[2].log);
    cr_assert(log_line_says(cluster.node[2].log, seg, "at offset"),
              "node 3's log does not give the offset in %s (see %s)", seg, cluster.node[2].log);

    uint32_t acked2 = 0;
    uint32_t end2 = write_keys(end, end + 100, 0, NULL, &acked2);
    cr_assert_gt(acked2, 0, "nodes 1 and 2 took no write");
    read_back(0, end2, "nodes 1 and 2, node 3 refusing its log");
}
