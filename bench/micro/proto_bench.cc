/*
 * proto_bench: Tessera's C FlatBuffers codec against flatc's C++ code, same schema.
 *
 * What it measures, in ns per message, for two messages built with identical content
 * on both sides:
 *   put    Message{body: Request{id, range_id, epoch, op: PutRequest{key: 8 bytes,
 *          value: 256 bytes}}}, a size-prefixed buffer (frame): 392 bytes from Tessera,
 *          400 from flatc;
 *   batch  a 64-entry Raft append: Message{body: RaftBatch{from_node, to_node,
 *          cluster_id, messages: [RaftMessage{group_id, type Append, from, to, term,
 *          log_term, index, commit, entries: 64 x Entry{term, index, type Normal,
 *          data: 64 bytes}}]}}: 6600 bytes from Tessera, 6608 from flatc.
 * Each in four phases: encode + verify + decode (the headline), and encode, verify and
 * decode alone. "Decode" reads every field back, defaults included, and sums them
 * (byte vectors: length + sum of bytes) so nothing is dead code. Tessera: one reused
 * proto_builder (proto_builder_reset), proto_message_finish(frame = true),
 * proto_message_decode(frame = true), the generated accessors (proto_bench_ts.c,
 * compiled as C like the library). C++: one reused flatbuffers::FlatBufferBuilder
 * (Clear()), CreateVector / CreateXxx / FinishSizePrefixed, a Verifier with
 * VerifySizePrefixedMessageBuffer, GetSizePrefixedMessage and its accessors.
 * Before timing, each side's buffer is decoded by both sides and the four sums must be
 * equal (same content, and each side reads the other's bytes); the bench aborts if not.
 *
 * Method (STYLE R24): each case is calibrated to about --ms milliseconds per run, then
 * --runs runs are taken, the cases interleaved run by run so that drift in machine
 * load hits all of them alike. Reported: median, MAD (median absolute deviation), min
 * and max of the runs' ns/message, and the ratio of medians C++ / Tessera (> 1 means
 * Tessera is faster). --json prints the same as one JSON object.
 *
 * Expected, back of the envelope (a table is ~4 fields; ~100 instructions to encode
 * one, ~50 to verify, ~10 per field read; a few instructions per ns): put, 4 tables
 * and 264 bytes of data: encode ~50-100 ns, verify ~20-50, decode ~20, in all
 * ~100-200 ns per side. batch, 66 tables and 4 KB of data: encode ~1.5-3 us, verify
 * ~0.5-1 us, decode ~0.3-0.5 us, in all ~2.5-5 us per side. Both codecs do the same
 * work on the same layout, so the ratio should be near 1. Measured (RESULTS.md): put
 * ~150-175 ns, batch ~2.6-2.9 us; callgrind counts about 2,800 / 3,200 instructions
 * (Tessera / C++) per put and 57,000 / 57,000 per batch.
 *
 * Hardware where the figures in bench/RESULTS.md were taken: a 2-vCPU VM, AMD EPYC
 * (Zen 4; /proc/cpuinfo says 2.1 GHz, but the instruction counts imply it boosts well
 * above that), 1 MB L2, no hardware performance counters, shared and noisy;
 * gcc/g++ 12 -O2, jemalloc 5.3 (release build). Single phases of the put (tens of ns)
 * move by up to ~40% between two builds that differ only in code layout: compare
 * sides within one binary, and prefer instruction counts when hunting a gap.
 *
 * Run: cmake --preset release && cmake --build build/release --target proto_bench &&
 *      ./build/release/bench/micro/proto_bench [--runs N] [--ms MS] [--json]
 * Instructions per operation: run one case a fixed number of times under callgrind,
 *      valgrind --tool=callgrind ./build/release/bench/micro/proto_bench --runs 1
 *      --iters N --only put/verify/tessera
 *      for N = 2000 and N = 12000; the difference in "Collected" divided by 10000 is
 *      the count for one operation (setup and sanity checks cancel out).
 */
#include "bench/micro/proto_bench.h"

#include "tessera_generated.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace tp = tessera::proto;

