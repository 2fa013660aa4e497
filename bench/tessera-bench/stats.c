/* stats: counting and reporting (see stats.h). */
#include "bench/tessera-bench/stats.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "core/util/assert.h"

const char *tb_own_err_name(int code)
{
    switch (code) {
    case TB_ECASRETRIES:
        return "tessera-bench: CAS retries exhausted";
    default:
        return NULL;
    }
}

void tb_stats_init(struct tb_stats *s)
{
    TS_ASSERT(s != NULL);
    memset(s, 0, offsetof(struct tb_stats, latency));
    ts_histogram_init(&s->latency);
}

void tb_stats_record_ok(struct tb_stats *s, uint64_t latency_ns)
{
    s->ops++;
    ts_histogram_record(&s->latency, latency_ns);
    TS_DASSERT(ts_histogram_count(&s->latency) == s->ops);
}

static void add_error(struct tb_stats *s, int code, uint64_t n)
{
    TS_ASSERT(code != 0);
    s->errors += n;
    for (uint32_t i = 0; i < s->kinds; i++) {
        if (s->err[i].code == code) {
            s->err[i].count += n;
            return;
        }
    }
    if (s->kinds < TB_ERR_KINDS_MAX) {
        s->err[s->kinds++] = (struct tb_err_count){.code = code, .count = n};
    } else {
        s->err_other += n;
    }
}

void tb_stats_record_error(struct tb_stats *s, int code)
{
    add_error(s, code, 1);
}

void tb_stats_merge(struct tb_stats *dst, const struct tb_stats *src)
{
    TS_ASSERT(dst != src);
    uint64_t errors = dst->errors + src->errors;
    dst->ops += src->ops;
    dst->misses += src->misses;
    dst->cas_ok += src->cas_ok;
    dst->cas_conflicts += src->cas_conflicts;
    for (uint32_t i = 0; i < src->kinds; i++) {
        add_error(dst, src->err[i].code, src->err[i].count);
    }
    dst->err_other += src->err_other;
    dst->errors += src->err_other;
    ts_histogram_merge(&dst->latency, &src->latency);
    TS_ASSERT(dst->errors == errors);
}

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

static double throughput(const struct tb_summary *s)
{
    return s->elapsed_ns > 0 ? (double)s->stats->ops * 1e9 / (double)s->elapsed_ns : 0.0;
}

static const double pcts[] = {50.0, 90.0, 99.0, 99.9};
static const char *const pct_names[] = {"p50", "p90", "p99", "p99.9"};

