/* Tests for core/util/log: the line format, the threshold and whole-line writes. */
#include "core/util/log.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* stderr redirected into a temporary file for the duration of a test. */
struct capture {
    FILE *file;
    int saved_stderr;
};

static void capture_start(struct capture *c)
{
    c->file = tmpfile();
    cr_assert_not_null(c->file);
    c->saved_stderr = dup(STDERR_FILENO);
    cr_assert_geq(c->saved_stderr, 0);
    cr_assert_eq(dup2(fileno(c->file), STDERR_FILENO), STDERR_FILENO);
}

/* Restores stderr and returns what was written (malloc'd, NUL-terminated). */
static char *capture_end(struct capture *c, size_t *len_out)
{
    cr_assert_eq(dup2(c->saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close(c->saved_stderr);
    struct stat st;
    cr_assert_eq(fstat(fileno(c->file), &st), 0);
    ssize_t len = (ssize_t)st.st_size;
    char *text = malloc((size_t)len + 1);
    cr_assert_not_null(text);
    cr_assert_eq(pread(fileno(c->file), text, (size_t)len, 0), len);
    text[len] = '\0';
    fclose(c->file);
    *len_out = (size_t)len;
    return text;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0, "pattern %s", pattern);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    cr_assert_eq(rc, 0, "\"%s\" does not match %s", text, pattern);
}

#define TIME_RE "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z"

Test(log, line_has_timestamp_level_shard_and_location)
{
    struct ts_log log;
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_INFO);
    ts_shard_id_set(3);
    struct capture c;
    capture_start(&c);
    TS_LOG_ERROR(&log, "disk %s failed: %d", "wal0", 42);
    size_t len = 0;
    char *text = capture_end(&c, &len);
    assert_matches(text,
                   "^" TIME_RE " ERROR shard 3 util/test_log.c:[0-9]+: disk wal0 failed: 42\n$");
    free(text);
}

Test(log, levels_are_padded_and_outside_a_shard_is_minus_one)
{
    struct ts_log log;
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_TRACE);
    struct capture c;
    capture_start(&c);
    TS_LOG_WARN(&log, "w");
    TS_LOG_INFO(&log, "i");
    TS_LOG_DEBUG(&log, "d");
    TS_LOG_TRACE(&log, "t");
    size_t len = 0;
    char *text = capture_end(&c, &len);
    assert_matches(text, "^" TIME_RE " WARN  shard -1 util/test_log.c:[0-9]+: w\n" TIME_RE
                         " INFO  shard -1 util/test_log.c:[0-9]+: i\n" TIME_RE
                         " DEBUG shard -1 util/test_log.c:[0-9]+: d\n" TIME_RE
                         " TRACE shard -1 util/test_log.c:[0-9]+: t\n$");
    free(text);
}

static int count_evaluation(int *evaluations)
{
    return ++*evaluations;
}

Test(log, threshold_drops_less_severe_lines_without_evaluating_them)
{
    struct ts_log log;
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_WARN);
    int evaluations = 0;
    struct capture c;
    capture_start(&c);
    TS_LOG_INFO(&log, "dropped %d", count_evaluation(&evaluations));
    TS_LOG_DEBUG(&log, "dropped %d", count_evaluation(&evaluations));
    TS_LOG_TRACE(&log, "dropped %d", count_evaluation(&evaluations));
    TS_LOG_WARN(&log, "kept %d", count_evaluation(&evaluations));
    TS_LOG_ERROR(&log, "kept %d", count_evaluation(&evaluations));
    ts_log_set_threshold(&log, TS_LOG_LEVEL_ERROR);
    TS_LOG_WARN(&log, "dropped %d", count_evaluation(&evaluations));
    ts_log_set_threshold(&log, TS_LOG_LEVEL_DEBUG);
    TS_LOG_DEBUG(&log, "kept %d", count_evaluation(&evaluations));
    TS_LOG_TRACE(&log, "dropped %d", count_evaluation(&evaluations));
    size_t len = 0;
    char *text = capture_end(&c, &len);
    cr_assert_eq(evaluations, 3, "arguments of dropped lines are not evaluated");
    cr_assert_null(strstr(text, "dropped"), "got: %s", text);
    assert_matches(text, "^" TIME_RE " WARN  [^\n]*: kept 1\n" TIME_RE
                         " ERROR [^\n]*: kept 2\n" TIME_RE " DEBUG [^\n]*: kept 3\n$");
    free(text);
}

Test(log, enabled_follows_the_threshold)
{
    struct ts_log log;
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_INFO);
    cr_assert(ts_log_enabled(&log, TS_LOG_LEVEL_ERROR));
    cr_assert(ts_log_enabled(&log, TS_LOG_LEVEL_WARN));
    cr_assert(ts_log_enabled(&log, TS_LOG_LEVEL_INFO));
    cr_assert_not(ts_log_enabled(&log, TS_LOG_LEVEL_DEBUG));
    cr_assert_not(ts_log_enabled(&log, TS_LOG_LEVEL_TRACE));
}

