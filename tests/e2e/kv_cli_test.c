/*
 * kv_cli: the `tessera` command-line client (tools/tessera) against a real 3-node
 * cluster: put, get, del, range, txn, status and members in each output format (plain,
 * json, table), and its exit codes: 0 success, 1 the request failed, 2 usage error, 3 get
 * of a missing key. The CLI runs as a child process with a bounded wait (killed by its
 * PID past CLI_TIMEOUT_MS).
 */
#define _GNU_SOURCE
#include "tests/e2e/suite.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TESSERA_CLI_PATH
#error "TESSERA_CLI_PATH must name the tessera CLI binary"
#endif

#define CLI_TIMEOUT_MS 60000u
#define CLI_OUT_BYTES 8192u
#define CLI_ARGV_MAX 16

static struct e2e_cluster cluster;

static void up(void)
{
    e2e_suite_up(&cluster, 3, 2, 8, NULL);
}

static void down(void)
{
    e2e_cluster_stop(&cluster);
}

TestSuite(kv_cli, .init = up, .fini = down, .timeout = 300);

struct run {
    int code; /* exit status, or -1 when killed or not exited */
    char out[CLI_OUT_BYTES];
    char err[CLI_OUT_BYTES];
};

/* Reads the child's stdout and stderr until both close or the deadline passes. */
static void read_both(struct run *r, int out_fd, int err_fd, uint64_t deadline)
{
    size_t ol = 0, el = 0;
    struct pollfd p[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN}};
    while ((p[0].fd >= 0 || p[1].fd >= 0) && e2e_now_ms() < deadline) {
        if (poll(p, 2, 200) <= 0) {
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || p[i].revents == 0) {
                continue;
            }
            char *buf = i == 0 ? r->out : r->err;
            size_t *len = i == 0 ? &ol : &el;
            char scratch[512];
            bool room = *len < CLI_OUT_BYTES - 1;
            ssize_t n = read(p[i].fd, room ? buf + *len : scratch,
                             room ? CLI_OUT_BYTES - 1 - *len : sizeof scratch);
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
            } else if (room) {
                *len += (size_t)n;
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        if (p[i].fd >= 0) {
            close(p[i].fd);
        }
    }
}

