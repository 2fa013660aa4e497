/* opts: tessera-bench's command line (see opts.h). */
#include "bench/tessera-bench/opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/tessera-bench/keys.h"
#include "core/util/assert.h"

static const char *const workload_names[] = {"put", "get", "mixed", "txn-cas"};
static const char *const dist_names[] = {"uniform", "zipfian", "sequential"};
static const char *const format_names[] = {"decimal", "varint"};
static const char *const cons_names[] = {"default", "linearizable", "serializable"};

const char *tb_workload_name(enum tb_workload w)
{
    TS_ASSERT((unsigned)w < 4u);
    return workload_names[w];
}

const char *tb_target_name(enum tb_target t)
{
    TS_ASSERT((unsigned)t < 2u);
    return t == TB_TARGET_TESSERA ? "tessera" : "zookeeper";
}

const char *tb_key_dist_name(enum tb_key_dist d)
{
    TS_ASSERT((unsigned)d < 3u);
    return dist_names[d];
}

const char *tb_consistency_name(enum tb_consistency c)
{
    TS_ASSERT((unsigned)c < 3u);
    return cons_names[c];
}

const char *tb_usage(void)
{
    return "usage: tessera-bench put|get|mixed|txn-cas\n"
           "    [--target tessera://host:port,... | zk://host:port,...]\n"
           "    [--endpoints host:port,...]      (the same as --target tessera://...)\n"
           "    [--clients N] [--conns N] [--inflight N] [--threads N]\n"
           "    (--total N | --duration S)       (both: whichever comes first)\n"
           "    [--key-size B] [--val-size B] [--keyspace N]\n"
           "    [--key-dist uniform|zipfian|sequential] [--key-format decimal|varint]\n"
           "    [--read-ratio F (mixed)]\n"
           "    [--rate OPS/S (0: open throttle)] [--consistency linearizable|serializable]\n"
           "    [--timeout-ms MS] [--seed S] [--json] [--prefill]\n";
}

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* A whole decimal number in [lo, hi]. */
static int parse_u64(const char *name, const char *v, uint64_t lo, uint64_t hi, uint64_t *out,
                     char *err, size_t cap)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (v[0] == '\0' || v[0] == '-' || *end != '\0' || errno != 0 || x < lo || x > hi) {
        return fail(err, cap, "%s: '%s' is not a whole number in [%llu, %llu]", name, v,
                    (unsigned long long)lo, (unsigned long long)hi);
    }
    *out = x;
    return 0;
}

static int parse_u32(const char *name, const char *v, uint32_t lo, uint32_t hi, uint32_t *out,
                     char *err, size_t cap)
{
    uint64_t x = 0;
    if (parse_u64(name, v, lo, hi, &x, err, cap) != 0) {
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

/* A finite number in [lo, hi]. */
static int parse_double(const char *name, const char *v, double lo, double hi, double *out,
                        char *err, size_t cap)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(x) || x < lo || x > hi) {
        return fail(err, cap, "%s: '%s' is not a number in [%g, %g]", name, v, lo, hi);
    }
    *out = x;
    return 0;
}

static int parse_enum(const char *name, const char *v, const char *const *names, int n, int *out,
                      char *err, size_t cap)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return fail(err, cap, "%s: unknown value '%s'", name, v);
}

/* "scheme://hosts" or, for --endpoints, bare hosts. The list must be non-empty, without
 * spaces, and every element must hold a ':'. */
