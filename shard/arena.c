/*
 * Per-shard allocator arenas (see arena.h).
 */
#include "shard/arena.h"

#include "core/util/assert.h"

#include <stddef.h>

#ifdef TS_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

static void *arena_alloc(void *ctx, size_t size)
{
    const struct shard_arena *a = ctx;
    TS_DASSERT(a->jemalloc);
    TS_DASSERT(size > 0);
    return mallocx(size, MALLOCX_ARENA(a->index));
}

static void *arena_realloc(void *ctx, void *p, size_t old_size, size_t new_size)
{
    const struct shard_arena *a = ctx;
    TS_DASSERT(a->jemalloc);
    TS_DASSERT(new_size > 0);
    (void)old_size;
    if (p == NULL) {
        return mallocx(new_size, MALLOCX_ARENA(a->index));
    }
    return rallocx(p, new_size, MALLOCX_ARENA(a->index));
}

static void arena_free(void *ctx, void *p, size_t size)
{
    const struct shard_arena *a = ctx;
    TS_DASSERT(a->jemalloc);
    TS_DASSERT(p != NULL);
    sdallocx(p, size, 0);
}

int shard_arena_init(struct shard_arena *a)
{
    TS_ASSERT(a != NULL);
    unsigned index = 0;
    size_t len = sizeof(index);
    int rc = mallctl("arenas.create", &index, &len, NULL, 0);
    if (rc != 0) {
        return -rc;
    }
    rc = mallctl("thread.arena", NULL, NULL, &index, sizeof(index));
    if (rc != 0) {
        return -rc;
    }
    *a = (struct shard_arena){
        .base = {.alloc = arena_alloc, .realloc = arena_realloc, .free = arena_free, .ctx = a},
        .index = index,
        .jemalloc = true,
    };
    TS_ASSERT(a->base.ctx == a);
    return 0;
}

#else

int shard_arena_init(struct shard_arena *a)
{
    TS_ASSERT(a != NULL);
    *a = (struct shard_arena){.base = *ts_allocator_default(), .index = 0, .jemalloc = false};
    TS_DASSERT(a->base.alloc != NULL);
    return 0;
}

#endif

const struct ts_allocator *shard_arena_allocator(const struct shard_arena *a)
{
    TS_ASSERT(a != NULL);
    TS_ASSERT(a->base.alloc != NULL);
    return &a->base;
}
