/* Tests for bench/tessera-bench/opts: the command line, its defaults and its errors. */
#include "bench/tessera-bench/opts.h"

#include <criterion/criterion.h>

#include <string.h>

#define PARSE(o, err, ...)                                                                         \
    tb_opts_parse((int)(sizeof((char *[]){"tessera-bench", __VA_ARGS__}) / sizeof(char *)),        \
                  (char *[]){"tessera-bench", __VA_ARGS__}, (o), (err), sizeof(err))

Test(tb_opts, defaults_with_a_total)
{
    struct tb_opts o;
    char err[256];
    cr_assert_eq(PARSE(&o, err, "put", "--total", "10"), 0, "%s", err);
    cr_assert_eq(o.workload, TB_WL_PUT);
    cr_assert_eq(o.target, TB_TARGET_TESSERA);
    cr_assert_str_eq(o.hosts, "127.0.0.1:7000");
    cr_assert_eq(o.total, 10);
    cr_assert_eq(o.clients, 1);
    cr_assert_eq(o.conns, 1);
    cr_assert_eq(o.inflight, 1);
    cr_assert_eq(o.key_size, 16);
    cr_assert_eq(o.val_size, 128);
    cr_assert_eq(o.keyspace, 100000);
    cr_assert_eq(o.key_dist, TB_DIST_UNIFORM);
    cr_assert_eq(o.rate, 0.0);
    cr_assert_eq(o.consistency, TB_CONS_LINEARIZABLE, "Tessera reads default to linearizable");
    cr_assert_eq(o.read_ratio, 0.0);
    cr_assert(!o.json && !o.prefill);
}

Test(tb_opts, every_option)
{
    struct tb_opts o;
    char err[256];
    int rc = PARSE(&o, err, "mixed", "--target", "tessera://a:1,b:2", "--clients", "64", "--conns",
                   "8", "--inflight", "4", "--threads", "2", "--duration", "2.5", "--key-size", "8",
                   "--val-size", "0", "--keyspace", "1000", "--key-dist", "zipfian", "--read-ratio",
                   "0.9", "--rate", "5000", "--consistency", "serializable", "--timeout-ms", "100",
                   "--seed", "7", "--json", "--prefill");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(o.workload, TB_WL_MIXED);
    cr_assert_str_eq(o.hosts, "a:1,b:2");
    cr_assert_eq(o.clients, 64);
    cr_assert_eq(o.conns, 8);
    cr_assert_eq(o.inflight, 4);
    cr_assert_eq(o.threads, 2);
    cr_assert_eq(o.duration_s, 2.5);
    cr_assert_eq(o.total, 0);
    cr_assert_eq(o.key_size, 8);
    cr_assert_eq(o.val_size, 0);
    cr_assert_eq(o.keyspace, 1000);
    cr_assert_eq(o.key_dist, TB_DIST_ZIPFIAN);
    cr_assert_eq(o.read_ratio, 0.9);
    cr_assert_eq(o.rate, 5000.0);
    cr_assert_eq(o.consistency, TB_CONS_SERIALIZABLE);
    cr_assert_eq(o.timeout_ms, 100);
    cr_assert_eq(o.seed, 7);
    cr_assert(o.json && o.prefill);
}

Test(tb_opts, zk_target_and_its_defaults)
{
    struct tb_opts o;
    char err[256];
    cr_assert_eq(PARSE(&o, err, "get", "--target", "zk://127.0.0.1:2181", "--total", "1"), 0, "%s",
                 err);
    cr_assert_eq(o.target, TB_TARGET_ZK);
    cr_assert_str_eq(o.hosts, "127.0.0.1:2181");
    cr_assert_eq(o.consistency, TB_CONS_SERIALIZABLE, "a plain ZooKeeper get is not linearizable");
    cr_assert_eq(PARSE(&o, err, "get", "--target", "zk://h:1", "--total", "1", "--consistency",
                       "linearizable"),
                 0);
    cr_assert_eq(o.consistency, TB_CONS_LINEARIZABLE);
}

