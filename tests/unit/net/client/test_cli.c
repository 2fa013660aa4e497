/* tools/tessera (the CLI) run as a process against the fake node: every command, every
 * output format, binary-safe printing and the exit codes (0 ok, 1 failed, 2 usage, 3 not
 * found). The binary's path comes from CMake (TS_TESSERA_CLI_PATH). */
#include "fake_server.h"

#include "net/client/tessera.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct fake_server cli_srv;
static char cli_ep[64];

static void cli_setup(void)
{
    cr_assert_eq(fake_start(&cli_srv), 0);
    snprintf(cli_ep, sizeof(cli_ep), "127.0.0.1:%u", cli_srv.port);
}

static void cli_teardown(void)
{
    fake_stop(&cli_srv);
}

TestSuite(tessera_cli, .init = cli_setup, .fini = cli_teardown, .timeout = 120);

struct run {
    int code;
    char out[8192];
    char err[2048];
};

static void slurp(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    lseek(fd, 0, SEEK_SET);
    for (ssize_t r; n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0;) {
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
}

static int temp_file(void)
{
    char path[] = "/tmp/tessera-cli-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    return fd;
}

/* Runs the CLI with args (NULL-terminated), stdin from `in`, --endpoints first unless
 * env_endpoints (then $TESSERA_ENDPOINTS is set instead). */
static void run_env(struct run *r, const char *in, bool env_endpoints, const char *arg, ...)
{
    const char *argv[32] = {TS_TESSERA_CLI_PATH};
    int n = 1;
    if (!env_endpoints) {
        argv[n++] = "--endpoints";
        argv[n++] = cli_ep;
    }
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL && n < 31; a = va_arg(ap, const char *)) {
        argv[n++] = a;
    }
    va_end(ap);
    int fin = temp_file(), fout = temp_file(), ferr = temp_file();
    if (in != NULL) {
        cr_assert_eq(write(fin, in, strlen(in)), (ssize_t)strlen(in));
        lseek(fin, 0, SEEK_SET);
    }
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fin, 0);
        dup2(fout, 1);
        dup2(ferr, 2);
        if (env_endpoints) {
            setenv("TESSERA_ENDPOINTS", cli_ep, 1);
        } else {
            unsetenv("TESSERA_ENDPOINTS");
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the CLI died by a signal");
    r->code = WEXITSTATUS(st);
    close(fin);
    slurp(fout, r->out, sizeof(r->out));
    slurp(ferr, r->err, sizeof(r->err));
}

#define RUN(r, ...) run_env(r, NULL, false, __VA_ARGS__, (const char *)NULL)
#define RUN_IN(r, in, ...) run_env(r, in, false, __VA_ARGS__, (const char *)NULL)

static void expect(const struct run *r, int code, const char *out)
{
    cr_assert_eq(r->code, code, "exit %d, stdout [%s], stderr [%s]", r->code, r->out, r->err);
    if (out != NULL) {
        cr_assert_str_eq(r->out, out, "stderr [%s]", r->err);
    }
}

Test(tessera_cli, put_get_del_plain)
{
    struct run r;
    RUN(&r, "put", "k", "v1");
    expect(&r, 0, "OK\n");
    RUN(&r, "put", "k", "v2", "--prev-kv");
    expect(&r, 0, "OK\nk\nv1\n");
    RUN(&r, "get", "k");
    expect(&r, 0, "k\nv2\n");
    RUN(&r, "--consistency", "serializable", "get", "k");
    expect(&r, 0, "k\nv2\n");
    cr_assert_eq(atomic_load(&cli_srv.last_consistency), 1);
    RUN(&r, "get", "missing");
    expect(&r, 3, "");
    cr_assert(strstr(r.err, "not found") != NULL, "%s", r.err);
    RUN(&r, "del", "k", "--prev-kv");
    expect(&r, 0, "1\nk\nv2\n");
    RUN(&r, "del", "k");
    expect(&r, 0, "0\n");
    RUN(&r, "get", "k");
    expect(&r, 3, "");
}

Test(tessera_cli, binary_bytes_are_escaped_or_base64)
{
    struct run r;
    RUN(&r, "put", "a\x01z", "x\\y\n");
    expect(&r, 0, "OK\n");
    RUN(&r, "get", "a\x01z");
    expect(&r, 0, "a\\x01z\nx\\\\y\\x0a\n");
    RUN(&r, "--output", "json", "get", "a\x01z");
    expect(&r, 0, NULL);
    /* "a\x01z" is YQF6, "x\\y\n" is eFx5Cg== */
    cr_assert(strstr(r.out, "\"kvs\":[{\"key\":\"YQF6\",\"value\":\"eFx5Cg==\"") != NULL, "%s",
              r.out);
    cr_assert(strstr(r.out, "\"count\":1}") != NULL, "%s", r.out);
    RUN(&r, "--output=table", "get", "a\x01z");
    expect(&r, 0,
           "| KEY | VALUE | CREATE_REVISION | MOD_REVISION | VERSION | LEASE |\n"
           "| a\\x01z | x\\\\y\\x0a | 1 | 1 | 1 | 0 |\n");
}

