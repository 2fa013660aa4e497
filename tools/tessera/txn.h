/*
 * tools/tessera: the parser of `tessera txn`'s input (etcdctl's interactive syntax, see
 * the --help text in main.c): compares, a blank line, the ops run when they all hold, a
 * blank line, the ops run otherwise. The parsed compares and ops point into t->pool,
 * which the parse allocates and txn_input_free() releases.
 */
#ifndef TS_TOOLS_TESSERA_TXN_H
#define TS_TOOLS_TESSERA_TXN_H

#include "net/client/tessera.h"

#include <stdio.h>

/* Bytes of stdin a txn may hold: TESSERA_TXN_OPS_MAX ops of a key and a value each. */
#define TXN_INPUT_BYTES_MAX (64u * 1024u * 1024u)

struct txn_input {
    struct tessera_compare cmp[TESSERA_TXN_OPS_MAX];
    size_t ncmp;
    struct tessera_txn_op ops[2][TESSERA_TXN_OPS_MAX]; /* [0] success, [1] failure */
    size_t nops[2];
    char *text; /* the input, then the decoded words */
    char *pool;
};

/* Reads and parses in. Returns 0, or -1 with a message in err (line number first). */
int txn_input_read(FILE *in, struct txn_input *t, char *err, size_t err_bytes);

void txn_input_free(struct txn_input *t);

#endif
