/*
 * Per-shard allocator arenas (STYLE R12, R13).
 *
 * In release builds (TS_HAVE_JEMALLOC) each shard gets a jemalloc arena of its own
 * ("arenas.create"), the shard thread is bound to it ("thread.arena", so even plain
 * malloc from that thread lands there), and the shard's struct ts_allocator calls
 * mallocx / rallocx / sdallocx with MALLOCX_ARENA(n). Shards then never contend on an
 * arena lock, and memory freed on its own shard goes back to its own arena (R13).
 *
 * In sanitizer and coverage builds jemalloc is not linked (TOOLCHAIN.md: ASan replaces
 * malloc and reports mallocx + free as a bad free), and the arena is
 * ts_allocator_default().
 *
 * jemalloc arenas cannot be destroyed while anything allocated from them may live on, so
 * an arena outlives its shard: a process that starts many nodes in turn creates one arena
 * per shard each time (jemalloc allows about 4,000).
 *
 * Threads: shard_arena_init on the shard's own thread; the allocator may then be used by
 * that thread only.
 */
#ifndef TS_SHARD_ARENA_H
#define TS_SHARD_ARENA_H

#include "core/util/mem.h"

#include <stdbool.h>

struct shard_arena {
    struct ts_allocator base;
    unsigned index; /* jemalloc arena index; 0 when jemalloc is not used */
    bool jemalloc;
};

/* Creates the arena and binds the calling thread to it, or falls back to the default
 * allocator without jemalloc. The allocator points back at *a, which must therefore stay
 * in place. Returns 0, or -errno from mallctl. */
int shard_arena_init(struct shard_arena *a);

/* The shard's allocator: a view valid while *a lives. */
const struct ts_allocator *shard_arena_allocator(const struct shard_arena *a);

#endif
