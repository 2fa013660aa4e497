/*
 * tesserad: the Tessera server (a thin main over shard/: STYLE R1).
 *
 *   tesserad --data DIR --listen IP:PORT [--advertise IP:PORT] [--shards N] [--pin]
 *            [--initial-cluster ID=IP:PORT,...] [--ranges N] [--log-level LEVEL]
 *            [--config FILE]
 *   tesserad --listen IP:PORT [--shards N]            (no --data: a transport-only node
 *                                                       that answers Ping, for benchmarks)
 *
 * With --data the node serves the key-value API. The first start with
 * --initial-cluster bootstraps: the member whose address is --advertise (default:
 * --listen) is this node, and the cluster's layout (members, ranges) is written to
 * DIR/cluster with the shard count. Later starts need only --data and --listen: the node
 * restarts from its log and B-tree; a different --initial-cluster, --ranges or --shards
 * is refused. A first start with --initial-cluster asks the other members whether this
 * node has started before (the meta range records it): if so its data is lost and the
 * start is refused. --join IP:PORT,... enters a running cluster instead: the meta range
 * gives the node a new id, and DIR/cluster records it ("joined ID" on a second line).
 * --config FILE
 * reads the same options from lines "option = value" (the names without "--").
 *
 * Tuning: --checkpoint-entries N (applied entries between B-tree checkpoints, default
 * 100,000) and --log-retain-entries N (entries each group's log keeps behind a checkpoint
 * for followers that lag a little; one further behind gets a snapshot; default 10,000).
 *
 * It prints "tesserad: listening on IP:PORT with N shards" once every shard listens (and
 * "tesserad: node ID of cluster C, R ranges" with --data). SIGTERM or SIGINT stops it
 * cleanly: listeners close, answers already read are sent, the log is flushed and the
 * B-tree checkpointed. Exit 0 after a clean stop, 1 when it cannot start, a shard failed
 * or a shard stopped the node after a storage failure (a log write, an fsync, the
 * B-tree), 2 on a usage error.
 */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util/err.h"
#include "core/util/log.h"
#include "net/client/tessera.h"
#include "shard/host.h"
#include "shard/node.h"
#include "shard/server.h"

#define TESSERAD_SHARDS_MAX TS_XRING_SHARDS_MAX
#define TESSERAD_LINE_BYTES 1024u
#define TESSERAD_SPEC_BYTES 2048u

struct tesserad {
    struct server_config scfg;
    struct server *servers[TESSERAD_SHARDS_MAX]; /* servers[i]: written by shard i only */
    struct host *hosts[TESSERAD_SHARDS_MAX];
    struct ts_log log;
    const char *data;
    const char *advertise;
    const char *join; /* --join: members to ask for an id */
    char spec[TESSERAD_SPEC_BYTES];
    uint64_t joined_id; /* this node joined later with this id (0: an initial member) */
    uint32_t ranges;
    struct host_cluster cluster;
    struct host_shared shared;
    struct host_config hcfg;
    _Atomic bool failed; /* a shard stopped the node after a storage failure */
};

static int init_cb(struct shard *s, void *data)
{
    struct tesserad *t = data;
    uint32_t id = shard_get_id(s);
    if (id >= TESSERAD_SHARDS_MAX) {
        return TS_EINVAL;
    }
    int rc = server_start(s, &t->scfg, &t->servers[id]);
    if (rc != 0 || t->data == NULL) {
        return rc;
    }
    rc = host_start(s, &t->hcfg, server_nio(t->servers[id]), &t->hosts[id]);
    if (rc == 0) {
        server_set_host(t->servers[id], t->hosts[id], t->cluster.cluster_id);
    } else {
        server_abort(t->servers[id]); /* this shard's stop_cb will not run */
    }
    return rc;
}

static bool stop_cb(struct shard *s, void *data)
{
    struct tesserad *t = data;
    uint32_t id = shard_get_id(s);
    struct server *sv = t->servers[id];
    if (sv != NULL && !server_stop(sv)) {
        return false;
    }
    return host_stop(t->hosts[id]);
}