Test(tessera_cli, put_with_lease_and_json_and_table)
{
    struct run r;
    RUN(&r, "put", "k", "v", "--lease", "77", "--output", "json");
    expect(&r, 0, "{\"revision\":1,\"prev_kv\":null}\n");
    RUN(&r, "--output", "json", "put", "k", "w", "--prev-kv");
    expect(&r, 0,
           "{\"revision\":2,\"prev_kv\":{\"key\":\"aw==\",\"value\":\"dg==\",\"create_revision\":1,"
           "\"mod_revision\":1,\"version\":1,\"lease\":77}}\n");
    RUN(&r, "--output", "table", "put", "k", "x", "--prev-kv");
    expect(&r, 0,
           "OK\n| KEY | VALUE | CREATE_REVISION | MOD_REVISION | VERSION | LEASE |\n"
           "| k | w | 1 | 2 | 2 | 0 |\n");
    RUN(&r, "--output", "json", "del", "k", "--prev-kv");
    expect(&r, 0, NULL);
    cr_assert(strstr(r.out, "\"deleted\":1,\"prev_kvs\":[{\"key\":\"aw==\",\"value\":\"eA==\"") !=
                  NULL,
              "%s", r.out);
    RUN(&r, "--output", "json", "get", "k");
    expect(&r, 3, NULL);
    cr_assert(strstr(r.out, "\"kvs\":[],\"count\":0") != NULL, "%s", r.out);
}

static void put_keys(void)
{
    struct run r;
    const char *keys[] = {"p/a", "p/b", "p/c", "p/d", "p/e", "q"};
    for (int i = 0; i < 6; i++) {
        RUN(&r, "put", keys[i], "v");
        expect(&r, 0, "OK\n");
    }
}

Test(tessera_cli, range_prefix_limit_keys_only_count_only_and_paging)
{
    put_keys();
    atomic_store(&cli_srv.page_max, 2); /* three pages for five keys */
    struct run r;
    RUN(&r, "range", "p/", "--prefix");
    expect(&r, 0, "p/a\nv\np/b\nv\np/c\nv\np/d\nv\np/e\nv\n");
    RUN(&r, "range", "p/b", "p/d");
    expect(&r, 0, "p/b\nv\np/c\nv\n");
    RUN(&r, "range", "p/", "--prefix", "--limit", "3", "--keys-only");
    expect(&r, 0, "p/a\np/b\np/c\n");
    RUN(&r, "range", "p/", "--prefix", "--count-only");
    expect(&r, 0, "5\n");
    RUN(&r, "range", "q");
    expect(&r, 0, "q\nv\n");
    RUN(&r, "--output", "json", "range", "p/", "--prefix", "--limit", "2", "--keys-only");
    expect(&r, 0,
           "{\"kvs\":[{\"key\":\"cC9h\",\"create_revision\":1,\"mod_revision\":1,"
           "\"version\":1,\"lease\":0},{\"key\":\"cC9i\",\"create_revision\":2,"
           "\"mod_revision\":2,\"version\":1,\"lease\":0}],\"count\":2}\n");
    RUN(&r, "--output", "table", "range", "p/d", "--prefix");
    expect(&r, 0,
           "| KEY | VALUE | CREATE_REVISION | MOD_REVISION | VERSION | LEASE |\n"
           "| p/d | v | 4 | 4 | 1 | 0 |\n");
    RUN(&r, "--output", "json", "range", "none");
    expect(&r, 0, "{\"kvs\":[],\"count\":0}\n");
    RUN(&r, "del", "p/", "p0");
    expect(&r, 0, "5\n");
}

static const char txn_lock[] = "version(\"lock\") = 0\n"
                               "\n"
                               "put lock \"me too\"\n"
                               "\n"
                               "get lock\n";

Test(tessera_cli, txn_from_stdin_in_every_format)
{
    struct run r;
    RUN_IN(&r, txn_lock, "txn");
    expect(&r, 0, "SUCCESS\n\nOK\n");
    RUN_IN(&r, txn_lock, "txn");
    expect(&r, 0, "FAILURE\n\nlock\nme too\n");
    RUN_IN(&r, txn_lock, "--output", "json", "txn");
    expect(&r, 0, NULL);
    cr_assert(strstr(r.out, "{\"succeeded\":false,") == r.out, "%s", r.out);
    cr_assert(strstr(r.out, "\"results\":[{\"op\":\"get\",\"kvs\":[{\"key\":\"bG9jaw==\"") != NULL,
              "%s", r.out);
    RUN_IN(&r, "value(\"lock\") = \"me too\"\n\nrange a \"\\x00\"\ndel lock\n", "--output", "table",
           "txn");
    expect(&r, 0,
           "SUCCESS\n\n| KEY | VALUE | CREATE_REVISION | MOD_REVISION | VERSION | LEASE |\n"
           "| lock | me too | 1 | 1 | 1 | 0 |\n\n1\n");
    RUN_IN(&r, "mod(\"x\") > 5\n\nput a b\n\ndel a\n", "txn");
    expect(&r, 0, "FAILURE\n\n0\n");
    RUN_IN(&r, "nonsense(\"x\") = 1\n", "txn");
    expect(&r, 2, "");
    cr_assert(strstr(r.err, "line 1") != NULL, "%s", r.err);
    RUN_IN(&r, "\nput a\n", "txn");
    expect(&r, 2, "");
    cr_assert(strstr(r.err, "line 2") != NULL, "%s", r.err);
}