namespace {

constexpr int kRunsDefault = 15;
constexpr double kRunMsDefault = 50.0;
constexpr size_t kBuilderBytes = 16384;

/* ------------------------------------------------------------------ flatc C++ side */

struct CcSide {
    explicit CcSide(const pb_content *c) : content(c), fbb(kBuilderBytes) {}
    const pb_content *content;
    flatbuffers::FlatBufferBuilder fbb;
    const uint8_t *buf = nullptr;
    size_t len = 0;
};

uint64_t cc_finish(CcSide *s, flatbuffers::Offset<tp::Message> root)
{
    tp::FinishSizePrefixedMessageBuffer(s->fbb, root);
    s->buf = s->fbb.GetBufferPointer();
    s->len = s->fbb.GetSize();
    return s->len;
}

bool cc_verify_buf(const uint8_t *buf, size_t len)
{
    flatbuffers::Verifier v(buf, len);
    return tp::VerifySizePrefixedMessageBuffer(v);
}

uint64_t cc_bytes(const flatbuffers::Vector<uint8_t> *v)
{
    return v != nullptr ? pb_bytes_sum(v->data(), v->size()) : 0;
}

uint64_t cc_put_encode(void *ctx)
{
    auto *s = static_cast<CcSide *>(ctx);
    const pb_put &p = s->content->put;
    flatbuffers::FlatBufferBuilder &fbb = s->fbb;
    fbb.Clear();
    auto key = fbb.CreateVector(p.key, PB_PUT_KEY_BYTES);
    auto value = fbb.CreateVector(p.value, PB_PUT_VALUE_BYTES);
    auto put = tp::CreatePutRequest(fbb, key, value);
    tp::RangeEpoch epoch(p.generation, p.conf_version);
    auto req = tp::CreateRequest(fbb, p.id, p.range_id, &epoch, tp::Consistency_Linearizable, 0,
                                 tp::RequestOp_PutRequest, put.Union());
    return cc_finish(s, tp::CreateMessage(fbb, tp::Body_Request, req.Union()));
}

uint64_t cc_read_put(const uint8_t *buf)
{
    const tp::Message *msg = tp::GetSizePrefixedMessage(buf);
    uint64_t s = msg->body_type();
    const tp::Request *req = msg->body_as_Request();
    const tp::RangeEpoch *epoch = req->epoch();
    s += req->id() + req->range_id();
    s += epoch != nullptr ? epoch->generation() + epoch->conf_version() : 0;
    s += uint64_t(req->consistency()) + req->timeout_ms();
    s += req->hops() + uint64_t(req->op_type());

    const tp::PutRequest *put = req->op_as_PutRequest();
    s += cc_bytes(put->key()) + cc_bytes(put->value());
    s += put->lease();
    s += uint64_t(put->prev_kv()) + uint64_t(put->ignore_value());
    s += uint64_t(put->ignore_lease()) + uint64_t(put->sequential());
    return s;
}

uint64_t cc_put_verify(void *ctx)
{
    auto *s = static_cast<CcSide *>(ctx);
    return cc_verify_buf(s->buf, s->len) ? 1 : 0;
}

uint64_t cc_put_decode(void *ctx)
{
    return cc_read_put(static_cast<CcSide *>(ctx)->buf);
}

uint64_t cc_put_full(void *ctx)
{
    auto *s = static_cast<CcSide *>(ctx);
    cc_put_encode(s);
    return cc_verify_buf(s->buf, s->len) ? cc_read_put(s->buf) : PB_REJECTED;
}

uint64_t cc_put_sum(const uint8_t *buf, size_t len)
{
    return cc_verify_buf(buf, len) ? cc_read_put(buf) : PB_REJECTED;
}

uint64_t cc_batch_encode(void *ctx)
{
    auto *s = static_cast<CcSide *>(ctx);
    const pb_batch &p = s->content->batch;
    flatbuffers::FlatBufferBuilder &fbb = s->fbb;
    fbb.Clear();
    flatbuffers::Offset<tp::Entry> refs[PB_BATCH_ENTRIES];
    for (uint32_t i = 0; i < PB_BATCH_ENTRIES; i++) {
        const pb_entry &e = p.entries[i];
        auto data = fbb.CreateVector(e.data, PB_ENTRY_DATA_BYTES);
        refs[i] = tp::CreateEntry(fbb, e.term, e.index, tp::EntryType_Normal, data);
    }
    auto entries = fbb.CreateVector(refs, PB_BATCH_ENTRIES);
    auto rm = tp::CreateRaftMessage(fbb, p.group_id, tp::RaftMessageType_Append, p.from, p.to,
                                    p.term, p.log_term, p.index, p.commit, false, 0, entries);
    auto messages = fbb.CreateVector(&rm, 1);
    auto batch = tp::CreateRaftBatch(fbb, p.from_node, p.to_node, p.cluster_id, messages);
    return cc_finish(s, tp::CreateMessage(fbb, tp::Body_RaftBatch, batch.Union()));
}

uint64_t cc_read_raft_message(const tp::RaftMessage *m)
{
    uint64_t s = m->group_id() + uint64_t(m->type());
    s += m->from() + m->to();
    s += m->term() + m->log_term();
    s += m->index() + m->commit();
    s += uint64_t(m->reject()) + m->reject_hint();
    const auto *entries = m->entries();
    if (entries != nullptr) {
        s += entries->size();
        for (const tp::Entry *e : *entries) {
            s += e->term() + e->index() + uint64_t(e->type()) + cc_bytes(e->data());
        }
    }
    s += cc_bytes(m->context());
    s += m->snapshot() != nullptr;
    const tp::RangeEpoch *epoch = m->epoch();
    s += epoch != nullptr ? epoch->generation() + epoch->conf_version() : 0;
    return s;
}

uint64_t cc_read_batch(const uint8_t *buf)
{
    const tp::Message *msg = tp::GetSizePrefixedMessage(buf);
    uint64_t s = msg->body_type();
    const tp::RaftBatch *rb = msg->body_as_RaftBatch();
    s += rb->from_node() + rb->to_node();
    s += rb->cluster_id();
    if (const auto *messages = rb->messages()) {
        s += messages->size();
        for (const tp::RaftMessage *m : *messages) {
            s += cc_read_raft_message(m);
        }
    }
    if (const auto *hbs = rb->heartbeats()) {
        s += hbs->size();
        for (const tp::Heartbeat *h : *hbs) {
            s += h->group_id() + h->term() + h->commit() + h->from() + h->to() +
                 h->read_context();
        }
    }
    if (const auto *acks = rb->heartbeat_acks()) {
        s += acks->size();
        for (const tp::HeartbeatAck *a : *acks) {
            s += a->group_id() + a->term() + a->from() + a->to() + a->read_context();
        }
    }
    return s;
}

uint64_t cc_batch_verify(void *ctx)
{
    auto *s = static_cast<CcSide *>(ctx);
    return cc_verify_buf(s->buf, s->len) ? 1 : 0;
}

uint64_t cc_batch_decode(void *ctx)
{
    return cc_read_batch(static_cast<CcSide *>(ctx)->buf);
}

uint64_t cc_batch_full(void *ctx)
{
    auto *s = static_cast<CcSide *>(ctx);
    cc_batch_encode(s);
    return cc_verify_buf(s->buf, s->len) ? cc_read_batch(s->buf) : PB_REJECTED;
}

uint64_t cc_batch_sum(const uint8_t *buf, size_t len)
{
    return cc_verify_buf(buf, len) ? cc_read_batch(buf) : PB_REJECTED;
}

/* ------------------------------------------------------------------ content */

/* Deterministic, non-trivial content: every field non-default, every byte varied. */
void fill_content(pb_content *c)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    auto next = [&x]() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    pb_put &p = c->put;
    p.id = 1000001;
    p.range_id = 42;
    p.generation = 7;
    p.conf_version = 3;
    for (auto &b : p.key) {
        b = uint8_t(next());
    }
    for (auto &b : p.value) {
        b = uint8_t(next());
    }
    pb_batch &rb = c->batch;
    rb.from_node = 1;
    rb.to_node = 2;
    rb.cluster_id = 0xc1u;
    rb.group_id = 17;
    rb.from = 101;
    rb.to = 102;
    rb.term = 5;
    rb.log_term = 5;
    rb.index = 90000;
    rb.commit = 89990;
    for (uint32_t i = 0; i < PB_BATCH_ENTRIES; i++) {
        pb_entry &e = rb.entries[i];
        e.term = 5;
        e.index = rb.index + 1 + i;
        for (auto &b : e.data) {
            b = uint8_t(next());
        }
    }
}

