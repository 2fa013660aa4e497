// The FlatBuffers side of the conformance tests: flatc's C++ verifier and its text
// printer, used as the oracle that Tessera's codec is checked against.
//
// Contents are compared as text: flatbuffers::GenerateText prints a buffer with every
// scalar (defaults included), enums by name, in schema order. Tessera's own JSON
// (proto_message_json) is canonicalised by parsing it with the same flatbuffers::Parser
// and printing the result, so when both describe the same message the two texts are
// byte-for-byte equal, whatever either side's layout or key order.
//
// Strings: flatc prints bytes that are not UTF-8 as "\xHH" (allow_non_utf8), and its
// Parser reads "\xHH" back as that byte, so strings compare byte for byte.
//
// An Oracle belongs to one thread. The schema is read from the source tree
// (net/proto/tessera.fbs), not compiled in, so the tests always use the current one.
#ifndef TS_TESTS_CONFORMANCE_CF_ORACLE_H
#define TS_TESTS_CONFORMANCE_CF_ORACLE_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <flatbuffers/idl.h>

namespace cf
{

// A heap copy of a buffer of exactly its length, so that AddressSanitizer reports any
// read past its end. The copy is 16-byte aligned (operator new), so offsets keep the
// alignment they have relative to the buffer start.
class Bytes
{
  public:
    Bytes() = default;
    Bytes(const uint8_t *data, size_t len);
    uint8_t *data()
    {
        return data_.get();
    }
    const uint8_t *data() const
    {
        return data_.get();
    }
    size_t size() const
    {
        return len_;
    }
    // Changes the length to n, keeping the first min(n, size()) bytes and zero-filling
    // the rest; reallocates so the buffer still ends exactly at size().
    void Resize(size_t n);

  private:
    std::unique_ptr<uint8_t[]> data_;
    size_t len_ = 0;
};

class Oracle
{
  public:
    Oracle();

    // Parses the schema file. Returns false and a reason on failure.
    bool Load(const std::string &schema_path, std::string *err);

    // flatc's text of a bare buffer (root offset at buf[0]) that the C++ verifier has
    // accepted. Returns false and a reason if the printer fails.
    bool Text(const uint8_t *buf, std::string *text, std::string *err);

    // Parses JSON text (Tessera's) into a buffer with the schema and prints that buffer.
    bool Canonical(const std::string &json, std::string *text, std::string *err);

    // Parses JSON with the schema into a buffer laid out by FlatBuffers' own builder (as
    // `flatc -b` would), size-prefixed when asked. Returns false and a reason on failure.
    bool Encode(const std::string &json, bool size_prefixed, Bytes *out, std::string *err);

    // True when a verified bare buffer holds a union value whose type is NONE (absent
    // or 0). Both verifiers accept that (the value is ignored), but GenerateText
    // asserts on it (idl_gen_text.cpp PrintOffset: `prev_val`), so callers skip it.
    bool HasUnionValueWithoutType(const uint8_t *buf) const;

  private:
    flatbuffers::Parser parser_;
};

// flatc's generated verifiers, with the file identifier "TSR1".
bool VerifyFrame(const uint8_t *buf, size_t len);
bool VerifyBare(const uint8_t *buf, size_t len);

// Describes where two texts first differ: the line number and both lines.
std::string FirstDifference(const std::string &a, const std::string &b);

// Tessera's JSON writer passes valid UTF-8 through and writes each byte that is not part
// of valid UTF-8 as "\u00HH" (documented as lossy in net/proto/proto.c): the Parser
// would read that back as the code point U+00HH, two bytes of UTF-8, not the byte.
// Returns json with those escapes (HH >= 0x80) replaced by "\xHH", which the Parser
// reads back as the original byte, so that strings of arbitrary bytes (mutated
// buffers) still compare byte for byte. Other text is copied unchanged.
std::string RawByteEscapes(const std::string &json);

// Parses a decimal or 0x-prefixed u64; returns false on garbage.
bool ParseU64(const char *s, uint64_t *out);

} // namespace cf

#endif
