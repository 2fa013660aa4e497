// (d) Mutation test: corrupted frames against both verifiers.
//
// Valid random frames, in Tessera's layout and in FlatBuffers' own (the same message
// built by flatbuffers::Parser), are mutated one way each: bit flips, a random byte, an
// aligned u32 set to an interesting value, a u16 set (vtable entries preferred),
// truncation, appended bytes; the length prefix adjusted or not. Each mutated frame is
// given to Tessera's proto_message_decode and to flatc's VerifySizePrefixedMessageBuffer.
//
//   - Tessera accepts, C++ rejects: FAIL (Tessera would read what the reference
//     verifier considers unsafe or malformed).
//   - Tessera accepts: the message is dumped with proto_message_json, which reads every
//     field; under AddressSanitizer any read the verifier did not cover is reported.
//   - Both accept: the contents must agree, as in proto_oracle_test (flatc's text of
//     the buffer equals Tessera's JSON canonicalised through flatbuffers::Parser).
//   - Tessera rejects, C++ accepts: allowed, Tessera is stricter by design (unknown
//     union types; table sizes, vtable sizes and fields outside their table; misaligned
//     vector elements; zero offsets in vectors of tables; a lower depth limit).
//     Counted and listed by reason.
//
// Usage: proto_mutation_test SCHEMA.fbs [--seed S] [--mutations N] [--first I]
//                            [--show-stricter] [--write DIR]
// Mutation I depends only on S and I, so `--seed S --first I --mutations 1` repeats it.
// --show-stricter prints every mutation only Tessera rejects, with Tessera's reason.
// --write DIR saves each failing (and, with --show-stricter, each stricter) mutated frame
// as DIR/mutation_<I>.bin.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tests/unit/net/proto/conformance/cf_oracle.h"
#include "tests/unit/net/proto/conformance/cf_tessera.h"