/* ------------------------------------------------------------------ harness */

struct Case {
    Case(const char *message_, const char *phase_, const char *side_, pb_op op_, void *ctx_)
        : message(message_), phase(phase_), side(side_), op(op_), ctx(ctx_)
    {
    }
    const char *message;
    const char *phase;
    const char *side;
    pb_op op;
    void *ctx;
    uint64_t iters = 0;
    std::vector<double> ns; /* ns per message, one per run */
};

struct Stats {
    double median;
    double mad;
    double min;
    double max;
};

double median_of(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Stats stats_of(const std::vector<double> &v)
{
    Stats s;
    s.median = median_of(v);
    std::vector<double> dev;
    for (double x : v) {
        dev.push_back(x > s.median ? x - s.median : s.median - x);
    }
    s.mad = median_of(dev);
    s.min = *std::min_element(v.begin(), v.end());
    s.max = *std::max_element(v.begin(), v.end());
    return s;
}

/* Keeps the value alive as far as the compiler can tell. */
inline void escape(uint64_t v)
{
    asm volatile("" : : "r"(v) : "memory");
}

/* Runs op n times; returns the elapsed ns. */
double time_op(const Case &c, uint64_t n, uint64_t *sink)
{
    auto t0 = std::chrono::steady_clock::now();
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++) {
        s += c.op(c.ctx);
    }
    auto t1 = std::chrono::steady_clock::now();
    escape(s);
    *sink += s;
    return double(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
}

/* Finds the iteration count that lasts about run_ms. */
void calibrate(Case *c, double run_ms, uint64_t *sink)
{
    uint64_t n = 16;
    double ns = time_op(*c, n, sink); /* warms caches and the allocator */
    while ((ns = time_op(*c, n, sink)) < run_ms * 1e6 / 10 && n < (1ull << 40)) {
        n *= 2;
    }
    double per = ns / double(n);
    c->iters = std::max<uint64_t>(1, uint64_t(run_ms * 1e6 / per));
}

[[noreturn]] void die(const char *what)
{
    std::fprintf(stderr, "proto_bench: %s\n", what);
    std::abort();
}

/* Both sides must read the same content from both sides' buffers. */
void sanity_check(void *ts, CcSide *cc)
{
    const struct {
        const char *name;
        pb_op ts_encode, ts_full, cc_encode, cc_full;
        uint64_t (*ts_sum)(const uint8_t *, size_t);
        uint64_t (*cc_sum)(const uint8_t *, size_t);
    } kinds[] = {
        {"put", pb_ts_put_encode, pb_ts_put_full, cc_put_encode, cc_put_full, pb_ts_put_sum,
         cc_put_sum},
        {"batch", pb_ts_batch_encode, pb_ts_batch_full, cc_batch_encode, cc_batch_full,
         pb_ts_batch_sum, cc_batch_sum},
    };
    for (const auto &k : kinds) {
        k.ts_encode(ts);
        size_t ts_len;
        const uint8_t *ts_buf = pb_ts_buffer(ts, &ts_len);
        k.cc_encode(cc);
        uint64_t sums[6] = {k.ts_sum(ts_buf, ts_len), k.cc_sum(ts_buf, ts_len),
                            k.ts_sum(cc->buf, cc->len), k.cc_sum(cc->buf, cc->len),
                            k.ts_full(ts), k.cc_full(cc)};
        for (uint64_t s : sums) {
            if (s == PB_REJECTED || s != sums[0]) {
                std::fprintf(stderr,
                             "proto_bench: %s: sums differ: ts(ts)=%" PRIu64 " cc(ts)=%" PRIu64
                             " ts(cc)=%" PRIu64 " cc(cc)=%" PRIu64 " ts full=%" PRIu64
                             " cc full=%" PRIu64 "\n",
                             k.name, sums[0], sums[1], sums[2], sums[3], sums[4], sums[5]);
                die("the two sides do not carry the same content");
            }
        }
    }
}

struct Options {
    int runs = kRunsDefault;
    double run_ms = kRunMsDefault;
    uint64_t iters = 0; /* 0: calibrate to run_ms; else a fixed count (for callgrind) */
    const char *only = nullptr; /* run only the case named "msg/phase/side" */
    bool json = false;
};

Options parse(int argc, char **argv)
{
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--json") {
            o.json = true;
        } else if (a == "--runs" && i + 1 < argc) {
            o.runs = std::atoi(argv[++i]);
        } else if (a == "--ms" && i + 1 < argc) {
            o.run_ms = std::atof(argv[++i]);
        } else if (a == "--iters" && i + 1 < argc) {
            o.iters = std::strtoull(argv[++i], nullptr, 10);
        } else if (a == "--only" && i + 1 < argc) {
            o.only = argv[++i];
        } else {
            std::fprintf(stderr,
                         "usage: %s [--runs N] [--ms MS_PER_RUN | --iters N] "
                         "[--only MSG/PHASE/SIDE] [--json]\n",
                         argv[0]);
            std::exit(a == "--help" || a == "-h" ? 0 : 2);
        }
    }
    if (o.runs < 1 || o.run_ms <= 0) {
        die("--runs and --ms must be positive");
    }
    return o;
}

