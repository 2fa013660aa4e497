/*
 * opts: tessera-bench's command line, parsed into a struct tb_opts with every limit
 * checked (STYLE R19), so that the drivers never see an unbounded run.
 *
 *   tessera-bench put|get|mixed|txn-cas
 *       [--target tessera://host:port,... | zk://host:port,...] [--endpoints host:port,...]
 *       [--clients N] [--conns N] [--inflight N] [--threads N]
 *       (--total N | --duration S)   (both may be given: the first reached ends the run)
 *       [--key-size B] [--val-size B] [--keyspace N] [--key-dist uniform|zipfian|sequential]
 *       [--read-ratio F] [--rate OPS/S] [--consistency linearizable|serializable]
 *       [--timeout-ms MS] [--seed S] [--json] [--prefill]
 *
 * Pure: no I/O; errors are reported as a message in the caller's buffer.
 */
#ifndef TB_OPTS_H
#define TB_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of the command line. Why each: */
#define TB_HOSTS_BYTES_MAX 1024u         /* a "host:port,..." list of up to 64 endpoints */
#define TB_CLIENTS_MAX 100000u           /* logical clients; each holds --inflight slots */
#define TB_CONNS_MAX 1024u               /* connections (Tessera) or sessions (ZooKeeper) */
#define TB_INFLIGHT_MAX 1024u            /* per logical client */
#define TB_SLOTS_MAX 1048576u            /* clients * inflight: the operation slots allocated */
#define TB_THREADS_MAX 256u              /* worker threads of the Tessera driver */
#define TB_KEY_BYTES_MAX 1024u           /* = the server's TS_KEY_BYTES_MAX */
#define TB_VAL_BYTES_MAX (1024u * 1024u) /* = the server's value limit and ZK's jute.maxbuffer */
#define TB_KEYSPACE_MAX 100000000ull     /* the zipfian zeta sum is O(keyspace) at startup */
#define TB_DURATION_S_MAX 604800.0       /* one week */
#define TB_TIMEOUT_MS_MAX 600000u        /* a request's deadline, ten minutes */

enum tb_workload { TB_WL_PUT = 0, TB_WL_GET = 1, TB_WL_MIXED = 2, TB_WL_TXN_CAS = 3 };
enum tb_target { TB_TARGET_TESSERA = 0, TB_TARGET_ZK = 1 };
enum tb_key_dist { TB_DIST_UNIFORM = 0, TB_DIST_ZIPFIAN = 1, TB_DIST_SEQUENTIAL = 2 };
enum tb_key_format { TB_KEYS_DECIMAL = 0, TB_KEYS_VARINT = 1 }; /* keys.h */
/* DEFAULT resolves per target: Tessera's default read is linearizable; ZooKeeper's plain
 * getData is not, so --consistency linearizable adds a sync before each get there. */
enum tb_consistency { TB_CONS_DEFAULT = 0, TB_CONS_LINEARIZABLE = 1, TB_CONS_SERIALIZABLE = 2 };

struct tb_opts {
    enum tb_workload workload;
    enum tb_target target;
    char hosts[TB_HOSTS_BYTES_MAX]; /* "host:port,host:port", scheme stripped */
    uint32_t clients;
    uint32_t conns;
    uint32_t inflight;
    uint32_t threads;  /* 0: one per online CPU, at most conns (Tessera only) */
    uint64_t total;    /* 0: no count limit (then duration_s > 0) */
    double duration_s; /* 0: no time limit (then total > 0) */
    uint32_t key_size;
    uint32_t val_size;
    uint64_t keyspace;
    enum tb_key_dist key_dist;
    enum tb_key_format key_format;
    double read_ratio;               /* mixed: the fraction of gets */
    double rate;                     /* ops/s over the whole run; 0 = open throttle */
    enum tb_consistency consistency; /* never DEFAULT after a successful parse */
    uint32_t timeout_ms;
    uint64_t seed;
    bool json;
    bool prefill;
};

/* Fills o from argv (argv[0] is the program). Returns 0, or -1 with a one-line reason in
 * err (cap bytes, NUL-terminated). Borrows argv. */
int tb_opts_parse(int argc, char *const *argv, struct tb_opts *o, char *err, size_t cap);

/* The names used on the command line and in the summary. */
const char *tb_workload_name(enum tb_workload w);
const char *tb_target_name(enum tb_target t);
const char *tb_key_dist_name(enum tb_key_dist d);
const char *tb_consistency_name(enum tb_consistency c);

/* The usage text (static storage). */
const char *tb_usage(void);

#endif