static void msg_cb(struct shard *s, const struct xring_msg *m, void *data)
{
    struct tesserad *t = data;
    struct host *h = t->hosts[shard_get_id(s)];
    if (h != NULL) {
        host_on_xmsg(h, m);
    }
}

static void fini_cb(struct shard *s, void *data)
{
    struct tesserad *t = data;
    uint32_t id = shard_get_id(s);
    if (host_failed(t->hosts[id])) {
        t->failed = true;
    }
    host_free(t->hosts[id]);
    t->hosts[id] = NULL;
}

/* With port 0 every shard would bind a different port: reserve one first with a socket
 * that joins the same SO_REUSEPORT group (bound, never listening, so it takes no
 * connections) and give the shards that port. Returns the socket (closed by the caller
 * once the shards listen) or -1 when the address names a port already. */
static int reserve_port(struct tesserad *t, char *buf, size_t len)
{
    const char *colon = strrchr(t->scfg.listen, ':');
    if (colon == NULL || strcmp(colon + 1, "0") != 0) {
        return -1;
    }
    char host[64];
    size_t hl = (size_t)(colon - t->scfg.listen);
    if (hl >= sizeof host) {
        return -1;
    }
    memcpy(host, t->scfg.listen, hl);
    host[hl] = 0;
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t al = sizeof a;
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(a.sin_port));
    t->scfg.listen = buf;
    return fd;
}

static int usage(const char *why)
{
    if (why != NULL) {
        fprintf(stderr, "tesserad: %s\n", why);
    }
    fprintf(stderr,
            "usage: tesserad --data DIR --listen IP:PORT [--advertise IP:PORT] [--shards N] "
            "[--pin]\n"
            "                (--initial-cluster ID=IP:PORT,... [--ranges N] | --join IP:PORT,...)\n"
            "                [--log-level error|warn|info|debug|trace] [--config FILE]\n"
            "                [--checkpoint-entries N] [--log-retain-entries N]\n"
            "       tesserad --listen IP:PORT [--shards N]   (no --data: Ping only)\n");
    return 2;
}

/* Strings given on the command line or read from --config live until the end of main,
 * which frees them. */
#define TESSERAD_KEPT_MAX 64u
static char *kept[TESSERAD_KEPT_MAX];
static uint32_t kept_n;

static const char *keep(const char *s)
{
    char *d = kept_n < TESSERAD_KEPT_MAX ? strdup(s) : NULL;
    if (d == NULL) {
        fprintf(stderr, "tesserad: out of memory, or too many options\n");
        exit(2);
    }
    kept[kept_n++] = d;
    return d;
}

static void kept_free(void)
{
    while (kept_n > 0) {
        free(kept[--kept_n]);
    }
}

static int option(struct tesserad *t, struct shard_node_config *nc, enum ts_log_level *level,
                  const char *name, const char *v)
{
    char *end;
    if (strcmp(name, "pin") == 0) {
        nc->pin = v == NULL || strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
        return 0;
    }
    if (v == NULL) {
        return usage("an option lacks its value");
    }
    if (strcmp(name, "listen") == 0) {
        t->scfg.listen = keep(v);
    } else if (strcmp(name, "advertise") == 0) {
        t->advertise = keep(v);
    } else if (strcmp(name, "data") == 0) {
        t->data = keep(v);
    } else if (strcmp(name, "initial-cluster") == 0) {
        if (strlen(v) >= sizeof t->spec) {
            return usage("--initial-cluster is too long");
        }
        snprintf(t->spec, sizeof t->spec, "%s", v);
    } else if (strcmp(name, "ranges") == 0) {
        unsigned long n = strtoul(v, &end, 10);
        if (*end != 0 || n == 0 || n > TS_HOST_RANGES_MAX) {
            return usage("--ranges is out of bounds");
        }
        t->ranges = (uint32_t)n;
    } else if (strcmp(name, "shards") == 0) {
        unsigned long n = strtoul(v, &end, 10);
        if (*end != 0 || n == 0 || n > TESSERAD_SHARDS_MAX) {
            return usage("--shards is out of bounds");
        }
        nc->shards = (uint32_t)n;
    } else if (strcmp(name, "checkpoint-entries") == 0 || strcmp(name, "log-retain-entries") == 0) {
        unsigned long long n = strtoull(v, &end, 10);
        if (*end != 0 || n == 0 || n > UINT32_MAX) {
            return usage("--checkpoint-entries and --log-retain-entries take 1..2^32-1");
        }
        if (name[0] == 'c') {
            t->hcfg.checkpoint_entries = n;
        } else {
            t->hcfg.log_retain_entries = n;
        }
    } else if (strcmp(name, "log-level") == 0) {
        if (ts_log_level_parse(v, level) != 0) {
            return usage("unknown log level");
        }
    } else if (strcmp(name, "join") == 0) {
        t->join = keep(v);
    } else {
        return usage("unknown option");
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) {
        s[--n] = 0;
    }
    return s;
}

