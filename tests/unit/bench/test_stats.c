/* Tests for bench/tessera-bench/stats: counting, merging, percentiles as the summary
 * reports them, and the text, JSON and progress formats. */
#include "bench/tessera-bench/stats.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *fake_name(int code)
{
    const char *own = tb_own_err_name(code);
    if (own != NULL) {
        return own;
    }
    return code == -1 ? "timed \"out\"" : "some error";
}

static struct tb_stats *stats_new(void)
{
    struct tb_stats *s = malloc(sizeof *s);
    cr_assert_not_null(s);
    tb_stats_init(s);
    return s;
}

Test(tb_stats, counts_errors_by_kind)
{
    struct tb_stats *s = stats_new();
    tb_stats_record_error(s, -1);
    tb_stats_record_error(s, -2);
    tb_stats_record_error(s, -1);
    cr_assert_eq(s->errors, 3);
    cr_assert_eq(s->kinds, 2);
    cr_assert_eq(s->err[0].code, -1);
    cr_assert_eq(s->err[0].count, 2);
    for (int c = 100; c < 200; c++) {
        tb_stats_record_error(s, -c);
    }
    cr_assert_eq(s->kinds, TB_ERR_KINDS_MAX);
    cr_assert_eq(s->err_other, 100 - (TB_ERR_KINDS_MAX - 2));
    cr_assert_eq(s->errors, 103);
    free(s);
}

Test(tb_stats, merge_adds_everything)
{
    struct tb_stats *a = stats_new(), *b = stats_new();
    tb_stats_record_ok(a, 1000);
    tb_stats_record_ok(b, 3000);
    tb_stats_record_error(a, -1);
    tb_stats_record_error(b, -1);
    tb_stats_record_error(b, -7);
    b->misses = 2;
    b->cas_ok = 3;
    b->cas_conflicts = 4;
    tb_stats_merge(a, b);
    cr_assert_eq(a->ops, 2);
    cr_assert_eq(a->errors, 3);
    cr_assert_eq(a->kinds, 2);
    cr_assert_eq(a->err[0].count, 2);
    cr_assert_eq(a->misses, 2);
    cr_assert_eq(a->cas_ok, 3);
    cr_assert_eq(a->cas_conflicts, 4);
    cr_assert_eq(ts_histogram_max(&a->latency), 3000);
    cr_assert_eq(ts_histogram_min(&a->latency), 1000);
    free(a);
    free(b);
}

/* A summary of 1000 operations with latencies 1..1000 us in 2 s. */
static struct tb_summary summary_of(struct tb_stats *s)
{
    for (uint64_t i = 1; i <= 1000; i++) {
        tb_stats_record_ok(s, i * 1000);
    }
    tb_stats_record_error(s, -1);
    tb_stats_record_error(s, TB_ECASRETRIES);
    s->cas_ok = 1000;
    s->cas_conflicts = 12;
    return (struct tb_summary){
        .workload = "txn-cas",
        .target = "zookeeper",
        .hosts = "127.0.0.1:2181",
        .consistency = "serializable",
        .key_dist = "zipfian",
        .note = "a \"quoted\" note",
        .threads = 2,
        .conns = 4,
        .clients = 16,
        .inflight = 2,
        .key_size = 16,
        .val_size = 128,
        .keyspace = 1000,
        .elapsed_ns = 2000000000ull,
        .stats = s,
        .err_name = fake_name,
    };
}

static char *print(void (*fn)(FILE *, const struct tb_summary *), const struct tb_summary *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    fn(f, s);
    fclose(f);
    return buf;
}

Test(tb_stats, text_summary)
{
    struct tb_stats *st = stats_new();
    struct tb_summary s = summary_of(st);
    char *out = print(tb_summary_print_text, &s);
    const char *want[] = {
        "tessera-bench txn-cas against zookeeper (127.0.0.1:2181)\n",
        "threads 2, connections 4, clients 16, inflight 2 per client",
        "1000 keys of 16 bytes, zipfian, values of 128 bytes",
        "open throttle",
        "1000 ops in 2.000 s: 500.0 ops/s",
        "max 1000.0",
        "1000 succeeded, 12 conflicts (retried)",
        "errors      2",
        "timed \"out\"",
        "tessera-bench: CAS retries exhausted",
        "(-30001) 1",
        "note        a \"quoted\" note",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert(strstr(out, want[i]) != NULL, "no '%s' in:\n%s", want[i], out);
    }
    cr_assert(strstr(out, "misses") == NULL, "no misses line without misses");
    /* Nearest rank: p50 is the 500th sample (500 us), p90 the 900th, p99 the 990th, p99.9
     * the 999th; the histogram reports each within 0.39%. */
    double p50, p90, p99, p999;
    const char *lat = strstr(out, "latency us");
    cr_assert_not_null(lat);
    cr_assert_eq(
        sscanf(lat, "latency us  p50 %lf p90 %lf p99 %lf p99.9 %lf", &p50, &p90, &p99, &p999), 4,
        "%s", lat);
    cr_assert(p50 > 498.0 && p50 < 502.0, "%f", p50);
    cr_assert(p90 > 896.4 && p90 < 903.6, "%f", p90);
    cr_assert(p99 > 986.1 && p99 < 993.9, "%f", p99);
    cr_assert(p999 > 995.1 && p999 <= 1000.0, "%f", p999);
    free(out);
    free(st);
}