Test(tessera_cli, status_and_members_in_every_format)
{
    struct run r;
    char want[256];
    RUN(&r, "status");
    snprintf(want, sizeof(want),
             "%s, node %u, cluster 42, version fake-1.0, shards 2, replicas 3, leaders 1, "
             "db 4096 B, wal 8192 B, uptime 1234 ms\n",
             cli_ep, cli_srv.port);
    expect(&r, 0, want);
    RUN(&r, "--output", "json", "status");
    expect(&r, 0, NULL);
    snprintf(want, sizeof(want), "[{\"endpoint\":\"%s\",\"node_id\":%u,\"cluster_id\":42,", cli_ep,
             cli_srv.port);
    cr_assert(strstr(r.out, want) == r.out, "%s", r.out);
    RUN(&r, "--output", "table", "status");
    expect(&r, 0, NULL);
    cr_assert(strstr(r.out, "| ENDPOINT | NODE_ID |") == r.out, "%s", r.out);
    RUN(&r, "members");
    expect(&r, 0,
           "1, up, 127.0.0.1:7001, shards 2, replicas 5, leaders 0, capacity 1073741824 B, "
           "used 1048576 B\n"
           "2, suspect, 127.0.0.1:7002, shards 2, replicas 5, leaders 1, capacity 1073741824 "
           "B, used 1048576 B\n");
    RUN(&r, "--output", "json", "members");
    expect(&r, 0, NULL);
    cr_assert(strstr(r.out, "{\"members\":[{\"node_id\":1,\"state\":\"up\",\"address\":"
                            "\"127.0.0.1:7001\"") == r.out,
              "%s", r.out);
    RUN(&r, "--output", "table", "members");
    expect(&r, 0, NULL);
    cr_assert(strstr(r.out, "| 2 | suspect | 127.0.0.1:7002 |") != NULL, "%s", r.out);
}

Test(tessera_cli, endpoints_from_the_environment)
{
    struct run r;
    run_env(&r, NULL, true, "put", "e", "nv", (const char *)NULL);
    expect(&r, 0, "OK\n");
    run_env(&r, NULL, true, "get", "e", (const char *)NULL);
    expect(&r, 0, "e\nnv\n");
}

Test(tessera_cli, failures_and_usage_errors_exit_codes)
{
    struct run r;
    atomic_store(&cli_srv.fail_status, PROTO_STATUS_UNAVAILABLE);
    RUN(&r, "put", "k", "v");
    expect(&r, 1, "");
    cr_assert(strstr(r.err, "injected failure") != NULL, "the server's message: %s", r.err);
    RUN(&r, "range", "a", "b");
    expect(&r, 1, "");
    atomic_store(&cli_srv.fail_status, 0);
    RUN(&r, "--help");
    expect(&r, 0, NULL);
    cr_assert(strstr(r.out, "usage: tessera") == r.out);
    const char *bad[][4] = {{"frob"},
                            {"put", "k"},
                            {"get"},
                            {"get", "k", "--limit"},
                            {"--output", "xml", "get"},
                            {"--timeout-ms", "x", "get"},
                            {"--consistency", "eventual", "get"},
                            {"range", "a", "b", "--prefix"},
                            {"del", "a", "b", "c"},
                            {"status", "x"},
                            {"put", "k", "v", "--bogus"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        RUN(&r, bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
        cr_assert_eq(r.code, 2, "case %zu (%s): exit %d, %s", i, bad[i][0], r.code, r.err);
    }
    run_env(&r, NULL, false, "--endpoints", "nohost", "get", "k", (const char *)NULL);
    cr_assert_eq(r.code, 2, "a bad endpoint list: %s", r.err);
    char big[TESSERA_KEY_BYTES_MAX + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    RUN(&r, "put", big, "v");
    cr_assert_eq(r.code, 2, "a key over the limit: %s", r.err);
    cr_assert_eq(atomic_load(&cli_srv.kv_requests), 2, "only the two failing requests were sent");
}

Test(tessera_cli, unreachable_endpoint_fails_with_exit_1)
{
    struct run r;
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%u", fake_dead_port());
    run_env(&r, NULL, false, "--endpoints", ep, "--timeout-ms", "2000", "get", "k",
            (const char *)NULL);
    expect(&r, 1, "");
    cr_assert(strstr(r.err, "tessera: get:") == r.err, "%s", r.err);
}
