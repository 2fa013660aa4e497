/*
 * tests/e2e/cluster: see cluster.h.
 */
#define _GNU_SOURCE
#include "tests/e2e/cluster.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT_LO 20000u
#define PORT_SPAN 12000u /* below 32768, where the ephemeral range starts by default */

uint64_t e2e_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Binds a random port below the ephemeral range; returns the socket (kept by the caller
 * until every port is chosen, so two picks never collide) or -1. */
static int reserve_port(uint16_t *port)
{
    static unsigned seed;
    if (seed == 0) {
        seed = (unsigned)getpid() ^ (unsigned)e2e_now_ms();
    }
    for (int attempt = 0; attempt < 200; attempt++) {
        uint16_t p = (uint16_t)(PORT_LO + (unsigned)rand_r(&seed) % PORT_SPAN);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            *port = p;
            return fd;
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    return -1;
}

uint16_t e2e_free_port(void)
{
    uint16_t p = 0;
    int fd = reserve_port(&p);
    if (fd >= 0) {
        close(fd);
    }
    return p;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

/* Removes the directories of earlier runs whose test process is gone (one killed by
 * SIGKILL could not clean up): TMP/tessera-e2e-PID-XXXXXX with no process PID. */
static void sweep_stale(const char *tmp)
{
    DIR *d = opendir(tmp);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        int pid = 0;
        char rest[16];
        if (sscanf(e->d_name, "tessera-e2e-%d-%15s", &pid, rest) != 2 || pid <= 0 ||
            strlen(rest) != 6 || kill(pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        char path[E2E_PATH_BYTES + 320];
        int n = snprintf(path, sizeof path, "%s/%s", tmp, e->d_name);
        if (n < 0 || (size_t)n >= sizeof path) {
            continue;
        }
        (void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (d != NULL) {
        closedir(d);
    }
}

/* Reads the node's stdout until its "node N of cluster" line, EOF, or the deadline.
 * Returns 0 when the line came. */
static int await_line(struct e2e_node *nd, uint32_t timeout_ms)
{
    char buf[1024] = {0};
    size_t len = 0;
    uint64_t deadline = e2e_now_ms() + timeout_ms;
    while (strstr(buf, "tesserad: node ") == NULL ||
           strchr(strstr(buf, "tesserad: node "), '\n') == NULL) {
        uint64_t now = e2e_now_ms();
        if (now >= deadline || len >= sizeof buf - 1) {
            return -1;
        }
        struct pollfd p = {.fd = nd->out_fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc <= 0) {
            return -1;
        }
        ssize_t n = read(nd->out_fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) {
            return -1;
        }
        len += (size_t)n;
    }
    return 0;
}

/* Runs fn(nd, bytes) in a forked child inside node nd's mount namespace (nd->ns_held)
 * or, when the namespace is not made yet, in a new one that the child creates and that
 * the parent then holds (nd->mntns_fd); returns 0 when fn returned 0. A child forked from
 * a possibly threaded test process is single-threaded, as setns(CLONE_NEWNS) needs. */
static int ns_child(struct e2e_node *nd, uint64_t bytes, int (*fn)(struct e2e_node *, uint64_t))
{
    int ready[2], hold[2];
    if (pipe2(ready, O_CLOEXEC) != 0) {
        return -1;
    }
    if (pipe2(hold, O_CLOEXEC) != 0) {
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        char b = 0;
        close(ready[0]);
        close(hold[1]); /* else the read below never sees the parent close it */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        bool ok = nd->ns_held ? setns(nd->mntns_fd, CLONE_NEWNS) == 0
                              : unshare(CLONE_NEWNS) == 0 &&
                                    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
        if (!ok || fn(nd, bytes) != 0) {
            fprintf(stderr, "e2e: node dir %s: mount namespace: %s\n", nd->dir, strerror(errno));
            _exit(1);
        }
        /* Stay in the namespace until the parent holds it. */
        if (write(ready[1], "k", 1) != 1 || read(hold[0], &b, 1) < 0) {
            _exit(1);
        }
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char b = 0;
    bool ok = pid > 0 && read(ready[0], &b, 1) == 1;
    if (ok && !nd->ns_held) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int)pid);
        nd->mntns_fd = open(path, O_RDONLY | O_CLOEXEC);
        nd->ns_held = nd->mntns_fd >= 0;
        ok = nd->ns_held;
    }
    close(ready[0]);
    close(hold[1]);
    int st = 1;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return ok && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int mount_tmpfs(struct e2e_node *nd, uint64_t bytes)
{
    char opt[64];
    snprintf(opt, sizeof opt, "size=%llu,mode=0755", (unsigned long long)bytes);
    return mount("tmpfs", nd->dir, "tmpfs", MS_NOSUID | MS_NODEV, opt);
}

static int remount_tmpfs(struct e2e_node *nd, uint64_t bytes)
{
    char opt[64];
    snprintf(opt, sizeof opt, "size=%llu", (unsigned long long)bytes);
    return mount(NULL, nd->dir, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opt);
}

int e2e_node_tmpfs_resize(struct e2e_cluster *c, uint32_t i, uint64_t bytes)
{
    struct e2e_node *nd = &c->node[i];
    if (!nd->ns_held || ns_child(nd, bytes, remount_tmpfs) != 0) {
        fprintf(stderr, "e2e: node %u: cannot resize its tmpfs to %llu bytes\n", i + 1,
                (unsigned long long)bytes);
        return -1;
    }
    c->tmpfs_bytes[i] = bytes;
    return 0;
}

/* Forks and execs tesserad for node i; first: with --initial-cluster. */
static int spawn(struct e2e_cluster *c, uint32_t i, bool first, const char *const *more)
{
    struct e2e_node *nd = &c->node[i];
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        fprintf(stderr, "e2e: pipe: %s\n", strerror(errno));
        return -1;
    }
    if (c->tmpfs_bytes[i] != 0 && !nd->ns_held &&
        (mkdir(nd->dir, 0755) != 0 || ns_child(nd, c->tmpfs_bytes[i], mount_tmpfs) != 0)) {
        fprintf(stderr, "e2e: node %u: no tmpfs of %llu bytes in a mount namespace\n", i + 1,
                (unsigned long long)c->tmpfs_bytes[i]);
        close(out[0]);
        close(out[1]);
        return -1;
    }
    char shards[16], ranges[16];
    snprintf(shards, sizeof shards, "%u", c->shards);
    snprintf(ranges, sizeof ranges, "%u", c->ranges);
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "e2e: fork: %s\n", strerror(errno));
        close(out[0]);
        close(out[1]);
        return -1;
    }
    if (pid == 0) {
        /* Dies with the test process, whatever kills it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent ||
            (nd->ns_held && setns(nd->mntns_fd, CLONE_NEWNS) != 0)) {
            _exit(127);
        }
        int log = open(nd->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log < 0 || dup2(out[1], STDOUT_FILENO) < 0 || dup2(log, STDERR_FILENO) < 0) {
            _exit(127);
        }
        const char *argv[16 + 2 * E2E_EXTRA_ARGS_MAX];
        uint32_t k = 0;
        argv[k++] = c->tesserad;
        argv[k++] = "--data";
        argv[k++] = nd->dir;
        argv[k++] = "--listen";
        argv[k++] = nd->addr;
        argv[k++] = "--log-level";
        argv[k++] = "warn";
        if (first) {
            argv[k++] = "--initial-cluster";
            argv[k++] = c->spec;
            argv[k++] = "--shards";
            argv[k++] = shards;
            argv[k++] = "--ranges";
            argv[k++] = ranges;
        }
        for (uint32_t x = 0; x < E2E_EXTRA_ARGS_MAX && c->extra[x] != NULL; x++) {
            argv[k++] = c->extra[x];
        }
        for (uint32_t x = 0; more != NULL && x < E2E_EXTRA_ARGS_MAX && more[x] != NULL; x++) {
            argv[k++] = more[x];
        }
        argv[k] = NULL;
        execv(c->tesserad, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    nd->pid = pid;
    nd->out_fd = out[0];
    return 0;
}

/* Waits for node i's "node N" line; on failure the node is stopped. */
static int await_start(struct e2e_cluster *c, uint32_t i)
{
    struct e2e_node *nd = &c->node[i];
    if (await_line(nd, E2E_START_TIMEOUT_MS) != 0) {
        int st = 0;
        bool alive = e2e_node_alive(c, i, &st);
        fprintf(stderr, "e2e: node %u (%s) did not report its start within %u ms (%s)\n", i + 1,
                nd->addr, E2E_START_TIMEOUT_MS, alive ? "still running" : "exited");
        if (alive) {
            (void)e2e_node_kill(c, i);
        }
        return -1;
    }
    return 0;
}

/* Did the node's log say that io_uring is missing? */
static bool log_says_no_uring(const struct e2e_node *nd)
{
    FILE *f = fopen(nd->log, "r");
    char line[512];
    bool no = false;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        no = no || strstr(line, "Function not implemented") != NULL ||
             strstr(line, "Operation not permitted") != NULL || strstr(line, "io_uring") != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return no;
}

static int setup(struct e2e_cluster *c, const char *tesserad, uint32_t n, uint32_t shards,
                 uint32_t ranges)
{
    const char *extra[E2E_EXTRA_ARGS_MAX + 1];
    uint64_t tmpfs[E2E_NODES_MAX];
    memcpy(extra, c->extra, sizeof extra); /* the caller's, set before the start */
    memcpy(tmpfs, c->tmpfs_bytes, sizeof tmpfs);
    memset(c, 0, sizeof *c);
    memcpy(c->extra, extra, sizeof extra);
    memcpy(c->tmpfs_bytes, tmpfs, sizeof tmpfs);
    for (uint32_t i = 0; i < E2E_NODES_MAX; i++) {
        c->node[i].out_fd = -1;
        c->node[i].mntns_fd = -1;
        c->node[i].last_status = -1;
    }
    if (n == 0 || n > E2E_NODES_MAX) {
        return -1;
    }
    c->tesserad = tesserad;
    c->n = n;
    c->shards = shards;
    c->ranges = ranges;
    const char *tmp = getenv("TMPDIR");
    tmp = tmp != NULL && tmp[0] != 0 ? tmp : "/tmp";
    sweep_stale(tmp);
    snprintf(c->root, sizeof c->root, "%s/tessera-e2e-%d-XXXXXX", tmp, (int)getpid());
    if (mkdtemp(c->root) == NULL) {
        fprintf(stderr, "e2e: mkdtemp %s: %s\n", c->root, strerror(errno));
        c->root[0] = 0;
        return -1;
    }
    int held[E2E_NODES_MAX];
    size_t sl = 0, el = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct e2e_node *nd = &c->node[i];
        held[i] = reserve_port(&nd->port);
        if (held[i] < 0) {
            fprintf(stderr, "e2e: no free port\n");
            for (uint32_t j = 0; j < i; j++) {
                close(held[j]);
            }
            return -1;
        }
        snprintf(nd->addr, sizeof nd->addr, "127.0.0.1:%u", (unsigned)nd->port);
        snprintf(nd->dir, sizeof nd->dir, "%s/node%u", c->root, i + 1);
        snprintf(nd->log, sizeof nd->log, "%s/node%u.log", c->root, i + 1);
        sl += (size_t)snprintf(c->spec + sl, sizeof c->spec - sl, "%s%u=%s", i > 0 ? "," : "",
                               i + 1, nd->addr);
        el += (size_t)snprintf(c->endpoints + el, sizeof c->endpoints - el, "%s%s",
                               i > 0 ? "," : "", nd->addr);
    }
    for (uint32_t i = 0; i < n; i++) {
        close(held[i]);
    }
    return 0;
}

int e2e_cluster_start(struct e2e_cluster *c, const char *tesserad, uint32_t n, uint32_t shards,
                      uint32_t ranges)
{
    signal(SIGPIPE, SIG_IGN);
    if (setup(c, tesserad, n, shards, ranges) != 0) {
        e2e_cluster_stop(c);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (spawn(c, i, true, NULL) != 0 || await_start(c, i) != 0) {
            int rc = i == 0 && log_says_no_uring(&c->node[i]) ? E2E_SKIP : -1;
            if (rc == E2E_SKIP) {
                fprintf(stderr, "e2e: tesserad cannot start (io_uring?): skipped\n");
            }
            e2e_cluster_stop(c);
            return rc;
        }
    }
    return 0;
}

bool e2e_node_alive(struct e2e_cluster *c, uint32_t i, int *status)
{
    struct e2e_node *nd = &c->node[i];
    if (nd->pid <= 0) {
        return false;
    }
    int st = 0;
    pid_t w = waitpid(nd->pid, &st, WNOHANG);
    if (w == 0) {
        return true;
    }
    if (status != NULL) {
        *status = st;
    }
    nd->last_status = st;
    nd->pid = 0;
    if (nd->out_fd >= 0) {
        close(nd->out_fd);
        nd->out_fd = -1;
    }
    return false;
}

int e2e_node_kill(struct e2e_cluster *c, uint32_t i)
{
    struct e2e_node *nd = &c->node[i];
    if (nd->pid <= 0) {
        return -1;
    }
    (void)kill(nd->pid, SIGKILL);
    int st = 0;
    while (waitpid(nd->pid, &st, 0) < 0 && errno == EINTR) {
    }
    nd->last_status = st;
    nd->pid = 0;
    if (nd->out_fd >= 0) {
        close(nd->out_fd);
        nd->out_fd = -1;
    }
    return 0;
}

int e2e_node_term(struct e2e_cluster *c, uint32_t i, uint32_t timeout_ms)
{
    struct e2e_node *nd = &c->node[i];
    if (nd->pid <= 0 || kill(nd->pid, SIGTERM) != 0) {
        fprintf(stderr, "e2e: node %u is not running\n", i + 1);
        return -1;
    }
    uint64_t deadline = e2e_now_ms() + timeout_ms;
    int st = 0;
    while (e2e_node_alive(c, i, &st)) {
        if (e2e_now_ms() >= deadline) {
            fprintf(stderr, "e2e: node %u did not exit within %u ms of SIGTERM\n", i + 1,
                    timeout_ms);
            (void)e2e_node_kill(c, i);
            return -1;
        }
        usleep(20000);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "e2e: node %u: after SIGTERM, %s %d (see %s)\n", i + 1,
                WIFEXITED(st) ? "exit status" : "killed by signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), nd->log);
        return -1;
    }
    return 0;
}

int e2e_node_restart(struct e2e_cluster *c, uint32_t i)
{
    if (c->node[i].pid > 0) {
        fprintf(stderr, "e2e: node %u is still running\n", i + 1);
        return -1;
    }
    return spawn(c, i, false, NULL) == 0 ? await_start(c, i) : -1;
}

int e2e_cluster_restart_all(struct e2e_cluster *c)
{
    int rc = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->node[i].pid > 0) {
            fprintf(stderr, "e2e: node %u is still running\n", i + 1);
            return -1;
        }
    }
    for (uint32_t i = 0; i < c->n && rc == 0; i++) {
        rc = spawn(c, i, false, NULL);
    }
    for (uint32_t i = 0; i < c->n && rc == 0; i++) {
        rc = await_start(c, i);
    }
    return rc;
}

