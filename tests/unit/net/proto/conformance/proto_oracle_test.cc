// (a) Tessera -> C++ oracle.
//
// For every message kind of proto_gen_rand.h and many seeds, Tessera builds a random
// Message twice, as a frame and as a bare buffer. Each case checks that:
//   1. the frame's length prefix is its length - 4 and the frame is a multiple of 8;
//   2. flatc's generated C++ verifier accepts both (VerifySizePrefixedMessageBuffer /
//      VerifyMessageBuffer, with the file identifier);
//   3. Tessera's own decoder accepts both, and dumps the same JSON for both;
//   4. flatc's text of each buffer (GenerateText) equals Tessera's JSON canonicalised
//      through the same flatbuffers::Parser: the C++ side reads back every field
//      Tessera wrote, with the same value.
//
// Usage: proto_oracle_test SCHEMA.fbs [--seeds N] [--first-seed S] [--variant V]
// Seeds first-seed .. first-seed+N-1 are used for every variant (or only variant V, a
// number or a name such as Request.PutRequest).
// A failure prints the variant and seed, and the command that repeats that one case.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "tessera_generated.h"
#include "tests/unit/net/proto/conformance/cf_oracle.h"
#include "tests/unit/net/proto/conformance/cf_tessera.h"

namespace
{

constexpr uint64_t kDefaultSeeds = 200;
constexpr uint64_t kDefaultFirstSeed = 1;
constexpr int kFailuresShownMax = 20;

struct Options {
    const char *schema = nullptr;
    uint64_t seeds = kDefaultSeeds;
    uint64_t first_seed = kDefaultFirstSeed;
    int64_t variant = -1; // -1: every variant
};

struct Case {
    uint32_t variant;
    uint64_t seed;
};

class OracleTest
{
  public:
    OracleTest(cf::Oracle *oracle, struct cf_codec *codec) : oracle_(oracle), codec_(codec)
    {
    }

    // Runs one case; returns "" when it passes, else what went wrong.
    std::string Run(const Case &c);

  private:
    bool Build(const Case &c, bool frame, cf::Bytes *out, std::string *why);
    bool Decode(const cf::Bytes &buf, bool frame, std::string *json, std::string *why);

