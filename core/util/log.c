#include "core/util/log.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

_Static_assert(TS_LOG_LINE_BYTES_MAX <= PIPE_BUF, "a line must fit one atomic pipe write");

/* Longest file name printed; longer ones are cut. Bounds the prefix (see PREFIX_BYTES_MAX). */
#define FILE_CHARS_MAX 96

/* Timestamp (27) + level (5) + "shard" and an int (17) + file + line (11) + separators. */
#define PREFIX_BYTES_MAX 192
_Static_assert(PREFIX_BYTES_MAX > 27 + 5 + 17 + FILE_CHARS_MAX + 11 + 6, "prefix fits");
_Static_assert(PREFIX_BYTES_MAX * 2 < TS_LOG_LINE_BYTES_MAX, "room is left for the message");

/* Attempts at writing one line before giving up on a descriptor that accepts nothing. */
#define WRITE_ATTEMPTS_MAX 64

static const char *const level_names[] = {
    [TS_LOG_LEVEL_ERROR] = "ERROR", [TS_LOG_LEVEL_WARN] = "WARN",   [TS_LOG_LEVEL_INFO] = "INFO",
    [TS_LOG_LEVEL_DEBUG] = "DEBUG", [TS_LOG_LEVEL_TRACE] = "TRACE",
};

static bool level_valid(enum ts_log_level level)
{
    return level >= TS_LOG_LEVEL_ERROR && level <= TS_LOG_LEVEL_TRACE;
}

void ts_log_init(struct ts_log *log, int fd, enum ts_log_level threshold)
{
    TS_ASSERT(log != NULL);
    TS_ASSERT(fd >= 0);
    TS_ASSERT(level_valid(threshold));
    log->fd = fd;
    log->threshold = threshold;
}

void ts_log_set_threshold(struct ts_log *log, enum ts_log_level threshold)
{
    TS_ASSERT(log != NULL);
    TS_ASSERT(level_valid(threshold));
    log->threshold = threshold;
}

const char *ts_log_level_name(enum ts_log_level level)
{
    TS_ASSERT(level_valid(level));
    const char *name = level_names[level];
    TS_DASSERT(name != NULL);
    return name;
}

int ts_log_level_parse(const char *name, enum ts_log_level *out)
{
    TS_ASSERT(name != NULL);
    TS_ASSERT(out != NULL);
    for (int l = TS_LOG_LEVEL_ERROR; l <= TS_LOG_LEVEL_TRACE; l++) {
        if (strcasecmp(name, level_names[l]) == 0) {
            *out = (enum ts_log_level)l;
            return 0;
        }
    }
    return TS_EINVAL;
}

/* The last two components of a path: "/src/core/raft/log.c" gives "raft/log.c". */
static const char *short_path(const char *file)
{
    TS_DASSERT(file != NULL);
    const char *last = NULL;
    const char *before_last = NULL;
    for (const char *p = file; *p != '\0'; p++) {
        if (*p == '/') {
            before_last = last;
            last = p;
        }
    }
    const char *start = before_last != NULL ? before_last + 1 : file;
    TS_DASSERT(start >= file);
    return start;
}

/* Writes the prefix into buf (at least PREFIX_BYTES_MAX) and returns its length. */
static size_t format_prefix(char *buf, enum ts_log_level level, const char *file, int line)
{
    struct timespec now = {0};
    struct tm tm = {0};
    /* CLOCK_REALTIME cannot fail with a valid clock id and pointer; on a failure the line
     * carries the epoch rather than being lost. */
    (void)clock_gettime(CLOCK_REALTIME, &now);
    if (gmtime_r(&now.tv_sec, &tm) == NULL) {
        tm = (struct tm){.tm_mday = 1, .tm_year = 70};
    }
    int n =
        snprintf(buf, PREFIX_BYTES_MAX,
                 "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %-5s shard %d %.*s:%d: ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000,
                 level_names[level], ts_shard_id(), FILE_CHARS_MAX, short_path(file), line);
    TS_ASSERT(n > 0);
    TS_ASSERT(n < PREFIX_BYTES_MAX);
    return (size_t)n;
}

/* Formats the message into buf[0..cap) followed by a newline, cutting it (and ending it
 * in "...") when it does not fit. Returns the length including the newline. */
static size_t format_message(char *buf, size_t cap, const char *fmt, va_list ap)
{
    TS_ASSERT(cap > PREFIX_BYTES_MAX);
    int r = vsnprintf(buf, cap, fmt, ap);
    if (r < 0) {
        r = snprintf(buf, cap, "(bad log format \"%s\")", fmt);
        r = r < 0 ? 0 : r;
    }
    size_t len = (size_t)r;
    if (len > cap - 1) {
        len = cap - 1;
        buf[len - 3] = '.';
        buf[len - 2] = '.';
        buf[len - 1] = '.';
    }
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n' || buf[i] == '\r') {
            buf[i] = ' ';
        }
    }
    buf[len] = '\n';
    TS_DASSERT(len + 1 <= cap);
    return len + 1;
}

/* One write(2) for the whole line in all but pathological cases. */
static int write_line(int fd, const char *buf, size_t len)
{
    TS_ASSERT(len > 0);
    TS_ASSERT(len <= TS_LOG_LINE_BYTES_MAX);
    size_t off = 0;
    for (int attempt = 0; attempt < WRITE_ATTEMPTS_MAX && off < len; attempt++) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -errno;
        }
        off += (size_t)w;
    }
    return off == len ? 0 : TS_EIO;
}

int ts_log_vwrite(const struct ts_log *log, enum ts_log_level level, const char *file, int line,
                  const char *fmt, va_list ap)
{
    TS_ASSERT(log != NULL);
    TS_ASSERT(level_valid(level));
    TS_ASSERT(file != NULL);
    TS_ASSERT(fmt != NULL);
    char buf[TS_LOG_LINE_BYTES_MAX];
    int saved_errno = errno;
    size_t n = format_prefix(buf, level, file, line);
    errno = saved_errno; /* for %m in fmt */
    n += format_message(buf + n, sizeof(buf) - n, fmt, ap);
    TS_DASSERT(n <= sizeof(buf));
    TS_DASSERT(buf[n - 1] == '\n');
    int rc = write_line(log->fd, buf, n);
    errno = saved_errno;
    return rc;
}

int ts_log_write(const struct ts_log *log, enum ts_log_level level, const char *file, int line,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ts_log_vwrite(log, level, file, line, fmt, ap);
    va_end(ap);
    return rc;
}
