/*
 * Shared fixtures of the core/kv unit tests. Every test runs kv on the real B-tree
 * (storage/btree) over the simulated disk, through the same 30-line adapter the shard
 * uses (struct kv_store onto btree.h, one cursor per store).
 *
 *   struct kte       one disk, one tree, the adapter, the scratch area, one range and
 *                    its state; a countdown that makes the adapter fail with -EIO.
 *   struct kte_rec   a sink that records everything (ops, rows with copied bytes).
 *   kte_dump         every key and value of the tree, to compare two stores exactly.
 *
 * Helpers assert with Criterion.
 */
#ifndef TS_TESTS_UNIT_CORE_KV_KV_TESTENV_H
#define TS_TESTS_UNIT_CORE_KV_KV_TESTENV_H

#include "core/kv/kv.h"
#include "storage/btree/btree.h"
#include "storage/disk/disk_sim.h"

#include <stdbool.h>
#include <stdint.h>

#define KTE_ROWS_MAX 1024u
#define KTE_OPS_MAX 300u

struct kte_row {
    uint8_t key[TS_KEY_BYTES_MAX];
    uint32_t key_len;
    uint8_t *value; /* malloc'd copy (NULL for keys_only) */
    uint32_t value_len;
    uint64_t create_rev, mod_rev, version, lease;
    uint32_t op; /* the index of its op */
};

struct kte_op {
    uint8_t kind;
    bool ended;
    struct kv_op_end end;
    uint8_t next_key[TS_KEY_BYTES_MAX];
    uint32_t rows;
};

#define KTE_EVENTS_MAX 512u

struct kte_event {
    uint8_t type;
    struct kte_row kv; /* value malloc'd (NULL for a delete) */
    bool has_prev;
    struct kte_row prev;
};

struct kte_rec {
    struct kv_sink sink;
    int txn_begun, txn_ended;
    bool succeeded;
    struct kte_op ops[KTE_OPS_MAX];
    uint32_t ops_n;
    struct kte_row *rows; /* KTE_ROWS_MAX */
    uint32_t rows_n;
    struct kte_event *events; /* KTE_EVENTS_MAX */
    uint32_t events_n;
};

struct kte {
    struct disk_sim *sim;
    struct disk *disk;
    struct btree *t;
    struct btree_cursor cur;
    struct kv_store store;
    uint8_t *scratch;
    struct kv_range range;
    uint8_t lo[TS_KEY_BYTES_MAX], hi[TS_KEY_BYTES_MAX];
    struct kv_range_state state;
    long fail_after; /* store calls before -EIO; < 0: never */
    uint64_t stamp;  /* the next command's stamp (kte_put etc. add 1 after each) */
    uint8_t *cmd;    /* a command buffer of 2 MiB (a put of the largest key and value) */
};

/* A tree on a fresh simulated disk; range id 7 over [lo, hi) ("" "": everything). */
void kte_init(struct kte *e, uint64_t seed);
void kte_fini(struct kte *e);
void kte_set_range(struct kte *e, uint64_t id, const char *lo, const char *hi);

void kte_rec_init(struct kte_rec *r);
void kte_rec_reset(struct kte_rec *r);
void kte_rec_fini(struct kte_rec *r);

/* Applies encoded command bytes; asserts a zero return unless the store is set to fail,
 * and returns kv_apply's return; *out receives the result. */
int kte_apply_bytes(struct kte *e, const uint8_t *cmd, size_t len, struct kte_rec *rec,
                    struct kv_result *out);

/* Encode one command with stamp e->stamp (then e->stamp++) and apply it; return status. */
uint8_t kte_put_full(struct kte *e, const struct kv_put *p, struct kte_rec *rec,
                     struct kv_result *out);
uint8_t kte_put(struct kte *e, const char *key, const char *value);
/* end: NULL or "" for the key alone, KTE_ALL for every key from key on. */
extern const char KTE_ALL[];
uint8_t kte_del(struct kte *e, const char *key, const char *end, struct kte_rec *rec,
                struct kv_result *out);
uint8_t kte_txn(struct kte *e, const struct kv_compare *c, uint32_t cn, const struct kv_op *s,
                uint32_t sn, const struct kv_op *f, uint32_t fn, struct kte_rec *rec,
                struct kv_result *out);
uint8_t kte_read(struct kte *e, const struct kv_op *op, struct kte_rec *rec, struct kv_result *out);

/* The current kv of a user key through kv_read (false when absent). */
bool kte_get(struct kte *e, const char *key, struct kte_row *out);

/* Every key and value in the tree, concatenated (length-prefixed); free with free(). */
uint8_t *kte_dump(struct kte *e, size_t *len);

struct kv_bytes kte_b(const char *s);
/* "\0", one zero byte: as an end, every key from the start key on. */
struct kv_bytes kte_all(void);

#endif
