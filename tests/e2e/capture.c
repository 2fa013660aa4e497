/*
 * tests/e2e/capture: see capture.h.
 */
#include "tests/e2e/capture.h"
#include "tests/e2e/cluster.h"

#include <stdio.h>
#include <string.h>

static void copy_kv(struct e2e_kv *d, const struct tessera_kv *s)
{
    memset(d, 0, sizeof *d);
    d->key_len = s->key_len;
    memcpy(d->key, s->key, s->key_len < E2E_CAP_BYTES ? s->key_len : E2E_CAP_BYTES);
    d->has_value = s->value != NULL;
    d->value_len = s->value_len;
    if (s->value != NULL) {
        memcpy(d->value, s->value, s->value_len < E2E_CAP_BYTES ? s->value_len : E2E_CAP_BYTES);
    }
    d->create_revision = s->create_revision;
    d->mod_revision = s->mod_revision;
    d->version = s->version;
}

static void copy_rows(struct e2e_capture *cap, const struct tessera_response *r)
{
    cap->rows_n = tessera_response_kvs(r);
    for (size_t i = 0; i < cap->rows_n && i < E2E_CAP_ROWS; i++) {
        struct tessera_kv kv;
        if (tessera_response_kv_at(r, i, &kv) == 0) {
            copy_kv(&cap->rows[i], &kv);
        }
    }
}

static void copy_txn(struct e2e_capture *cap, const struct tessera_response *r)
{
    cap->flag = r->u.txn.succeeded != 0;
    cap->count = r->u.txn.results;
    for (size_t i = 0; i < r->u.txn.results && i < E2E_CAP_ROWS; i++) {
        struct tessera_response s;
        if (tessera_response_txn_result(r, i, &s) != 0) {
            cap->txn_op[i] = TESSERA_OP_NONE;
            continue;
        }
        cap->txn_op[i] = s.op;
        if (s.op == TESSERA_OP_GET) {
            cap->txn_found[i] = s.u.get.found != 0;
            if (s.u.get.found) {
                copy_kv(&cap->txn_kv[i], &s.u.get.kv);
            }
        }
    }
}

void e2e_capture_cb(void *data, int status, const struct tessera_response *r)
{
    struct e2e_capture *cap = data;
    cap->done = true;
    cap->status = status;
    cap->has_resp = r != NULL;
    if (r == NULL) {
        return;
    }
    if (r->message != NULL) {
        snprintf(cap->message, sizeof cap->message, "%s", r->message);
    }
    cap->revision = r->revision;
    cap->op = r->op;
    if (status != 0) {
        return;
    }
    switch (r->op) {
    case TESSERA_OP_PUT:
        cap->flag = r->u.put.has_prev != 0;
        if (r->u.put.has_prev) {
            copy_kv(&cap->kv, &r->u.put.prev);
        }
        break;
    case TESSERA_OP_GET:
        cap->flag = r->u.get.found != 0;
        if (r->u.get.found) {
            copy_kv(&cap->kv, &r->u.get.kv);
        }
        break;
    case TESSERA_OP_DELETE:
        cap->count = r->u.del.deleted;
        copy_rows(cap, r);
        break;
    case TESSERA_OP_RANGE:
        cap->flag = r->u.range.more != 0;
        cap->count = r->u.range.count;
        cap->has_next_key = r->u.range.next_key != NULL;
        cap->next_key_len = r->u.range.next_key_len;
        if (r->u.range.next_key != NULL) {
            memcpy(cap->next_key, r->u.range.next_key,
                   cap->next_key_len < E2E_CAP_BYTES ? cap->next_key_len : E2E_CAP_BYTES);
        }
        copy_rows(cap, r);
        break;
    case TESSERA_OP_TXN:
        copy_txn(cap, r);
        break;
    case TESSERA_OP_STATUS:
        cap->node_id = r->u.status.node_id;
        cap->cluster_id = r->u.status.cluster_id;
        cap->shards = r->u.status.shards;
        cap->replicas = r->u.status.replicas;
        cap->leaders = r->u.status.leaders;
        cap->uptime_ms = r->u.status.uptime_ms;
        break;
    default:
        break;
    }
}

int e2e_capture_wait(struct tessera_client *c, struct e2e_capture *cap, int submit_rc,
                     uint32_t timeout_ms)
{
    if (submit_rc != 0) {
        return submit_rc;
    }
    uint64_t deadline = e2e_now_ms() + timeout_ms;
    while (!cap->done && e2e_now_ms() < deadline) {
        (void)tessera_client_run(c, 100);
    }
    return cap->done ? cap->status : TESSERA_ETIMEOUT;
}

bool e2e_kv_value_is(const struct e2e_kv *kv, const char *value)
{
    size_t n = strlen(value);
    return kv->has_value && kv->value_len == n && memcmp(kv->value, value, n) == 0;
}