Test(log, level_names_parse_back)
{
    for (int l = TS_LOG_LEVEL_ERROR; l <= TS_LOG_LEVEL_TRACE; l++) {
        enum ts_log_level parsed = TS_LOG_LEVEL_ERROR;
        cr_assert_eq(ts_log_level_parse(ts_log_level_name((enum ts_log_level)l), &parsed), 0);
        cr_assert_eq((int)parsed, l);
    }
    enum ts_log_level out = TS_LOG_LEVEL_TRACE;
    cr_assert_eq(ts_log_level_parse("warn", &out), 0);
    cr_assert_eq(out, TS_LOG_LEVEL_WARN);
    cr_assert_eq(ts_log_level_parse("Debug", &out), 0);
    cr_assert_eq(out, TS_LOG_LEVEL_DEBUG);
    cr_assert_eq(ts_log_level_parse("verbose", &out), TS_EINVAL);
    cr_assert_eq(ts_log_level_parse("", &out), TS_EINVAL);
    cr_assert_eq(ts_log_level_parse("warning", &out), TS_EINVAL);
    cr_assert_eq(out, TS_LOG_LEVEL_DEBUG, "a failed parse leaves out untouched");
    cr_assert_str_eq(ts_log_level_name(TS_LOG_LEVEL_INFO), "INFO");
}

Test(log, long_messages_are_cut_and_embedded_newlines_flattened)
{
    char big[3 * TS_LOG_LINE_BYTES_MAX];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct ts_log log;
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_INFO);
    struct capture c;
    capture_start(&c);
    TS_LOG_INFO(&log, "%s", big);
    TS_LOG_INFO(&log, "two\nlines\r");
    size_t len = 0;
    char *text = capture_end(&c, &len);
    char *first_end = strchr(text, '\n');
    cr_assert_not_null(first_end);
    size_t first_len = (size_t)(first_end - text) + 1;
    cr_assert_eq(first_len, TS_LOG_LINE_BYTES_MAX, "the cut line fills the buffer exactly");
    cr_assert(memcmp(first_end - 4, "k...", 4) == 0);
    assert_matches(first_end + 1, "^" TIME_RE " INFO  [^\n]*: two lines \n$");
    free(text);
}

Test(log, errno_is_preserved)
{
    struct ts_log log;
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_INFO);
    struct capture c;
    capture_start(&c);
    errno = ENOSPC;
    TS_LOG_ERROR(&log, "write failed: %m");
    int after = errno;
    size_t len = 0;
    char *text = capture_end(&c, &len);
    cr_assert_eq(after, ENOSPC);
    assert_matches(text, ": write failed: No space left on device\n$");
    free(text);
}

Test(log, write_errors_are_returned)
{
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        cr_skip_test("no /dev/full here");
    }
    struct ts_log log;
    ts_log_init(&log, fd, TS_LOG_LEVEL_INFO);
    errno = 0;
    cr_assert_eq(ts_log_write(&log, TS_LOG_LEVEL_INFO, __FILE__, __LINE__, "lost"), -ENOSPC);
    cr_assert_eq(errno, 0, "errno is preserved on failure too");
    close(fd);
}

#define WRITER_THREADS 4
#define WRITER_LINES 2000

static void *writer(void *arg)
{
    const struct ts_log *log = arg;
    static const char payload[] = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";
    for (int i = 0; i < WRITER_LINES; i++) {
        TS_LOG_INFO(log, "line %d %s %s", i, payload, payload);
    }
    return NULL;
}

Test(log, concurrent_lines_do_not_interleave)
{
    struct ts_log log;
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_INFO);
    struct capture c;
    capture_start(&c);
    pthread_t threads[WRITER_THREADS];
    for (int t = 0; t < WRITER_THREADS; t++) {
        cr_assert_eq(pthread_create(&threads[t], NULL, writer, &log), 0);
    }
    for (int t = 0; t < WRITER_THREADS; t++) {
        cr_assert_eq(pthread_join(threads[t], NULL), 0);
    }
    size_t len = 0;
    char *text = capture_end(&c, &len);
    regex_t re;
    cr_assert_eq(regcomp(&re,
                         "^" TIME_RE " INFO  shard -1 util/test_log.c:[0-9]+: line [0-9]+ "
                         "[a-z0-9]{62} [a-z0-9]{62}$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        cr_assert_eq(regexec(&re, l, 0, NULL, 0), 0, "torn line: %s", l);
        lines++;
    }
    regfree(&re);
    cr_assert_eq(lines, WRITER_THREADS * WRITER_LINES);
    free(text);
}
