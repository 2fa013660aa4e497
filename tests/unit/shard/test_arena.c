/*
 * shard/arena.c: each shard thread gets its own jemalloc arena in release builds, and the
 * default allocator in sanitizer builds.
 */
#include "shard/arena.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#ifdef TS_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

struct arena_probe {
    struct shard_arena arena;
    int rc;
    unsigned bound;  /* thread.arena after init */
    unsigned lookup; /* arenas.lookup of an allocation */
    int data_ok;
};

static void *probe(void *arg)
{
    struct arena_probe *p = arg;
    p->rc = shard_arena_init(&p->arena);
    if (p->rc != 0) {
        return NULL;
    }
    const struct ts_allocator *a = shard_arena_allocator(&p->arena);
    uint8_t *buf = ts_alloc(a, 100);
    memset(buf, 0xab, 100);
    buf = ts_realloc(a, buf, 100, 100000);
    p->data_ok = buf != NULL && buf[0] == 0xab && buf[99] == 0xab;
#ifdef TS_HAVE_JEMALLOC
    size_t len = sizeof(p->bound);
    (void)mallctl("thread.arena", &p->bound, &len, NULL, 0);
    len = sizeof(p->lookup);
    void *ptr = buf;
    (void)mallctl("arenas.lookup", &p->lookup, &len, &ptr, sizeof(ptr));
#endif
    ts_free(a, buf, 100000);
    return NULL;
}

Test(shard_arena, one_arena_per_shard_thread)
{
    struct arena_probe p[2];
    pthread_t t[2];
    memset(p, 0, sizeof(p));
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, probe, &p[i]), 0);
        cr_assert_eq(pthread_join(t[i], NULL), 0);
        cr_assert_eq(p[i].rc, 0);
        cr_assert(p[i].data_ok, "realloc keeps the data");
    }
#ifdef TS_HAVE_JEMALLOC
    for (int i = 0; i < 2; i++) {
        cr_assert(p[i].arena.jemalloc);
        cr_assert_gt(p[i].arena.index, 0, "a fresh arena, not arena 0");
        cr_assert_eq(p[i].bound, p[i].arena.index, "the thread is bound to its arena");
        cr_assert_eq(p[i].lookup, p[i].arena.index, "allocations come from the arena");
    }
    cr_assert_neq(p[0].arena.index, p[1].arena.index);
#else
    for (int i = 0; i < 2; i++) {
        cr_assert(!p[i].arena.jemalloc);
        cr_assert_eq(p[i].arena.base.alloc, ts_allocator_default()->alloc);
    }
#endif
}
