/*
 * net/client request kinds: one encoder and one decoder each, plus the public entry
 * points. Issue 7 adds put, get, delete, ... here without touching the event core.
 */
#include "net/client/client_int.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"

#include <stdbool.h>
#include <string.h>

/* The public codes are Tessera's own (R7): passing a code through needs no table. */
_Static_assert((int)TESSERA_EPROTO == (int)TS_EPROTO, "mirrors err.h");
_Static_assert((int)TESSERA_ETOOBIG == (int)TS_ETOOBIG, "mirrors err.h");
_Static_assert((int)TESSERA_ECORRUPT == (int)TS_ECORRUPT, "mirrors err.h");
_Static_assert((int)TESSERA_ENOTLEADER == (int)TS_ENOTLEADER, "mirrors err.h");
_Static_assert((int)TESSERA_ESTALEEPOCH == (int)TS_ESTALEEPOCH, "mirrors err.h");
_Static_assert((int)TESSERA_ENORANGE == (int)TS_ENORANGE, "mirrors err.h");
_Static_assert((int)TESSERA_ENOTFOUND == (int)TS_ENOTFOUND, "mirrors err.h");
_Static_assert((int)TESSERA_EFULL == (int)TS_EFULL, "mirrors err.h");
_Static_assert((int)TESSERA_EUNAVAIL == (int)TS_EUNAVAIL, "mirrors err.h");
_Static_assert((int)TESSERA_ETIMEOUT == (int)TS_ETIMEOUT, "mirrors err.h");
_Static_assert((int)TESSERA_ECOMPACTED == (int)TS_ECOMPACTED, "mirrors err.h");
_Static_assert((int)TESSERA_ESHUTDOWN == (int)TS_ESHUTDOWN, "mirrors err.h");
_Static_assert((int)TESSERA_EINVAL == (int)TS_EINVAL, "mirrors err.h");
_Static_assert((int)TESSERA_ENOMEM == (int)TS_ENOMEM, "mirrors err.h");
_Static_assert((int)TESSERA_EIO == (int)TS_EIO, "mirrors err.h");
_Static_assert((int)TESSERA_ENOSPACE == (int)TS_ENOSPACE, "mirrors err.h");
_Static_assert(TS_ERR_END_ == TS_ENOSPACE + 1, "a new core code needs a TESSERA_ twin");

const char *tessera_strerror(int code)
{
    return ts_strerror(code);
}

int client_status_to_error(uint16_t status)
{
    switch (status) {
    case PROTO_STATUS_OK:
        return 0;
    case PROTO_STATUS_NOT_LEADER:
        return TS_ENOTLEADER;
    case PROTO_STATUS_STALE_EPOCH:
        return TS_ESTALEEPOCH;
    case PROTO_STATUS_RANGE_NOT_FOUND:
        return TS_ENORANGE;
    case PROTO_STATUS_KEY_TOO_LARGE:
    case PROTO_STATUS_VALUE_TOO_LARGE:
    case PROTO_STATUS_FRAME_TOO_LARGE:
        return TS_ETOOBIG;
    case PROTO_STATUS_TIMEOUT:
        return TS_ETIMEOUT;
    case PROTO_STATUS_UNAVAILABLE:
        return TS_EUNAVAIL;
    case PROTO_STATUS_COMPACTED:
        return TS_ECOMPACTED;
    case PROTO_STATUS_LEASE_NOT_FOUND:
    case PROTO_STATUS_NOT_FOUND:
        return TS_ENOTFOUND;
    case PROTO_STATUS_TOO_MANY_REQUESTS:
        return TS_EFULL;
    case PROTO_STATUS_NO_SPACE:
        return TS_ENOSPACE;
    case PROTO_STATUS_INTERNAL:
        return TS_EIO;
    case PROTO_STATUS_INVALID_ARGUMENT:
    case PROTO_STATUS_UNSUPPORTED:
    case PROTO_STATUS_CLUSTER_MISMATCH:
        return TS_EINVAL;
    default: /* MalformedFrame, or a status newer than this library */
        return TS_EPROTO;
    }
}

int client_decode_op(enum tessera_op op, struct proto_response resp, struct tessera_response *out)
{
    TS_ASSERT(resp.tab != NULL);
    TS_ASSERT(out != NULL);
    switch (op) {
    case TESSERA_OP_PING: {
        struct proto_ping_response p = proto_response_op_as_ping_response(resp);
        if (p.tab == NULL) {
            return TS_EPROTO;
        }
        struct proto_bytes b = proto_ping_response_payload(p);
        out->op = TESSERA_OP_PING;
        out->u.ping.payload = b.data;
        out->u.ping.len = b.len;
        return 0;
    }
    case TESSERA_OP_NONE:
        break;
    }
    TS_ASSERT(!"unknown request kind");
    return TS_EPROTO;
}

/* ------------------------------------------------------------------ ping */

struct ping_args {
    const void *payload;
    uint32_t len;
};

static int encode_ping(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    const struct ping_args *a = args;
    proto_ref payload = proto_create_bytes(b, a->payload, a->len);
    proto_ping_request_begin(b);
    proto_ping_request_add_payload(b, payload);
    out->op = proto_ping_request_end(b);
    out->op_type = PROTO_REQUEST_OP_PING_REQUEST;
    return b->err;
}

static int ping_submit(struct tessera_client *c, const void *payload, size_t len,
                       uint32_t timeout_ms, tessera_response_cb cb, void *data)
{
    if (c == NULL || (payload == NULL && len > 0)) {
        return TS_EINVAL;
    }
    if (len > TS_FRAME_BYTES_MAX) {
        return TS_ETOOBIG;
    }
    struct ping_args a = {.payload = payload, .len = (uint32_t)len};
    struct client_request req = {
        .op = TESSERA_OP_PING, .encode = encode_ping, .args = &a, .timeout_ms = timeout_ms};
    return client_submit(c, &req, cb, data);
}

int tessera_ping_async(struct tessera_client *c, const void *payload, size_t len,
                       tessera_response_cb cb, void *data)
{
    return ping_submit(c, payload, len, 0, cb, data);
}

/* The blocking call's state; lives on its stack until the callback has run. */
struct ping_wait {
    const void *payload;
    size_t len;
    bool done;
    int status;
};

static void ping_wait_cb(void *data, int status, const struct tessera_response *resp)
{
    struct ping_wait *w = data;
    w->done = true;
    w->status = status;
    if (status == 0) {
        TS_ASSERT(resp != NULL && resp->op == TESSERA_OP_PING);
        bool same = resp->u.ping.len == w->len &&
                    (w->len == 0 || memcmp(resp->u.ping.payload, w->payload, w->len) == 0);
        w->status = same ? 0 : TS_EPROTO;
    }
}

int tessera_ping(struct tessera_client *c, const void *payload, size_t len, uint32_t timeout_ms)
{
    if (c == NULL || c->in_callback || timeout_ms > INT32_MAX) {
        return TS_EINVAL;
    }
    struct ping_wait w = {.payload = payload, .len = len};
    int rc = ping_submit(c, payload, len, timeout_ms, ping_wait_cb, &w);
    if (rc != 0) {
        return rc;
    }
    /* The request's deadline bounds this loop: once it passes, the next pass completes the
     * request with TESSERA_ETIMEOUT. A failing poll() only makes the loop spin until then;
     * w must stay alive until the callback has run. */
    while (!w.done) {
        (void)tessera_client_run(c, -1);
    }
    return w.status;
}
