/*
 * tests/e2e/capture: one asynchronous request's answer, copied out of the callback's
 * views (tessera.h: a response is valid only during its callback), for tests to assert
 * on afterwards. Bounded: at most E2E_CAP_ROWS rows and E2E_CAP_BYTES bytes per value are
 * kept (the counts are kept whole).
 */
#ifndef TS_TESTS_E2E_CAPTURE_H
#define TS_TESTS_E2E_CAPTURE_H

#include "net/client/tessera.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define E2E_CAP_ROWS 64u
#define E2E_CAP_BYTES 64u

struct e2e_kv {
    uint8_t key[E2E_CAP_BYTES];
    size_t key_len; /* the full length, even when longer than kept */
    uint8_t value[E2E_CAP_BYTES];
    size_t value_len;
    bool has_value; /* false with TESSERA_KEYS_ONLY */
    uint64_t create_revision;
    uint64_t mod_revision;
    uint64_t version;
};

struct e2e_capture {
    bool done;
    int status;
    bool has_resp;
    char message[256];
    uint64_t revision;
    enum tessera_op op;
    bool flag;        /* put: has_prev; get: found; range: more; txn: succeeded */
    uint64_t count;   /* del: deleted; range: count; txn: results */
    struct e2e_kv kv; /* put: prev; get: kv */
    uint8_t next_key[E2E_CAP_BYTES];
    size_t next_key_len;
    bool has_next_key;
    size_t rows_n; /* range rows or delete prev kvs, all of them */
    struct e2e_kv rows[E2E_CAP_ROWS];
    /* txn: each op result's kind, get's found and value (first E2E_CAP_ROWS) */
    enum tessera_op txn_op[E2E_CAP_ROWS];
    bool txn_found[E2E_CAP_ROWS];
    struct e2e_kv txn_kv[E2E_CAP_ROWS];
    uint64_t uptime_ms;
    uint64_t node_id, cluster_id;
    uint32_t shards, replicas, leaders;
};

/* The callback: data is a struct e2e_capture (zeroed by the caller before submitting). */
void e2e_capture_cb(void *data, int status, const struct tessera_response *resp);

/* Runs the client until cap->done, bounded by timeout_ms. Returns cap->status, or
 * TESSERA_ETIMEOUT when the callback did not run in time, or submit_rc when non-zero. */
int e2e_capture_wait(struct tessera_client *c, struct e2e_capture *cap, int submit_rc,
                     uint32_t timeout_ms);

bool e2e_kv_value_is(const struct e2e_kv *kv, const char *value);

#endif
