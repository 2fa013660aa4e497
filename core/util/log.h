/*
 * Logging: one line per message, with a timestamp, a level and the shard.
 *
 * A line reads
 *
 *     2025-01-02T03:04:05.678901Z WARN  shard 3 raft/log.c:42: message
 *
 * The timestamp is UTC wall-clock time in microseconds. Logging is the one place in
 * core/ that reads a wall clock (CLOCK_REALTIME): the time only labels the line for the
 * humans and tools that correlate logs across machines, and no logic ever reads it back.
 * "shard N" is ts_shard_id() (-1 outside any shard). The file is the last two components
 * of __FILE__, so core/util/log.c and core/raft/log.c stay distinguishable.
 *
 * Each line is formatted into a stack buffer and handed to one write(2). Lines up to
 * PIPE_BUF bytes written to a pipe are atomic, and writes to a regular file or terminal
 * are not split by other writers in practice, so lines from different threads and
 * processes never interleave. Longer messages are cut to TS_LOG_LINE_BYTES_MAX and end in
 * "..."; newlines inside a message become spaces so that a message is always one line.
 * errno is preserved across a log call.
 *
 * State (STYLE R14): there is no global logger. The threshold and the file descriptor
 * live in a struct ts_log that the caller owns and passes to every TS_LOG_* macro, in the
 * same way as struct shard is passed. A shard owns its struct ts_log and is the only one
 * that changes its threshold; a struct shared by several threads must be set up before
 * they start and then only read. The only global this module touches is the thread-local
 * shard id, read through ts_shard_id() (the exception R14 permits).
 *
 * The macros evaluate their format arguments only when the level passes the threshold,
 * so a disabled TRACE line costs one load and one compare. Arguments must therefore not
 * have side effects the program depends on.
 */
#ifndef TS_CORE_UTIL_LOG_H
#define TS_CORE_UTIL_LOG_H

#include "core/util/limits.h"

#include <stdarg.h>
#include <stdbool.h>

/* Lower is more severe. A message is written when its level <= the threshold. */
enum ts_log_level {
    TS_LOG_LEVEL_ERROR = 0,
    TS_LOG_LEVEL_WARN = 1,
    TS_LOG_LEVEL_INFO = 2,
    TS_LOG_LEVEL_DEBUG = 3,
    TS_LOG_LEVEL_TRACE = 4,
};

struct ts_log {
    int fd;                      /* Usually STDERR_FILENO. Borrowed, never closed. */
    enum ts_log_level threshold; /* Messages above this level are dropped. */
};

/* Sets up a logger writing to fd (borrowed: the caller keeps it open while logging). */
void ts_log_init(struct ts_log *log, int fd, enum ts_log_level threshold);

/* Changes the threshold. Only the thread that owns the struct may call it. */
void ts_log_set_threshold(struct ts_log *log, enum ts_log_level threshold);

static inline bool ts_log_enabled(const struct ts_log *log, enum ts_log_level level)
{
    return level <= log->threshold;
}

/* "ERROR", "WARN", "INFO", "DEBUG" or "TRACE". Static string, never NULL. */
const char *ts_log_level_name(enum ts_log_level level);

/* Parses a level name, case-insensitively ("warn", "INFO"). Returns 0, or TS_EINVAL for
 * anything else, leaving *out untouched. Borrows name. */
int ts_log_level_parse(const char *name, enum ts_log_level *out);

/*
 * Formats one line and writes it with a single write(2) (retried on EINTR, continued on
 * a short write). Does not check the threshold: the macros do. Returns 0, or -errno from
 * write(2), or TS_EIO when the descriptor keeps accepting nothing. Callers normally
 * ignore the result: there is nowhere to report a failure to log.
 */
int ts_log_write(const struct ts_log *log, enum ts_log_level level, const char *file, int line,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int ts_log_vwrite(const struct ts_log *log, enum ts_log_level level, const char *file, int line,
                  const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

#define TS_LOG_AT_(log, level, ...)                                                                \
    do {                                                                                           \
        const struct ts_log *ts_log_at_ = (log);                                                   \
        if (ts_log_enabled(ts_log_at_, (level))) {                                                 \
            (void)ts_log_write(ts_log_at_, (level), __FILE__, __LINE__, __VA_ARGS__);              \
        }                                                                                          \
    } while (0)

#define TS_LOG_ERROR(log, ...) TS_LOG_AT_((log), TS_LOG_LEVEL_ERROR, __VA_ARGS__)
#define TS_LOG_WARN(log, ...) TS_LOG_AT_((log), TS_LOG_LEVEL_WARN, __VA_ARGS__)
#define TS_LOG_INFO(log, ...) TS_LOG_AT_((log), TS_LOG_LEVEL_INFO, __VA_ARGS__)
#define TS_LOG_DEBUG(log, ...) TS_LOG_AT_((log), TS_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define TS_LOG_TRACE(log, ...) TS_LOG_AT_((log), TS_LOG_LEVEL_TRACE, __VA_ARGS__)

#endif