Test(tb_stats, percentiles_are_those_of_the_histogram)
{
    struct tb_stats *st = stats_new();
    summary_of(st);
    uint64_t p50 = ts_histogram_percentile(&st->latency, 50.0);
    uint64_t p999 = ts_histogram_percentile(&st->latency, 99.9);
    cr_assert(p50 >= 498000 && p50 <= 502000, "%lu", (unsigned long)p50);
    cr_assert(p999 >= 995000 && p999 <= 1000000, "%lu", (unsigned long)p999);
    cr_assert_eq(ts_histogram_max(&st->latency), 1000000);
    free(st);
}

Test(tb_stats, json_summary)
{
    struct tb_stats *st = stats_new();
    struct tb_summary s = summary_of(st);
    s.rate = 1234.5;
    s.interrupted = true;
    char *out = print(tb_summary_print_json, &s);
    cr_assert_eq(out[0], '{');
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line");
    cr_assert_eq(out[strlen(out) - 2], '}');
    const char *want[] = {
        "\"workload\":\"txn-cas\"",
        "\"target\":\"zookeeper\"",
        "\"consistency\":\"serializable\"",
        "\"ops\":1000,",
        "\"ops_per_s\":500.000",
        "\"rate\":1234.500",
        "\"interrupted\":true",
        "\"latency_us\":{\"p50\":500.",
        "\"max\":1000.000",
        "\"cas_succeeded\":1000,\"cas_conflicts\":12",
        "\"errors\":2,",
        "{\"code\":-1,\"name\":\"timed \\\"out\\\"\",\"count\":1}",
        "\"note\":\"a \\\"quoted\\\" note\"}",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert(strstr(out, want[i]) != NULL, "no '%s' in:\n%s", want[i], out);
    }
    /* Braces and brackets balance outside strings. */
    int depth = 0;
    bool in_str = false;
    for (const char *p = out; *p; p++) {
        if (in_str) {
            if (*p == '\\') {
                p++;
            } else if (*p == '"') {
                in_str = false;
            }
            continue;
        }
        in_str = *p == '"';
        depth += (*p == '{' || *p == '[') - (*p == '}' || *p == ']');
        cr_assert(depth >= 0);
    }
    cr_assert_eq(depth, 0);
    cr_assert(!in_str);
    free(out);
    free(st);
}

Test(tb_stats, json_null_note_and_empty_run)
{
    struct tb_stats *st = stats_new();
    struct tb_summary s = {.workload = "put",
                           .target = "tessera",
                           .hosts = "h:1",
                           .consistency = "linearizable",
                           .key_dist = "uniform",
                           .stats = st,
                           .err_name = fake_name};
    char *out = print(tb_summary_print_json, &s);
    cr_assert(strstr(out, "\"note\":null}") != NULL, "%s", out);
    cr_assert(strstr(out, "\"ops_per_s\":0.000") != NULL, "no division by zero: %s", out);
    cr_assert(strstr(out, "\"errors_by_kind\":[]") != NULL, "%s", out);
    free(out);
    free(st);
}

Test(tb_stats, progress_line)
{
    struct tb_stats *st = stats_new();
    for (int i = 0; i < 100; i++) {
        tb_stats_record_ok(st, 2000);
    }
    tb_stats_record_error(st, -1);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tb_progress_print(f, "", 3.0, 0.5, st);
    fclose(f);
    cr_assert(strstr(buf, "3.0 s") != NULL, "%s", buf);
    cr_assert(strstr(buf, "200 ops/s") != NULL, "%s", buf);
    cr_assert(strstr(buf, "p50       2.0 us") != NULL, "%s", buf);
    cr_assert(strstr(buf, "errors 1\n") != NULL, "%s", buf);
    free(buf);
    free(st);
}
