/*
 * net/client built-in route cache (client_int.h): range descriptors sorted by start key,
 * never overlapping, at most CLIENT_ROUTES_MAX (the least recently used is evicted).
 * A lookup is a binary search; an update removes every entry the new descriptor
 * overlaps (the server's answer is the newer view) and inserts it in order. Key copies
 * live in each entry's buffers, which grow and are reused, so a warm cache does not
 * allocate.
 */
#include "net/client/client_int.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/mem.h"

#include <string.h>

static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int r = n > 0 ? memcmp(a, b, n) : 0;
    if (r != 0) {
        return r;
    }
    return an < bn ? -1 : an > bn ? 1 : 0;
}

static const uint8_t *cb_data(const struct cbuf *b)
{
    return b->data != NULL ? b->data + b->off : NULL;
}

static uint32_t cb_len(const struct cbuf *b)
{
    return b->len - b->off;
}

static int cb_set(const struct ts_allocator *a, struct cbuf *b, const uint8_t *p, size_t n)
{
    TS_ASSERT(n <= TS_KEY_BYTES_MAX);
    if (b->cap < n) {
        uint8_t *q = b->data == NULL ? ts_alloc(a, n) : ts_realloc(a, b->data, b->cap, n);
        if (q == NULL) {
            return TS_ENOMEM;
        }
        b->data = q;
        b->cap = (uint32_t)n;
    }
    if (n > 0) {
        memcpy(b->data, p, n);
    }
    b->off = 0;
    b->len = (uint32_t)n;
    return 0;
}

int route_cache_init(struct tessera_client *c)
{
    TS_ASSERT(c->routes.entries == NULL);
    size_t bytes = CLIENT_ROUTES_MAX * sizeof(struct route_entry);
    c->routes.entries = ts_alloc(c->alloc, bytes);
    if (c->routes.entries == NULL) {
        return TS_ENOMEM;
    }
    memset(c->routes.entries, 0, bytes);
    c->routes.count = 0;
    return 0;
}

void route_cache_fini(struct tessera_client *c)
{
    struct route_cache *rc = &c->routes;
    if (rc->entries == NULL) {
        return;
    }
    /* Buffers of removed entries are kept past count for reuse: free all of them. */
    for (uint32_t i = 0; i < CLIENT_ROUTES_MAX; i++) {
        ts_free(c->alloc, rc->entries[i].start.data, rc->entries[i].start.cap);
        ts_free(c->alloc, rc->entries[i].end.data, rc->entries[i].end.cap);
    }
    ts_free(c->alloc, rc->entries, CLIENT_ROUTES_MAX * sizeof(struct route_entry));
    *rc = (struct route_cache){0};
}

