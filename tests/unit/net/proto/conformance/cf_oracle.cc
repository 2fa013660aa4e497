#include "tests/unit/net/proto/conformance/cf_oracle.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <flatbuffers/util.h>

#include "tessera_generated.h"

namespace cf
{

Bytes::Bytes(const uint8_t *data, size_t len) : data_(new uint8_t[len > 0 ? len : 1]()), len_(len)
{
    if (len > 0) {
        std::memcpy(data_.get(), data, len);
    }
}

void Bytes::Resize(size_t n)
{
    std::unique_ptr<uint8_t[]> grown(new uint8_t[n > 0 ? n : 1]());
    if (data_ != nullptr) {
        std::memcpy(grown.get(), data_.get(), n < len_ ? n : len_);
    }
    data_ = std::move(grown);
    len_ = n;
}

static flatbuffers::IDLOptions OracleOptions()
{
    flatbuffers::IDLOptions o;
    o.strict_json = true;
    o.output_default_scalars_in_json = true;
    o.output_enum_identifiers = true;
    o.allow_non_utf8 = true;
    return o;
}

Oracle::Oracle() : parser_(OracleOptions())
{
}

bool Oracle::Load(const std::string &schema_path, std::string *err)
{
    std::string schema;
    if (!flatbuffers::LoadFile(schema_path.c_str(), false, &schema)) {
        *err = "cannot read the schema " + schema_path;
        return false;
    }
    if (!parser_.Parse(schema.c_str(), nullptr, schema_path.c_str())) {
        *err = "flatbuffers::Parser rejects the schema: " + parser_.error_;
        return false;
    }
    if (parser_.root_struct_def_ == nullptr) {
        *err = "the schema has no root_type";
        return false;
    }
    return true;
}

bool Oracle::Text(const uint8_t *buf, std::string *text, std::string *err)
{
    text->clear();
    if (!flatbuffers::GenerateText(parser_, buf, text)) {
        *err = "flatbuffers::GenerateText failed";
        return false;
    }
    return true;
}

bool Oracle::Encode(const std::string &json, bool size_prefixed, Bytes *out, std::string *err)
{
    parser_.builder_.Clear();
    parser_.opts.size_prefixed = size_prefixed;
    bool ok = parser_.Parse(json.c_str());
    parser_.opts.size_prefixed = false;
    if (!ok) {
        *err = "flatbuffers::Parser rejects the JSON: " + parser_.error_;
        return false;
    }
    *out = Bytes(parser_.builder_.GetBufferPointer(), parser_.builder_.GetSize());
    return true;
}

bool Oracle::Canonical(const std::string &json, std::string *text, std::string *err)
{
    parser_.builder_.Clear();
    if (!parser_.Parse(json.c_str())) {
        *err = "flatbuffers::Parser rejects Tessera's JSON: " + parser_.error_;
        return false;
    }
    return Text(parser_.builder_.GetBufferPointer(), text, err);
}

static bool UnionWithoutType(const flatbuffers::StructDef &sd, const flatbuffers::Table *t,
                             int depth);

static bool UnionFieldWithoutType(const flatbuffers::StructDef &sd, const flatbuffers::FieldDef &fd,
                                  const flatbuffers::Table *t, int depth)
{
    const flatbuffers::Type &ty = fd.value.type;
    const auto *value = t->GetPointer<const flatbuffers::Table *>(fd.value.offset);
    if (value == nullptr) {
        return false;
    }
    const flatbuffers::FieldDef *type_fd = sd.fields.Lookup(fd.name + "_type");
    uint8_t type = type_fd != nullptr ? t->GetField<uint8_t>(type_fd->value.offset, 0) : 0;
    if (type == 0) {
        return true;
    }
    const flatbuffers::EnumVal *ev = ty.enum_def->ReverseLookup(type, true);
    return ev != nullptr && ev->union_type.struct_def != nullptr &&
           UnionWithoutType(*ev->union_type.struct_def, value, depth + 1);
}

static bool UnionWithoutType(const flatbuffers::StructDef &sd, const flatbuffers::Table *t,
                             int depth)
{
    // Deeper than the C++ verifier's limit cannot have been verified.
    if (t == nullptr || depth > 64) {
        return false;
    }
    for (const flatbuffers::FieldDef *fd : sd.fields.vec) {
        const flatbuffers::Type &ty = fd->value.type;
        if (ty.base_type == flatbuffers::BASE_TYPE_UNION) {
            if (UnionFieldWithoutType(sd, *fd, t, depth)) {
                return true;
            }
        } else if (ty.base_type == flatbuffers::BASE_TYPE_STRUCT && !ty.struct_def->fixed) {
            if (UnionWithoutType(*ty.struct_def,
                                 t->GetPointer<const flatbuffers::Table *>(fd->value.offset),
                                 depth + 1)) {
                return true;
            }
        } else if (ty.base_type == flatbuffers::BASE_TYPE_VECTOR &&
                   ty.element == flatbuffers::BASE_TYPE_STRUCT && !ty.struct_def->fixed) {
            const auto *vec =
                t->GetPointer<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::Table>> *>(
                    fd->value.offset);
            for (flatbuffers::uoffset_t i = 0; vec != nullptr && i < vec->size(); i++) {
                if (UnionWithoutType(*ty.struct_def, vec->Get(i), depth + 1)) {
                    return true;
                }
            }
        }
    }
    return false;
}

bool Oracle::HasUnionValueWithoutType(const uint8_t *buf) const
{
    return UnionWithoutType(*parser_.root_struct_def_,
                            flatbuffers::GetRoot<flatbuffers::Table>(buf), 1);
}

std::string RawByteEscapes(const std::string &json)
{
    std::string out;
    out.reserve(json.size());
    for (size_t i = 0; i < json.size(); i++) {
        if (json[i] != '\\' || i + 1 >= json.size()) {
            out += json[i];
            continue;
        }
        // "\u00HH" with HH >= 0x80 becomes "\xHH"; any other escape is copied whole.
        if (json[i + 1] == 'u' && i + 5 < json.size() && json.compare(i + 2, 2, "00") == 0 &&
            json[i + 4] != 0 && std::strchr("89abcdefABCDEF", json[i + 4]) != nullptr) {
            out += "\\x";
            out += json.substr(i + 4, 2);
            i += 5;
        } else {
            out += json.substr(i, 2);
            i += 1;
        }
    }
    return out;
}

bool VerifyFrame(const uint8_t *buf, size_t len)
{
    flatbuffers::Verifier v(buf, len);
    return tessera::proto::VerifySizePrefixedMessageBuffer(v);
}

bool VerifyBare(const uint8_t *buf, size_t len)
{
    flatbuffers::Verifier v(buf, len);
    return tessera::proto::VerifyMessageBuffer(v);
}

std::string FirstDifference(const std::string &a, const std::string &b)
{
    std::istringstream sa(a);
    std::istringstream sb(b);
    std::string la;
    std::string lb;
    for (int line = 1;; line++) {
        bool ha = static_cast<bool>(std::getline(sa, la));
        bool hb = static_cast<bool>(std::getline(sb, lb));
        if (!ha && !hb) {
            return "no difference";
        }
        if (!ha || !hb || la != lb) {
            std::ostringstream o;
            o << "line " << line << ": flatc has " << (ha ? "'" + la + "'" : "<end>")
              << ", Tessera has " << (hb ? "'" + lb + "'" : "<end>");
            return o.str();
        }
    }
}

bool ParseU64(const char *s, uint64_t *out)
{
    if (s == nullptr || *s == 0 || *s == '-') {
        return false;
    }
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 0);
    if (errno != 0 || *end != 0) {
        return false;
    }
    *out = v;
    return true;
}

} // namespace cf
