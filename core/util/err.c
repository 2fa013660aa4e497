#define _GNU_SOURCE
#include "core/util/err.h"

#include <string.h>

static const char *const messages[] = {
#define MSG_(name, msg) [name - TS_ERR_FIRST_ - 1] = msg,
    TS_ERROR_TABLE(MSG_)
#undef MSG_
};

static const char *const names[] = {
#define NAME_(name, msg) [name - TS_ERR_FIRST_ - 1] = #name,
    TS_ERROR_TABLE(NAME_)
#undef NAME_
};

const char *ts_strerror(int code)
{
    if (code == 0) {
        return "success";
    }
    if (ts_err_is_tessera(code)) {
        return messages[code - TS_ERR_FIRST_ - 1];
    }
    if (code < 0 && code > -4096) {
        const char *s = strerrordesc_np(-code);
        if (s != NULL) {
            return s;
        }
    }
    return "unknown error";
}

const char *ts_errname(int code)
{
    if (code == 0) {
        return "OK";
    }
    if (ts_err_is_tessera(code)) {
        return names[code - TS_ERR_FIRST_ - 1];
    }
    if (code < 0 && code > -4096) {
        const char *s = strerrorname_np(-code);
        if (s != NULL) {
            return s;
        }
    }
    return "EUNKNOWN";
}
