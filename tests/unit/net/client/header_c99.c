/* The public header compiles alone as strict C99 (-std=c99 -Wpedantic), before any
 * other include, and its declarations are usable from such a translation unit. */
#include "net/client/tessera.h"

int tessera_test_header_c99(void);

int tessera_test_header_c99(void)
{
    struct tessera_client_config cfg;
    struct tessera_range_opts ro = {0};
    struct tessera_txn_op op = {0};
    struct tessera_compare cmp = {0};
    struct tessera_response r;
    int (*put)(struct tessera_client *, const void *, size_t, const void *, size_t, uint64_t,
               uint32_t, tessera_response_cb, void *) = tessera_put_async;
    tessera_client_config_init(&cfg);
    op.op = TESSERA_OP_PUT;
    r.op = TESSERA_OP_RANGE;
    r.u.del.deleted = 0;
    ro.flags = TESSERA_KEYS_ONLY | TESSERA_COUNT_ONLY;
    cmp.target = TESSERA_CMP_MOD;
    return cfg.connections_per_endpoint == TESSERA_CONNECTIONS_DEFAULT && put != NULL &&
                   op.op == TESSERA_OP_PUT && ro.flags == 0x18u && r.op == TESSERA_OP_RANGE &&
                   cmp.target == TESSERA_CMP_MOD && TESSERA_KEY_BYTES_MAX == 1023u
               ? 0
               : -1;
}
