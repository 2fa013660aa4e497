/* The public header compiles alone as strict C99 (-std=c99 -Wpedantic), before any
 * other include, and its declarations are usable from such a translation unit. */
#include "net/client/tessera.h"

int tessera_test_header_c99(void);

int tessera_test_header_c99(void)
{
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    return cfg.connections_per_endpoint == TESSERA_CONNECTIONS_DEFAULT ? 0 : -1;
}
