/* net/client event core: slots, connections, frames, retries and timers (client_int.h). */
#include "net/client/client_int.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/mem.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Makes room for `need` more bytes after len, compacting first. */
static int cbuf_reserve(const struct ts_allocator *a, struct cbuf *b, uint32_t need)
{
    TS_DASSERT(b->off <= b->len && b->len <= b->cap);
    if (b->off > 0 && b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
    if (b->cap - b->len >= need) {
        return 0;
    }
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= need) {
            return 0;
        }
    }
    uint64_t want = (uint64_t)b->len + need;
    uint64_t cap = b->cap > 0 ? b->cap : 256;
    while (cap < want) {
        cap *= 2;
    }
    if (cap > UINT32_MAX) {
        return TS_ETOOBIG;
    }
    TS_DASSERT(cap >= want);
    uint8_t *p = b->data == NULL ? ts_alloc(a, cap) : ts_realloc(a, b->data, b->cap, cap);
    if (p == NULL) {
        return TS_ENOMEM;
    }
    b->data = p;
    b->cap = (uint32_t)cap;
    return 0;
}

static int cbuf_append(const struct ts_allocator *a, struct cbuf *b, const void *p, uint32_t n)
{
    TS_DASSERT(p != NULL || n == 0);
    int rc = cbuf_reserve(a, b, n);
    if (rc == 0 && n > 0) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    }
    return rc;
}

static void cbuf_free(const struct ts_allocator *a, struct cbuf *b)
{
    ts_free(a, b->data, b->cap);
    *b = (struct cbuf){0};
}

/* Uniform in [d/2, d] with d = min(max, base * 2^(n-1)). */
static int64_t backoff_ms(struct tessera_client *c, uint32_t n)
{
    TS_DASSERT(n >= 1);
    uint32_t shift = n - 1 < 20 ? n - 1 : 20;
    uint64_t d = (uint64_t)c->cfg.backoff_base_ms << shift;
    if (d > c->cfg.backoff_max_ms) {
        d = c->cfg.backoff_max_ms;
    }
    return (int64_t)(d / 2 + ts_rand_below(&c->rand, d - d / 2 + 1));
}

/* ------------------------------------------------------------------ endpoints */

