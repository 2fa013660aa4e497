/*
 * tesserad: the Tessera server. This first build runs the node's shards (one thread per
 * core, each with its own io_uring) and serves the transport: every shard listens on the
 * same address and answers Ping; other requests are refused with status Unavailable
 * until the multi-Raft key-value server arrives (issue 7). SIGTERM or SIGINT stops it
 * cleanly: listeners close, answers already read are sent, connections close.
 *
 *   tesserad --listen IP:PORT [--shards N] [--pin] [--log-level LEVEL]
 *
 * It prints "tesserad: listening on IP:PORT with N shards" once every shard listens.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "core/util/err.h"
#include "core/util/log.h"
#include "shard/node.h"
#include "shard/server.h"

#define TESSERAD_SHARDS_MAX 256u

struct tesserad {
    struct server_config scfg;
    struct server *servers[TESSERAD_SHARDS_MAX]; /* servers[i]: written by shard i only */
    struct ts_log log;
};

static int init_cb(struct shard *s, void *data)
{
    struct tesserad *t = data;
    uint32_t id = shard_get_id(s);
    if (id >= TESSERAD_SHARDS_MAX) {
        return TS_EINVAL;
    }
    return server_start(s, &t->scfg, &t->servers[id]);
}

static bool stop_cb(struct shard *s, void *data)
{
    struct tesserad *t = data;
    struct server *sv = t->servers[shard_get_id(s)];
    return sv == NULL || server_stop(sv);
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

static int usage(void)
{
    fprintf(stderr, "usage: tesserad --listen IP:PORT [--shards N] [--pin] "
                    "[--log-level error|warn|info|debug|trace]\n");
    return 2;
}

static int parse(int argc, char **argv, struct tesserad *t, struct shard_node_config *nc)
{
    enum ts_log_level level = TS_LOG_LEVEL_INFO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--pin") == 0) {
            nc->pin = true;
        } else if (strcmp(a, "--listen") == 0 && v != NULL) {
            t->scfg.listen = v;
            i++;
        } else if (strcmp(a, "--shards") == 0 && v != NULL) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*end != 0 || n == 0 || n > TESSERAD_SHARDS_MAX) {
                return usage();
            }
            nc->shards = (uint32_t)n;
            i++;
        } else if (strcmp(a, "--log-level") == 0 && v != NULL) {
            if (ts_log_level_parse(v, &level) != 0) {
                return usage();
            }
            i++;
        } else {
            return usage();
        }
    }
    if (t->scfg.listen == NULL) {
        return usage();
    }
    ts_log_init(&t->log, STDERR_FILENO, level);
    return 0;
}

int main(int argc, char **argv)
{
    static struct tesserad t;
    struct shard_node_config nc = {0};
    int rc = parse(argc, argv, &t, &nc);
    if (rc != 0) {
        return rc;
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
    return wrc == 0 ? 0 : 1;
}
