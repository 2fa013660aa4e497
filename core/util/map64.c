#include "core/util/map64.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <string.h>

static uint32_t slot_of(uint64_t key, uint32_t cap)
{
    /* Fibonacci hashing spreads sequential ids (range ids are sequential). */
    return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

void ts_map64_init(struct ts_map64 *m, const struct ts_allocator *alloc)
{
    TS_ASSERT(alloc != NULL);
    *m = (struct ts_map64){.alloc = alloc};
}

void ts_map64_fini(struct ts_map64 *m)
{
    ts_free(m->alloc, m->slots, (size_t)m->cap * sizeof(*m->slots));
    m->slots = NULL;
    m->cap = m->count = 0;
}

void *ts_map64_get(const struct ts_map64 *m, uint64_t key)
{
    if (m->count == 0) {
        return NULL;
    }
    for (uint32_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        struct ts_map64_slot *s = &m->slots[i];
        if (s->value == NULL) {
            return NULL;
        }
        if (s->key == key) {
            return s->value;
        }
    }
}

static void insert_fresh(struct ts_map64_slot *slots, uint32_t cap, uint64_t key, void *value)
{
    uint32_t i = slot_of(key, cap);
    while (slots[i].value != NULL) {
        i = (i + 1) & (cap - 1);
    }
    slots[i] = (struct ts_map64_slot){.key = key, .value = value};
}

static int grow(struct ts_map64 *m)
{
    uint32_t cap = m->cap == 0 ? 16 : m->cap * 2;
    TS_ASSERT(cap > m->cap);
    size_t bytes = (size_t)cap * sizeof(*m->slots);
    struct ts_map64_slot *slots = ts_alloc(m->alloc, bytes);
    if (slots == NULL) {
        return TS_ENOMEM;
    }
    memset(slots, 0, bytes);
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->slots[i].value != NULL) {
            insert_fresh(slots, cap, m->slots[i].key, m->slots[i].value);
        }
    }
    ts_free(m->alloc, m->slots, (size_t)m->cap * sizeof(*m->slots));
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int ts_map64_put(struct ts_map64 *m, uint64_t key, void *value)
{
    TS_ASSERT(value != NULL);
    if (m->count > 0) {
        for (uint32_t i = slot_of(key, m->cap); m->slots[i].value != NULL;
             i = (i + 1) & (m->cap - 1)) {
            if (m->slots[i].key == key) {
                m->slots[i].value = value;
                return 0;
            }
        }
    }
    if ((uint64_t)(m->count + 1) * 8 > (uint64_t)m->cap * 7) {
        int rc = grow(m);
        if (rc != 0) {
            return rc;
        }
    }
    insert_fresh(m->slots, m->cap, key, value);
    m->count++;
    TS_DASSERT(ts_map64_get(m, key) == value);
    return 0;
}

void *ts_map64_del(struct ts_map64 *m, uint64_t key)
{
    if (m->count == 0) {
        return NULL;
    }
    uint32_t mask = m->cap - 1;
    uint32_t i = slot_of(key, m->cap);
    while (m->slots[i].value != NULL && m->slots[i].key != key) {
        i = (i + 1) & mask;
    }
    void *value = m->slots[i].value;
    if (value == NULL) {
        return NULL;
    }
    /* Backward shift: move later members of the probe run into the hole when their home
     * slot does not lie (cyclically) in (hole, j]. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; m->slots[j].value != NULL; j = (j + 1) & mask) {
        uint32_t home = slot_of(m->slots[j].key, m->cap);
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = (struct ts_map64_slot){0};
    m->count--;
    TS_DASSERT(ts_map64_get(m, key) == NULL);
    return value;
}

bool ts_map64_next(const struct ts_map64 *m, uint32_t *pos, uint64_t *key, void **value)
{
    for (; *pos < m->cap; (*pos)++) {
        if (m->slots[*pos].value != NULL) {
            *key = m->slots[*pos].key;
            *value = m->slots[*pos].value;
            (*pos)++;
            return true;
        }
    }
    return false;
}