/* The number of entries whose start key is <= key (the candidate is that minus one). */
static uint32_t upper_bound(const struct route_cache *rc, const uint8_t *key, size_t key_len)
{
    uint32_t lo = 0;
    uint32_t hi = rc->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct route_entry *e = &rc->entries[mid];
        if (key_cmp(cb_data(&e->start), cb_len(&e->start), key, key_len) <= 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    TS_DASSERT(lo <= rc->count);
    return lo;
}

static bool entry_holds(const struct route_entry *e, const uint8_t *key, size_t key_len)
{
    return cb_len(&e->end) == 0 || key_cmp(key, key_len, cb_data(&e->end), cb_len(&e->end)) < 0;
}

int route_find(struct tessera_client *c, const uint8_t *key, uint32_t key_len)
{
    struct route_cache *rc = &c->routes;
    TS_ASSERT(rc->entries != NULL);
    uint32_t ub = upper_bound(rc, key, key_len);
    if (ub == 0) {
        return -1;
    }
    struct route_entry *e = &rc->entries[ub - 1];
    if (!entry_holds(e, key, key_len)) {
        return -1;
    }
    e->used_tick = ++rc->tick;
    return (int)(ub - 1);
}

/* Removes entry i, keeping its buffers (moved past count) for reuse. */
static void entry_remove(struct route_cache *rc, uint32_t i)
{
    TS_ASSERT(i < rc->count);
    struct route_entry gone = rc->entries[i];
    memmove(&rc->entries[i], &rc->entries[i + 1], (rc->count - i - 1) * sizeof(gone));
    rc->count--;
    rc->entries[rc->count] = (struct route_entry){.start = gone.start, .end = gone.end};
    TS_DASSERT(rc->count < CLIENT_ROUTES_MAX);
}

static void evict_lru(struct route_cache *rc)
{
    TS_ASSERT(rc->count > 0);
    uint32_t victim = 0;
    for (uint32_t i = 1; i < rc->count; i++) {
        if (rc->entries[i].used_tick < rc->entries[victim].used_tick) {
            victim = i;
        }
    }
    entry_remove(rc, victim);
}

/* Whether entry e overlaps [start, end) (end length 0: unbounded). */
static bool overlaps(const struct route_entry *e, const struct tessera_range_desc *d)
{
    bool e_before = cb_len(&e->end) != 0 &&
                    key_cmp(cb_data(&e->end), cb_len(&e->end), d->start_key, d->start_key_len) <= 0;
    bool e_after = d->end_key_len != 0 &&
                   key_cmp(cb_data(&e->start), cb_len(&e->start), d->end_key, d->end_key_len) >= 0;
    return !e_before && !e_after;
}

static bool entry_is(const struct route_entry *e, const struct tessera_range_desc *d)
{
    return e->range_id == d->range_id && e->generation == d->generation &&
           e->conf_version == d->conf_version &&
           key_cmp(cb_data(&e->start), cb_len(&e->start), d->start_key, d->start_key_len) == 0 &&
           key_cmp(cb_data(&e->end), cb_len(&e->end), d->end_key, d->end_key_len) == 0;
}

int route_put(struct tessera_client *c, const struct tessera_range_desc *d)
{
    struct route_cache *rc = &c->routes;
    TS_ASSERT(rc->entries != NULL && d != NULL);
    if (d->start_key_len > TS_KEY_BYTES_MAX || d->end_key_len > TS_KEY_BYTES_MAX ||
        (d->end_key_len != 0 &&
         key_cmp(d->start_key, d->start_key_len, d->end_key, d->end_key_len) >= 0)) {
        return TS_EINVAL; /* not a range: ignore it */
    }
    int same = route_find(c, d->start_key, (uint32_t)d->start_key_len);
    if (same >= 0 && entry_is(&rc->entries[same], d)) {
        return same; /* the common case: an answer confirming what the cache holds */
    }
    int leader = -1;
    for (uint32_t i = 0; i < rc->count;) {
        if (overlaps(&rc->entries[i], d)) {
            leader = rc->entries[i].range_id == d->range_id ? rc->entries[i].leader : leader;
            entry_remove(rc, i);
        } else {
            i++;
        }
    }
    if (rc->count == CLIENT_ROUTES_MAX) {
        evict_lru(rc);
    }
    uint32_t at = upper_bound(rc, d->start_key, d->start_key_len);
    struct route_entry fresh = rc->entries[rc->count]; /* spare buffers */
    memmove(&rc->entries[at + 1], &rc->entries[at], (rc->count - at) * sizeof(fresh));
    fresh.range_id = d->range_id;
    fresh.generation = d->generation;
    fresh.conf_version = d->conf_version;
    fresh.leader = leader;
    fresh.used_tick = ++rc->tick;
    int err = cb_set(c->alloc, &fresh.start, d->start_key, d->start_key_len);
    if (err == 0) {
        err = cb_set(c->alloc, &fresh.end, d->end_key, d->end_key_len);
    }
    rc->entries[at] = fresh;
    rc->count++;
    if (err != 0) {
        entry_remove(rc, at);
        return err;
    }
    TS_DASSERT(at == 0 ||
               key_cmp(cb_data(&rc->entries[at - 1].start), cb_len(&rc->entries[at - 1].start),
                       d->start_key, d->start_key_len) < 0);
    return (int)at;
}

void route_drop(struct tessera_client *c, const uint8_t *key, uint32_t key_len)
{
    int i = route_find(c, key, key_len);
    if (i >= 0) {
        entry_remove(&c->routes, (uint32_t)i);
    }
}