Test(tb_opts, endpoints_is_a_tessera_target)
{
    struct tb_opts o;
    char err[256];
    cr_assert_eq(PARSE(&o, err, "txn-cas", "--endpoints", "h:1,h:2", "--total", "1"), 0, "%s", err);
    cr_assert_eq(o.workload, TB_WL_TXN_CAS);
    cr_assert_eq(o.target, TB_TARGET_TESSERA);
    cr_assert_str_eq(o.hosts, "h:1,h:2");
    cr_assert_eq(
        PARSE(&o, err, "put", "--endpoints", "h:1", "--target", "tessera://h:1", "--total", "1"), 0,
        "the same list twice agrees: %s", err);
    cr_assert_eq(PARSE(&o, err, "mixed", "--duration", "1"), 0);
    cr_assert_eq(o.read_ratio, 0.5, "mixed defaults to half reads");
}

/* Each bad command line fails with a message naming the problem. */
static void expect_error(const char *needle, int argc, char **argv)
{
    struct tb_opts o;
    char err[256];
    cr_assert_eq(tb_opts_parse(argc, argv, &o, err, sizeof err), -1, "expected '%s'", needle);
    cr_assert(strstr(err, needle) != NULL, "'%s' does not mention '%s'", err, needle);
}

#define EXPECT_ERROR(needle, ...)                                                                  \
    expect_error(needle, (int)(sizeof((char *[]){"tessera-bench", __VA_ARGS__}) / sizeof(char *)), \
                 (char *[]){"tessera-bench", __VA_ARGS__})

Test(tb_opts, errors)
{
    EXPECT_ERROR("workload is required", "--total");
    {
        struct tb_opts o;
        char err[64];
        char *argv[] = {"tessera-bench"};
        cr_assert_eq(tb_opts_parse(1, argv, &o, err, sizeof err), -1);
    }
    EXPECT_ERROR("unknown value 'delete'", "delete", "--total", "1");
    EXPECT_ERROR("--total or --duration", "put");
    EXPECT_ERROR("--total: '0'", "put", "--total", "0");
    EXPECT_ERROR("--total: '-5'", "put", "--total", "-5");
    EXPECT_ERROR("--total: '12x'", "put", "--total", "12x");
    EXPECT_ERROR("--clients: ''", "put", "--total", "1", "--clients", "");
    EXPECT_ERROR("--clients: '100001'", "put", "--total", "1", "--clients", "100001");
    EXPECT_ERROR("--duration: '0'", "put", "--duration", "0");
    EXPECT_ERROR("--duration: 'nan'", "put", "--duration", "nan");
    EXPECT_ERROR("--read-ratio: '1.5'", "mixed", "--total", "1", "--read-ratio", "1.5");
    EXPECT_ERROR("mixed workload only", "put", "--total", "1", "--read-ratio", "0.5");
    EXPECT_ERROR("--key-dist: unknown value 'gauss'", "put", "--total", "1", "--key-dist", "gauss");
    EXPECT_ERROR("--consistency: unknown value 'default'", "get", "--total", "1", "--consistency",
                 "default");
    EXPECT_ERROR("cannot hold 3-digit", "put", "--total", "1", "--keyspace", "1000", "--key-size",
                 "2");
    EXPECT_ERROR("--target: 'http://x:1'", "put", "--total", "1", "--target", "http://x:1");
    EXPECT_ERROR("host:port", "put", "--total", "1", "--target", "zk://nohost");
    EXPECT_ERROR("host:port", "put", "--total", "1", "--endpoints", "a:1,,b:2");
    EXPECT_ERROR("malformed host list", "put", "--total", "1", "--target", "zk://");
    EXPECT_ERROR("conflicts", "put", "--total", "1", "--target", "zk://a:1", "--endpoints", "a:1");
    EXPECT_ERROR("--threads applies", "put", "--total", "1", "--target", "zk://a:1", "--threads",
                 "2");
    EXPECT_ERROR("over 1048576", "put", "--total", "1", "--clients", "2000", "--inflight", "1000");
    EXPECT_ERROR("unknown option '--frobnicate'", "put", "--total", "1", "--frobnicate", "1");
    EXPECT_ERROR("missing value", "put", "--total");
}

Test(tb_opts, names)
{
    cr_assert_str_eq(tb_workload_name(TB_WL_TXN_CAS), "txn-cas");
    cr_assert_str_eq(tb_target_name(TB_TARGET_ZK), "zookeeper");
    cr_assert_str_eq(tb_key_dist_name(TB_DIST_SEQUENTIAL), "sequential");
    cr_assert_str_eq(tb_consistency_name(TB_CONS_SERIALIZABLE), "serializable");
    cr_assert(strstr(tb_usage(), "txn-cas") != NULL);
}