/* Parses one "host:port" or "[v6]:port" and resolves it (numeric_only: without DNS). */
static int endpoint_parse(struct client_endpoint *ep, const char *s, size_t n, bool numeric_only)
{
    char buf[TS_CLIENT_ENDPOINT_BYTES_MAX + 1];
    if (n == 0 || n > TS_CLIENT_ENDPOINT_BYTES_MAX) {
        return TS_EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    memcpy(ep->name, buf, n + 1);
    char *colon = strrchr(buf, ':');
    if (colon == NULL || colon[1] == '\0' || colon == buf) {
        return TS_EINVAL;
    }
    *colon = '\0';
    char *host = buf;
    if (host[0] == '[') {
        size_t hl = strlen(host);
        if (hl < 3 || host[hl - 1] != ']') {
            return TS_EINVAL;
        }
        host[hl - 1] = '\0';
        host++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (numeric_only) {
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    }
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL) {
        return TS_EINVAL;
    }
    ep->addr_count = 0;
    for (struct addrinfo *ai = res; ai != NULL && ep->addr_count < TS_CLIENT_ENDPOINT_ADDRS_MAX;
         ai = ai->ai_next) {
        TS_ASSERT(ai->ai_addrlen <= sizeof(ep->addrs[0]));
        memcpy(&ep->addrs[ep->addr_count], ai->ai_addr, ai->ai_addrlen);
        ep->addr_lens[ep->addr_count++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    TS_ASSERT(ep->addr_count >= 1);
    return 0;
}

static int endpoints_parse(struct tessera_client *c, const char *list)
{
    uint32_t n = 1;
    for (const char *p = list; *p != '\0'; p++) {
        n += *p == ',';
    }
    if (n > TESSERA_ENDPOINTS_MAX) {
        return TS_EINVAL;
    }
    c->endpoints = ts_alloc(c->alloc, TESSERA_ENDPOINTS_MAX * sizeof(*c->endpoints));
    if (c->endpoints == NULL) {
        return TS_ENOMEM;
    }
    memset(c->endpoints, 0, TESSERA_ENDPOINTS_MAX * sizeof(*c->endpoints));
    c->endpoint_count = n;
    c->endpoint_cfg_count = n;
    const char *p = list;
    for (uint32_t i = 0; i < n; i++) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        int rc = endpoint_parse(&c->endpoints[i], p, len, false);
        if (rc != 0) {
            return rc;
        }
        p += len + 1;
    }
    return 0;
}

int client_endpoint_for(struct tessera_client *c, const char *address)
{
    TS_ASSERT(c->endpoint_count <= TESSERA_ENDPOINTS_MAX);
    if (address == NULL || address[0] == '\0') {
        return -1;
    }
    for (uint32_t i = 0; i < c->endpoint_count; i++) {
        if (strcmp(c->endpoints[i].name, address) == 0) {
            return (int)i;
        }
    }
    if (c->endpoint_count == TESSERA_ENDPOINTS_MAX) {
        return -1;
    }
    struct client_endpoint *ep = &c->endpoints[c->endpoint_count];
    *ep = (struct client_endpoint){0};
    if (endpoint_parse(ep, address, strlen(address), true) != 0) {
        return -1;
    }
    c->endpoint_count++;
    c->conn_count = c->endpoint_count * c->cfg.connections_per_endpoint;
    TS_ASSERT(c->conn_count <= c->conn_cap);
    return (int)c->endpoint_count - 1;
}

/* ------------------------------------------------------------------ lifecycle */

void tessera_client_config_init(struct tessera_client_config *cfg)
{
    TS_ASSERT(cfg != NULL);
    *cfg = (struct tessera_client_config){
        .connections_per_endpoint = TESSERA_CONNECTIONS_DEFAULT,
        .request_timeout_ms = TESSERA_REQUEST_TIMEOUT_MS_DEFAULT,
        .retries = TESSERA_RETRIES_DEFAULT,
        .backoff_base_ms = TESSERA_BACKOFF_BASE_MS_DEFAULT,
        .backoff_max_ms = TESSERA_BACKOFF_MAX_MS_DEFAULT,
        .inflight_max = TESSERA_INFLIGHT_DEFAULT,
        .seed = 1,
    };
}

static int config_check(struct tessera_client_config *cfg)
{
    if (cfg->endpoints == NULL || cfg->endpoints[0] == '\0') {
        return TS_EINVAL;
    }
    if (cfg->connections_per_endpoint == 0) {
        cfg->connections_per_endpoint = TESSERA_CONNECTIONS_DEFAULT;
    }
    if (cfg->request_timeout_ms == 0) {
        cfg->request_timeout_ms = TESSERA_REQUEST_TIMEOUT_MS_DEFAULT;
    }
    if (cfg->backoff_base_ms == 0) {
        cfg->backoff_base_ms = TESSERA_BACKOFF_BASE_MS_DEFAULT;
    }
    if (cfg->backoff_max_ms == 0) {
        cfg->backoff_max_ms = TESSERA_BACKOFF_MAX_MS_DEFAULT;
    }
    if (cfg->inflight_max == 0) {
        cfg->inflight_max = TESSERA_INFLIGHT_DEFAULT;
    }
    if (cfg->connections_per_endpoint > TESSERA_CONNECTIONS_MAX ||
        cfg->inflight_max > TESSERA_INFLIGHT_MAX || cfg->retries > TESSERA_RETRIES_MAX ||
        cfg->backoff_max_ms > TS_CLIENT_BACKOFF_MS_MAX ||
        cfg->backoff_base_ms > cfg->backoff_max_ms || cfg->request_timeout_ms > INT32_MAX) {
        return TS_EINVAL;
    }
    return 0;
}

/* Allocates and initializes the tables; on failure what was allocated is consistent
 * enough for tessera_client_free (counts are set only with their arrays). */
static int client_alloc_tables(struct tessera_client *c)
{
    uint32_t conns = TESSERA_ENDPOINTS_MAX * c->cfg.connections_per_endpoint;
    uint32_t slots = c->cfg.inflight_max;
    TS_ASSERT(conns > 0 && slots > 0);
    c->conns = ts_alloc(c->alloc, conns * sizeof(*c->conns));
    if (c->conns == NULL) {
        return TS_ENOMEM;
    }
    c->conn_cap = conns;
    c->conn_count = c->endpoint_count * c->cfg.connections_per_endpoint;
    for (uint32_t i = 0; i < conns; i++) {
        c->conns[i] =
            (struct client_conn){.fd = -1, .endpoint = (int)(i / c->cfg.connections_per_endpoint)};
    }
    c->pfds = ts_alloc(c->alloc, conns * sizeof(*c->pfds));
    c->slots = ts_alloc(c->alloc, slots * sizeof(*c->slots));
    if (c->pfds == NULL || c->slots == NULL) {
        return TS_ENOMEM;
    }
    c->slot_count = slots;
    for (uint32_t i = 0; i < slots; i++) {
        c->slots[i] = (struct client_slot){
            .conn = -1, .endpoint = -1, .next_endpoint = -1, .pinned_endpoint = -1};
    }
    c->free_list = ts_alloc(c->alloc, slots * sizeof(*c->free_list));
    if (c->free_list == NULL) {
        return TS_ENOMEM;
    }
    for (uint32_t i = 0; i < slots; i++) {
        c->free_list[i] = slots - 1 - i; /* slot 0 is handed out first */
    }
    c->free_count = slots;
    if (c->cfg.route == NULL) {
        int rc = route_cache_init(c);
        if (rc != 0) {
            return rc;
        }
    }
    return proto_builder_init(&c->builder, c->alloc, 4096, TS_FRAME_BYTES_MAX);
}

int tessera_client_new(const struct tessera_client_config *cfg, struct tessera_client **out)
{
    return client_new_alloc(cfg, ts_allocator_default(), out);
}

int client_new_alloc(const struct tessera_client_config *cfg, const struct ts_allocator *a,
                     struct tessera_client **out)
{
    if (cfg == NULL || out == NULL || a == NULL) {
        return TS_EINVAL;
    }
    *out = NULL;
    struct tessera_client *c = ts_alloc(a, sizeof(*c));
    if (c == NULL) {
        return TS_ENOMEM;
    }
    *c = (struct tessera_client){.cfg = *cfg,
                                 .alloc = a,
                                 .sequence = 1,
                                 .next_deadline_ms = INT64_MAX,
                                 .next_ready_ms = INT64_MAX};
    int rc = config_check(&c->cfg);
    if (rc == 0) {
        rc = endpoints_parse(c, cfg->endpoints);
    }
    c->cfg.endpoints = NULL; /* borrowed during this call only */
    if (rc == 0) {
        rc = client_alloc_tables(c);
    }
    if (rc != 0) {
        tessera_client_free(c);
        return rc;
    }
    ts_rand_seed(&c->rand, c->cfg.seed);
    *out = c;
    return 0;
}

/* ------------------------------------------------------------------ slots */

static void slot_complete(struct tessera_client *c, struct client_slot *s, int status,
                          const struct tessera_response *resp)
{
    TS_ASSERT(s->state != SLOT_FREE);
    TS_ASSERT(!c->in_callback);
    if (s->state == SLOT_SENT) {
        TS_ASSERT(c->conns[s->conn].sent > 0);
        c->conns[s->conn].sent--;
    } else {
        TS_ASSERT(c->wait_count > 0);
        c->wait_count--;
    }
    tessera_response_cb cb = s->cb;
    void *data = s->data;
    s->state = SLOT_FREE;
    s->conn = -1;
    s->cb = NULL;
    c->free_list[c->free_count++] = (uint32_t)(s - c->slots);
    TS_DASSERT(c->free_count <= c->slot_count);
    c->stats.completed++;
    c->stats.timeouts += status == TS_ETIMEOUT && resp == NULL;
    c->stats.unavailable += status == TS_EUNAVAIL && resp == NULL;
    c->in_callback = true;
    cb(data, status, resp);
    c->in_callback = false;
}

/* Builds the envelope around the encoded op into c->builder and finishes the frame. For
 * a request routed by the built-in cache, Request.range_id and Request.epoch are always
 * written (zero until placement), and *range_id_off / *epoch_off receive where they sit in
 * the frame, so that slot_place can write the route of each attempt in place. */
static int build_frame(struct tessera_client *c, const struct client_request *req, uint64_t id,
                       uint32_t timeout, const uint8_t **frame, uint32_t *frame_len,
                       uint32_t *range_id_off, uint32_t *epoch_off)
{
    struct proto_builder *b = &c->builder;
    proto_builder_reset(b);
    struct client_encoded enc = {0};
    int rc = req->encode(b, req->args, &enc);
    bool routed = c->cfg.route == NULL && req->key_len > 0;
    uint32_t range_loc = 0;
    uint32_t epoch_loc = 0;
    proto_request_begin(b);
    proto_request_add_id(b, id);
    if (routed) {
        /* Slots 1 and 2 of Request (tessera.fbs ids); added even when zero, unlike the
         * generated adders, so that the bytes exist to be rewritten. */
        struct proto_range_epoch zero = {0};
        proto_add_u64(b, 1, 0);
        range_loc = b->field_loc[1];
        proto_request_add_epoch(b, &zero);
        epoch_loc = b->field_loc[2];
    }
    proto_request_add_consistency(b, req->consistency);
    proto_request_add_timeout_ms(b, timeout);
    proto_request_add_op(b, enc.op_type, enc.op);
    proto_ref r = proto_request_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_REQUEST, r);
    proto_ref m = proto_message_end(b);
    if (rc == 0) {
        rc = proto_message_finish(b, m, true, frame, frame_len);
    }
    if (rc != 0) {
        return rc;
    }
    /* The builder writes back to front: a field's distance from the end never changes. */
    *range_id_off = routed ? *frame_len - range_loc : 0;
    *epoch_off = routed ? *frame_len - epoch_loc : 0;
    TS_DASSERT(!routed || *range_id_off + 8 <= *frame_len);
    TS_DASSERT(!routed || *epoch_off + PROTO_RANGE_EPOCH_BYTES <= *frame_len);
    return 0;
}

int client_submit(struct tessera_client *c, const struct client_request *req,
                  tessera_response_cb cb, void *data)
{
    TS_ASSERT(req != NULL && req->encode != NULL);
    if (cb == NULL || req->key_len > TS_KEY_BYTES_MAX ||
        (req->pinned && (req->endpoint < 0 || (uint32_t)req->endpoint >= c->endpoint_count))) {
        return TS_EINVAL;
    }
    if (c->free_count == 0) {
        return TS_EFULL;
    }
    uint32_t idx = c->free_list[c->free_count - 1];
    struct client_slot *s = &c->slots[idx];
    TS_ASSERT(s->state == SLOT_FREE);
    uint64_t id = (c->sequence << CLIENT_SLOT_BITS) | idx;
    uint32_t timeout = req->timeout_ms != 0 ? req->timeout_ms : c->cfg.request_timeout_ms;
    const uint8_t *frame = NULL;
    uint32_t frame_len = 0;
    uint32_t range_id_off = 0;
    uint32_t epoch_off = 0;
    int rc = build_frame(c, req, id, timeout, &frame, &frame_len, &range_id_off, &epoch_off);
    s->frame.off = s->frame.len = 0;
    s->key.off = s->key.len = 0;
    if (rc == 0) {
        rc = cbuf_append(c->alloc, &s->frame, frame, frame_len);
    }
    if (rc == 0) {
        rc = cbuf_append(c->alloc, &s->key, req->key, req->key_len);
    }
    if (rc != 0) {
        return rc;
    }
    c->free_count--;
    c->sequence++;
    int64_t now = now_ms();
    *s = (struct client_slot){.id = id,
                              .state = SLOT_WAIT,
                              .op = req->op,
                              .conn = -1,
                              .endpoint = -1,
                              .deadline_ms = now + timeout,
                              .ready_ms = now,
                              .key = s->key,
                              .frame = s->frame,
                              .range_id_off = range_id_off,
                              .epoch_off = epoch_off,
                              .next_endpoint = -1,
                              .pinned_endpoint = req->pinned ? req->endpoint : -1,
                              .cb = cb,
                              .data = data};
    c->stats.requests++;
    c->wait_count++;
    c->next_deadline_ms =
        s->deadline_ms < c->next_deadline_ms ? s->deadline_ms : c->next_deadline_ms;
    c->next_ready_ms = now < c->next_ready_ms ? now : c->next_ready_ms;
    return 0;
}

/* A connection loss for a request: another attempt after a back-off, or TESSERA_EUNAVAIL. */
static void slot_retry_or_fail(struct tessera_client *c, struct client_slot *s, int64_t now)
{
    TS_ASSERT(s->state != SLOT_FREE);
    TS_ASSERT(s->attempts >= 1);
    if (s->attempts > c->cfg.retries) {
        slot_complete(c, s, TS_EUNAVAIL, NULL);
        return;
    }
    if (s->state == SLOT_SENT) {
        TS_ASSERT(c->conns[s->conn].sent > 0);
        c->conns[s->conn].sent--;
        c->wait_count++;
    }
    s->state = SLOT_WAIT;
    s->conn = -1;
    s->ready_ms = now + backoff_ms(c, s->attempts);
    c->next_ready_ms = s->ready_ms < c->next_ready_ms ? s->ready_ms : c->next_ready_ms;
}

/* Fails the requests whose deadline has passed; a scan only once the earliest is due. */
static void slots_expire(struct tessera_client *c, int64_t now)
{
    if (now < c->next_deadline_ms) {
        return;
    }
    c->next_deadline_ms = INT64_MAX; /* callbacks that submit lower it again */
    for (uint32_t i = 0; i < c->slot_count; i++) {
        struct client_slot *s = &c->slots[i];
        if (s->state == SLOT_FREE) {
            continue;
        }
        if (s->deadline_ms <= now) {
            slot_complete(c, s, TS_ETIMEOUT, NULL);
        } else if (s->deadline_ms < c->next_deadline_ms) {
            c->next_deadline_ms = s->deadline_ms;
        }
    }
}

/* ------------------------------------------------------------------ connections */

static void conn_close(struct tessera_client *c, struct client_conn *cn)
{
    if (cn->fd >= 0) {
        close(cn->fd);
    }
    if (cn->state == CONN_UP) {
        c->stats.disconnects++;
    }
    cn->fd = -1;
    cn->state = CONN_DOWN;
    cn->out.off = cn->out.len = 0;
    cn->in.off = cn->in.len = 0;
}

/* An endpoint failed: avoid it for a back-off; a failed connect tries its next address. */
static void endpoint_failed(struct tessera_client *c, int e, bool connecting, int64_t now)
{
    TS_ASSERT(e >= 0 && (uint32_t)e < c->endpoint_count);
    struct client_endpoint *ep = &c->endpoints[e];
    /* Routes naming it as leader forget it: the next requests go by key until an answer
     * names a leader again. */
    for (uint32_t i = 0; c->routes.entries != NULL && i < c->routes.count; i++) {
        if (c->routes.entries[i].leader == e) {
            c->routes.entries[i].leader = -1;
        }
    }
    ep->failures++;
    ep->avoid_until_ms = now + backoff_ms(c, ep->failures);
    if (connecting) {
        c->stats.connect_failures++;
        ep->addr_next = (ep->addr_next + 1) % ep->addr_count;
    }
    TS_DASSERT(ep->addr_next < ep->addr_count);
}

/* Closes a failed connection and sends its requests back for another attempt. */
static void conn_fail(struct tessera_client *c, struct client_conn *cn, int64_t now)
{
    int ci = (int)(cn - c->conns);
    TS_ASSERT(cn->state != CONN_DOWN);
    endpoint_failed(c, cn->endpoint, cn->state == CONN_CONNECTING, now);
    conn_close(c, cn);
    for (uint32_t i = 0; i < c->slot_count && cn->sent > 0; i++) {
        struct client_slot *s = &c->slots[i];
        if (s->state == SLOT_SENT && s->conn == ci) {
            slot_retry_or_fail(c, s, now);
        }
    }
    TS_ASSERT(cn->sent == 0);
}

static void conn_up(struct tessera_client *c, struct client_conn *cn)
{
    TS_ASSERT(cn->fd >= 0);
    cn->state = CONN_UP;
    c->stats.connects++;
    c->endpoints[cn->endpoint].failures = 0;
    c->endpoints[cn->endpoint].avoid_until_ms = 0;
}

/* Starts a non-blocking connect. Returns 0 (CONNECTING or UP) or -errno. */
static int conn_start(struct tessera_client *c, struct client_conn *cn, int64_t now)
{
    TS_ASSERT(cn->state == CONN_DOWN);
    const struct client_endpoint *ep = &c->endpoints[cn->endpoint];
    TS_ASSERT(ep->addr_next < ep->addr_count);
    const struct sockaddr_storage *addr = &ep->addrs[ep->addr_next];
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    cn->fd = fd;
    cn->state = CONN_CONNECTING;
    cn->connect_deadline_ms = now + c->cfg.request_timeout_ms;
    if (connect(fd, (const struct sockaddr *)addr, ep->addr_lens[ep->addr_next]) == 0) {
        conn_up(c, cn);
        return 0;
    }
    if (errno == EINPROGRESS) {
        return 0;
    }
    int err = -errno;
    close(fd);
    cn->fd = -1;
    cn->state = CONN_DOWN;
    return err;
}

/* Sends what the output buffer holds. Returns 0 or -errno. */
static int conn_flush(struct client_conn *cn)
{
    TS_ASSERT(cn->state == CONN_UP);
    for (uint32_t calls = 0; cn->out.off < cn->out.len && calls < TS_CLIENT_RECV_CALLS_MAX;
         calls++) {
        ssize_t n =
            send(cn->fd, cn->out.data + cn->out.off, cn->out.len - cn->out.off, MSG_NOSIGNAL);
        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
        }
        cn->out.off += (uint32_t)n;
    }
    if (cn->out.off == cn->out.len) {
        cn->out.off = cn->out.len = 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ placement */

/* The endpoint a route names for the slot's key (built-in cache or hooks), or -1. */
static int pick_routed(struct tessera_client *c, const struct client_slot *s, bool avoid_last)
{
    uint32_t n = c->endpoint_count;
    const struct tessera_route_hooks *h = c->cfg.route;
    int e = -1;
    if (s->key.len == s->key.off) {
        return -1;
    }
    if (h == NULL) {
        int i = route_find(c, s->key.data + s->key.off, s->key.len - s->key.off);
        e = i >= 0 ? c->routes.entries[i].leader : -1;
    } else if (h->lookup != NULL) {
        e = h->lookup(h->data, s->key.data + s->key.off, s->key.len - s->key.off);
    }
    if (e >= 0 && (uint32_t)e < n && !(avoid_last && e == s->endpoint)) {
        return e;
    }
    return -1;
}

/* The endpoint for a request's next attempt: pinned, a leader hint's, the route's, else
 * the next of cfg.endpoints (endpoints learnt from hints serve only the routes naming
 * them) that is not being avoided. */
static int pick_endpoint(struct tessera_client *c, const struct client_slot *s, int64_t now)
{
    uint32_t n = c->endpoint_cfg_count;
    bool avoid_last = s->attempts > 0 && c->endpoint_count > 1 && !s->redirect;
    if (s->pinned_endpoint >= 0) {
        return s->pinned_endpoint;
    }
    if (s->next_endpoint >= 0 && (uint32_t)s->next_endpoint < c->endpoint_count) {
        return s->next_endpoint;
    }
    int routed = pick_routed(c, s, avoid_last);
    if (routed >= 0) {
        return routed;
    }
    TS_ASSERT(n >= 1 && n <= c->endpoint_count);
    uint32_t start = avoid_last ? (uint32_t)s->endpoint + 1 : c->round_robin++;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t e = (start + i) % n;
        if (avoid_last && (int)e == s->endpoint) {
            continue;
        }
        if (c->endpoints[e].avoid_until_ms <= now) {
            return (int)e;
        }
    }
    return (int)(start % n);
}

/* The least loaded connection of endpoint e, preferring UP, then CONNECTING. */
static int pick_conn(struct tessera_client *c, int e)
{
    uint32_t cpe = c->cfg.connections_per_endpoint;
    int best = -1;
    uint64_t best_score = UINT64_MAX;
    for (uint32_t i = 0; i < cpe; i++) {
        uint32_t ci = (uint32_t)e * cpe + i;
        const struct client_conn *cn = &c->conns[ci];
        uint64_t rank = cn->state == CONN_UP ? 0 : cn->state == CONN_CONNECTING ? 1 : 2;
        uint64_t score = (uint64_t)cn->sent * 4 + rank;
        if (score < best_score) {
            best_score = score;
            best = (int)ci;
        }
    }
    TS_ASSERT(best >= 0);
    return best;
}

/* Writes the cached route of the slot's key (or zeros: route by key) into its frame. */
static void slot_write_route(struct tessera_client *c, struct client_slot *s)
{
    TS_ASSERT(s->range_id_off != 0 && s->epoch_off != 0);
    TS_ASSERT(s->key.len > s->key.off);
    int i = route_find(c, s->key.data + s->key.off, s->key.len - s->key.off);
    const struct route_entry *r = i >= 0 ? &c->routes.entries[i] : NULL;
    struct proto_range_epoch ep = {.generation = r != NULL ? r->generation : 0,
                                   .conf_version = r != NULL ? r->conf_version : 0};
    uint8_t *f = s->frame.data + s->frame.off;
    ts_store_le64(f + s->range_id_off, r != NULL ? r->range_id : 0);
    proto_range_epoch_write(f + s->epoch_off, &ep);
    c->routes.hits += r != NULL;
    c->routes.misses += r == NULL;
}

/* Places one WAIT request on a connection. */
static void slot_place(struct tessera_client *c, struct client_slot *s, int64_t now)
{
    TS_ASSERT(s->state == SLOT_WAIT);
    int e = pick_endpoint(c, s, now);
    int ci = pick_conn(c, e);
    struct client_conn *cn = &c->conns[ci];
    if (s->range_id_off != 0) {
        slot_write_route(c, s);
    }
    s->attempts += !s->redirect || s->attempts == 0;
    c->stats.retries += s->attempts > 1 && !s->redirect;
    s->redirect = false;
    s->next_endpoint = -1;
    s->endpoint = e;
    int rc = 0;
    if (cn->state == CONN_DOWN) {
        rc = conn_start(c, cn, now);
        if (rc != 0) {
            endpoint_failed(c, e, true, now);
        }
    }
    if (rc == 0) {
        rc = cbuf_append(c->alloc, &cn->out, s->frame.data + s->frame.off,
                         s->frame.len - s->frame.off);
    }
    if (rc != 0) {
        slot_retry_or_fail(c, s, now);
        return;
    }
    TS_ASSERT(c->wait_count > 0);
    c->wait_count--;
    s->state = SLOT_SENT;
    s->conn = ci;
    cn->sent++;
}

/* Places the WAIT requests that are due; a scan only once the earliest is due. */
static void slots_place(struct tessera_client *c, int64_t now)
{
    if (c->wait_count == 0 || now < c->next_ready_ms) {
        return;
    }
    c->next_ready_ms = INT64_MAX; /* retries and callbacks that submit lower it again */
    for (uint32_t i = 0; i < c->slot_count && c->wait_count > 0; i++) {
        struct client_slot *s = &c->slots[i];
        if (s->state != SLOT_WAIT) {
            continue;
        }
        if (s->ready_ms <= now) {
            slot_place(c, s, now);
        } else if (s->ready_ms < c->next_ready_ms) {
            c->next_ready_ms = s->ready_ms;
        }
    }
}

static void conns_check_connects(struct tessera_client *c, int64_t now)
{
    for (uint32_t i = 0; i < c->conn_count; i++) {
        struct client_conn *cn = &c->conns[i];
        if (cn->state == CONN_CONNECTING && cn->connect_deadline_ms <= now) {
            conn_fail(c, cn, now);
        }
    }
}

/* Timers, placement and sends: everything due that does not wait on a descriptor. */
static void client_step(struct tessera_client *c)
{
    int64_t now = now_ms();
    slots_expire(c, now);
    conns_check_connects(c, now);
    slots_place(c, now);
    for (uint32_t i = 0; i < c->conn_count; i++) {
        struct client_conn *cn = &c->conns[i];
        if (cn->state == CONN_UP && cn->out.len > cn->out.off && conn_flush(cn) != 0) {
            conn_fail(c, cn, now);
        }
    }
}

/* ------------------------------------------------------------------ answers */

/* The descriptor an answer carries, as the hooks' view. */
static struct tessera_range_desc desc_view(struct proto_range_descriptor d)
{
    struct proto_bytes sk = proto_range_descriptor_start_key(d);
    struct proto_bytes ek = proto_range_descriptor_end_key(d);
    struct proto_range_epoch ep = proto_range_descriptor_epoch(d);
    return (struct tessera_range_desc){.range_id = proto_range_descriptor_range_id(d),
                                       .start_key = sk.data,
                                       .start_key_len = sk.len,
                                       .end_key = ek.data,
                                       .end_key_len = ek.len,
                                       .generation = ep.generation,
                                       .conf_version = ep.conf_version};
}

static void route_feedback(struct tessera_client *c, const struct client_slot *s,
                           struct proto_response r, int status)
{
    const struct tessera_route_hooks *h = c->cfg.route;
    if (h == NULL) {
        return;
    }
    bool wrong = status == TS_ENOTLEADER || status == TS_ESTALEEPOCH || status == TS_ENORANGE;
    if (wrong && h->invalidate != NULL && s->key.len > s->key.off) {
        h->invalidate(h->data, s->key.data + s->key.off, s->key.len - s->key.off);
    }
    struct proto_range_descriptor d = proto_response_range(r);
    struct proto_leader_hint l = proto_response_leader(r);
    if (h->update == NULL || (d.tab == NULL && l.tab == NULL)) {
        return;
    }
    struct tessera_range_desc desc = desc_view(d);
    struct tessera_leader_hint hint = {.node_id = proto_leader_hint_node_id(l),
                                       .replica_id = proto_leader_hint_replica_id(l),
                                       .address = proto_leader_hint_address(l).ptr};
    h->update(h->data, d.tab != NULL ? &desc : NULL, l.tab != NULL ? &hint : NULL);
}

/* Sends a SENT request back to WAIT, ready at `ready` (an immediate re-send when redirect). */
static void slot_requeue(struct tessera_client *c, struct client_slot *s, int64_t ready,
                         bool redirect)
{
    TS_ASSERT(s->state == SLOT_SENT);
    TS_ASSERT(c->conns[s->conn].sent > 0);
    c->conns[s->conn].sent--;
    c->wait_count++;
    s->state = SLOT_WAIT;
    s->conn = -1;
    s->ready_ms = ready;
    s->redirect = redirect;
    s->redirects += redirect;
    c->stats.redirects += redirect;
    c->next_ready_ms = ready < c->next_ready_ms ? ready : c->next_ready_ms;
}

/*
 * The built-in route cache's part of an answer to a keyed request: learn the descriptor
 * and leader it carries, and re-send at once when the route was wrong. Returns true when
 * the request was sent back for another attempt (its callback does not run now).
 *   NotLeader + a hint whose address is numeric: the hint's endpoint (added when new)
 *     becomes the range's leader and the request goes there at once;
 *   NotLeader without a usable hint, or once the re-sends are spent: the request is
 *     retried elsewhere after a back-off until its deadline (an election settles);
 *   StaleEpoch, RangeNotFound for a request that carried a cached route: the descriptor
 *     replaces it (or it is dropped) and the request is re-sent at once. A RangeNotFound
 *     for a request routed by key is final.
 * Immediate re-sends are bounded by CLIENT_REDIRECTS_MAX per request.
 */
static bool route_answer(struct tessera_client *c, struct client_slot *s, struct proto_response r,
                         int status, int64_t now)
{
    TS_ASSERT(c->cfg.route == NULL);
    TS_ASSERT(s->key.len > s->key.off);
    const uint8_t *key = s->key.data + s->key.off;
    uint32_t key_len = s->key.len - s->key.off;
    struct proto_range_descriptor d = proto_response_range(r);
    if (d.tab != NULL) {
        struct tessera_range_desc desc = desc_view(d);
        (void)route_put(c, &desc); /* a failed allocation only loses the cache entry */
    }
    int i = route_find(c, key, key_len);
    if (status == TS_ENOTLEADER) {
        struct proto_leader_hint l = proto_response_leader(r);
        int e = l.tab != NULL ? client_endpoint_for(c, proto_leader_hint_address(l).ptr) : -1;
        if (i >= 0) {
            c->routes.entries[i].leader = e;
        }
        if (e >= 0 && s->redirects < CLIENT_REDIRECTS_MAX) {
            slot_requeue(c, s, now, true);
            s->next_endpoint = e;
            return true;
        }
        /* No usable hint, or hints that kept moving (an election in progress, a leader
         * that just died): leadership settles within a few election timeouts, so back
         * off and try again, elsewhere, until the request's deadline. */
        int64_t at = now + backoff_ms(c, s->attempts);
        if (at < s->deadline_ms) {
            slot_requeue(c, s, at, false);
            return true;
        }
        return false;
    }
    if (status != TS_ESTALEEPOCH && status != TS_ENORANGE) {
        return false;
    }
    bool had_route = ts_load_le64(s->frame.data + s->frame.off + s->range_id_off) != 0;
    if (d.tab == NULL) {
        route_drop(c, key, key_len);
    }
    if (!had_route || s->redirects >= CLIENT_REDIRECTS_MAX) {
        return false;
    }
    slot_requeue(c, s, now, true);
    return true;
}

/* One whole frame from connection ci. Returns 0, or TS_EPROTO for a bad frame. */
static int handle_frame(struct tessera_client *c, int ci, const uint8_t *p, uint32_t len)
{
    TS_DASSERT(ci >= 0 && (uint32_t)ci < c->conn_count);
    TS_DASSERT(len >= PROTO_FRAME_HEADER_BYTES && len % PROTO_FRAME_ALIGN == 0);
    struct proto_message m;
    if (proto_message_decode(p, len, true, &m, NULL, 0) != 0) {
        return TS_EPROTO;
    }
    struct proto_response r = proto_message_body_as_response(m);
    if (r.tab == NULL) {
        return TS_EPROTO; /* a server sends only Responses on a client connection */
    }
    uint64_t id = proto_response_id(r);
    struct client_slot *s = &c->slots[id & ((1u << CLIENT_SLOT_BITS) - 1)];
    if ((id & ((1u << CLIENT_SLOT_BITS) - 1)) >= c->slot_count || s->id != id ||
        s->state != SLOT_SENT || s->conn != ci) {
        c->stats.stale_answers++;
        return 0;
    }
    int status = client_status_to_error(proto_response_status(r));
    route_feedback(c, s, r, status);
    if (s->range_id_off != 0 && route_answer(c, s, r, status, now_ms())) {
        return 0;
    }
    struct tessera_response out = {.id = id,
                                   .status = status,
                                   .message = proto_response_message(r).ptr,
                                   .revision = proto_response_revision(r)};
    if (status == 0 && client_decode_op(s->op, r, &out) != 0) {
        slot_complete(c, s, TS_EPROTO, NULL);
        return 0;
    }
    slot_complete(c, s, status, &out);
    return 0;
}

/* Handles every whole frame in the input buffer. Returns 0 or TS_EPROTO. */
static int conn_parse(struct tessera_client *c, struct client_conn *cn)
{
    int ci = (int)(cn - c->conns);
    while (cn->in.len > cn->in.off) {
        const uint8_t *p = cn->in.data + cn->in.off;
        int64_t fs = proto_frame_size(p, cn->in.len - cn->in.off, TS_FRAME_BYTES_MAX);
        if (fs < 0) {
            return TS_EPROTO;
        }
        if (fs == 0) {
            break;
        }
        int rc = handle_frame(c, ci, p, (uint32_t)fs);
        if (rc != 0) {
            return rc;
        }
        cn->in.off += (uint32_t)fs;
    }
    if (cn->in.off == cn->in.len) {
        cn->in.off = cn->in.len = 0;
    }
    return 0;
}

/* Reads what is there and handles whole frames. Returns 0, -errno, TS_EPROTO (a bad
 * frame) or -ECONNRESET at end of stream. */
static int conn_read(struct tessera_client *c, struct client_conn *cn)
{
    for (uint32_t calls = 0; calls < TS_CLIENT_RECV_CALLS_MAX; calls++) {
        uint32_t want = TS_CLIENT_RECV_BYTES_INITIAL / 4;
        if (cn->in.len - cn->in.off >= PROTO_FRAME_HEADER_BYTES) {
            uint64_t total = (uint64_t)ts_load_le32(cn->in.data + cn->in.off) + 4;
            if (total <= TS_FRAME_BYTES_MAX && total > cn->in.len - cn->in.off) {
                want = (uint32_t)(total - (cn->in.len - cn->in.off));
            }
        }
        if (cn->in.cap == 0) {
            want = TS_CLIENT_RECV_BYTES_INITIAL;
        }
        int rc = cbuf_reserve(c->alloc, &cn->in, want);
        if (rc != 0) {
            return rc;
        }
        ssize_t n = recv(cn->fd, cn->in.data + cn->in.len, cn->in.cap - cn->in.len, 0);
        if (n == 0) {
            return -ECONNRESET;
        }
        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
        }
        cn->in.len += (uint32_t)n;
        rc = conn_parse(c, cn);
        if (rc != 0) {
            if (rc == TS_EPROTO) {
                c->stats.bad_frames++;
            }
            return rc;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ the loop */

static struct client_conn *conn_by_fd(struct tessera_client *c, int fd)
{
    for (uint32_t i = 0; i < c->conn_count; i++) {
        if (c->conns[i].fd == fd && c->conns[i].state != CONN_DOWN) {
            return &c->conns[i];
        }
    }
    return NULL;
}

static int conn_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        return -errno;
    }
    return -err;
}

static void conn_event(struct tessera_client *c, struct client_conn *cn, short revents)
{
    int64_t now = now_ms();
    if (cn->state == CONN_CONNECTING) {
        if ((revents & (POLLOUT | POLLERR | POLLHUP)) == 0) {
            return;
        }
        if (conn_error(cn->fd) != 0) {
            conn_fail(c, cn, now);
            return;
        }
        conn_up(c, cn);
        revents = POLLOUT;
    }
    TS_ASSERT(cn->state == CONN_UP);
    int rc = 0;
    if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        rc = conn_read(c, cn);
    }
    if (rc == 0 && (revents & POLLERR) != 0) {
        rc = conn_error(cn->fd);
    }
    if (rc == 0 && (revents & POLLOUT) != 0) {
        rc = conn_flush(cn);
    }
    if (rc != 0) {
        conn_fail(c, cn, now);
    }
}

