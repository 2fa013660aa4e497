/*
 * Error codes (STYLE R7).
 *
 * A fallible call returns int: 0 on success, negative on failure. Failures from the
 * operating system pass through as -errno (as liburing does). Tessera's own codes live
 * in a reserved negative range, (-10064, -10000), far below any errno, so the
 * two never collide. One X-macro table feeds both the enum and ts_strerror(), so a
 * code cannot exist without its message.
 *
 * Thread safety: ts_strerror() returns a pointer to a static, immutable string and may
 * be called from any shard.
 */
#ifndef TS_CORE_UTIL_ERR_H
#define TS_CORE_UTIL_ERR_H

#include <stdbool.h>

/* X(name, message). Append only: the numeric values are part of the on-disk and wire
 * formats' error fields only through net/proto's Status enum, not directly. */
#define TS_ERROR_TABLE(X)                                                                          \
    X(TS_EPROTO, "malformed frame or message")                                                     \
    X(TS_ETOOBIG, "size limit exceeded")                                                           \
    X(TS_ECORRUPT, "corrupt data (checksum or structure mismatch)")                                \
    X(TS_ENOTLEADER, "not the leader of this range")                                               \
    X(TS_ESTALEEPOCH, "stale range epoch")                                                         \
    X(TS_ENORANGE, "no such range, or key outside the range")                                      \
    X(TS_ENOTFOUND, "not found")                                                                   \
    X(TS_EFULL, "limit reached, try again later")                                                  \
    X(TS_EUNAVAIL, "unavailable")                                                                  \
    X(TS_ETIMEOUT, "timed out")                                                                    \
    X(TS_ECOMPACTED, "requested revision has been compacted")                                      \
    X(TS_ESHUTDOWN, "shutting down")                                                               \
    X(TS_EINVAL, "invalid argument")                                                               \
    X(TS_ENOMEM, "out of memory")                                                                  \
    X(TS_EIO, "input/output error")                                                                \
    X(TS_ENOSPACE, "no space left on device")

/* Tessera's codes occupy (TS_ERR_FIRST_, TS_ERR_END_), a window just above -10064 that
 * counts upward in table order: -10063 is TS_EPROTO, -10062 TS_ETOOBIG, and so on. */
enum {
    TS_ERR_FIRST_ = -10064,
#define TS_ERR_ENUM_(name, msg) name,
    TS_ERROR_TABLE(TS_ERR_ENUM_)
#undef TS_ERR_ENUM_
        TS_ERR_END_
};
_Static_assert(TS_ERR_END_ <= -10000, "too many Tessera error codes for the reserved range");

/* Returns a message for 0, any Tessera code or any -errno. Never NULL. */
const char *ts_strerror(int code);

/* Returns the symbolic name ("TS_EPROTO", "ENOENT", "OK"). Never NULL. */
const char *ts_errname(int code);

/* True for codes in Tessera's own range. */
static inline bool ts_err_is_tessera(int code)
{
    return code > TS_ERR_FIRST_ && code < TS_ERR_END_;
}

#endif