bool selected(const Case &c, const Options &o)
{
    if (o.only == nullptr) {
        return true;
    }
    std::string name = std::string(c.message) + "/" + c.phase + "/" + c.side;
    return name == o.only;
}

void print_text(const std::vector<Case> &cases, const Options &o, size_t put_bytes[2],
                size_t batch_bytes[2])
{
    std::printf("proto_bench: %d runs of ~%.0f ms per case; ns per message\n", o.runs, o.run_ms);
    std::printf("buffer bytes: put tessera %zu, flatc %zu; batch tessera %zu, flatc %zu\n\n",
                put_bytes[0], put_bytes[1], batch_bytes[0], batch_bytes[1]);
    std::printf("%-6s %-22s %-9s %10s %8s %10s %10s %10s\n", "msg", "phase", "side", "median",
                "MAD", "min", "max", "iters/run");
    for (const Case &c : cases) {
        if (c.ns.empty()) {
            continue;
        }
        Stats s = stats_of(c.ns);
        std::printf("%-6s %-22s %-9s %10.1f %8.1f %10.1f %10.1f %10" PRIu64 "\n", c.message,
                    c.phase, c.side, s.median, s.mad, s.min, s.max, c.iters);
    }
    std::printf("\nratio = flatc C++ median / Tessera median (> 1: Tessera faster)\n");
    for (size_t i = 0; i + 1 < cases.size(); i += 2) {
        if (cases[i].ns.empty() || cases[i + 1].ns.empty()) {
            continue;
        }
        double r = stats_of(cases[i + 1].ns).median / stats_of(cases[i].ns).median;
        std::printf("%-6s %-22s %6.2fx\n", cases[i].message, cases[i].phase, r);
    }
}

