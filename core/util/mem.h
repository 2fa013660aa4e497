/*
 * The allocator interface (STYLE R12).
 *
 * Every module that allocates takes a `const struct ts_allocator *` so that tests can
 * make allocation fail on a countdown and a shard can give each module its own arena.
 * The default, ts_allocator_default(), is libc's malloc: in release builds the
 * executables link jemalloc, which replaces malloc; in sanitizer builds jemalloc is not
 * linked at all (ASan replaces malloc and would report jemalloc's mallocx + free as a
 * bad free). Per-shard jemalloc arenas are built by shard/ on top of this interface.
 *
 * Ownership: memory returned by alloc/realloc is owned by the caller and must be given
 * back to free on the same allocator, with the size it was allocated with.
 */
#ifndef TS_CORE_UTIL_MEM_H
#define TS_CORE_UTIL_MEM_H

#include <stddef.h>

struct ts_allocator {
    /* Returns NULL on failure. size > 0. */
    void *(*alloc)(void *ctx, size_t size);
    /* Returns NULL on failure, leaving p untouched and still owned by the caller. */
    void *(*realloc)(void *ctx, void *p, size_t old_size, size_t new_size);
    void (*free)(void *ctx, void *p, size_t size);
    void *ctx;
};

/* libc's allocator (jemalloc's in release executables). Immutable, any thread. */
const struct ts_allocator *ts_allocator_default(void);

static inline void *ts_alloc(const struct ts_allocator *a, size_t size)
{
    return a->alloc(a->ctx, size);
}

static inline void *ts_realloc(const struct ts_allocator *a, void *p, size_t old_size,
                               size_t new_size)
{
    return a->realloc(a->ctx, p, old_size, new_size);
}

static inline void ts_free(const struct ts_allocator *a, void *p, size_t size)
{
    if (p != NULL) {
        a->free(a->ctx, p, size);
    }
}

/*
 * An allocator for tests that forwards to `inner` and fails every call once
 * `fail_after` calls have succeeded (fail_after < 0: never fails). Counts live bytes
 * so tests can check that everything was given back.
 */
struct ts_failing_allocator {
    struct ts_allocator base;
    const struct ts_allocator *inner;
    long fail_after;
    long calls;
    long failures;
    long live_bytes;
};

void ts_failing_allocator_init(struct ts_failing_allocator *fa, const struct ts_allocator *inner,
                               long fail_after);

#endif
