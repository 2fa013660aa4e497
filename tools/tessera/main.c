/*
 * tessera: the command-line client. A thin main over libtessera (STYLE R1): it parses
 * the command line, makes one client, issues the request(s) through the public API of
 * net/client/tessera.h only, and prints the answer.
 *
 * Output formats (--output):
 *   plain  etcdctl's layout: key and value on lines of their own;
 *   table  an ASCII table with a header row;
 *   json   one JSON object per command. Keys and values are base64 (RFC 4648, as
 *          etcdctl -w json prints them), since they are arbitrary bytes; everything
 *          else (addresses, versions, messages) is a JSON string.
 * In plain and table output, keys and values are escaped so that any bytes print on one
 * line: printable ASCII as is, a backslash as "\\", any other byte as "\xHH".
 *
 * Exit codes: 0 success, 1 the request failed (the error on stderr: tessera_strerror()
 * and the server's message), 2 usage error, 3 get: the key does not exist.
 */
#include "net/client/tessera.h"
#include "tools/tessera/txn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_NOTFOUND = 3 };
enum output { OUT_PLAIN, OUT_JSON, OUT_TABLE };

#define CLI_ARGS_MAX 8
#define CLI_ENDPOINT_DEFAULT "127.0.0.1:7001"
#define CLI_TXN_LINE_BYTES_MAX (4u * TESSERA_KEY_BYTES_MAX + 64u)

static const char usage_text[] =
    "usage: tessera [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Options (anywhere on the line; '--' ends them):\n"
    "  --endpoints HOST:PORT,...   nodes to talk to (default $TESSERA_ENDPOINTS, else\n"
    "                              " CLI_ENDPOINT_DEFAULT ")\n"
    "  --consistency linearizable|serializable   reads (default linearizable)\n"
    "  --output plain|json|table   output format (default plain)\n"
    "  --timeout-ms N              deadline of each request (default 5000)\n"
    "  -h, --help                  this text\n"
    "\n"
    "Commands:\n"
    "  put KEY VALUE [--prev-kv] [--lease ID]   write a key\n"
    "  get KEY                                  read a key (exit 3 when it does not exist)\n"
    "  del KEY [RANGE_END] [--prev-kv]          delete a key, or the keys of [KEY, RANGE_END)\n"
    "  range KEY [RANGE_END] [--limit N] [--keys-only] [--count-only] [--prefix]\n"
    "                                           list [KEY, RANGE_END), every key starting\n"
    "                                           with KEY (--prefix), or KEY alone; pages\n"
    "                                           through the answers until done or N rows\n"
    "  txn                                      a transaction read from stdin (below)\n"
    "  status                                   the status of every endpoint\n"
    "  members                                  the cluster's members (from the meta range)\n"
    "  ranges [KEY] [--limit N]                 the range descriptors the meta range holds,\n"
    "                                           from KEY's range on (default 64)\n"
    "\n"
    "txn reads three groups of lines separated by a blank line: compares, the ops run\n"
    "when all compares hold, the ops run otherwise (etcdctl's interactive syntax):\n"
    "  compare:  TARGET(\"KEY\") OP ARG   TARGET value|version|create|mod|lease,\n"
    "            OP = != < >, ARG a number, or a quoted string for value\n"
    "  op:       put KEY VALUE | get KEY | del KEY [RANGE_END] | range KEY [RANGE_END]\n"
    "Words may be quoted (\"a b\"), with the escapes \\\" \\\\ \\n \\t \\xHH. Example:\n"
    "  mod(\"lock\") = 0\n"
    "\n"
    "  put lock me\n"
    "\n"
    "  get lock\n"
    "It prints SUCCESS or FAILURE, then each op's result.\n"
    "\n"
    "KEY, VALUE and RANGE_END are taken byte for byte from the command line (which cannot\n"
    "hold a NUL byte: use txn's quoted words, with \\x00, for such keys).\n"
    "\n"
    "Output: plain and table escape bytes that are not printable ASCII as \\xHH (and \\\n"
    "as \\\\); json gives keys and values in base64.\n"
    "Exit codes: 0 success, 1 the request failed, 2 usage error, 3 key not found (get).\n";