/* Runs the CLI with args (NULL-terminated) and input on its stdin (may be NULL). */
static void cli(struct run *r, const char *input, ...)
{
    const char *argv[CLI_ARGV_MAX + 1] = {TESSERA_CLI_PATH};
    int argc = 1;
    va_list ap;
    va_start(ap, input);
    for (const char *a; argc < CLI_ARGV_MAX && (a = va_arg(ap, const char *)) != NULL;) {
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    memset(r, 0, sizeof *r);
    r->code = -1;
    int in[2], out[2], err[2];
    cr_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
              pipe2(err, O_CLOEXEC) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execv(TESSERA_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (input != NULL) {
        (void)!write(in[1], input, strlen(input));
    }
    close(in[1]);
    uint64_t deadline = e2e_now_ms() + CLI_TIMEOUT_MS;
    read_both(r, out[0], err[0], deadline);
    int st = 0;
    pid_t w = waitpid(pid, &st, WNOHANG);
    while (w == 0 && e2e_now_ms() < deadline) {
        usleep(10000);
        w = waitpid(pid, &st, WNOHANG);
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        cr_assert_fail("the CLI did not finish within %u ms", CLI_TIMEOUT_MS);
    }
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define EP "--endpoints", cluster.endpoints

static void cli_put_get(void)
{
    struct run r;
    cli(&r, NULL, EP, "put", "foo", "bar", NULL);
    cr_assert_eq(r.code, 0, "put: %d %s", r.code, r.err);
    cr_assert_str_eq(r.out, "OK\n");
    cli(&r, NULL, EP, "get", "foo", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "foo\nbar\n");
    cli(&r, NULL, EP, "--consistency", "serializable", "get", "foo", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "foo\nbar\n");
    /* json: base64 keys and values ("foo" = Zm9v, "bar" = YmFy) */
    cli(&r, NULL, EP, "--output", "json", "get", "foo", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.out, "\"kvs\":[{\"key\":\"Zm9v\",\"value\":\"YmFy\""), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"version\":1"));
    cr_assert_not_null(strstr(r.out, "\"count\":1}"));
    /* table */
    cli(&r, NULL, EP, "--output", "table", "get", "foo", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(strncmp(r.out, "| KEY | VALUE |", 15), 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\n| foo | bar | "));
    /* put --prev-kv: the old value */
    cli(&r, NULL, EP, "put", "--prev-kv", "foo", "baz", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "OK\nfoo\nbar\n");
    cli(&r, NULL, EP, "--output", "json", "put", "foo", "qux", "--prev-kv", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.out, "\"prev_kv\":{\"key\":\"Zm9v\",\"value\":\"YmF6\""), "%s",
                       r.out);
    /* get of a missing key: exit 3, in every format */
    cli(&r, NULL, EP, "get", "nokey", NULL);
    cr_assert_eq(r.code, 3);
    cr_assert_str_eq(r.out, "");
    cr_assert_not_null(strstr(r.err, "not found"));
    cli(&r, NULL, EP, "--output", "json", "get", "nokey", NULL);
    cr_assert_eq(r.code, 3);
    cr_assert_not_null(strstr(r.out, "\"kvs\":[],\"count\":0}"));
    /* bytes that are not printable come out escaped */
    cli(&r, NULL, EP, "put", "esc", "a\tb\\", NULL);
    cr_assert_eq(r.code, 0);
    cli(&r, NULL, EP, "get", "esc", NULL);
    cr_assert_str_eq(r.out, "esc\na\\x09b\\\\\n");
}

static void cli_range(void)
{
    struct run r;
    /* range: three keys under cli/, one outside */
    const char *keys[] = {"cli/a", "cli/b", "cli/c", "clj"};
    for (int i = 0; i < 4; i++) {
        cli(&r, NULL, EP, "put", keys[i], "v", NULL);
        cr_assert_eq(r.code, 0);
    }
    cli(&r, NULL, EP, "range", "cli/", "--prefix", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "cli/a\nv\ncli/b\nv\ncli/c\nv\n");
    cli(&r, NULL, EP, "range", "cli/", "cli/c", "--keys-only", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "cli/a\ncli/b\n");
    cli(&r, NULL, EP, "range", "cli/", "--prefix", "--limit", "1", NULL);
    cr_assert_str_eq(r.out, "cli/a\nv\n");
    cli(&r, NULL, EP, "range", "cli/", "--prefix", "--count-only", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "3\n");
    cli(&r, NULL, EP, "--output", "json", "range", "cli/", "--prefix", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(strncmp(r.out, "{\"kvs\":[{\"key\":\"Y2xpL2E=\"", 25), 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "],\"count\":3}\n"));
    cli(&r, NULL, EP, "--output", "table", "range", "cli/", "--prefix", NULL);
    cr_assert_eq(strncmp(r.out, "| KEY | VALUE |", 15), 0);
    cr_assert_not_null(strstr(r.out, "| cli/c | v | "));
}

static void cli_del(void)
{
    struct run r;
    /* del: one key, then an interval with --prev-kv */
    cli(&r, NULL, EP, "del", "cli/a", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "1\n");
    cli(&r, NULL, EP, "del", "cli/a", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "0\n");
    cli(&r, NULL, EP, "--output", "json", "del", "cli/", "cli0", "--prev-kv", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.out, "\"deleted\":2,\"prev_kvs\":[{\"key\":\"Y2xpL2I=\""), "%s",
                       r.out);
    cli(&r, NULL, EP, "--output", "table", "range", "cl", "--prefix", "--count-only", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "1\n", "clj remains: %s", r.out);
}

Test(kv_cli, put_get_del_range)
{
    cli_put_get();
    cli_range();
    cli_del();
}

Test(kv_cli, txn)
{
    struct run r;
    cli(&r, NULL, EP, "put", "lock", "free", NULL);
    cr_assert_eq(r.code, 0);
    /* Hit: the then branch runs. */
    cli(&r, "value(\"lock\") = \"free\"\n\nput lock me\nget lock\n\nget lock\n", EP, "txn", NULL);
    cr_assert_eq(r.code, 0, "txn: %s", r.err);
    cr_assert_str_eq(r.out, "SUCCESS\n\nOK\n\nlock\nme\n");
    /* Miss: the else branch runs. */
    cli(&r, "value(\"lock\") = \"free\"\n\nput lock you\n\nget lock\n", EP, "txn", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "FAILURE\n\nlock\nme\n");
    /* version, create, mod compares; json output */
    cli(&r, "version(\"lock\") = 2\n\nget lock\n\n\n", EP, "--output", "json", "txn", NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_eq(strncmp(r.out, "{\"succeeded\":true,\"revision\":", 29), 0, "%s", r.out);
    cr_assert_not_null(
        strstr(r.out, "\"results\":[{\"op\":\"get\",\"kvs\":[{\"key\":\"bG9jaw==\""));
    cli(&r, "mod(\"nolock\") = 0\n\nput nolock x\n\n\n", EP, "txn", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "SUCCESS\n\nOK\n");
    cli(&r, "create(\"nolock\") = 0\n\nput nolock y\n\n\n", EP, "--output", "table", "txn", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_str_eq(r.out, "FAILURE\n");
    /* A malformed txn is a usage error. */
    cli(&r, "bogus(\"k\") = 1\n", EP, "txn", NULL);
    cr_assert_eq(r.code, 2, "exit %d", r.code);
}

Test(kv_cli, status_members_and_exit_codes)
{
    struct run r;
    cli(&r, NULL, EP, "status", NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    for (uint32_t i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s, node %u, cluster ", cluster.node[i].addr, i + 1);
        cr_assert_not_null(strstr(r.out, want), "status lacks %s: %s", want, r.out);
    }
    cr_assert_not_null(strstr(r.out, "shards 2, replicas 8"));
    cli(&r, NULL, EP, "--output", "json", "status", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(r.out[0], '[');
    cr_assert_not_null(strstr(r.out, "\"node_id\":3"));
    cr_assert_not_null(strstr(r.out, "]\n"));
    cli(&r, NULL, EP, "--output", "table", "status", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(strncmp(r.out, "| ENDPOINT | NODE_ID |", 22), 0, "%s", r.out);

    cli(&r, NULL, EP, "members", NULL);
    cr_assert_eq(r.code, 0);
    for (uint32_t i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "%u, ", i + 1);
        cr_assert_not_null(strstr(r.out, want));
        cr_assert_not_null(strstr(r.out, cluster.node[i].addr));
    }
    cli(&r, NULL, EP, "--output", "json", "members", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(strncmp(r.out, "{\"members\":[{\"node_id\":", 23), 0, "%s", r.out);
    cli(&r, NULL, EP, "--output", "table", "members", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(strncmp(r.out, "| NODE_ID | STATE | ADDRESS |", 28), 0);

    /* The meta range's descriptors: every range from the first, or from a key's on. */
    cli(&r, NULL, EP, "ranges", NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_eq(strncmp(r.out, "range 1, [, ", 12), 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "epoch 1.1, replicas "), "%s", r.out);
    size_t lines = 0;
    for (const char *p = r.out; *p != 0; p++) {
        lines += *p == '\n';
    }
    cr_assert_eq(lines, cluster.ranges, "one line per range: %s", r.out);
    cli(&r, NULL, EP, "ranges", "\x7f", "--limit", "1", NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_eq(strncmp(r.out, "range ", 6), 0, "%s", r.out);
    cr_assert_null(strstr(r.out, "range 1,"), "from the key's range on: %s", r.out);
    cli(&r, NULL, EP, "--output", "json", "ranges", "--limit", "2", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(strncmp(r.out, "{\"ranges\":[{\"range_id\":1,\"start_key\":\"\"", 39), 0, "%s",
                 r.out);
    cli(&r, NULL, EP, "--output", "table", "ranges", NULL);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(strncmp(r.out, "| RANGE_ID | START_KEY |", 24), 0, "%s", r.out);
    cli(&r, NULL, EP, "ranges", "a", "b", NULL);
    cr_assert_eq(r.code, 2, "usage error");

    /* Exit 2: usage errors. */
    cli(&r, NULL, EP, "frobnicate", NULL);
    cr_assert_eq(r.code, 2);
    cli(&r, NULL, EP, "--output", "yaml", "get", "k", NULL);
    cr_assert_eq(r.code, 2);
    cli(&r, NULL, EP, "put", "onlykey", NULL);
    cr_assert_eq(r.code, 2);
    cli(&r, NULL, EP, NULL);
    cr_assert_eq(r.code, 2);
    static char bigkey[TESSERA_KEY_BYTES_MAX + 2];
    memset(bigkey, 'k', TESSERA_KEY_BYTES_MAX + 1);
    cli(&r, NULL, EP, "put", bigkey, "v", NULL);
    cr_assert_eq(r.code, 2, "a key over the limit: exit %d", r.code);
    cli(&r, NULL, "--help", NULL);
    cr_assert_eq(r.code, 0);
    /* Exit 1: nobody listens there. */
    char dead[32];
    snprintf(dead, sizeof dead, "127.0.0.1:%u", (unsigned)e2e_free_port());
    cli(&r, NULL, "--endpoints", dead, "--timeout-ms", "2000", "get", "k", NULL);
    cr_assert_eq(r.code, 1, "exit %d: %s", r.code, r.err);
    cr_assert_neq(r.err[0], 0, "the error is on stderr");
    /* Exit 3: a missing key. */
    cli(&r, NULL, EP, "get", "never-written", NULL);
    cr_assert_eq(r.code, 3);
    /* The environment names the endpoints too. */
    setenv("TESSERA_ENDPOINTS", cluster.endpoints, 1);
    cli(&r, NULL, "put", "envkey", "1", NULL);
    cr_assert_eq(r.code, 0);
    unsetenv("TESSERA_ENDPOINTS");
}