void tb_summary_print_text(FILE *f, const struct tb_summary *s)
{
    const struct tb_stats *st = s->stats;
    fprintf(f, "tessera-bench %s against %s (%s)%s\n", s->workload, s->target, s->hosts,
            s->interrupted ? ": interrupted" : "");
    fprintf(f, "  setup       threads %u, connections %u, clients %u, inflight %u per client\n",
            s->threads, s->conns, s->clients, s->inflight);
    fprintf(f, "  keys        %" PRIu64 " keys of %u bytes, %s, values of %u bytes\n", s->keyspace,
            s->key_size, s->key_dist, s->val_size);
    if (strcmp(s->workload, "get") == 0 || strcmp(s->workload, "mixed") == 0 ||
        strcmp(s->workload, "txn-cas") == 0) {
        fprintf(f, "  reads       %s", s->consistency);
        if (strcmp(s->workload, "mixed") == 0) {
            fprintf(f, ", read ratio %.3f", s->read_ratio);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "  rate        ");
    if (s->rate > 0.0) {
        fprintf(f, "%.0f ops/s scheduled (latency from the scheduled time)\n", s->rate);
    } else {
        fprintf(f, "open throttle (latency from the send)\n");
    }
    fprintf(f, "  total       %" PRIu64 " ops in %.3f s: %.1f ops/s\n", st->ops,
            (double)s->elapsed_ns / 1e9, throughput(s));
    fprintf(f, "  latency us ");
    for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
        fprintf(f, " %s %.1f", pct_names[i], us(ts_histogram_percentile(&st->latency, pcts[i])));
    }
    fprintf(f, " max %.1f mean %.1f\n", us(ts_histogram_max(&st->latency)),
            ts_histogram_mean(&st->latency) / 1e3);
    if (strcmp(s->workload, "txn-cas") == 0) {
        fprintf(f, "  cas         %" PRIu64 " succeeded, %" PRIu64 " conflicts (retried)\n",
                st->cas_ok, st->cas_conflicts);
    }
    if (st->misses > 0) {
        fprintf(f, "  misses      %" PRIu64 " reads found no key (use --prefill)\n", st->misses);
    }
    fprintf(f, "  errors      %" PRIu64 "\n", st->errors);
    for (uint32_t i = 0; i < st->kinds; i++) {
        fprintf(f, "    %-40s (%d) %" PRIu64 "\n", s->err_name(st->err[i].code), st->err[i].code,
                st->err[i].count);
    }
    if (st->err_other > 0) {
        fprintf(f, "    %-40s %" PRIu64 "\n", "other kinds", st->err_other);
    }
    if (s->note != NULL) {
        fprintf(f, "  note        %s\n", s->note);
    }
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_str(FILE *f, const char *str)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(str != NULL ? str : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_errors(FILE *f, const struct tb_summary *s)
{
    const struct tb_stats *st = s->stats;
    fprintf(f, "\"errors\":%" PRIu64 ",\"errors_by_kind\":[", st->errors);
    for (uint32_t i = 0; i < st->kinds; i++) {
        fprintf(f, "%s{\"code\":%d,\"name\":", i > 0 ? "," : "", st->err[i].code);
        json_str(f, s->err_name(st->err[i].code));
        fprintf(f, ",\"count\":%" PRIu64 "}", st->err[i].count);
    }
    fprintf(f, "],\"errors_other\":%" PRIu64, st->err_other);
}

void tb_summary_print_json(FILE *f, const struct tb_summary *s)
{
    const struct tb_stats *st = s->stats;
    const struct ts_histogram *h = &st->latency;
    fprintf(f, "{\"workload\":");
    json_str(f, s->workload);
    fprintf(f, ",\"target\":");
    json_str(f, s->target);
    fprintf(f, ",\"hosts\":");
    json_str(f, s->hosts);
    fprintf(f, ",\"consistency\":");
    json_str(f, s->consistency);
    fprintf(f, ",\"key_dist\":");
    json_str(f, s->key_dist);
    fprintf(f,
            ",\"threads\":%u,\"conns\":%u,\"clients\":%u,\"inflight\":%u,\"key_size\":%u,"
            "\"val_size\":%u,\"keyspace\":%" PRIu64 ",\"rate\":%.3f,\"read_ratio\":%.3f,"
            "\"interrupted\":%s,",
            s->threads, s->conns, s->clients, s->inflight, s->key_size, s->val_size, s->keyspace,
            s->rate, s->read_ratio, s->interrupted ? "true" : "false");
    fprintf(f, "\"ops\":%" PRIu64 ",\"elapsed_s\":%.6f,\"ops_per_s\":%.3f,", st->ops,
            (double)s->elapsed_ns / 1e9, throughput(s));
    fprintf(f, "\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,",
            us(ts_histogram_percentile(h, 50.0)), us(ts_histogram_percentile(h, 90.0)),
            us(ts_histogram_percentile(h, 99.0)), us(ts_histogram_percentile(h, 99.9)));
    fprintf(f, "\"max\":%.3f,\"mean\":%.3f},", us(ts_histogram_max(h)), ts_histogram_mean(h) / 1e3);
    fprintf(f,
            "\"misses\":%" PRIu64 ",\"cas_succeeded\":%" PRIu64 ",\"cas_conflicts\":%" PRIu64 ",",
            st->misses, st->cas_ok, st->cas_conflicts);
    json_errors(f, s);
    fprintf(f, ",\"note\":");
    if (s->note != NULL) {
        json_str(f, s->note);
    } else {
        fprintf(f, "null");
    }
    fprintf(f, "}\n");
}

void tb_progress_print(FILE *f, const char *phase, double elapsed_s, double interval_s,
                       const struct tb_stats *in)
{
    TS_ASSERT(interval_s > 0.0);
    fprintf(f, "%s%7.1f s  %10.0f ops/s  p50 %9.1f us  p99 %9.1f us  errors %" PRIu64 "\n", phase,
            elapsed_s, (double)in->ops / interval_s,
            us(ts_histogram_percentile(&in->latency, 50.0)),
            us(ts_histogram_percentile(&in->latency, 99.0)), in->errors);
}