int tessera_client_fds_max(const struct tessera_client *c)
{
    return (int)c->conn_cap;
}

int tessera_client_fds(struct tessera_client *c, struct pollfd *fds, int cap)
{
    TS_ASSERT(c != NULL);
    if (c->in_callback || (cap > 0 && fds == NULL)) {
        return TS_EINVAL;
    }
    if (cap < (int)c->conn_cap) {
        return TS_ETOOBIG;
    }
    client_step(c);
    int n = 0;
    for (uint32_t i = 0; i < c->conn_count; i++) {
        const struct client_conn *cn = &c->conns[i];
        if (cn->state == CONN_DOWN) {
            continue;
        }
        short ev = cn->state == CONN_CONNECTING ? POLLOUT : POLLIN;
        if (cn->state == CONN_UP && cn->out.len > cn->out.off) {
            ev |= POLLOUT;
        }
        fds[n++] = (struct pollfd){.fd = cn->fd, .events = ev};
    }
    TS_ASSERT(n <= cap);
    return n;
}

int tessera_client_process(struct tessera_client *c, const struct pollfd *fds, int n)
{
    TS_ASSERT(c != NULL);
    if (c->in_callback || n < 0 || (n > 0 && fds == NULL)) {
        return TS_EINVAL;
    }
    uint64_t before = c->stats.completed;
    for (int i = 0; i < n; i++) {
        if (fds[i].revents == 0 || fds[i].fd < 0) {
            continue;
        }
        struct client_conn *cn = conn_by_fd(c, fds[i].fd);
        if (cn != NULL) {
            conn_event(c, cn, fds[i].revents);
        }
    }
    client_step(c);
    return (int)(c->stats.completed - before);
}