    cf::Oracle *oracle_;
    struct cf_codec *codec_;
};

bool OracleTest::Build(const Case &c, bool frame, cf::Bytes *out, std::string *why)
{
    const uint8_t *bytes = nullptr;
    size_t len = 0;
    int rc = cf_build_random(codec_, c.seed, c.variant, frame, &bytes, &len);
    if (rc != 0) {
        *why = std::string("Tessera cannot build the ") + (frame ? "frame" : "buffer") +
               ": error " + std::to_string(rc);
        return false;
    }
    *out = cf::Bytes(bytes, len);
    return true;
}

bool OracleTest::Decode(const cf::Bytes &buf, bool frame, std::string *json, std::string *why)
{
    char errmsg[256];
    const char *text = nullptr;
    int rc = cf_decode_json(codec_, buf.data(), buf.size(), frame, &text, errmsg, sizeof(errmsg));
    if (rc != 0) {
        *why =
            std::string("Tessera rejects its own ") + (frame ? "frame" : "buffer") + ": " + errmsg;
        return false;
    }
    *json = text;
    return true;
}

std::string OracleTest::Run(const Case &c)
{
    std::string why;
    cf::Bytes frame;
    cf::Bytes bare;
    if (!Build(c, true, &frame, &why) || !Build(c, false, &bare, &why)) {
        return why;
    }
    uint32_t prefix = 0;
    std::memcpy(&prefix, frame.data(), sizeof(prefix));
    if (frame.size() % 8 != 0 || prefix != frame.size() - 4) {
        return "frame of " + std::to_string(frame.size()) + " bytes has length prefix " +
               std::to_string(prefix) + " (want its length - 4, and a multiple of 8)";
    }
    if (!tessera::proto::SizePrefixedMessageBufferHasIdentifier(frame.data()) ||
        !tessera::proto::MessageBufferHasIdentifier(bare.data())) {
        return "file identifier TSR1 missing";
    }
    if (!cf::VerifyFrame(frame.data(), frame.size())) {
        return "C++ VerifySizePrefixedMessageBuffer rejects Tessera's frame";
    }
    if (!cf::VerifyBare(bare.data(), bare.size())) {
        return "C++ VerifyMessageBuffer rejects Tessera's bare buffer";
    }
    std::string json_frame;
    std::string json_bare;
    if (!Decode(frame, true, &json_frame, &why) || !Decode(bare, false, &json_bare, &why)) {
        return why;
    }
    if (json_frame != json_bare) {
        return "Tessera's JSON differs between the frame and the bare buffer:\n  " + json_frame +
               "\n  " + json_bare;
    }
    std::string text_frame;
    std::string text_bare;
    std::string canonical;
    if (!oracle_->Text(frame.data() + 4, &text_frame, &why) ||
        !oracle_->Text(bare.data(), &text_bare, &why) ||
        !oracle_->Canonical(json_frame, &canonical, &why)) {
        return why + "\n  Tessera's JSON: " + json_frame;
    }
    if (text_frame != canonical) {
        return "flatc reads the frame differently: " + cf::FirstDifference(text_frame, canonical) +
               "\n  Tessera's JSON: " + json_frame;
    }
    if (text_bare != canonical) {
        return "flatc reads the bare buffer differently: " +
               cf::FirstDifference(text_bare, canonical) + "\n  Tessera's JSON: " + json_bare;
    }
    return "";
}

// A negative control: the comparison must be able to fail. Two messages that differ in
// one field print differently, and flatc prints a Tessera buffer with its fields.
bool OracleIsNotBlind(cf::Oracle *oracle, struct cf_codec *codec, std::string *why)
{
    std::string one;
    std::string two;
    if (!oracle->Canonical("{\"body_type\":\"Hello\",\"body\":{\"node_id\":1}}", &one, why) ||
        !oracle->Canonical("{\"body_type\":\"Hello\",\"body\":{\"node_id\":2}}", &two, why)) {
        return false;
    }
    if (one == two) {
        *why = "messages that differ print the same text";
        return false;
    }
    const uint8_t *bytes = nullptr;
    size_t len = 0;
    if (cf_build_random(codec, 1, 0, false, &bytes, &len) != 0) {
        *why = "Tessera cannot build a message";
        return false;
    }
    cf::Bytes copy(bytes, len);
    std::string text;
    if (!cf::VerifyBare(copy.data(), copy.size()) || !oracle->Text(copy.data(), &text, why)) {
        return false;
    }
    if (text.find("\"body_type\": \"Request\"") == std::string::npos ||
        text.find("\"op_type\": \"PutRequest\"") == std::string::npos) {
        *why = "flatc's text of a Request.PutRequest lacks its union types:\n" + text;
        return false;
    }
    return true;
}

// A variant's index from its name ("Request.PutRequest", or "Request_PutRequest" as in
// sample file names), -1 if there is none.
int64_t VariantByName(const char *name)
{
    std::string want = name;
    std::replace(want.begin(), want.end(), '_', '.');
    for (uint32_t v = 0; v < cf_variant_count(); v++) {
        if (want == cf_variant_name(v)) {
            return v;
        }
    }
    return -1;
}

bool ParseArgs(int argc, char **argv, Options *opts)
{
    if (argc < 2) {
        return false;
    }
    opts->schema = argv[1];
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) {
            return false;
        }
        uint64_t v = 0;
        bool number = cf::ParseU64(argv[i + 1], &v);
        if (std::strcmp(argv[i], "--variant") == 0) {
            opts->variant = VariantByName(argv[i + 1]);
            if (number && v < cf_variant_count()) {
                opts->variant = static_cast<int64_t>(v);
            }
            if (opts->variant < 0) {
                return false;
            }
        } else if (number && std::strcmp(argv[i], "--seeds") == 0) {
            opts->seeds = v;
        } else if (number && std::strcmp(argv[i], "--first-seed") == 0) {
            opts->first_seed = v;
        } else {
            return false;
        }
    }
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    Options opts;
    if (!ParseArgs(argc, argv, &opts)) {
        std::fprintf(stderr, "usage: %s SCHEMA.fbs [--seeds N] [--first-seed S] [--variant V]\n",
                     argv[0]);
        return 2;
    }
    cf::Oracle oracle;
    std::string err;
    if (!oracle.Load(opts.schema, &err)) {
        std::fprintf(stderr, "%s\n0 passed, 1 failed\n", err.c_str());
        return 1;
    }
    struct cf_codec *codec = cf_codec_new();
    if (codec == nullptr) {
        std::fprintf(stderr, "out of memory\n0 passed, 1 failed\n");
        return 1;
    }
    if (!OracleIsNotBlind(&oracle, codec, &err)) {
        std::printf("FAIL negative control: %s\n0 passed, 1 failed\n", err.c_str());
        cf_codec_free(codec);
        return 1;
    }
    OracleTest test(&oracle, codec);
    std::printf("proto_oracle_test: %" PRIu64 " seeds from %" PRIu64 " x %s\n", opts.seeds,
                opts.first_seed, opts.variant < 0 ? "every variant" : "one variant");
    uint64_t passed = 0;
    uint64_t failed = 0;
    for (uint32_t v = 0; v < cf_variant_count(); v++) {
        if (opts.variant >= 0 && v != static_cast<uint64_t>(opts.variant)) {
            continue;
        }
        uint64_t variant_failed = 0;
        for (uint64_t i = 0; i < opts.seeds; i++) {
            Case c{v, opts.first_seed + i};
            std::string why = test.Run(c);
            if (why.empty()) {
                passed++;
                continue;
            }
            failed++;
            variant_failed++;
            if (failed <= static_cast<uint64_t>(kFailuresShownMax)) {
                std::printf(
                    "FAIL variant %" PRIu32 " (%s) seed %" PRIu64 ": %s\n"
                    "  reproduce: %s %s --variant %" PRIu32 " --first-seed %" PRIu64 " --seeds 1\n",
                    v, cf_variant_name(v), c.seed, why.c_str(), argv[0], opts.schema, v, c.seed);
            }
        }
        std::printf("  %-34s %" PRIu64 " seeds, %" PRIu64 " failed\n", cf_variant_name(v),
                    opts.seeds, variant_failed);
    }
    cf_codec_free(codec);
    std::printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
