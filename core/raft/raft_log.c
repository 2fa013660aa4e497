/*
 * The in-memory Raft log of one group: entries compact_index+1 .. last in one array,
 * their data in reference-counted blocks (see raft_int.h).
 */
#include <string.h>

#include "core/raft/raft_int.h"
#include "core/util/assert.h"
#include "core/util/err.h"

void raft_log_init(struct raft_log *l, const struct ts_allocator *a)
{
    TS_ASSERT(a != NULL);
    memset(l, 0, sizeof *l);
    l->alloc = a;
}

static size_t block_bytes(uint32_t cap)
{
    return sizeof(struct raft_block) + cap;
}

static void block_unref(struct raft_log *l, struct raft_block *b)
{
    TS_ASSERT(b->refs > 0);
    b->refs--;
    if (b->refs > 0) {
        return;
    }
    if (b == l->cur) {
        b->used = 0; /* a busy group reuses its block; raft_log_trim() frees it */
        return;
    }
    l->data_bytes -= block_bytes(b->cap);
    ts_free(l->alloc, b, block_bytes(b->cap));
}

void raft_log_free(struct raft_log *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->blk[l->head + i] != NULL) {
            block_unref(l, l->blk[l->head + i]);
        }
    }
    if (l->cur != NULL) {
        TS_ASSERT(l->cur->refs == 0);
        l->data_bytes -= block_bytes(l->cur->cap);
        ts_free(l->alloc, l->cur, block_bytes(l->cur->cap));
    }
    TS_ASSERT(l->data_bytes == 0);
    ts_free(l->alloc, l->e, l->cap * sizeof *l->e);
    ts_free(l->alloc, l->blk, l->cap * sizeof *l->blk);
    memset(l, 0, sizeof *l);
}

raft_term raft_log_term(const struct raft_log *l, raft_index index)
{
    if (index == l->compact_index) {
        return l->compact_term;
    }
    if (index < l->compact_index || index > raft_log_last(l)) {
        return 0;
    }
    const struct raft_entry *e = raft_log_at(l, index);
    TS_DASSERT(e->index == index);
    return e->term;
}

/* Moves the entries to arrays of cap slots (>= n), starting at slot 0. Both arrays are
 * allocated before either is replaced, so a failure leaves the log exactly as it was.
 * Returns 0 or TS_ENOMEM. */
static int resize(struct raft_log *l, size_t cap)
{
    TS_ASSERT(cap >= l->n);
    struct raft_entry *e = ts_alloc(l->alloc, cap * sizeof *e);
    struct raft_block **b = ts_alloc(l->alloc, cap * sizeof *b);
    if (e == NULL || b == NULL) {
        ts_free(l->alloc, e, cap * sizeof *e);
        ts_free(l->alloc, b, cap * sizeof *b);
        return TS_ENOMEM;
    }
    if (l->n > 0) {
        memcpy(e, l->e + l->head, l->n * sizeof *e);
        memcpy(b, l->blk + l->head, l->n * sizeof *b);
    }
    ts_free(l->alloc, l->e, l->cap * sizeof *e);
    ts_free(l->alloc, l->blk, l->cap * sizeof *b);
    l->e = e;
    l->blk = b;
    l->head = 0;
    l->cap = cap;
    TS_ASSERT(l->head + l->n <= l->cap);
    return 0;
}

/* Makes room for n more entries at the end of the array. */
static int reserve(struct raft_log *l, size_t n)
{
    if (l->head + l->n + n <= l->cap) {
        return 0;
    }
    if (l->head > 0 && l->n + n <= l->cap && l->head >= l->cap / 2) {
        memmove(l->e, l->e + l->head, l->n * sizeof *l->e);
        memmove(l->blk, l->blk + l->head, l->n * sizeof *l->blk);
        l->head = 0;
        return 0;
    }
    size_t cap = l->cap == 0 ? 8 : l->cap;
    while (cap < l->n + n) {
        cap *= 2;
    }
    return resize(l, cap);
}

/* Returns a block with room for len bytes (the current one, a fresh current one, or a
 * block of its own for a large entry), or NULL. */