namespace
{

constexpr uint64_t kDefaultSeed = 0x7e55e7a;
constexpr uint64_t kDefaultMutations = 100000;
// Base frames: this many seeds of every variant, built once.
constexpr uint32_t kBaseSeedsPerVariant = 8;
constexpr int kFailuresShownMax = 20;
constexpr size_t kReasonsShownMax = 25;

// splitmix64: a small, seedable generator, so that each mutation has its own stream.
class Rng
{
  public:
    explicit Rng(uint64_t seed) : x_(seed)
    {
    }
    uint64_t Next()
    {
        uint64_t z = (x_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, n), n > 0.
    uint64_t Below(uint64_t n)
    {
        return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
    }

  private:
    uint64_t x_;
};

struct Base {
    uint32_t variant;
    uint64_t seed;
    bool flatc_layout; // built by flatbuffers::Parser from Tessera's JSON
    cf::Bytes frame;
    std::string json;      // Tessera's JSON of the unmutated frame
    std::string canonical; // ... canonicalised through flatbuffers::Parser
};

std::string Hex(uint64_t v)
{
    char tmp[24];
    std::snprintf(tmp, sizeof(tmp), "0x%" PRIx64, v);
    return tmp;
}

uint32_t Load32(const uint8_t *p)
{
    uint32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

uint16_t Load16(const uint8_t *p)
{
    uint16_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

void Store32(uint8_t *p, uint32_t v)
{
    std::memcpy(p, &v, sizeof(v));
}

void Store16(uint8_t *p, uint16_t v)
{
    std::memcpy(p, &v, sizeof(v));
}

// Positions of u16 vtable entries, found by looking for 4-aligned words that read as a
// table's soffset to a plausible vtable. A heuristic: it only steers the u16 mutations
// towards vtables, it decides nothing.
std::vector<uint32_t> VtableEntryPositions(const cf::Bytes &b)
{
    std::vector<uint32_t> out;
    const uint8_t *p = b.data();
    size_t len = b.size();
    for (size_t tab = 8; tab + 4 <= len; tab += 4) {
        int64_t vt = static_cast<int64_t>(tab) - static_cast<int32_t>(Load32(p + tab));
        if (vt < 8 || (vt & 1) != 0 || static_cast<size_t>(vt) + 4 > len) {
            continue;
        }
        uint32_t vsize = Load16(p + vt);
        uint32_t tsize = Load16(p + vt + 2);
        if (vsize < 4 || vsize > 64 || (vsize & 1) != 0 || vt + vsize > static_cast<int64_t>(len) ||
            tsize < 4 || tab + tsize > len) {
            continue;
        }
        for (uint32_t e = 0; e < vsize; e += 2) {
            out.push_back(static_cast<uint32_t>(vt) + e);
        }
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

// Sets the length prefix to the buffer's length - 4 (when there is room for one).
void FixPrefix(cf::Bytes *b)
{
    if (b->size() >= 4) {
        Store32(b->data(), static_cast<uint32_t>(b->size() - 4));
    }
}

std::string FlipBits(Rng *r, cf::Bytes *b)
{
    std::string d = "flip bit";
    uint64_t n = 1 + r->Below(3);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t bit = r->Below(b->size() * 8);
        b->data()[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        d += " " + std::to_string(bit / 8) + "." + std::to_string(bit % 8);
    }
    return d;
}

std::string SetByte(Rng *r, cf::Bytes *b)
{
    uint64_t at = r->Below(b->size());
    uint8_t v = static_cast<uint8_t>(r->Next());
    std::string d =
        "set byte " + std::to_string(at) + " = " + Hex(v) + " (was " + Hex(b->data()[at]) + ")";
    b->data()[at] = v;
    return d;
}

std::string SetU32(Rng *r, cf::Bytes *b)
{
    uint64_t at = 4 * r->Below(b->size() / 4);
    uint32_t cur = Load32(b->data() + at);
    uint32_t len = static_cast<uint32_t>(b->size());
    const uint32_t interesting[] = {0,       1,           2,           4,          len,
                                    len - 4, 0x7fffffffu, 0x80000000u, 0xffffffffu};
    uint32_t v;
    uint64_t pick = r->Below(std::size(interesting) + 4);
    if (pick < std::size(interesting)) {
        v = interesting[pick];
    } else {
        int64_t delta = static_cast<int64_t>(r->Below(17)) - 8;
        v = cur + static_cast<uint32_t>(delta == 0 ? 1 : delta);
    }
    Store32(b->data() + at, v);
    return "u32 at " + std::to_string(at) + " = " + Hex(v) + " (was " + Hex(cur) + ")";
}

std::string SetU16(Rng *r, cf::Bytes *b)
{
    std::vector<uint32_t> vt = VtableEntryPositions(*b);
    uint64_t at =
        !vt.empty() && r->Below(4) != 0 ? vt[r->Below(vt.size())] : 2 * r->Below(b->size() / 2);
    uint16_t cur = Load16(b->data() + at);
    const uint16_t interesting[] = {0, 1, 2, 3, 4, 6, 8, 0x7fff, 0x8000, 0xffff};
    uint16_t v;
    uint64_t pick = r->Below(std::size(interesting) + 6);
    if (pick < std::size(interesting)) {
        v = interesting[pick];
    } else {
        int64_t delta = static_cast<int64_t>(r->Below(17)) - 8;
        v = static_cast<uint16_t>(cur + (delta == 0 ? 1 : delta));
    }
    Store16(b->data() + at, v);
    return std::string("u16 at ") + std::to_string(at) + " = " + Hex(v) + " (was " + Hex(cur) + ")";
}

std::string Truncate(Rng *r, cf::Bytes *b)
{
    size_t old = b->size();
    size_t n = r->Below(old);
    bool fix = r->Below(2) == 0;
    b->Resize(n);
    if (fix) {
        FixPrefix(b);
    }
    return "truncate " + std::to_string(old) + " -> " + std::to_string(n) + " bytes, prefix " +
           (fix ? "adjusted" : "kept");
}

std::string Append(Rng *r, cf::Bytes *b)
{
    size_t old = b->size();
    size_t n = 1 + r->Below(16);
    bool zeros = r->Below(2) == 0;
    bool fix = r->Below(2) == 0;
    b->Resize(old + n);
    for (size_t i = old; !zeros && i < old + n; i++) {
        b->data()[i] = static_cast<uint8_t>(r->Next());
    }
    if (fix) {
        FixPrefix(b);
    }
    return "append " + std::to_string(n) + (zeros ? " zero" : " random") + " bytes, prefix " +
           (fix ? "adjusted" : "kept");
}

// Applies one mutation strategy; returns its description.
std::string Mutate(Rng *r, cf::Bytes *b)
{
    uint64_t s = r->Below(100);
    if (s < 25) {
        return FlipBits(r, b);
    }
    if (s < 40) {
        return SetByte(r, b);
    }
    if (s < 65) {
        return SetU32(r, b);
    }
    if (s < 80) {
        return SetU16(r, b);
    }
    if (s < 90) {
        return Truncate(r, b);
    }
    return Append(r, b);
}

// "Request.op_type: unknown union type (offset 52)" -> "unknown union type"
std::string Reason(const char *errmsg)
{
    std::string s = errmsg;
    size_t at = s.find(" (offset ");
    s = at == std::string::npos ? s : s.substr(0, at);
    at = s.find(": ");
    return at == std::string::npos ? s : s.substr(at + 2);
}

struct Options {
    const char *schema = nullptr;
    uint64_t seed = kDefaultSeed;
    uint64_t mutations = kDefaultMutations;
    uint64_t first = 0;
    bool show_stricter = false;      // print every Tessera-only rejection
    const char *write_dir = nullptr; // where to write the frames printed
};

struct Counts {
    uint64_t both_accept = 0;
    uint64_t both_reject = 0;
    uint64_t tessera_only_reject = 0;
    uint64_t bases = 0;
    uint64_t known_bug_bases = 0; // flatc layouts left out: empty_vector_alignment
    uint64_t not_compared = 0;    // both accept; a union value without type (see below)
    uint64_t non_utf8 = 0;        // both accept; compared after RawByteEscapes
    uint64_t passed = 0;
    uint64_t failed = 0;
    std::map<std::string, uint64_t> stricter; // Tessera-only rejections by reason
};

class MutationTest
{
  public:
    MutationTest(const Options &opts, cf::Oracle *oracle, struct cf_codec *codec)
        : opts_(opts), oracle_(oracle), codec_(codec)
    {
    }

    bool BuildBases(std::string *why);
    bool AddFlatcBase(Base f, std::string *why);
    void Run(uint64_t index);
    const Counts &counts() const
    {
        return counts_;
    }

  private:
    std::string Check(const Base &base, const cf::Bytes &m, bool *tessera_ok, bool *cpp_ok,
                      std::string *reason);
    std::string Compare(const Base &base, const cf::Bytes &m, const std::string &json);
    void Fail(uint64_t index, const Base &base, const std::string &mutation,
              const std::string &why);
    void WriteFrame(uint64_t index, const cf::Bytes &m);

    const Options &opts_;
    cf::Oracle *oracle_;
    struct cf_codec *codec_;
    std::vector<Base> bases_;
    Counts counts_;
    std::string last_errmsg_;
};

// The unmutated frames: Tessera's own, and the same message laid out by FlatBuffers'
// builder (flatbuffers::Parser, as `flatc -b --size-prefixed`), so that mutations also
// meet flatc's layouts (shared vtables after their tables, other padding).
bool MutationTest::BuildBases(std::string *why)
{
    for (uint32_t i = 0; i < kBaseSeedsPerVariant; i++) {
        for (uint32_t v = 0; v < cf_variant_count(); v++) {
            Base b;
            b.variant = v;
            b.seed = opts_.seed + i;
            b.flatc_layout = false;
            const uint8_t *bytes = nullptr;
            size_t len = 0;
            if (cf_build_random(codec_, b.seed, v, true, &bytes, &len) != 0) {
                *why = "Tessera cannot build variant " + std::to_string(v);
                return false;
            }
            b.frame = cf::Bytes(bytes, len);
            char errmsg[256];
            const char *json = nullptr;
            if (!cf::VerifyFrame(b.frame.data(), b.frame.size()) ||
                cf_decode_json(codec_, b.frame.data(), b.frame.size(), true, &json, errmsg,
                               sizeof(errmsg)) != 0) {
                *why = "an unmutated frame fails to verify: variant " + std::to_string(v) +
                       " seed " + std::to_string(b.seed);
                return false;
            }
            b.json = json;
            if (!oracle_->Canonical(b.json, &b.canonical, why)) {
                return false;
            }
            Base f;
            f.variant = b.variant;
            f.seed = b.seed;
            f.flatc_layout = true;
            f.json = b.json;
            f.canonical = b.canonical;
            if (!oracle_->Encode(b.json, true, &f.frame, why)) {
                return false;
            }
            bases_.push_back(std::move(b));
            if (!AddFlatcBase(std::move(f), why)) {
                return false;
            }
        }
    }
    counts_.bases = bases_.size();
    return true;
}

// Adds a base laid out by FlatBuffers' builder, which both verifiers must accept with
// the same contents, except for the known codec bug empty_vector_alignment (README.md):
// Tessera rejects an empty vector of 8-byte elements that flatc aligned only to 4. Such
// bases are counted and left out.
bool MutationTest::AddFlatcBase(Base f, std::string *why)
{
    std::string where = "variant " + std::to_string(f.variant) + " (" + cf_variant_name(f.variant) +
                        ") seed " + std::to_string(f.seed);
    if (!cf::VerifyFrame(f.frame.data(), f.frame.size())) {
        *why = "the C++ verifier rejects flatc's layout of " + where;
        return false;
    }
    char errmsg[256];
    const char *json = nullptr;
    if (cf_decode_json(codec_, f.frame.data(), f.frame.size(), true, &json, errmsg,
                       sizeof(errmsg)) != 0) {
        if (std::strstr(errmsg, "vector elements misaligned") != nullptr) {
            counts_.known_bug_bases++;
            return true;
        }
        *why = "Tessera rejects flatc's layout of " + where + ": " + errmsg;
        return false;
    }
    if (f.json != json) {
        *why = "Tessera reads flatc's layout of " + where + " differently:\n  " + f.json + "\n  " +
               json;
        return false;
    }
    bases_.push_back(std::move(f));
    return true;
}

// Returns "" when the outcome is allowed, else why it is not.
std::string MutationTest::Check(const Base &base, const cf::Bytes &m, bool *tessera_ok,
                                bool *cpp_ok, std::string *reason)
{
    char errmsg[256];
    const char *json = nullptr;
    *tessera_ok =
        cf_decode_json(codec_, m.data(), m.size(), true, &json, errmsg, sizeof(errmsg)) == 0;
    last_errmsg_ = *tessera_ok ? "" : errmsg;
    *cpp_ok = cf::VerifyFrame(m.data(), m.size());
    if (!*tessera_ok) {
        *reason = Reason(errmsg);
        return "";
    }
    if (!*cpp_ok) {
        return std::string("Tessera accepts a frame that the C++ verifier rejects\n  ") +
               "Tessera's JSON: " + json;
    }
    return Compare(base, m, json);
}

// Both verifiers accept m: flatc's text of it must equal Tessera's JSON canonicalised.
std::string MutationTest::Compare(const Base &base, const cf::Bytes &m, const std::string &json)
{
    // A union value whose type is NONE is ignored by both readers, but flatc's text
    // printer asserts on it (a limitation of idl_gen_text.cpp, not a disagreement).
    if (oracle_->HasUnionValueWithoutType(m.data() + 4)) {
        counts_.not_compared++;
        return "";
    }
    std::string text;
    std::string canonical;
    std::string why;
    if (!oracle_->Text(m.data() + 4, &text, &why)) {
        return why;
    }
    std::string raw = cf::RawByteEscapes(json);
    if (raw != json) {
        counts_.non_utf8++;
    }
    if (json == base.json) {
        canonical = base.canonical;
    } else if (!oracle_->Canonical(raw, &canonical, &why)) {
        return why + "\n  Tessera's JSON: " + json;
    }
    if (text != canonical) {
        return "both accept but read different contents: " + cf::FirstDifference(text, canonical) +
               "\n  Tessera's JSON: " + json;
    }
    return "";
}

void MutationTest::Fail(uint64_t index, const Base &base, const std::string &mutation,
                        const std::string &why)
{
    counts_.failed++;
    if (counts_.failed > static_cast<uint64_t>(kFailuresShownMax)) {
        return;
    }
    std::printf("FAIL mutation %" PRIu64 " (seed %s) of variant %" PRIu32 " (%s) seed %" PRIu64
                " in %s layout: %s\n  %s\n  reproduce: proto_mutation_test %s --seed %s --first "
                "%" PRIu64 " --mutations 1\n",
                index, Hex(opts_.seed).c_str(), base.variant, cf_variant_name(base.variant),
                base.seed, base.flatc_layout ? "flatc's" : "Tessera's", mutation.c_str(),
                why.c_str(), opts_.schema, Hex(opts_.seed).c_str(), index);
}

// With --write DIR: saves a mutated frame as DIR/mutation_<index>.bin (proto_dump
// --frame reads it).
void MutationTest::WriteFrame(uint64_t index, const cf::Bytes &m)
{
    if (opts_.write_dir == nullptr) {
        return;
    }
    std::string path = std::string(opts_.write_dir) + "/mutation_" + std::to_string(index) + ".bin";
    FILE *f = std::fopen(path.c_str(), "wb");
    bool ok = f != nullptr && std::fwrite(m.data(), 1, m.size(), f) == m.size();
    if (f != nullptr && std::fclose(f) != 0) {
        ok = false;
    }
    std::printf("  %s %s\n", ok ? "wrote" : "cannot write", path.c_str());
}

void MutationTest::Run(uint64_t index)
{
    Rng r(opts_.seed ^ (index * 0xd1342543de82ef95ull));
    const Base &base = bases_[r.Below(bases_.size())];
    cf::Bytes m(base.frame.data(), base.frame.size());
    std::string mutation = Mutate(&r, &m);
    bool tessera_ok = false;
    bool cpp_ok = false;
    std::string reason;
    std::string why = Check(base, m, &tessera_ok, &cpp_ok, &reason);
    bool stricter = !tessera_ok && cpp_ok;
    if (opts_.show_stricter && stricter) {
        std::printf("stricter: mutation %" PRIu64 " of variant %" PRIu32 " seed %" PRIu64
                    " in %s layout: %s: %s\n",
                    index, base.variant, base.seed, base.flatc_layout ? "flatc's" : "Tessera's",
                    mutation.c_str(), last_errmsg_.c_str());
    }
    if (!why.empty() || (opts_.show_stricter && stricter)) {
        WriteFrame(index, m);
    }
    if (!why.empty()) {
        Fail(index, base, mutation, why);
        return;
    }
    counts_.passed++;
    if (tessera_ok) {
        counts_.both_accept++;
    } else if (!cpp_ok) {
        counts_.both_reject++;
    } else {
        counts_.tessera_only_reject++;
        counts_.stricter[reason]++;
    }
}

bool ParseArgs(int argc, char **argv, Options *opts)
{
    if (argc < 2) {
        return false;
    }
    opts->schema = argv[1];
    for (int i = 2; i < argc; i += 2) {
        uint64_t v = 0;
        if (std::strcmp(argv[i], "--show-stricter") == 0) {
            opts->show_stricter = true;
            i--;
            continue;
        }
        if (i + 1 >= argc ||
            (std::strcmp(argv[i], "--write") != 0 && !cf::ParseU64(argv[i + 1], &v))) {
            return false;
        }
        if (std::strcmp(argv[i], "--write") == 0) {
            opts->write_dir = argv[i + 1];
        } else if (std::strcmp(argv[i], "--seed") == 0) {
            opts->seed = v;
        } else if (std::strcmp(argv[i], "--mutations") == 0) {
            opts->mutations = v;
        } else if (std::strcmp(argv[i], "--first") == 0) {
            opts->first = v;
        } else {
            return false;
        }
    }
    return true;
}

void Report(const Counts &c)
{
    std::printf("base frames: %" PRIu64 " (Tessera's and flatc's layouts of each message);\n"
                "  flatc layouts left out, Tessera rejects them (known bug\n"
                "  empty_vector_alignment, README.md): %" PRIu64 "\n",
                c.bases, c.known_bug_bases);
    std::printf("accepted by both:                         %" PRIu64 "\n", c.both_accept);
    std::printf("  of which not compared (union value with type NONE, which flatc's\n"
                "  text printer cannot print; both readers ignore it): %" PRIu64 "\n",
                c.not_compared);
    std::printf("  of which had strings that are not UTF-8 (compared byte for byte\n"
                "  after cf::RawByteEscapes): %" PRIu64 "\n",
                c.non_utf8);
    std::printf("rejected by both:                         %" PRIu64 "\n", c.both_reject);
    std::printf("rejected only by Tessera (allowed):       %" PRIu64 "\n", c.tessera_only_reject);
    std::vector<std::pair<uint64_t, std::string>> reasons;
    for (const auto &kv : c.stricter) {
        reasons.emplace_back(kv.second, kv.first);
    }
    std::sort(reasons.rbegin(), reasons.rend());
    for (size_t i = 0; i < reasons.size() && i < kReasonsShownMax; i++) {
        std::printf("  %8" PRIu64 "  %s\n", reasons[i].first, reasons[i].second.c_str());
    }
    if (reasons.size() > kReasonsShownMax) {
        std::printf("  ... %zu more reasons\n", reasons.size() - kReasonsShownMax);
    }
    std::printf("failures (accepted only by Tessera, or contents differ): %" PRIu64 "\n", c.failed);
}

} // namespace

int main(int argc, char **argv)
{
    Options opts;
    if (!ParseArgs(argc, argv, &opts)) {
        std::fprintf(stderr,
                     "usage: %s SCHEMA.fbs [--seed S] [--mutations N] [--first I] "
                     "[--show-stricter] [--write DIR]\n",
                     argv[0]);
        return 2;
    }
    std::printf("proto_mutation_test: seed %s, mutations [%" PRIu64 ", %" PRIu64 ")\n",
                Hex(opts.seed).c_str(), opts.first, opts.first + opts.mutations);
    cf::Oracle oracle;
    std::string err;
    struct cf_codec *codec = cf_codec_new();
    if (codec == nullptr || !oracle.Load(opts.schema, &err)) {
        std::printf("%s\n0 passed, 1 failed\n", codec == nullptr ? "out of memory" : err.c_str());
        cf_codec_free(codec);
        return 1;
    }
    MutationTest test(opts, &oracle, codec);
    if (!test.BuildBases(&err)) {
        std::printf("FAIL building the base frames: %s\n0 passed, 1 failed\n", err.c_str());
        cf_codec_free(codec);
        return 1;
    }
    for (uint64_t i = opts.first; i < opts.first + opts.mutations; i++) {
        test.Run(i);
    }
    cf_codec_free(codec);
    Report(test.counts());
    std::printf("%" PRIu64 " passed, %" PRIu64 " failed\n", test.counts().passed,
                test.counts().failed);
    return test.counts().failed == 0 ? 0 : 1;
}