/* ------------------------------------------------------------------ command line */

struct cli {
    const char *endpoints;
    enum tessera_consistency consistency;
    enum output output;
    uint32_t timeout_ms;
    const char *command;
    const char *args[CLI_ARGS_MAX];
    int nargs;
    bool prev_kv;
    bool keys_only;
    bool count_only;
    bool prefix;
    uint64_t lease;
    uint64_t limit;
    struct tessera_client *client;
};

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "tessera: %s%s%s\nRun 'tessera --help' for usage.\n", what,
            arg != NULL ? ": " : "", arg != NULL ? arg : "");
    return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || s[0] == '\0' || s[0] == '-') {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

/* An option with a value: --name VALUE or --name=VALUE. Returns the value or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) {
        return NULL;
    }
    if (argv[*i][n] == '=') {
        return argv[*i] + n + 1;
    }
    if (argv[*i][n] == '\0' && *i + 1 < argc) {
        return argv[++*i];
    }
    return NULL;
}

static int parse_valued(struct cli *o, int argc, char **argv, int *i, bool *matched)
{
    const char *v;
    uint64_t n = 0;
    *matched = true;
    if ((v = opt_value(argc, argv, i, "--endpoints")) != NULL) {
        o->endpoints = v;
    } else if ((v = opt_value(argc, argv, i, "--consistency")) != NULL) {
        if (strcmp(v, "linearizable") != 0 && strcmp(v, "serializable") != 0) {
            return usage_error("bad --consistency", v);
        }
        o->consistency = v[0] == 's' ? TESSERA_SERIALIZABLE : TESSERA_LINEARIZABLE;
    } else if ((v = opt_value(argc, argv, i, "--output")) != NULL) {
        if (strcmp(v, "plain") != 0 && strcmp(v, "json") != 0 && strcmp(v, "table") != 0) {
            return usage_error("bad --output", v);
        }
        o->output = v[0] == 'j' ? OUT_JSON : v[0] == 't' ? OUT_TABLE : OUT_PLAIN;
    } else if ((v = opt_value(argc, argv, i, "--timeout-ms")) != NULL) {
        if (!parse_u64(v, &n) || n == 0 || n > INT32_MAX) {
            return usage_error("bad --timeout-ms", v);
        }
        o->timeout_ms = (uint32_t)n;
    } else if ((v = opt_value(argc, argv, i, "--lease")) != NULL) {
        if (!parse_u64(v, &o->lease)) {
            return usage_error("bad --lease", v);
        }
    } else if ((v = opt_value(argc, argv, i, "--limit")) != NULL) {
        if (!parse_u64(v, &o->limit)) {
            return usage_error("bad --limit", v);
        }
    } else {
        *matched = false;
    }
    return EXIT_OK;
}

static int parse_flag(struct cli *o, const char *a)
{
    if (strcmp(a, "--prev-kv") == 0) {
        o->prev_kv = true;
    } else if (strcmp(a, "--keys-only") == 0) {
        o->keys_only = true;
    } else if (strcmp(a, "--count-only") == 0) {
        o->count_only = true;
    } else if (strcmp(a, "--prefix") == 0) {
        o->prefix = true;
    } else {
        return usage_error("unknown option", a);
    }
    return EXIT_OK;
}

/* Returns EXIT_OK, EXIT_USAGE, or -1 for --help. */
static int parse_args(struct cli *o, int argc, char **argv)
{
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && strcmp(a, "--") == 0) {
            options = false;
            continue;
        }
        if (options && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            return -1;
        }
        if (options && a[0] == '-' && a[1] == '-') {
            bool matched = false;
            int rc = parse_valued(o, argc, argv, &i, &matched);
            if (rc == EXIT_OK && !matched) {
                rc = parse_flag(o, a);
            }
            if (rc != EXIT_OK) {
                return rc;
            }
            continue;
        }
        if (o->command == NULL) {
            o->command = a;
        } else if (o->nargs < CLI_ARGS_MAX) {
            o->args[o->nargs++] = a;
        } else {
            return usage_error("too many arguments", a);
        }
    }
    return o->command == NULL ? usage_error("no command", NULL) : EXIT_OK;
}

