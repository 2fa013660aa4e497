/* The public surface: tessera.h alone in C99 and C++, and libtessera.so's exports. */
#include "net/client/tessera.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

int tessera_test_header_c99(void);
int tessera_test_header_cxx(void);

Test(net_client_public, header_compiles_alone_in_c99_and_cxx)
{
    cr_assert_eq(tessera_test_header_c99(), 0);
    cr_assert_eq(tessera_test_header_cxx(), 0);
}

/* nm -D --defined-only lists what the shared library exports: only tessera_ functions. */
Test(net_client_public, shared_library_exports_only_tessera_symbols)
{
    FILE *p = popen("nm -D --defined-only " TS_LIBTESSERA_PATH " 2>&1", "r");
    cr_assert_not_null(p);
    char line[512];
    int exported = 0;
    int foreign = 0;
    int core = 0;
    while (fgets(line, sizeof(line), p) != NULL) {
        char addr[64], type[8], name[400];
        if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3) {
            cr_log_error("unexpected nm output: %s", line);
            foreign++;
            continue;
        }
        if (strncmp(name, "tessera_", 8) == 0) {
            exported++;
            core += strcmp(name, "tessera_client_new") == 0 || strcmp(name, "tessera_ping") == 0;
        } else {
            cr_log_error("exported symbol outside the API: %s", name);
            foreign++;
        }
    }
    cr_assert_eq(pclose(p), 0, "nm failed");
    cr_assert_eq(foreign, 0);
    cr_assert_geq(exported, 13, "the whole API is exported (%d symbols)", exported);
    cr_assert_eq(core, 2, "tessera_client_new and tessera_ping are exported");
}