void print_json(const std::vector<Case> &cases, const Options &o)
{
    std::printf("{\"runs\": %d, \"run_ms\": %.1f, \"unit\": \"ns/message\", \"cases\": [",
                o.runs, o.run_ms);
    const char *sep = "";
    for (const Case &c : cases) {
        if (c.ns.empty()) {
            continue;
        }
        Stats s = stats_of(c.ns);
        std::printf("%s\n  {\"message\": \"%s\", \"phase\": \"%s\", \"side\": \"%s\", "
                    "\"median\": %.2f, \"mad\": %.2f, \"min\": %.2f, \"max\": %.2f, "
                    "\"iters\": %" PRIu64 "}",
                    sep, c.message, c.phase, c.side, s.median, s.mad, s.min, s.max, c.iters);
        sep = ",";
    }
    std::printf("\n], \"ratios\": [");
    sep = "";
    for (size_t i = 0; i + 1 < cases.size(); i += 2) {
        if (cases[i].ns.empty() || cases[i + 1].ns.empty()) {
            continue;
        }
        double r = stats_of(cases[i + 1].ns).median / stats_of(cases[i].ns).median;
        std::printf("%s\n  {\"message\": \"%s\", \"phase\": \"%s\", \"cc_over_tessera\": %.3f}",
                    sep, cases[i].message, cases[i].phase, r);
        sep = ",";
    }
    std::printf("\n]}\n");
}