/* ------------------------------------------------------------------ printing */

static void print_escaped(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\') {
            fputs("\\\\", f);
        } else if (p[i] >= 0x20 && p[i] < 0x7f) {
            fputc(p[i], f);
        } else {
            fprintf(f, "\\x%02x", p[i]);
        }
    }
}

static void print_base64(FILE *f, const uint8_t *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        v |= i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0;
        v |= i + 2 < n ? p[i + 2] : 0;
        fputc(t[(v >> 18) & 63], f);
        fputc(t[(v >> 12) & 63], f);
        fputc(i + 1 < n ? t[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? t[v & 63] : '=', f);
    }
    fputc('"', f);
}

/* A JSON string of text (addresses, versions): escapes quotes, backslashes, controls. */
static void print_json_str(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

static const char kv_table_header[] =
    "| KEY | VALUE | CREATE_REVISION | MOD_REVISION | VERSION | LEASE |\n";

/* One key-value in the chosen format; first says whether a JSON comma is needed. */
static void print_kv(const struct cli *o, const struct tessera_kv *kv, bool first)
{
    FILE *f = stdout;
    if (o->output == OUT_JSON) {
        fputs(first ? "{\"key\":" : ",{\"key\":", f);
        print_base64(f, kv->key, kv->key_len);
        if (kv->value != NULL) {
            fputs(",\"value\":", f);
            print_base64(f, kv->value, kv->value_len);
        }
        fprintf(f,
                ",\"create_revision\":%" PRIu64 ",\"mod_revision\":%" PRIu64 ",\"version\":%" PRIu64
                ",\"lease\":%" PRIu64 "}",
                kv->create_revision, kv->mod_revision, kv->version, kv->lease);
        return;
    }
    if (o->output == OUT_TABLE) {
        fputs("| ", f);
        print_escaped(f, kv->key, kv->key_len);
        fputs(" | ", f);
        print_escaped(f, kv->value, kv->value != NULL ? kv->value_len : 0);
        fprintf(f, " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " |\n",
                kv->create_revision, kv->mod_revision, kv->version, kv->lease);
        return;
    }
    print_escaped(f, kv->key, kv->key_len);
    fputc('\n', f);
    if (kv->value != NULL) {
        print_escaped(f, kv->value, kv->value_len);
        fputc('\n', f);
    }
}

/* ------------------------------------------------------------------ requests */

/* One request's outcome, filled by its callback. */
struct wait {
    const struct cli *o;
    bool done;
    int status;
    char message[256];
    bool found;
    int (*print)(const struct cli *o, const struct tessera_response *r);
    int print_rc;
};

static void wait_cb(void *data, int status, const struct tessera_response *r)
{
    struct wait *w = data;
    w->done = true;
    w->status = status;
    if (r != NULL && r->message != NULL) {
        snprintf(w->message, sizeof(w->message), "%s", r->message);
    }
    if (status == 0 && r != NULL && w->print != NULL) {
        w->print_rc = w->print(w->o, r);
    }
}

static int fail(const char *command, int rc, const char *message)
{
    fprintf(stderr, "tessera: %s: %s%s%s\n", command, tessera_strerror(rc),
            message != NULL && message[0] != '\0' ? ": " : "", message != NULL ? message : "");
    return rc == TESSERA_EINVAL || rc == TESSERA_ETOOBIG ? EXIT_USAGE : EXIT_FAIL;
}

/* Waits for the request submitted with result rc; prints the error if any. */
static int finish(struct cli *o, struct wait *w, int rc)
{
    if (rc != 0) {
        return fail(o->command, rc, NULL);
    }
    while (!w->done) {
        (void)tessera_client_run(o->client, -1); /* the request's deadline ends it */
    }
    if (w->status != 0) {
        fprintf(stderr, "tessera: %s: %s%s%s\n", o->command, tessera_strerror(w->status),
                w->message[0] != '\0' ? ": " : "", w->message);
        return EXIT_FAIL;
    }
    return w->print_rc;
}

static int print_put(const struct cli *o, const struct tessera_response *r)
{
    if (o->output == OUT_JSON) {
        printf("{\"revision\":%" PRIu64 ",\"prev_kv\":", r->revision);
        if (r->u.put.has_prev) {
            print_kv(o, &r->u.put.prev, true);
        } else {
            fputs("null", stdout);
        }
        puts("}");
        return EXIT_OK;
    }
    puts("OK");
    if (r->u.put.has_prev) {
        fputs(o->output == OUT_TABLE ? kv_table_header : "", stdout);
        print_kv(o, &r->u.put.prev, true);
    }
    return EXIT_OK;
}

static int cmd_put(struct cli *o)
{
    if (o->nargs != 2 || o->keys_only || o->count_only || o->prefix || o->limit != 0) {
        return usage_error("usage", "put KEY VALUE [--prev-kv] [--lease ID]");
    }
    struct wait w = {.o = o, .print = print_put};
    const char *k = o->args[0];
    const char *v = o->args[1];
    uint32_t flags = o->prev_kv ? TESSERA_PREV_KV : 0;
    return finish(
        o, &w,
        tessera_put_async(o->client, k, strlen(k), v, strlen(v), o->lease, flags, wait_cb, &w));
}

static int print_get(const struct cli *o, const struct tessera_response *r)
{
    if (!r->u.get.found) {
        if (o->output == OUT_JSON) {
            printf("{\"revision\":%" PRIu64 ",\"kvs\":[],\"count\":0}\n", r->revision);
        }
        return EXIT_NOTFOUND;
    }
    if (o->output == OUT_JSON) {
        printf("{\"revision\":%" PRIu64 ",\"kvs\":[", r->revision);
        print_kv(o, &r->u.get.kv, true);
        puts("],\"count\":1}");
        return EXIT_OK;
    }
    fputs(o->output == OUT_TABLE ? kv_table_header : "", stdout);
    print_kv(o, &r->u.get.kv, true);
    return EXIT_OK;
}

static int cmd_get(struct cli *o)
{
    if (o->nargs != 1 || o->prev_kv || o->keys_only || o->count_only || o->prefix) {
        return usage_error("usage", "get KEY");
    }
    struct wait w = {.o = o, .print = print_get};
    const char *k = o->args[0];
    int rc = finish(o, &w, tessera_get_async(o->client, k, strlen(k), o->consistency, wait_cb, &w));
    if (rc == EXIT_NOTFOUND && o->output != OUT_JSON) {
        fprintf(stderr, "tessera: get: key not found\n");
    }
    return rc;
}

static int print_del(const struct cli *o, const struct tessera_response *r)
{
    size_t n = tessera_response_kvs(r);
    struct tessera_kv kv;
    if (o->output == OUT_JSON) {
        printf("{\"revision\":%" PRIu64 ",\"deleted\":%" PRIu64 ",\"prev_kvs\":[", r->revision,
               r->u.del.deleted);
        for (size_t i = 0; i < n && tessera_response_kv_at(r, i, &kv) == 0; i++) {
            print_kv(o, &kv, i == 0);
        }
        puts("]}");
        return EXIT_OK;
    }
    printf("%" PRIu64 "\n", r->u.del.deleted);
    fputs(o->output == OUT_TABLE && n > 0 ? kv_table_header : "", stdout);
    for (size_t i = 0; i < n && tessera_response_kv_at(r, i, &kv) == 0; i++) {
        print_kv(o, &kv, i == 0);
    }
    return EXIT_OK;
}

static int cmd_del(struct cli *o)
{
    if (o->nargs < 1 || o->nargs > 2 || o->keys_only || o->count_only || o->prefix) {
        return usage_error("usage", "del KEY [RANGE_END] [--prev-kv]");
    }
    struct wait w = {.o = o, .print = print_del};
    const char *k = o->args[0];
    const char *e = o->nargs == 2 ? o->args[1] : NULL;
    return finish(o, &w,
                  tessera_delete_async(o->client, k, strlen(k), e, e != NULL ? strlen(e) : 0,
                                       o->prev_kv ? TESSERA_PREV_KV : 0, wait_cb, &w));
}

/* ------------------------------------------------------------------ range */

struct range_out {
    const struct cli *o;
    uint64_t rows;
};

static int range_row(void *data, const struct tessera_kv *kv)
{
    struct range_out *ro = data;
    if (ro->o->output == OUT_TABLE && ro->rows == 0) {
        fputs(kv_table_header, stdout);
    }
    print_kv(ro->o, kv, ro->rows == 0);
    ro->rows++;
    return 0;
}

/* The end of the prefix range: the key with its last byte below 0xff incremented and
 * what follows dropped; "\0" (every key) when there is none. */
static size_t prefix_end(const char *key, uint8_t *end)
{
    size_t n = strlen(key);
    memcpy(end, key, n);
    while (n > 0 && end[n - 1] == 0xff) {
        n--;
    }
    if (n == 0) {
        end[0] = 0;
        return 1;
    }
    end[n - 1]++;
    return n;
}

static int cmd_range(struct cli *o)
{
    if (o->nargs < 1 || o->nargs > 2 || (o->prefix && o->nargs == 2) || o->prev_kv) {
        return usage_error("usage", "range KEY [RANGE_END] [--limit N] [--keys-only] "
                                    "[--count-only] [--prefix]");
    }
    static uint8_t end[TESSERA_KEY_BYTES_MAX + 1];
    struct tessera_range_opts r = {.key = o->args[0],
                                   .key_len = strlen(o->args[0]),
                                   .limit = o->limit,
                                   .consistency = o->consistency};
    if (o->nargs == 2) {
        r.range_end = o->args[1];
        r.range_end_len = strlen(o->args[1]);
    } else if (o->prefix && r.key_len <= TESSERA_KEY_BYTES_MAX) {
        r.range_end = end;
        r.range_end_len = prefix_end(o->args[0], end);
    }
    r.flags = (o->keys_only ? TESSERA_KEYS_ONLY : 0) | (o->count_only ? TESSERA_COUNT_ONLY : 0);
    struct range_out ro = {.o = o};
    uint64_t count = 0;
    if (o->output == OUT_JSON) {
        fputs("{\"kvs\":[", stdout);
    }
    int rc = tessera_range(o->client, &r, range_row, &ro, &count, o->timeout_ms);
    if (o->output == OUT_JSON) {
        printf("],\"count\":%" PRIu64 "}\n", count);
    } else if (o->count_only) {
        printf("%" PRIu64 "\n", count);
    }
    return rc != 0 ? fail("range", rc, NULL) : EXIT_OK;
}

/* ------------------------------------------------------------------ status, members */

static int print_status(const struct cli *o, const struct tessera_response *r, const char *ep,
                        bool first)
{
    const char *v = r->u.status.version != NULL ? r->u.status.version : "";
    if (o->output == OUT_JSON) {
        printf("%s{\"endpoint\":", first ? "" : ",");
        print_json_str(stdout, ep);
        printf(",\"node_id\":%" PRIu64 ",\"cluster_id\":%" PRIu64 ",\"version\":",
               r->u.status.node_id, r->u.status.cluster_id);
        print_json_str(stdout, v);
        printf(",\"shards\":%u,\"replicas\":%u,\"leaders\":%u,\"db_size_bytes\":%" PRIu64
               ",\"wal_size_bytes\":%" PRIu64 ",\"uptime_ms\":%" PRIu64 ",\"revision\":%" PRIu64
               "}",
               r->u.status.shards, r->u.status.replicas, r->u.status.leaders,
               r->u.status.db_size_bytes, r->u.status.wal_size_bytes, r->u.status.uptime_ms,
               r->revision);
        return EXIT_OK;
    }
    const char *fmt = o->output == OUT_TABLE
                          ? "| %s | %" PRIu64 " | %" PRIu64 " | %s | %u | %u | %u | %" PRIu64
                            " | %" PRIu64 " | %" PRIu64 " |\n"
                          : "%s, node %" PRIu64 ", cluster %" PRIu64 ", version %s, shards %u, "
                            "replicas %u, leaders %u, db %" PRIu64 " B, wal %" PRIu64
                            " B, uptime %" PRIu64 " ms\n";
    printf(fmt, ep, r->u.status.node_id, r->u.status.cluster_id, v, r->u.status.shards,
           r->u.status.replicas, r->u.status.leaders, r->u.status.db_size_bytes,
           r->u.status.wal_size_bytes, r->u.status.uptime_ms);
    return EXIT_OK;
}

struct status_wait {
    struct wait w;
    const char *endpoint;
    bool first;
};

static void status_cb(void *data, int status, const struct tessera_response *r)
{
    struct status_wait *sw = data;
    wait_cb(&sw->w, status, r);
    if (status == 0 && r != NULL) {
        (void)print_status(sw->w.o, r, sw->endpoint, sw->first);
    }
}

static int cmd_status(struct cli *o)
{
    if (o->nargs != 0) {
        return usage_error("usage", "status");
    }
    char list[4096];
    snprintf(list, sizeof(list), "%s", o->endpoints);
    if (o->output == OUT_JSON) {
        fputs("[", stdout);
    } else if (o->output == OUT_TABLE) {
        puts("| ENDPOINT | NODE_ID | CLUSTER_ID | VERSION | SHARDS | REPLICAS | LEADERS | "
             "DB_SIZE_BYTES | WAL_SIZE_BYTES | UPTIME_MS |");
    }
    int worst = EXIT_OK;
    char *save = NULL;
    int e = 0;
    for (char *ep = strtok_r(list, ",", &save); ep != NULL; ep = strtok_r(NULL, ",", &save), e++) {
        struct status_wait sw = {.w = {.o = o}, .endpoint = ep, .first = e == 0};
        int rc = finish(o, &sw.w, tessera_status_async(o->client, e, status_cb, &sw));
        worst = rc != EXIT_OK ? rc : worst;
    }
    if (o->output == OUT_JSON) {
        puts("]");
    }
    return worst;
}

static const char *state_name(enum tessera_node_state s)
{
    static const char *names[] = {"up", "suspect", "down", "joining", "decommissioning"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static int print_members(const struct cli *o, const struct tessera_response *r)
{
    struct tessera_member m;
    fputs(o->output == OUT_JSON    ? "{\"members\":["
          : o->output == OUT_TABLE ? "| NODE_ID | STATE | ADDRESS | SHARDS | REPLICAS | LEADERS | "
                                     "CAPACITY_BYTES | USED_BYTES |\n"
                                   : "",
          stdout);
    for (size_t i = 0; tessera_response_member_at(r, i, &m) == 0; i++) {
        const char *a = m.address != NULL ? m.address : "";
        if (o->output == OUT_JSON) {
            printf("%s{\"node_id\":%" PRIu64 ",\"state\":\"%s\",\"address\":", i > 0 ? "," : "",
                   m.node_id, state_name(m.state));
            print_json_str(stdout, a);
            printf(",\"shards\":%u,\"replicas\":%u,\"leaders\":%u,\"capacity_bytes\":%" PRIu64
                   ",\"used_bytes\":%" PRIu64 "}",
                   m.shards, m.replicas, m.leaders, m.capacity_bytes, m.used_bytes);
            continue;
        }
        if (o->output == OUT_TABLE) {
            printf("| %" PRIu64 " | %s | %s | %u | %u | %u | %" PRIu64 " | %" PRIu64 " |\n",
                   m.node_id, state_name(m.state), a, m.shards, m.replicas, m.leaders,
                   m.capacity_bytes, m.used_bytes);
            continue;
        }
        /* Plain: what the answer reports (a node may leave the gauges out: zero). */
        printf("%" PRIu64 ", %s, %s, shards %u", m.node_id, state_name(m.state), a, m.shards);
        if (m.replicas != 0 || m.leaders != 0) {
            printf(", replicas %u, leaders %u", m.replicas, m.leaders);
        }
        if (m.capacity_bytes != 0 || m.used_bytes != 0) {
            printf(", capacity %" PRIu64 " B, used %" PRIu64 " B", m.capacity_bytes, m.used_bytes);
        }
        putchar('\n');
    }
    fputs(o->output == OUT_JSON ? "]}\n" : "", stdout);
    return EXIT_OK;
}

static int cmd_members(struct cli *o)
{
    if (o->nargs != 0) {
        return usage_error("usage", "members");
    }
    struct wait w = {.o = o, .print = print_members};
    return finish(o, &w, tessera_members_async(o->client, o->consistency, wait_cb, &w));
}

static int print_ranges(const struct cli *o, const struct tessera_response *r)
{
    struct tessera_range_desc d;
    fputs(o->output == OUT_JSON    ? "{\"ranges\":["
          : o->output == OUT_TABLE ? "| RANGE_ID | START_KEY | END_KEY | GENERATION | "
                                     "CONF_VERSION | REPLICAS |\n"
                                   : "",
          stdout);
    for (size_t i = 0; tessera_response_range_at(r, i, &d) == 0; i++) {
        if (o->output == OUT_JSON) {
            printf("%s{\"range_id\":%" PRIu64 ",\"start_key\":\"", i > 0 ? "," : "", d.range_id);
            print_base64(stdout, d.start_key, d.start_key_len);
            fputs("\",\"end_key\":\"", stdout);
            print_base64(stdout, d.end_key, d.end_key_len);
            printf("\",\"generation\":%" PRIu64 ",\"conf_version\":%" PRIu64 ",\"replicas\":[",
                   d.generation, d.conf_version);
            for (size_t k = 0; k < d.replicas; k++) {
                printf("%s{\"node_id\":%" PRIu64 ",\"shard\":%u}", k > 0 ? "," : "",
                       d.replica_node[k], d.replica_shard[k]);
            }
            fputs("]}", stdout);
            continue;
        }
        bool table = o->output == OUT_TABLE;
        printf(table ? "| %" PRIu64 " | " : "range %" PRIu64 ", [", d.range_id);
        print_escaped(stdout, d.start_key, d.start_key_len);
        fputs(table ? " | " : ", ", stdout);
        if (d.end_key_len == 0) {
            fputs(table ? "" : "end", stdout);
        } else {
            print_escaped(stdout, d.end_key, d.end_key_len);
        }
        printf(table ? " | %" PRIu64 " | %" PRIu64 " | "
                     : "), epoch %" PRIu64 ".%" PRIu64 ", replicas ",
               d.generation, d.conf_version);
        for (size_t k = 0; k < d.replicas; k++) {
            printf("%s%" PRIu64 "/%u", k > 0 ? "," : "", d.replica_node[k], d.replica_shard[k]);
        }
        fputs(table ? " |\n" : "\n", stdout);
    }
    fputs(o->output == OUT_JSON ? "]}\n" : "", stdout);
    return EXIT_OK;
}

static int cmd_ranges(struct cli *o)
{
    if (o->nargs > 1 || o->keys_only || o->count_only || o->prefix || o->limit > UINT32_MAX) {
        return usage_error("usage", "ranges [KEY] [--limit N]");
    }
    const char *key = o->nargs == 1 ? o->args[0] : "";
    struct wait w = {.o = o, .print = print_ranges};
    return finish(
        o, &w,
        tessera_route_async(o->client, key, strlen(key), 0, (uint32_t)o->limit, wait_cb, &w));
}

/* ------------------------------------------------------------------ txn */

/* The rows of a range or delete answer (nested or not). */
static void print_rows(const struct cli *o, const struct tessera_response *r)
{
    struct tessera_kv kv;
    size_t n = tessera_response_kvs(r);
    fputs(o->output == OUT_TABLE && n > 0 ? kv_table_header : "", stdout);
    for (size_t i = 0; i < n && tessera_response_kv_at(r, i, &kv) == 0; i++) {
        print_kv(o, &kv, i == 0);
    }
}

static void print_txn_result_json(const struct cli *o, const struct tessera_response *s)
{
    static const char *names[] = {[TESSERA_OP_PUT] = "put",
                                  [TESSERA_OP_GET] = "get",
                                  [TESSERA_OP_DELETE] = "del",
                                  [TESSERA_OP_RANGE] = "range"};
    printf("{\"op\":\"%s\"", names[s->op]);
    if (s->op == TESSERA_OP_GET) {
        fputs(",\"kvs\":[", stdout);
        if (s->u.get.found) {
            print_kv(o, &s->u.get.kv, true);
        }
        fputs("]", stdout);
    } else if (s->op == TESSERA_OP_DELETE || s->op == TESSERA_OP_RANGE) {
        if (s->op == TESSERA_OP_DELETE) {
            printf(",\"deleted\":%" PRIu64 ",\"prev_kvs\":[", s->u.del.deleted);
        } else {
            printf(",\"count\":%" PRIu64 ",\"more\":%s,\"kvs\":[", s->u.range.count,
                   s->u.range.more ? "true" : "false");
        }
        print_rows(o, s);
        fputs("]", stdout);
    }
    fputs("}", stdout);
}

static int print_txn(const struct cli *o, const struct tessera_response *r)
{
    struct tessera_response s;
    if (o->output == OUT_JSON) {
        printf("{\"succeeded\":%s,\"revision\":%" PRIu64 ",\"results\":[",
               r->u.txn.succeeded ? "true" : "false", r->revision);
    } else {
        puts(r->u.txn.succeeded ? "SUCCESS" : "FAILURE");
    }
    for (size_t i = 0; i < r->u.txn.results; i++) {
        if (tessera_response_txn_result(r, i, &s) != 0) {
            fprintf(stderr, "tessera: txn: result %zu is malformed\n", i);
            return EXIT_FAIL;
        }
        if (o->output == OUT_JSON) {
            fputs(i > 0 ? "," : "", stdout);
            print_txn_result_json(o, &s);
            continue;
        }
        fputs("\n", stdout);
        if (s.op == TESSERA_OP_PUT) {
            puts("OK");
        } else if (s.op == TESSERA_OP_GET && s.u.get.found) {
            fputs(o->output == OUT_TABLE ? kv_table_header : "", stdout);
            print_kv(o, &s.u.get.kv, true);
        } else if (s.op == TESSERA_OP_DELETE) {
            printf("%" PRIu64 "\n", s.u.del.deleted);
        } else if (s.op == TESSERA_OP_RANGE) {
            print_rows(o, &s);
        }
    }
    fputs(o->output == OUT_JSON ? "]}\n" : "", stdout);
    return EXIT_OK;
}

static int cli_txn(struct cli *o)
{
    if (o->nargs != 0) {
        return usage_error("usage", "txn < FILE");
    }
    static struct txn_input t;
    char err[128];
    if (txn_input_read(stdin, &t, err, sizeof(err)) != 0) {
        txn_input_free(&t);
        return usage_error("txn", err);
    }
    struct wait w = {.o = o, .print = print_txn};
    int rc = finish(o, &w,
                    tessera_txn_async(o->client, t.cmp, t.ncmp, t.ops[0], t.nops[0], t.ops[1],
                                      t.nops[1], wait_cb, &w));
    txn_input_free(&t);
    return rc;
}

static int run_command(struct cli *o)
{
    static const struct {
        const char *name;
        int (*fn)(struct cli *o);
    } cmds[] = {{"put", cmd_put},         {"get", cmd_get},      {"del", cmd_del},
                {"range", cmd_range},     {"txn", cli_txn},      {"status", cmd_status},
                {"members", cmd_members}, {"ranges", cmd_ranges}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(o->command, cmds[i].name) == 0) {
            return cmds[i].fn(o);
        }
    }
    return usage_error("unknown command", o->command);
}

int main(int argc, char **argv)
{
    struct cli o = {.timeout_ms = TESSERA_REQUEST_TIMEOUT_MS_DEFAULT};
    const char *env = getenv("TESSERA_ENDPOINTS");
    o.endpoints = env != NULL && env[0] != '\0' ? env : CLI_ENDPOINT_DEFAULT;
    int rc = parse_args(&o, argc, argv);
    if (rc < 0) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (rc != EXIT_OK) {
        return rc;
    }
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = o.endpoints;
    cfg.request_timeout_ms = o.timeout_ms;
    rc = tessera_client_new(&cfg, &o.client);
    if (rc != 0) {
        fprintf(stderr, "tessera: --endpoints %s: %s\n", o.endpoints, tessera_strerror(rc));
        return EXIT_USAGE;
    }
    rc = run_command(&o);
    tessera_client_free(o.client);
    return rc;
}