static int config_file(struct tesserad *t, struct shard_node_config *nc, enum ts_log_level *level,
                       const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "tesserad: cannot read %s: %s\n", path, strerror(errno));
        return 2;
    }
    char line[TESSERAD_LINE_BYTES];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        char *l = trim(line);
        if (*l == 0 || *l == '#') {
            continue;
        }
        char *eq = strchr(l, '=');
        if (eq != NULL) {
            *eq = 0;
        }
        rc = option(t, nc, level, trim(l), eq != NULL ? trim(eq + 1) : NULL);
    }
    fclose(f);
    return rc;
}

static int parse(int argc, char **argv, struct tesserad *t, struct shard_node_config *nc,
                 enum ts_log_level *level)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            return usage("unexpected argument");
        }
        const char *name = a + 2;
        const char *v = NULL;
        if (strcmp(name, "pin") != 0) {
            if (i + 1 >= argc) {
                return usage("an option lacks its value");
            }
            v = argv[++i];
        }
        int rc = strcmp(name, "config") == 0 ? config_file(t, nc, level, v)
                                             : option(t, nc, level, name, v);
        if (rc != 0) {
            return rc;
        }
    }
    if (t->scfg.listen == NULL) {
        return usage("--listen is required");
    }
    return 0;
}

/* ---- Entering a cluster: --join, and the lost-data guard of --initial-cluster ---- */

#define TESSERAD_JOIN_TIMEOUT_MS 60000u
#define TESSERAD_PROBE_TIMEOUT_MS 2000u

struct ask {
    bool done;
    int status;
    char message[256];
    uint64_t self;       /* members: the node asked about */
    int self_state;      /* its state in the answer, -1 when absent */
    uint64_t node_id;    /* join */
    uint64_t cluster_id; /* join */
    uint32_t ranges;     /* join */
    uint32_t shards;     /* join */
    char spec[TESSERAD_SPEC_BYTES];
};

static void ask_cb(void *data, int status, const struct tessera_response *r)
{
    struct ask *a = data;
    a->done = true;
    a->status = status;
    if (r != NULL && r->message != NULL) {
        snprintf(a->message, sizeof a->message, "%s", r->message);
    }
    if (status != 0 || r == NULL) {
        return;
    }
    struct tessera_member m;
    for (size_t i = 0; tessera_response_member_at(r, i, &m) == 0; i++) {
        if (m.node_id == a->self) {
            a->self_state = (int)m.state;
        }
    }
    if (r->op == TESSERA_OP_JOIN) {
        a->node_id = r->u.join.node_id;
        a->cluster_id = r->u.join.cluster_id;
        a->ranges = r->u.join.ranges;
        a->shards = r->u.join.shards;
        snprintf(a->spec, sizeof a->spec, "%s",
                 r->u.join.initial_cluster != NULL ? r->u.join.initial_cluster : "");
    }
}

static struct tessera_client *ask_client(const char *endpoints, uint32_t timeout_ms)
{
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = endpoints;
    cfg.request_timeout_ms = timeout_ms;
    cfg.inflight_max = 4;
    struct tessera_client *c = NULL;
    int rc = tessera_client_new(&cfg, &c);
    if (rc != 0) {
        fprintf(stderr, "tesserad: cannot reach %s: %s\n", endpoints, tessera_strerror(rc));
        return NULL;
    }
    return c;
}

