/* Tests for core/util/err: the code range, names and messages (STYLE R7). */
#include "core/util/err.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#define CODE_(name, msg) name,
static const int codes[] = {TS_ERROR_TABLE(CODE_)};
#undef CODE_

#define NAME_(name, msg) #name,
static const char *const code_names[] = {TS_ERROR_TABLE(NAME_)};
#undef NAME_

#define MSG_(name, msg) msg,
static const char *const code_messages[] = {TS_ERROR_TABLE(MSG_)};
#undef MSG_

#define NCODES (sizeof(codes) / sizeof(codes[0]))

Test(err, codes_are_consecutive_in_the_reserved_range)
{
    cr_assert_eq(NCODES, (size_t)(TS_ERR_END_ - TS_ERR_FIRST_ - 1));
    for (size_t i = 0; i < NCODES; i++) {
        cr_assert_eq(codes[i], TS_ERR_FIRST_ + 1 + (int)i);
        cr_assert(ts_err_is_tessera(codes[i]), "%s", code_names[i]);
        cr_assert_lt(codes[i], -4096, "%s collides with the errno range", code_names[i]);
    }
    cr_assert_eq(TS_EPROTO, -10063);
    cr_assert_not(ts_err_is_tessera(TS_ERR_FIRST_));
    cr_assert_not(ts_err_is_tessera(TS_ERR_END_));
    cr_assert_not(ts_err_is_tessera(0));
    cr_assert_not(ts_err_is_tessera(-ENOENT));
}

Test(err, every_code_has_its_own_name_and_message)
{
    for (size_t i = 0; i < NCODES; i++) {
        cr_assert_str_eq(ts_errname(codes[i]), code_names[i]);
        cr_assert_str_eq(ts_strerror(codes[i]), code_messages[i]);
        cr_assert_gt(strlen(ts_strerror(codes[i])), 0);
        for (size_t j = 0; j < i; j++) {
            cr_assert_str_neq(ts_errname(codes[i]), ts_errname(codes[j]));
            cr_assert_str_neq(ts_strerror(codes[i]), ts_strerror(codes[j]), "%s and %s",
                              code_names[i], code_names[j]);
        }
    }
}

Test(err, success)
{
    cr_assert_str_eq(ts_strerror(0), "success");
    cr_assert_str_eq(ts_errname(0), "OK");
}

Test(err, errno_codes_pass_through)
{
    cr_assert_str_eq(ts_strerror(-ENOENT), "No such file or directory");
    cr_assert_str_eq(ts_errname(-ENOENT), "ENOENT");
    cr_assert_str_eq(ts_strerror(-EAGAIN), strerror(EAGAIN));
    cr_assert_str_eq(ts_errname(-EAGAIN), "EAGAIN");
    cr_assert_str_eq(ts_errname(-ENOSPC), "ENOSPC");
    cr_assert_str_eq(ts_errname(-EIO), "EIO");
    /* Tessera's own codes are distinct from their errno look-alikes. */
    cr_assert_str_neq(ts_errname(TS_EIO), ts_errname(-EIO));
    cr_assert_str_neq(ts_errname(TS_EINVAL), ts_errname(-EINVAL));
}

Test(err, unknown_codes_get_a_fixed_answer)
{
    static const int unknown[] = {1,      42,     ENOENT,         -4095,
                                  -4096,  -5000,  TS_ERR_FIRST_,  TS_ERR_END_,
                                  -10000, -20000, -2147483647 - 1};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        cr_assert_str_eq(ts_strerror(unknown[i]), "unknown error", "code %d", unknown[i]);
        cr_assert_str_eq(ts_errname(unknown[i]), "EUNKNOWN", "code %d", unknown[i]);
    }
}
