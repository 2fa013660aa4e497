/*
 * A hash map from uint64_t keys to pointers: open addressing, linear probing, backward-
 * shift deletion (no tombstones), power-of-two capacity kept at most 7/8 full.
 *
 * Used wherever a shard looks things up by id (Raft groups in the WAL, ranges, peers).
 * Any key is allowed, 0 included. Values are borrowed: the map never frees them.
 * Growth allocates through the allocator given at init and may fail with TS_ENOMEM,
 * leaving the map unchanged. One shard only.
 */
#ifndef TS_CORE_UTIL_MAP64_H
#define TS_CORE_UTIL_MAP64_H

#include "core/util/mem.h"

#include <stdbool.h>
#include <stdint.h>

struct ts_map64_slot {
    uint64_t key;
    void *value; /* NULL: the slot is empty (so values must not be NULL) */
};

struct ts_map64 {
    const struct ts_allocator *alloc;
    struct ts_map64_slot *slots;
    uint32_t cap; /* power of two, or 0 before the first insert */
    uint32_t count;
};

void ts_map64_init(struct ts_map64 *m, const struct ts_allocator *alloc);
void ts_map64_fini(struct ts_map64 *m);

/* Returns the value for key, or NULL. */
void *ts_map64_get(const struct ts_map64 *m, uint64_t key);

/* Inserts or replaces (value != NULL). Returns 0 or TS_ENOMEM. */
int ts_map64_put(struct ts_map64 *m, uint64_t key, void *value);

/* Removes key; returns its value or NULL when absent. */
void *ts_map64_del(struct ts_map64 *m, uint64_t key);

/* Iteration: for (uint32_t i = 0; ts_map64_next(m, &i, &k, &v);) { ... }. The map must
 * not change during iteration. */
bool ts_map64_next(const struct ts_map64 *m, uint32_t *pos, uint64_t *key, void **value);

#endif
