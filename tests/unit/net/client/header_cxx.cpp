// The public header compiles alone as C++ (-Wpedantic) and links from C++ code.
#include "net/client/tessera.h"

extern "C" int tessera_test_header_cxx(void);

extern "C" int tessera_test_header_cxx(void)
{
    tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    tessera_response_cb cb = [](void *, int, const tessera_response *) {};
    (void)cb;
    return cfg.retries == TESSERA_RETRIES_DEFAULT && tessera_strerror(TESSERA_EUNAVAIL) != nullptr
               ? 0
               : -1;
}