/* Pairs (Tessera, C++), four phases per message, eight cases per message. */
constexpr size_t kCasesPerMessage = 8;

std::vector<Case> make_cases(void *ts, CcSide *cc)
{
    return {
        {"put", "encode+verify+decode", "tessera", pb_ts_put_full, ts},
        {"put", "encode+verify+decode", "flatc-c++", cc_put_full, cc},
        {"put", "encode", "tessera", pb_ts_put_encode, ts},
        {"put", "encode", "flatc-c++", cc_put_encode, cc},
        {"put", "verify", "tessera", pb_ts_put_verify, ts},
        {"put", "verify", "flatc-c++", cc_put_verify, cc},
        {"put", "decode", "tessera", pb_ts_put_decode, ts},
        {"put", "decode", "flatc-c++", cc_put_decode, cc},
        {"batch", "encode+verify+decode", "tessera", pb_ts_batch_full, ts},
        {"batch", "encode+verify+decode", "flatc-c++", cc_batch_full, cc},
        {"batch", "encode", "tessera", pb_ts_batch_encode, ts},
        {"batch", "encode", "flatc-c++", cc_batch_encode, cc},
        {"batch", "verify", "tessera", pb_ts_batch_verify, ts},
        {"batch", "verify", "flatc-c++", cc_batch_verify, cc},
        {"batch", "decode", "tessera", pb_ts_batch_decode, ts},
        {"batch", "decode", "flatc-c++", cc_batch_decode, cc},
    };
}

/*
 * Times the eight cases of one message, c[0..kCasesPerMessage), run by run. A full
 * round first leaves both sides' buffer (and Tessera's verified view) holding this
 * message, which the verify and decode cases read; afterwards every case must still
 * return what it returned before timing (1 for verify, the content sum otherwise).
 */
void run_message(Case *c, const Options &o, uint64_t expect, uint64_t *sink)
{
    if (c[0].op(c[0].ctx) != expect || c[1].op(c[1].ctx) != expect) {
        die("encode+verify+decode gives a different sum");
    }
    for (size_t i = 0; i < kCasesPerMessage; i++) {
        if (o.iters != 0) {
            c[i].iters = o.iters;
        } else if (selected(c[i], o)) {
            calibrate(&c[i], o.run_ms, sink);
        }
    }
    for (int r = 0; r < o.runs; r++) {
        for (size_t i = 0; i < kCasesPerMessage; i++) {
            if (selected(c[i], o)) {
                c[i].ns.push_back(time_op(c[i], c[i].iters, sink) / double(c[i].iters));
            }
        }
    }
    if (c[4].op(c[4].ctx) != 1 || c[5].op(c[5].ctx) != 1 || c[6].op(c[6].ctx) != expect ||
        c[7].op(c[7].ctx) != expect || c[0].op(c[0].ctx) != expect ||
        c[1].op(c[1].ctx) != expect) {
        die("results changed while timing");
    }
}

} // namespace

int main(int argc, char **argv)
{
    Options o = parse(argc, argv);
    auto content = std::make_unique<pb_content>(); /* ~5 KB: kept off the stack */
    fill_content(content.get());
    void *ts = pb_ts_new(content.get());
    if (ts == nullptr) {
        die("out of memory");
    }
    CcSide cc(content.get());
    sanity_check(ts, &cc);

    size_t put_bytes[2], batch_bytes[2];
    pb_ts_put_encode(ts);
    pb_ts_buffer(ts, &put_bytes[0]);
    put_bytes[1] = cc_put_encode(&cc);
    pb_ts_batch_encode(ts);
    pb_ts_buffer(ts, &batch_bytes[0]);
    batch_bytes[1] = cc_batch_encode(&cc);

    std::vector<Case> cases = make_cases(ts, &cc);
    uint64_t sink = 0;
    run_message(&cases[0], o, pb_ts_put_full(ts), &sink);
    run_message(&cases[kCasesPerMessage], o, pb_ts_batch_full(ts), &sink);

    if (o.json) {
        print_json(cases, o);
    } else {
        print_text(cases, o, put_bytes, batch_bytes);
    }
    std::fflush(stdout);
    std::fprintf(stderr, "sink %" PRIx64 "\n", sink);
    pb_ts_free(ts);
    return 0;
}