static int parse_hosts(const char *name, const char *v, struct tb_opts *o, bool have, char *err,
                       size_t cap)
{
    enum tb_target t = TB_TARGET_TESSERA;
    const char *hosts = v;
    if (strncmp(v, "tessera://", 10) == 0) {
        hosts = v + 10;
    } else if (strncmp(v, "zk://", 5) == 0) {
        t = TB_TARGET_ZK;
        hosts = v + 5;
    } else if (strcmp(name, "--target") == 0) {
        return fail(err, cap, "--target: '%s' is neither tessera://... nor zk://...", v);
    }
    size_t len = strlen(hosts);
    if (len == 0 || len >= sizeof o->hosts || strchr(hosts, ' ') != NULL) {
        return fail(err, cap, "%s: empty, too long or malformed host list '%s'", name, v);
    }
    for (const char *p = hosts; p != NULL; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        const char *comma = strchr(p, ',');
        const char *colon = strchr(p, ':');
        if (colon == NULL || (comma != NULL && colon > comma) || colon == p) {
            return fail(err, cap, "%s: '%s' needs host:port elements", name, v);
        }
    }
    if (have && (o->target != t || strcmp(o->hosts, hosts) != 0)) {
        return fail(err, cap, "%s: conflicts with an earlier --target/--endpoints", name);
    }
    o->target = t;
    memcpy(o->hosts, hosts, len + 1);
    return 0;
}

/* Sets one option from its name and value; returns 0, -1 (bad value) or 1 (unknown). */
static int set_valued(struct tb_opts *o, const char *k, const char *v, bool *have_hosts, char *err,
                      size_t cap)
{
    int e = 0, rc = 0;
    if (strcmp(k, "--target") == 0 || strcmp(k, "--endpoints") == 0) {
        rc = parse_hosts(k, v, o, *have_hosts, err, cap);
        *have_hosts = true;
    } else if (strcmp(k, "--clients") == 0) {
        rc = parse_u32(k, v, 1, TB_CLIENTS_MAX, &o->clients, err, cap);
    } else if (strcmp(k, "--conns") == 0) {
        rc = parse_u32(k, v, 1, TB_CONNS_MAX, &o->conns, err, cap);
    } else if (strcmp(k, "--inflight") == 0) {
        rc = parse_u32(k, v, 1, TB_INFLIGHT_MAX, &o->inflight, err, cap);
    } else if (strcmp(k, "--threads") == 0) {
        rc = parse_u32(k, v, 1, TB_THREADS_MAX, &o->threads, err, cap);
    } else if (strcmp(k, "--total") == 0) {
        rc = parse_u64(k, v, 1, UINT64_MAX / 2, &o->total, err, cap);
    } else if (strcmp(k, "--duration") == 0) {
        rc = parse_double(k, v, 0.001, TB_DURATION_S_MAX, &o->duration_s, err, cap);
    } else if (strcmp(k, "--key-size") == 0) {
        rc = parse_u32(k, v, 1, TB_KEY_BYTES_MAX, &o->key_size, err, cap);
    } else if (strcmp(k, "--val-size") == 0) {
        rc = parse_u32(k, v, 0, TB_VAL_BYTES_MAX, &o->val_size, err, cap);
    } else if (strcmp(k, "--keyspace") == 0) {
        rc = parse_u64(k, v, 1, TB_KEYSPACE_MAX, &o->keyspace, err, cap);
    } else if (strcmp(k, "--key-dist") == 0) {
        rc = parse_enum(k, v, dist_names, 3, &e, err, cap);
        o->key_dist = (enum tb_key_dist)e;
    } else if (strcmp(k, "--key-format") == 0) {
        rc = parse_enum(k, v, format_names, 2, &e, err, cap);
        o->key_format = (enum tb_key_format)e;
    } else if (strcmp(k, "--read-ratio") == 0) {
        rc = parse_double(k, v, 0.0, 1.0, &o->read_ratio, err, cap);
    } else if (strcmp(k, "--rate") == 0) {
        rc = parse_double(k, v, 0.0, 1e9, &o->rate, err, cap);
    } else if (strcmp(k, "--consistency") == 0) {
        rc = parse_enum(k, v, cons_names + 1, 2, &e, err, cap);
        o->consistency = (enum tb_consistency)(e + 1);
    } else if (strcmp(k, "--timeout-ms") == 0) {
        rc = parse_u32(k, v, 1, TB_TIMEOUT_MS_MAX, &o->timeout_ms, err, cap);
    } else if (strcmp(k, "--seed") == 0) {
        rc = parse_u64(k, v, 0, UINT64_MAX, &o->seed, err, cap);
    } else {
        return 1;
    }
    return rc;
}

