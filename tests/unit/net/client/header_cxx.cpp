// The public header compiles alone as C++ (-Wpedantic) and links from C++ code.
#include "net/client/tessera.h"

extern "C" int tessera_test_header_cxx(void);

extern "C" int tessera_test_header_cxx(void)
{
    tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    tessera_response_cb cb = [](void *, int, const tessera_response *r) {
        tessera_kv kv;
        (void)tessera_response_kv_at(r, 0, &kv);
        (void)r->u.del.deleted;
    };
    tessera_kv_cb row = [](void *, const tessera_kv *kv) { return kv->key_len > 0 ? 0 : 1; };
    tessera_range_opts ro = {};
    ro.consistency = TESSERA_SERIALIZABLE;
    (void)cb;
    (void)row;
    (void)ro;
    return cfg.retries == TESSERA_RETRIES_DEFAULT && tessera_strerror(TESSERA_EUNAVAIL) != nullptr
               ? 0
               : -1;
}