int tessera_client_next_timeout_ms(struct tessera_client *c)
{
    TS_ASSERT(c != NULL);
    int64_t next = c->free_count < c->slot_count ? c->next_deadline_ms : INT64_MAX;
    if (c->wait_count > 0 && c->next_ready_ms < next) {
        next = c->next_ready_ms;
    }
    for (uint32_t i = 0; i < c->conn_count; i++) {
        const struct client_conn *cn = &c->conns[i];
        if (cn->state == CONN_CONNECTING && cn->connect_deadline_ms < next) {
            next = cn->connect_deadline_ms;
        }
    }
    if (next == INT64_MAX) {
        return -1;
    }
    int64_t d = next - now_ms();
    return d < 0 ? 0 : d > INT32_MAX ? INT32_MAX : (int)d;
}

/* The poll wait: the nearest timer, within what is left of the caller's timeout. */
static int run_wait_ms(struct tessera_client *c, int timeout_ms, int64_t start)
{
    int wait = tessera_client_next_timeout_ms(c);
    if (timeout_ms >= 0) {
        int64_t left = start + timeout_ms - now_ms();
        left = left < 0 ? 0 : left;
        if (wait < 0 || left < wait) {
            wait = (int)left;
        }
    }
    return wait;
}

int tessera_client_run(struct tessera_client *c, int timeout_ms)
{
    TS_ASSERT(c != NULL);
    if (c->in_callback) {
        return TS_EINVAL;
    }
    uint64_t before = c->stats.completed;
    int64_t start = now_ms();
    for (uint32_t pass = 0; pass < TS_CLIENT_RUN_PASSES_MAX; pass++) {
        if (c->free_count == c->slot_count) {
            break;
        }
        int n = tessera_client_fds(c, c->pfds, (int)c->conn_cap);
        TS_ASSERT(n >= 0 && (uint32_t)n <= c->conn_count);
        if (c->stats.completed != before) {
            break;
        }
        int wait = run_wait_ms(c, timeout_ms, start);
        if (poll(c->pfds, (nfds_t)n, wait) < 0 && errno != EINTR) {
            return -errno;
        }
        (void)tessera_client_process(c, c->pfds, n);
        if (c->stats.completed != before || (timeout_ms >= 0 && now_ms() - start >= timeout_ms)) {
            break;
        }
    }
    return (int)(c->stats.completed - before);
}

