#include "core/util/mem.h"

#include "core/util/assert.h"

#include <stdbool.h>
#include <stdlib.h>

static void *libc_alloc(void *ctx, size_t size)
{
    (void)ctx;
    TS_DASSERT(size > 0);
    return malloc(size);
}

static void *libc_realloc(void *ctx, void *p, size_t old_size, size_t new_size)
{
    (void)ctx;
    (void)old_size;
    TS_DASSERT(new_size > 0);
    return realloc(p, new_size);
}

static void libc_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    (void)size;
    free(p);
}

static const struct ts_allocator libc_allocator = {
    .alloc = libc_alloc,
    .realloc = libc_realloc,
    .free = libc_free,
    .ctx = NULL,
};

const struct ts_allocator *ts_allocator_default(void)
{
    return &libc_allocator;
}

static bool failing_should_fail(struct ts_failing_allocator *fa)
{
    if (fa->fail_after >= 0 && fa->calls >= fa->fail_after) {
        fa->failures++;
        return true;
    }
    fa->calls++;
    return false;
}

static void *failing_alloc(void *ctx, size_t size)
{
    struct ts_failing_allocator *fa = ctx;
    if (failing_should_fail(fa)) {
        return NULL;
    }
    void *p = ts_alloc(fa->inner, size);
    if (p != NULL) {
        fa->live_bytes += (long)size;
    }
    return p;
}

static void *failing_realloc(void *ctx, void *p, size_t old_size, size_t new_size)
{
    struct ts_failing_allocator *fa = ctx;
    if (failing_should_fail(fa)) {
        return NULL;
    }
    void *q = ts_realloc(fa->inner, p, old_size, new_size);
    if (q != NULL) {
        fa->live_bytes += (long)new_size - (long)(p != NULL ? old_size : 0);
    }
    return q;
}

static void failing_free(void *ctx, void *p, size_t size)
{
    struct ts_failing_allocator *fa = ctx;
    fa->live_bytes -= (long)size;
    TS_ASSERT(fa->live_bytes >= 0);
    ts_free(fa->inner, p, size);
}

void ts_failing_allocator_init(struct ts_failing_allocator *fa, const struct ts_allocator *inner,
                               long fail_after)
{
    TS_ASSERT(fa != NULL);
    TS_ASSERT(inner != NULL);
    *fa = (struct ts_failing_allocator){
        .base = {.alloc = failing_alloc,
                 .realloc = failing_realloc,
                 .free = failing_free,
                 .ctx = fa},
        .inner = inner,
        .fail_after = fail_after,
    };
}
