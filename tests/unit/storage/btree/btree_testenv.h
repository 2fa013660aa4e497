/*
 * Shared fixtures for the storage/btree unit tests that run the tree on the simulated
 * disk (test_btree.c, test_btree_cache.c, test_btree_ranges.c).
 *
 *   struct bte_env    one simulated disk (metadata durable: the file's directory entry
 *                     survives a crash) with one tree, "tree", on it; the seed every
 *                     assertion names; and the value buffers the checks use.
 *   struct bte_model  a reference model: a sorted key space with one version per key
 *                     (0: absent). Values derive from (slot, version), so the model stores
 *                     no bytes. How long keys and values are is a parameter (struct
 *                     bte_shape), so each suite keeps its own key space.
 *
 * Every helper asserts with Criterion, naming the seed, so a failure names its run.
 */
#ifndef TS_TESTS_UNIT_STORAGE_BTREE_BTREE_TESTENV_H
#define TS_TESTS_UNIT_STORAGE_BTREE_BTREE_TESTENV_H

#include "core/util/rand.h"
#include "storage/btree/btree.h"
#include "storage/disk/disk_sim.h"

#include <stdbool.h>
#include <stdint.h>

/* Room for a model key, and keys in a model at most. */
#define BTE_KEY_BYTES_MAX 48u
#define BTE_KEYS_MAX 6000u
/* Overflow values are 5..20 KiB. */
#define BTE_BIG_MIN (5u * 1024u)
#define BTE_BIG_MAX (20u * 1024u)

/* ---- The model ------------------------------------------------------------------- */

/* The lengths of a model's keys and values. Most keys have key_len_base + 0..5 bytes; one
 * in twenty has 1..3; one in ten of the rest key_len_base + 6 .. key_len_max. A value that
 * does not go to overflow pages has 0..value_small_max bytes. */
struct bte_shape {
    uint32_t key_len_base;
    uint32_t key_len_max; /* at most BTE_KEY_BYTES_MAX */
    uint32_t value_small_max;
};

struct bte_key {
    uint8_t len;
    uint8_t b[BTE_KEY_BYTES_MAX];
};

/* The key space, sorted by the tree's order (memcmp, a prefix first), and the version of
 * each key in the tree (0: absent). */
struct bte_model {
    struct bte_key key[BTE_KEYS_MAX];
    uint32_t n;
    uint32_t ver[BTE_KEYS_MAX];
    uint32_t next_ver;
    uint32_t big_one_in; /* one value in big_one_in goes to overflow pages (0: none) */
    struct bte_shape shape;
};

/* The tree's key order: memcmp, then the shorter first. */
int bte_key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);
/* A random key of the shape over a small alphabet (0x00 and 0xff included, so order is
 * unsigned) into out (room for shape->key_len_max bytes); returns its length. */
uint32_t bte_random_key(const struct bte_shape *shape, struct ts_rand *r, uint8_t *out);
/* want random keys, sorted and without duplicates (shared prefixes, keys that are
 * prefixes of others); every key absent. Borrows shape (copied). */
void bte_model_init(struct bte_model *m, struct ts_rand *r, uint32_t want, uint32_t big_one_in,
                    const struct bte_shape *shape);
uint32_t bte_value_len(const struct bte_model *m, uint32_t slot, uint32_t ver);
void bte_value_fill(uint32_t slot, uint32_t ver, uint8_t *buf, uint32_t len);
/* Key and value bytes of slot at version ver[slot] (0 when absent). */
uint64_t bte_slot_bytes(const struct bte_model *m, const uint32_t *ver, uint32_t slot);
/* Sums over the slots [a, b) at the versions ver: live keys, key and value bytes. */
uint64_t bte_range_count(const struct bte_model *m, const uint32_t *ver, uint32_t a, uint32_t b);
uint64_t bte_range_bytes(const struct bte_model *m, const uint32_t *ver, uint32_t a, uint32_t b);

/* ---- The environment ------------------------------------------------------------- */

struct bte_env {
    struct disk_sim *sim;
    struct disk *disk;
    struct btree *t;
    uint64_t seed;
    uint32_t page_bytes;
    uint64_t cache_bytes;      /* 0: btree.h's default */
    uint8_t want[BTE_BIG_MAX]; /* the value a check expects */
    uint8_t got[BTE_BIG_MAX];  /* the value the tree returned */
};

/* Creates the simulated disk (seeded with seed) and opens the tree on it. */
void bte_env_init(struct bte_env *e, uint64_t seed, uint32_t page_bytes, uint64_t cache_bytes);
/* Opens the tree (asserted) on e's disk with e's page and cache sizes. */
void bte_env_open(struct bte_env *e);
void bte_env_reopen(struct bte_env *e);
/* Closes the tree and destroys the disk. */
void bte_env_fini(struct bte_env *e);
struct btree_stats bte_stats(const struct bte_env *e);
/* A checkpoint with the user blob (user, user_len), asserted to succeed. */
void bte_checkpoint(struct bte_env *e, const void *user, uint32_t user_len);

/* The overflow pages the model's values at the versions ver need. */
uint64_t bte_overflow_pages(const struct bte_env *e, const struct bte_model *m,
                            const uint32_t *ver);

/* What bte_check_file compares besides keys, bytes and the free list. */
enum bte_check {
    BTE_CHECK_PAGE_COUNT = 1u << 0,     /* the file's pages, with the tree's in memory */
    BTE_CHECK_OVERFLOW_PAGES = 1u << 1, /* the overflow pages, with bte_overflow_pages */
};

/* Runs btree_check on the closed file; the tree is reopened afterwards. The checker's
 * counts must equal the model's at the versions ver, and the free list it reads from the
 * file must be the one the tree had in memory (so the tree was just checkpointed, with no
 * snapshot open). btree_check itself proves every page is reachable, a page of the chain,
 * or listed, exactly once: a page the tree forgot to free is reported as leaked. checks:
 * a mask of enum bte_check. */
void bte_check_file(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                    uint32_t checks);

/* ---- Changes and checks ---------------------------------------------------------- */

/* Puts slot at the model's next version, in the tree and in m->ver. */
void bte_put_slot(struct bte_env *e, struct bte_model *m, uint32_t slot);
/* Deletes slot (TS_ENOTFOUND when absent), in the tree and in m->ver. */
void bte_delete_slot(struct bte_env *e, struct bte_model *m, uint32_t slot);
/* The tree's count, logical size and tree_bytes equal the model's at the versions ver,
 * which hold live keys. */
void bte_check_totals(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                      uint64_t live, const char *when);

#endif