static struct raft_block *block_for(struct raft_log *l, uint32_t len)
{
    if (len > RAFT_BLOCK_BYTES / 4) {
        struct raft_block *b = ts_alloc(l->alloc, block_bytes(len));
        if (b != NULL) {
            b->refs = 0;
            b->used = 0;
            b->cap = len;
            l->data_bytes += block_bytes(len);
        }
        return b;
    }
    if (l->cur != NULL && l->cur->cap - l->cur->used >= len) {
        return l->cur;
    }
    uint32_t cap =
        l->next_block_bytes < RAFT_BLOCK_BYTES_MIN ? RAFT_BLOCK_BYTES_MIN : l->next_block_bytes;
    while (cap < len) {
        cap *= 2;
    }
    TS_ASSERT(cap <= RAFT_BLOCK_BYTES);
    struct raft_block *b = ts_alloc(l->alloc, block_bytes(cap));
    if (b == NULL) {
        return NULL;
    }
    b->refs = 0;
    b->used = 0;
    b->cap = cap;
    l->data_bytes += block_bytes(cap);
    l->next_block_bytes = cap * 2 < RAFT_BLOCK_BYTES ? cap * 2 : RAFT_BLOCK_BYTES;
    struct raft_block *old = l->cur;
    l->cur = b;
    if (old != NULL && old->refs == 0) {
        l->data_bytes -= block_bytes(old->cap);
        ts_free(l->alloc, old, block_bytes(old->cap));
    }
    return b;
}

int raft_log_append(struct raft_log *l, const struct raft_entry *entries, size_t n)
{
    TS_ASSERT(n == 0 || entries[0].index == raft_log_last(l) + 1);
    int rc = reserve(l, n);
    if (rc != 0) {
        return rc;
    }
    size_t done = 0;
    for (; done < n; done++) {
        const struct raft_entry *src = &entries[done];
        size_t at = l->head + l->n;
        struct raft_entry *dst = &l->e[at];
        *dst = *src;
        dst->index = raft_log_last(l) + 1;
        l->blk[at] = NULL;
        if (src->len > 0) {
            struct raft_block *b = block_for(l, src->len);
            if (b == NULL) {
                break;
            }
            memcpy(b->data + b->used, src->data, src->len);
            dst->data = b->data + b->used;
            b->used += src->len;
            b->refs++;
            l->blk[at] = b;
        } else {
            dst->data = NULL;
        }
        l->n++;
    }
    if (done < n) {
        raft_log_truncate(l, raft_log_last(l) - done);
        return TS_ENOMEM;
    }
    return 0;
}

void raft_log_truncate(struct raft_log *l, raft_index index)
{
    TS_ASSERT(index >= l->compact_index);
    while (raft_log_last(l) > index) {
        size_t at = l->head + l->n - 1;
        if (l->blk[at] != NULL) {
            block_unref(l, l->blk[at]);
        }
        l->n--;
    }
    if (l->stable > index) {
        l->stable = index;
    }
    TS_ASSERT(raft_log_last(l) <= index);
}

void raft_log_compact(struct raft_log *l, raft_index index)
{
    TS_ASSERT(index >= l->compact_index);
    TS_ASSERT(index <= raft_log_last(l));
    raft_term term = raft_log_term(l, index);
    while (l->compact_index < index) {
        if (l->blk[l->head] != NULL) {
            block_unref(l, l->blk[l->head]);
        }
        l->head++;
        l->n--;
        l->compact_index++;
    }
    l->compact_term = term;
    if (l->n == 0) {
        l->head = 0;
    }
    if (l->stable < index) {
        l->stable = index;
    }
}

void raft_log_restore(struct raft_log *l, raft_index index, raft_term term)
{
    raft_log_truncate(l, l->compact_index);
    TS_ASSERT(l->n == 0);
    l->head = 0;
    l->compact_index = index;
    l->compact_term = term;
    l->stable = index;
}

raft_index raft_log_conflict_by_term(const struct raft_log *l, raft_index index, raft_term term,
                                     raft_term *term_out)
{
    if (index > raft_log_last(l)) {
        *term_out = 0;
        return index;
    }
    for (;;) {
        raft_term t = raft_log_term(l, index);
        if (t <= term || index <= l->compact_index) {
            *term_out = t;
            return index;
        }
        index--;
    }
}

void raft_log_trim(struct raft_log *l)
{
    if (l->cur != NULL && l->cur->refs == 0) {
        l->data_bytes -= block_bytes(l->cur->cap);
        ts_free(l->alloc, l->cur, block_bytes(l->cur->cap));
        l->cur = NULL;
    }
    l->next_block_bytes = RAFT_BLOCK_BYTES_MIN;
    size_t cap = l->n < 8 ? 8 : l->n;
    if (l->cap > 2 * cap) {
        (void)resize(l, cap); /* on failure the larger arrays stay, which is fine */
    }
}

size_t raft_log_memory_bytes(const struct raft_log *l)
{
    return l->data_bytes + l->cap * (sizeof *l->e + sizeof *l->blk);
}