int e2e_node_add(struct e2e_cluster *c, const char *const *args)
{
    if (c->n >= E2E_NODES_MAX) {
        fprintf(stderr, "e2e: no room for another node\n");
        return -1;
    }
    uint32_t i = c->n;
    struct e2e_node *nd = &c->node[i];
    int held = reserve_port(&nd->port);
    if (held < 0) {
        fprintf(stderr, "e2e: no free port\n");
        return -1;
    }
    close(held);
    snprintf(nd->addr, sizeof nd->addr, "127.0.0.1:%u", (unsigned)nd->port);
    snprintf(nd->dir, sizeof nd->dir, "%s/node%u", c->root, i + 1);
    snprintf(nd->log, sizeof nd->log, "%s/node%u.log", c->root, i + 1);
    nd->out_fd = -1;
    c->n++;
    return spawn(c, i, false, args) == 0 ? await_start(c, i) : -1;
}

int e2e_node_run(struct e2e_cluster *c, uint32_t i, bool initial, const char *const *args,
                 uint32_t timeout_ms, int *status)
{
    struct e2e_node *nd = &c->node[i];
    if (nd->pid > 0) {
        fprintf(stderr, "e2e: node %u is still running\n", i + 1);
        return -1;
    }
    if (spawn(c, i, initial, args) != 0) {
        return -1;
    }
    uint64_t deadline = e2e_now_ms() + timeout_ms;
    int st = 0;
    while (e2e_node_alive(c, i, &st)) {
        if (e2e_now_ms() >= deadline) {
            fprintf(stderr, "e2e: node %u still runs after %u ms\n", i + 1, timeout_ms);
            (void)e2e_node_kill(c, i);
            return -1;
        }
        usleep(20 * 1000);
    }
    *status = st;
    return 0;
}