static void ask_wait(struct tessera_client *c, struct ask *a)
{
    while (!a->done) {
        (void)tessera_client_run(c, 100);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --join: the meta range gives this node an id (or gives it again when the node asked
 * before and never started); the layout and the cluster id come with it. A new node
 * hosts no replica until the placement driver moves some to it; meanwhile it serves
 * clients by forwarding to the leaders. */
static int join_cluster(struct tesserad *t, struct shard_node_config *nc)
{
    const char *me = t->advertise != NULL ? t->advertise : t->scfg.listen;
    struct tessera_client *c = ask_client(t->join, 5000);
    if (c == NULL) {
        return 1;
    }
    struct ask a;
    uint64_t deadline = now_ms() + TESSERAD_JOIN_TIMEOUT_MS;
    for (;;) {
        memset(&a, 0, sizeof a);
        a.self_state = -1;
        int rc = tessera_join_async(c, me, nc->shards, 0, ask_cb, &a);
        if (rc != 0) {
            a.done = true;
            a.status = rc;
        }
        ask_wait(c, &a);
        bool retry = a.status == TESSERA_EUNAVAIL || a.status == TESSERA_ETIMEOUT ||
                     a.status == TESSERA_ENOTLEADER;
        if (!retry || now_ms() >= deadline) {
            break;
        }
        usleep(500 * 1000);
    }
    tessera_client_free(c);
    if (a.status != 0) {
        fprintf(stderr, "tesserad: joining through %s failed: %s%s%s\n", t->join,
                tessera_strerror(a.status), a.message[0] != 0 ? ": " : "", a.message);
        return 1;
    }
    struct host_cluster check;
    const char *why = NULL;
    if (a.ranges == 0 || a.shards == 0 || a.shards > TESSERAD_SHARDS_MAX ||
        host_cluster_parse(a.spec, 0, a.ranges, &check, &why) != 0 ||
        check.cluster_id != a.cluster_id) {
        fprintf(stderr,
                "tesserad: the cluster's answer to the join does not describe a cluster "
                "(ranges %u, shards %u, initial cluster \"%s\")\n",
                a.ranges, a.shards, a.spec);
        return 1;
    }
    snprintf(t->spec, sizeof t->spec, "%s", a.spec);
    t->ranges = a.ranges;
    nc->shards = a.shards;
    /* An initial member that never started, entering by --join, is that member. */
    bool initial = false;
    for (uint32_t i = 0; i < check.n; i++) {
        initial = initial || check.m[i].node_id == a.node_id;
    }
    t->joined_id = initial ? 0 : a.node_id;
    fprintf(stderr, "tesserad: joined cluster %016llx as node %llu\n",
            (unsigned long long)a.cluster_id, (unsigned long long)a.node_id);
    return 0;
}

/* A first start with --initial-cluster. If the cluster already runs and its meta range
 * says this node has started before, its data is gone (the directory is new): Raft's
 * promises (votes, acknowledged entries) went with it, so it must not take its old id
 * again. Refused; it can enter as a new node with --join (at an address no started
 * member serves at). When no other member answers (a new cluster starting), there is
 * nothing to check. The window this cannot cover: a node announces itself through the
 * meta range once range 1 has a leader, its first second or so; one whose data is lost
 * before that is not recognised (etcd's "member already bootstrapped" check has the
 * same window). */
static int check_not_started(struct tesserad *t)
{
    const char *me = t->advertise != NULL ? t->advertise : t->scfg.listen;
    struct host_cluster probe;
    const char *why = NULL;
    if (host_cluster_parse(t->spec, 0, t->ranges != 0 ? t->ranges : 1, &probe, &why) != 0) {
        return 0; /* setup_cluster reports the spec's error */
    }
    char others[TESSERAD_SPEC_BYTES] = "";
    size_t at = 0;
    uint64_t self = 0;
    for (uint32_t i = 0; i < probe.n; i++) {
        if (strcmp(probe.m[i].addr, me) == 0) {
            self = probe.m[i].node_id;
            continue;
        }
        int w =
            snprintf(others + at, sizeof others - at, "%s%s", at > 0 ? "," : "", probe.m[i].addr);
        at += w > 0 && (size_t)w < sizeof others - at ? (size_t)w : 0;
    }
    /* Every other member, each on its own: a serializable read of its replica of range 1
     * needs no leader (range 1 may be electing one: this node may have led it). */
    for (uint32_t i = 0; self != 0 && i < probe.n; i++) {
        if (probe.m[i].node_id == self) {
            continue;
        }
        struct tessera_client *c = ask_client(probe.m[i].addr, TESSERAD_PROBE_TIMEOUT_MS);
        struct ask a = {.self = self, .self_state = -1};
        if (c != NULL && tessera_members_async(c, TESSERA_SERIALIZABLE, ask_cb, &a) == 0) {
            ask_wait(c, &a);
        }
        tessera_client_free(c);
        if (a.status == 0 && a.self_state >= 0 && a.self_state != TESSERA_NODE_JOINING) {
            fprintf(stderr,
                    "tesserad: node %llu has already started in this cluster (node %llu says so), "
                    "but %s holds no data: its data is lost, and a node must not take its old "
                    "id without its data (it could undo votes and acknowledged writes). To "
                    "enter as a new node, start it with an empty directory, another address and "
                    "--join %s.\n",
                    (unsigned long long)self, (unsigned long long)probe.m[i].node_id, t->data,
                    others);
            return 1;
        }
    }
    return 0;
}

/* DIR/cluster holds "ranges shards spec" from the bootstrap; a restart must agree with it
 * (ranges map to shards by number, and each shard's log and tree live in DIR/shard-K). */
static int cluster_file(struct tesserad *t, struct shard_node_config *nc)
{
    if (mkdir(t->data, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "tesserad: cannot create %s: %s\n", t->data, strerror(errno));
        return 1;
    }
    char path[TESSERAD_LINE_BYTES];
    snprintf(path, sizeof path, "%s/cluster", t->data);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        char line[TESSERAD_SPEC_BYTES + 32];
        unsigned long ranges = 0, shards = 0;
        unsigned long long joined = 0;
        char spec[TESSERAD_SPEC_BYTES];
        bool ok = fgets(line, sizeof line, f) != NULL &&
                  sscanf(line, "%lu %lu %2047s", &ranges, &shards, spec) == 3 && shards > 0 &&
                  shards <= TESSERAD_SHARDS_MAX;
        if (ok && fgets(line, sizeof line, f) != NULL) {
            ok = sscanf(line, "joined %llu", &joined) == 1 && joined > 0;
        }
        fclose(f);
        if (!ok) {
            fprintf(stderr, "tesserad: %s is not a cluster file\n", path);
            return 1;
        }
        if ((t->spec[0] != 0 && strcmp(t->spec, spec) != 0) ||
            (t->ranges != 0 && t->ranges != ranges) || (nc->shards != 0 && nc->shards != shards)) {
            fprintf(stderr,
                    "tesserad: %s belongs to cluster \"%s\" with %lu ranges on %lu shards; "
                    "refusing a different --initial-cluster, --ranges or --shards\n",
                    t->data, spec, ranges, shards);
            return 1;
        }
        snprintf(t->spec, sizeof t->spec, "%s", spec);
        t->ranges = (uint32_t)ranges;
        nc->shards = (uint32_t)shards;
        t->joined_id = joined;
        return 0;
    }
    if (t->spec[0] == 0 && t->join == NULL) {
        fprintf(stderr, "tesserad: %s holds no cluster: give --initial-cluster or --join\n",
                t->data);
        return 1;
    }
    if (t->spec[0] != 0 && t->join != NULL) {
        return usage("--initial-cluster bootstraps a new cluster, --join enters a running one: "
                     "give one");
    }
    int rc = t->join != NULL ? join_cluster(t, nc) : check_not_started(t);
    if (rc != 0) {
        return rc;
    }
    if (t->ranges == 0) {
        t->ranges = TS_HOST_RANGES_DEFAULT;
    }
    if (nc->shards == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nc->shards = cpus < 1                           ? 1
                     : cpus > (long)TESSERAD_SHARDS_MAX ? TESSERAD_SHARDS_MAX
                                                        : (uint32_t)cpus;
    }
    char tmp[TESSERAD_LINE_BYTES + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%u %u %s\n", t->ranges, nc->shards, t->spec) < 0 ||
        (t->joined_id != 0 && fprintf(f, "joined %llu\n", (unsigned long long)t->joined_id) < 0) ||
        fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "tesserad: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* This node's id: the member whose address is --advertise (or --listen). */
static int setup_cluster(struct tesserad *t, struct shard_node_config *nc)
{
    int rc = cluster_file(t, nc);
    if (rc != 0) {
        return rc;
    }
    const char *me = t->advertise != NULL ? t->advertise : t->scfg.listen;
    const char *why = NULL;
    struct host_cluster probe;
    rc = host_cluster_parse(t->spec, 0, t->ranges, &probe, &why);
    uint64_t self = 0;
    for (uint32_t i = 0; i < probe.n; i++) {
        if (strcmp(probe.m[i].addr, me) == 0) {
            self = probe.m[i].node_id;
        }
    }
    if (t->joined_id != 0) {
        rc = host_cluster_parse(t->spec, 0, t->ranges, &t->cluster, &why);
        if (rc == 0 && host_cluster_add(&t->cluster, t->joined_id, me) != 0) {
            rc = TS_EINVAL;
            why = "the node id it joined with is taken, or there is no room for it";
        }
    } else {
        rc = host_cluster_parse(t->spec, self, t->ranges, &t->cluster, &why);
        if (rc == 0 && self == 0) {
            rc = TS_EINVAL;
            why = "this node's id is not in the cluster";
        }
    }
    if (rc != 0) {
        fprintf(stderr, "tesserad: --initial-cluster \"%s\": %s (this node advertises %s)\n",
                t->spec, why, me);
        return 2;
    }
    t->hcfg.data_dir = t->data;
    t->hcfg.cluster = &t->cluster;
    t->hcfg.shared = &t->shared;
    t->hcfg.log = &t->log;
    return 0;
}

int main(int argc, char **argv)
{
    static struct tesserad t;
    struct shard_node_config nc = {0};
    enum ts_log_level level = TS_LOG_LEVEL_INFO;
    atexit(kept_free);
    int rc = parse(argc, argv, &t, &nc, &level);
    if (rc != 0) {
        return rc;
    }
    ts_log_init(&t.log, STDERR_FILENO, level);
    if (t.data != NULL) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        t.shared.start_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
        rc = setup_cluster(&t, &nc);
        if (rc != 0) {
            return rc;
        }
        nc.msg_cb = msg_cb;
        nc.fini_cb = fini_cb;
    }
    t.scfg.log = &t.log;
    nc.log = &t.log;
    nc.init_cb = init_cb;
    nc.stop_cb = stop_cb;
    nc.data = &t;
    static char listen_buf[96];
    int reserved = reserve_port(&t, listen_buf, sizeof listen_buf);
    struct shard_node *node = NULL;
    rc = shard_node_start(&nc, &node);
    if (reserved >= 0) {
        close(reserved);
    }
    if (rc == 0) {
        printf("tesserad: listening on %s with %u shards\n", t.scfg.listen,
               shard_node_shards(node));
        if (t.data != NULL) {
            printf("tesserad: node %llu of cluster %016llx, %u ranges, data in %s\n",
                   (unsigned long long)t.cluster.self, (unsigned long long)t.cluster.cluster_id,
                   t.cluster.ranges, t.data);
        }
        fflush(stdout);
    }
    int wrc = rc == 0 && node != NULL ? shard_node_wait(node) : 0;
    for (uint32_t i = 0; i < TESSERAD_SHARDS_MAX; i++) {
        server_free(t.servers[i]);
    }
    if (rc != 0) {
        fprintf(stderr, "tesserad: cannot start: %s\n", ts_strerror(rc));
        return 1;
    }
    if (t.failed) {
        fprintf(stderr, "tesserad: stopped after a storage failure (see the log above); "
                        "a restart recovers from the last durable state\n");
        return 1;
    }
    return wrc == 0 ? 0 : 1;
}