static void set_defaults(struct tb_opts *o)
{
    memset(o, 0, sizeof *o);
    o->target = TB_TARGET_TESSERA;
    strcpy(o->hosts, "127.0.0.1:7000");
    o->clients = 1;
    o->conns = 1;
    o->inflight = 1;
    o->key_size = 16;
    o->val_size = 128;
    o->keyspace = 100000;
    o->key_dist = TB_DIST_UNIFORM;
    o->read_ratio = -1.0; /* unset */
    o->timeout_ms = 5000;
    o->seed = 1;
}

static unsigned digits(uint64_t x)
{
    unsigned n = 1;
    while (x >= 10) {
        x /= 10;
        n++;
    }
    return n;
}

/* Relations between options, checked once all are known. */
static int check(struct tb_opts *o, char *err, size_t cap)
{
    if (o->total == 0 && o->duration_s == 0.0) {
        return fail(err, cap, "one of --total or --duration is required (every run is bounded)");
    }
    if ((uint64_t)o->clients * o->inflight > TB_SLOTS_MAX) {
        return fail(err, cap, "--clients x --inflight is over %u", TB_SLOTS_MAX);
    }
    if (o->read_ratio >= 0.0 && o->workload != TB_WL_MIXED) {
        return fail(err, cap, "--read-ratio applies to the mixed workload only");
    }
    if (o->read_ratio < 0.0) {
        o->read_ratio = o->workload == TB_WL_MIXED ? 0.5 : 0.0;
    }
    if (o->key_format == TB_KEYS_VARINT && tb_varint_len(o->keyspace - 1) > o->key_size) {
        return fail(err, cap,
                    "--key-size %u cannot hold %u-byte varint key numbers (--keyspace %llu)",
                    o->key_size, tb_varint_len(o->keyspace - 1), (unsigned long long)o->keyspace);
    }
    if (o->key_format == TB_KEYS_DECIMAL && digits(o->keyspace - 1) > o->key_size) {
        return fail(err, cap, "--key-size %u cannot hold %u-digit key numbers (--keyspace %llu)",
                    o->key_size, digits(o->keyspace - 1), (unsigned long long)o->keyspace);
    }
    if (o->threads != 0 && o->target == TB_TARGET_ZK) {
        return fail(err, cap, "--threads applies to tessera:// targets (zk: one per session)");
    }
    if (o->consistency == TB_CONS_DEFAULT) {
        o->consistency =
            o->target == TB_TARGET_TESSERA ? TB_CONS_LINEARIZABLE : TB_CONS_SERIALIZABLE;
    }
    return 0;
}

int tb_opts_parse(int argc, char *const *argv, struct tb_opts *o, char *err, size_t cap)
{
    TS_ASSERT(o != NULL);
    TS_ASSERT(err != NULL && cap > 0);
    set_defaults(o);
    err[0] = '\0';
    if (argc < 2 || argv[1][0] == '-') {
        return fail(err, cap, "a workload is required first: put, get, mixed or txn-cas");
    }
    int w = 0;
    if (parse_enum("workload", argv[1], workload_names, 4, &w, err, cap) != 0) {
        return -1;
    }
    o->workload = (enum tb_workload)w;
    bool have_hosts = false;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (strcmp(k, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strcmp(k, "--prefill") == 0) {
            o->prefill = true;
            continue;
        }
        if (i + 1 >= argc) {
            return fail(err, cap, "%s: unknown option or missing value", k);
        }
        int rc = set_valued(o, k, argv[i + 1], &have_hosts, err, cap);
        if (rc > 0) {
            return fail(err, cap, "unknown option '%s'", k);
        }
        if (rc < 0) {
            return -1;
        }
        i++;
    }
    int rc = check(o, err, cap);
    TS_ASSERT(rc != 0 || o->consistency != TB_CONS_DEFAULT);
    return rc;
}