/* Prints a node's log when it holds a sanitizer report (ctest's fail regex sees it). */
static void report_sanitizers(const struct e2e_node *nd)
{
    FILE *f = fopen(nd->log, "r");
    if (f == NULL) {
        return;
    }
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, "AddressSanitizer") != NULL || strstr(line, "LeakSanitizer") != NULL ||
                strstr(line, "runtime error") != NULL;
    }
    if (found) {
        rewind(f);
        fprintf(stderr, "e2e: %s holds a sanitizer report:\n", nd->log);
        while (fgets(line, sizeof line, f) != NULL) {
            fputs(line, stderr);
        }
    }
    fclose(f);
}

void e2e_cluster_stop(struct e2e_cluster *c)
{
    for (uint32_t i = 0; i < c->n && i < E2E_NODES_MAX; i++) {
        if (c->node[i].pid > 0) {
            (void)e2e_node_kill(c, i);
        }
        report_sanitizers(&c->node[i]);
        if (c->node[i].ns_held) { /* the last reference: the tmpfs goes with it */
            close(c->node[i].mntns_fd);
            c->node[i].ns_held = false;
            c->node[i].mntns_fd = -1;
        }
    }
    if (c->root[0] != 0) {
        const char *keep = getenv("TESSERA_E2E_KEEP");
        if (keep != NULL && keep[0] != 0) {
            fprintf(stderr, "e2e: kept %s\n", c->root);
        } else {
            (void)nftw(c->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        }
        c->root[0] = 0;
    }
}

struct tessera_client *e2e_client(const struct e2e_cluster *c, uint32_t timeout_ms,
                                  uint32_t inflight)
{
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = c->endpoints;
    cfg.request_timeout_ms = timeout_ms != 0 ? timeout_ms : E2E_REQUEST_TIMEOUT_MS;
    cfg.retries = 50;
    cfg.backoff_base_ms = 20;
    cfg.backoff_max_ms = 500;
    cfg.inflight_max = inflight != 0 ? inflight : 256;
    cfg.seed = (uint64_t)getpid();
    struct tessera_client *cl = NULL;
    int rc = tessera_client_new(&cfg, &cl);
    if (rc != 0) {
        fprintf(stderr, "e2e: tessera_client_new(%s): %s\n", c->endpoints, tessera_strerror(rc));
        return NULL;
    }
    return cl;
}

static int pin_lookup(void *data, const uint8_t *key, size_t key_len)
{
    (void)data;
    (void)key;
    (void)key_len;
    return 0;
}

static const struct tessera_route_hooks pin_hooks = {.lookup = pin_lookup};

struct tessera_client *e2e_client_pinned(const struct e2e_cluster *c, uint32_t i,
                                         uint32_t timeout_ms)
{
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = c->node[i].addr;
    cfg.request_timeout_ms = timeout_ms != 0 ? timeout_ms : E2E_REQUEST_TIMEOUT_MS;
    cfg.retries = 20;
    cfg.backoff_base_ms = 20;
    cfg.backoff_max_ms = 500;
    cfg.route = &pin_hooks;
    struct tessera_client *cl = NULL;
    int rc = tessera_client_new(&cfg, &cl);
    if (rc != 0) {
        fprintf(stderr, "e2e: tessera_client_new(%s): %s\n", cfg.endpoints, tessera_strerror(rc));
        return NULL;
    }
    return cl;
}

size_t e2e_range_key(const struct e2e_cluster *c, uint32_t range, const char *suffix, uint8_t *buf,
                     size_t cap)
{
    /* Range r starts at the two-byte point ceil((r - 1) * 65536 / ranges). */
    uint32_t v = (uint32_t)(((uint64_t)(range - 1) * 65536u + c->ranges - 1) / c->ranges);
    size_t sl = strlen(suffix);
    if (cap < 2 + sl) {
        return 0;
    }
    buf[0] = (uint8_t)(v >> 8);
    buf[1] = (uint8_t)v;
    memcpy(buf + 2, suffix, sl);
    return 2 + sl;
}

int e2e_cluster_wait_ready(struct e2e_cluster *c, uint32_t timeout_ms)
{
    struct tessera_client *cl = e2e_client(c, 3000, 0);
    if (cl == NULL) {
        return -1;
    }
    uint64_t start = e2e_now_ms();
    uint64_t deadline = start + timeout_ms;
    int rc = -1;
    for (uint32_t r = 1; r <= c->ranges; r++) {
        uint8_t key[64];
        size_t kl = e2e_range_key(c, r, "e2e-ready", key, sizeof key);
        rc = -1;
        while (rc != 0 && e2e_now_ms() < deadline) {
            rc = tessera_put(cl, key, kl, "1", 1, 0, 0, 0);
            if (rc == 0) {
                rc = tessera_delete(cl, key, kl, NULL, 0, NULL, 0);
            }
            if (rc != 0) {
                usleep(100000);
            }
        }
        if (rc != 0) {
            fprintf(stderr, "e2e: range %u accepted no write within %u ms: %s\n", r, timeout_ms,
                    tessera_strerror(rc));
            break;
        }
    }
    tessera_client_free(cl);
    if (rc == 0) {
        fprintf(stderr, "e2e: %u ranges serve writes after %llu ms\n", c->ranges,
                (unsigned long long)(e2e_now_ms() - start));
    }
    return rc == 0 ? 0 : -1;
}

struct status_wait {
    bool done;
    int status;
    uint32_t leaders;
};

static void status_cb(void *data, int status, const struct tessera_response *r)
{
    struct status_wait *w = data;
    w->done = true;
    w->status = status;
    if (status == 0 && r != NULL && r->op == TESSERA_OP_STATUS) {
        w->leaders = r->u.status.leaders;
    }
}

int e2e_most_leaders(const struct e2e_cluster *c, struct tessera_client *cl, uint32_t *leaders)
{
    int best = -1;
    uint32_t most = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        struct status_wait w = {0};
        if (tessera_status_async(cl, (int)i, status_cb, &w) == 0) {
            uint64_t deadline = e2e_now_ms() + E2E_REQUEST_TIMEOUT_MS + 1000u;
            while (!w.done && e2e_now_ms() < deadline) {
                (void)tessera_client_run(cl, 100);
            }
        }
        uint32_t n = w.done && w.status == 0 ? w.leaders : 0;
        if (leaders != NULL) {
            leaders[i] = n;
        }
        if (n > most) {
            most = n;
            best = (int)i;
        }
    }
    return best;
}