void client_wait(struct tessera_client *c, const bool *done)
{
    TS_ASSERT(!c->in_callback);
    /* The request's deadline bounds this loop: once it passes, the next pass completes the
     * request with TESSERA_ETIMEOUT. A failing poll() only makes the loop spin until then;
     * the caller's state must stay alive until the callback has run. */
    while (!*done) {
        (void)tessera_client_run(c, -1);
    }
}

uint32_t tessera_client_inflight(const struct tessera_client *c)
{
    return c->slot_count - c->free_count;
}

void tessera_client_get_stats(const struct tessera_client *c, struct tessera_client_stats *out)
{
    TS_ASSERT(c != NULL && out != NULL);
    *out = c->stats;
}

void tessera_client_free(struct tessera_client *c)
{
    if (c == NULL) {
        return;
    }
    TS_ASSERT(!c->in_callback);
    for (uint32_t i = 0; c->slots != NULL && i < c->slot_count; i++) {
        if (c->slots[i].state != SLOT_FREE) {
            slot_complete(c, &c->slots[i], TS_ESHUTDOWN, NULL);
        }
    }
    for (uint32_t i = 0; c->conns != NULL && i < c->conn_cap; i++) {
        conn_close(c, &c->conns[i]);
        cbuf_free(c->alloc, &c->conns[i].out);
        cbuf_free(c->alloc, &c->conns[i].in);
    }
    for (uint32_t i = 0; c->slots != NULL && i < c->slot_count; i++) {
        cbuf_free(c->alloc, &c->slots[i].frame);
        cbuf_free(c->alloc, &c->slots[i].key);
    }
    if (c->builder.alloc != NULL) {
        proto_builder_fini(&c->builder);
    }
    route_cache_fini(c);
    const struct ts_allocator *a = c->alloc;
    ts_free(a, c->conns, c->conn_cap * sizeof(*c->conns));
    ts_free(a, c->pfds, c->conn_cap * sizeof(*c->pfds));
    ts_free(a, c->slots, c->cfg.inflight_max * sizeof(*c->slots));
    ts_free(a, c->free_list, c->cfg.inflight_max * sizeof(*c->free_list));
    ts_free(a, c->endpoints, TESSERA_ENDPOINTS_MAX * sizeof(*c->endpoints));
    ts_free(a, c, sizeof(*c));
}
