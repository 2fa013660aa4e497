/*
 * net/proto: Tessera's FlatBuffers codec in C — the runtime under the generated code.
 *
 * FlatBuffers has no packaged C generator, so Tessera writes its own: protogen.py reads
 * tessera.fbs and writes proto_gen.h/.c (typed views, accessors, builders, verifiers and
 * JSON dumpers for every table); this file is the runtime they share. The format is
 * FlatBuffers' own, byte for byte: buffers built here pass flatc's C++ verifier, and
 * buffers made by flatc decode here (tests/unit/net/proto checks both ways).
 *
 * Binary format (all little-endian; positions are relative to the buffer start):
 *
 *   buffer   u32 root offset | [4-byte file identifier] | ... objects ...
 *   frame    u32 length L | buffer of L bytes          (4 + L is a multiple of 8)
 *   table    i32 soffset: table position - vtable position (signed: the vtable may
 *            lie before or after the table) | inline fields
 *   vtable   u16 vtable bytes | u16 table inline bytes | u16 field offset per slot
 *            (0: absent, the reader uses the schema default)
 *   offset   u32 forward distance from the offset's own position to the target
 *   vector   u32 count | elements (scalars, structs inline, or u32 offsets)
 *   string   u32 length | bytes | NUL
 *
 * Scalars are aligned to their size, structs to their largest member, vectors' length
 * to 4 and their elements to the element's alignment; alignment is relative to the
 * buffer start, which for a frame is the length prefix.
 *
 * Building. A builder writes back to front, as FlatBuffers' own builders do, so every
 * offset points forward: children (strings, vectors, tables) are created first and
 * return a proto_ref, then the parent table is begun, its fields added, and ended.
 * One table is under construction at a time. Vtables are deduplicated against the
 * last TS_PROTO_VTABLE_CACHE_MAX written. Errors (allocation failure, the size limit)
 * are sticky: calls after an error do nothing and proto_builder_finish() reports it,
 * so callers check once. The builder's memory is reused across messages
 * (proto_builder_reset), so steady state does not allocate.
 *
 * Verifying. Nothing in a received buffer is read before proto_verify_*() has checked,
 * for every reachable object: offsets in bounds, non-zero and below 2^31; alignment;
 * vtable and table sizes; every field inside its table; vector and string lengths;
 * string terminators; union types known; nesting depth (TS_PROTO_DEPTH_MAX) and table
 * count (TS_PROTO_TABLES_MAX). Accessors read exactly what the verifier checked and no
 * more, and never check again.
 *
 * Ownership. A decoded view borrows the buffer it was read from: it is valid until
 * that buffer is released or reused; copy out what must outlive it. The builder owns
 * its buffer; proto_builder_finish() returns a view valid until the next reset or fini.
 *
 * Threading: a builder or verifier belongs to one shard; the code has no shared state.
 */
#ifndef TS_NET_PROTO_PROTO_H
#define TS_NET_PROTO_PROTO_H

#include "core/util/encoding.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/mem.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A reference to an object already written into a builder: its distance from the end
 * of the buffer. 0 is never a valid reference. */
typedef uint32_t proto_ref;

#define PROTO_FRAME_HEADER_BYTES 4u
#define PROTO_FRAME_ALIGN 8u
#define PROTO_IDENTIFIER_BYTES 4u

/* ------------------------------------------------------------------ builder */

struct proto_builder {
    const struct ts_allocator *alloc;
    uint8_t *buf; /* data lives in [buf + cap - size, buf + cap) */
    uint32_t cap;
    uint32_t size;
    uint32_t limit_bytes; /* the finished buffer may not exceed this */
    uint32_t minalign;
    int err; /* sticky: 0, -TS_ENOMEM or TS_ETOOBIG */
    bool in_table;
    uint32_t table_begin; /* size when the current table began */
    uint64_t field_mask;  /* slots set in the current table */
    uint32_t field_loc[TS_PROTO_FIELDS_MAX];
    uint32_t vtables[TS_PROTO_VTABLE_CACHE_MAX];
    uint32_t vtable_count;
    uint32_t vtable_next; /* round-robin replacement once the cache is full */
};

/* Sets up a builder with an initial capacity (grown on demand up to limit_bytes).
 * Borrows alloc, which must outlive the builder. Returns 0 or TS_ENOMEM. */
int proto_builder_init(struct proto_builder *b, const struct ts_allocator *alloc,
                       uint32_t initial_bytes, uint32_t limit_bytes);
void proto_builder_fini(struct proto_builder *b);

/* Forgets the message being built, keeps the memory. */
void proto_builder_reset(struct proto_builder *b);

/* Grows the buffer so that `need` more bytes fit. Sets b->err on failure. */
int proto_builder_grow(struct proto_builder *b, uint32_t need);

/*
 * Reserves n bytes aligned to `align` (a power of two <= 8), zero-padding so that the
 * object ends up aligned in the finished buffer. Returns where to write the n bytes, or
 * NULL after an error. The pointer is valid until the next reserve.
 */
static inline uint8_t *proto_reserve(struct proto_builder *b, uint32_t n, uint32_t align)
{
    uint32_t pad = (0u - (b->size + n)) & (align - 1);
    uint32_t need = pad + n;
    if (__builtin_expect(b->cap - b->size < need, 0)) {
        if (b->err != 0 || proto_builder_grow(b, need) != 0) {
            return NULL;
        }
    }
    if (align > b->minalign) {
        b->minalign = align;
    }
    b->size += need;
    uint8_t *p = b->buf + b->cap - b->size;
    memset(p + n, 0, pad);
    return p;
}

/* Begins a table whose largest inline field has alignment `align`. No other table may be
 * in progress. Padding to that alignment first (outside the table) makes the layout of a
 * table depend only on the fields added, so tables of one shape share one vtable. */
static inline void proto_table_begin(struct proto_builder *b, uint32_t align)
{
    b->in_table = true;
    (void)proto_reserve(b, 0, align); /* an error is sticky and surfaces at the end */
    b->table_begin = b->size;
    b->field_mask = 0;
}

static inline void proto_field_set(struct proto_builder *b, uint32_t slot)
{
    b->field_loc[slot] = b->size;
    b->field_mask |= (uint64_t)1 << slot;
}

static inline void proto_add_u8(struct proto_builder *b, uint32_t slot, uint8_t v)
{
    uint8_t *p = proto_reserve(b, 1, 1);
    if (p != NULL) {
        *p = v;
        proto_field_set(b, slot);
    }
}

static inline void proto_add_u16(struct proto_builder *b, uint32_t slot, uint16_t v)
{
    uint8_t *p = proto_reserve(b, 2, 2);
    if (p != NULL) {
        ts_store_le16(p, v);
        proto_field_set(b, slot);
    }
}

static inline void proto_add_u32(struct proto_builder *b, uint32_t slot, uint32_t v)
{
    uint8_t *p = proto_reserve(b, 4, 4);
    if (p != NULL) {
        ts_store_le32(p, v);
        proto_field_set(b, slot);
    }
}

static inline void proto_add_u64(struct proto_builder *b, uint32_t slot, uint64_t v)
{
    uint8_t *p = proto_reserve(b, 8, 8);
    if (p != NULL) {
        ts_store_le64(p, v);
        proto_field_set(b, slot);
    }
}

/* Adds an offset field pointing at an object already built. ref 0 (an absent object,
 * or one whose creation failed) adds nothing. */
static inline void proto_add_ref(struct proto_builder *b, uint32_t slot, proto_ref ref)
{
    if (ref == 0) {
        return;
    }
    uint8_t *p = proto_reserve(b, 4, 4);
    if (p != NULL) {
        ts_store_le32(p, b->size - ref);
        proto_field_set(b, slot);
    }
}

/* Adds a struct field: reserves its bytes and returns where to write them (NULL after
 * an error). */
static inline uint8_t *proto_add_struct(struct proto_builder *b, uint32_t slot, uint32_t size,
                                        uint32_t align)
{
    uint8_t *p = proto_reserve(b, size, align);
    if (p != NULL) {
        memset(p, 0, size);
        proto_field_set(b, slot);
    }
    return p;
}

/* Ends the table: writes (or reuses) its vtable. Returns its reference, 0 on error. */
proto_ref proto_table_end(struct proto_builder *b);

/* Vectors and strings. Each returns a reference, or 0 after an error. */
proto_ref proto_create_vector(struct proto_builder *b, const void *elems, uint32_t count,
                              uint32_t elem_bytes, uint32_t align);
proto_ref proto_create_string(struct proto_builder *b, const char *s, uint32_t len);
proto_ref proto_create_vec_ref(struct proto_builder *b, const proto_ref *refs, uint32_t count);

/* Reserves a vector of count elements of elem_bytes and returns where to write them
 * (NULL after an error); *ref receives the vector's reference. */
uint8_t *proto_start_vector(struct proto_builder *b, uint32_t count, uint32_t elem_bytes,
                            uint32_t align, proto_ref *ref);

static inline proto_ref proto_create_bytes(struct proto_builder *b, const void *data, uint32_t len)
{
    return proto_create_vector(b, data, len, 1, 1);
}

/*
 * Finishes the buffer with root table `root` and a 4-byte identifier (or NULL).
 * With `frame`, prepends the u32 length and pads so the whole frame is a multiple of
 * 8 bytes. Returns 0 and a view of the bytes (valid until the next reset or fini), or
 * the sticky error (TS_ENOMEM, TS_ETOOBIG).
 */
int proto_builder_finish(struct proto_builder *b, proto_ref root, const char *identifier,
                         bool frame, const uint8_t **out, uint32_t *out_len);

/* ------------------------------------------------------------------ views */

/* Byte vector or string view; data is NULL when the field is absent. */
struct proto_bytes {
    const uint8_t *data;
    uint32_t len;
};

struct proto_str {
    const char *ptr; /* NUL-terminated (checked by the verifier); NULL when absent */
    uint32_t len;
};

/* Any other vector: data points at the first element; NULL when absent. */
struct proto_vec {
    const uint8_t *data;
    uint32_t len;
};

/* Returns the field's offset within the table, 0 when absent. tab must be verified. */
static inline uint32_t proto_field_off(const uint8_t *tab, uint32_t voff)
{
    const uint8_t *vt = tab - (int32_t)ts_load_le32(tab);
    return voff < ts_load_le16(vt) ? ts_load_le16(vt + voff) : 0;
}

static inline const uint8_t *proto_deref(const uint8_t *p)
{
    return p + ts_load_le32(p);
}

static inline const uint8_t *proto_read_ref(const uint8_t *tab, uint32_t voff)
{
    if (tab == NULL) {
        return NULL;
    }
    uint32_t off = proto_field_off(tab, voff);
    return off != 0 ? proto_deref(tab + off) : NULL;
}

static inline const uint8_t *proto_read_field(const uint8_t *tab, uint32_t voff)
{
    if (tab == NULL) {
        return NULL;
    }
    uint32_t off = proto_field_off(tab, voff);
    return off != 0 ? tab + off : NULL;
}

static inline struct proto_bytes proto_read_bytes(const uint8_t *tab, uint32_t voff)
{
    const uint8_t *p = proto_read_ref(tab, voff);
    if (p == NULL) {
        return (struct proto_bytes){NULL, 0};
    }
    return (struct proto_bytes){p + 4, ts_load_le32(p)};
}

static inline struct proto_str proto_read_str(const uint8_t *tab, uint32_t voff)
{
    const uint8_t *p = proto_read_ref(tab, voff);
    if (p == NULL) {
        return (struct proto_str){NULL, 0};
    }
    return (struct proto_str){(const char *)p + 4, ts_load_le32(p)};
}

static inline struct proto_vec proto_read_vec(const uint8_t *tab, uint32_t voff)
{
    const uint8_t *p = proto_read_ref(tab, voff);
    if (p == NULL) {
        return (struct proto_vec){NULL, 0};
    }
    return (struct proto_vec){p + 4, ts_load_le32(p)};
}

/* Element i of a vector of offsets (tables or strings). */
static inline const uint8_t *proto_vec_ref_at(struct proto_vec v, uint32_t i)
{
    return proto_deref(v.data + 4 * (size_t)i);
}

static inline struct proto_str proto_vec_str_at(struct proto_vec v, uint32_t i)
{
    const uint8_t *p = proto_vec_ref_at(v, i);
    return (struct proto_str){(const char *)p + 4, ts_load_le32(p)};
}

#define PROTO_SCALAR_READERS_(name, ctype, bits)                                                   \
    static inline ctype proto_read_##name(const uint8_t *tab, uint32_t voff, ctype dflt)           \
    {                                                                                              \
        const uint8_t *p = proto_read_field(tab, voff);                                            \
        if (p == NULL) {                                                                           \
            return dflt;                                                                           \
        }                                                                                          \
        uint##bits##_t u;                                                                          \
        memcpy(&u, p, sizeof(u));                                                                  \
        ctype v;                                                                                   \
        memcpy(&v, &u, sizeof(v));                                                                 \
        return v;                                                                                  \
    }                                                                                              \
    static inline ctype proto_vec_##name##_at(struct proto_vec v, uint32_t i)                      \
    {                                                                                              \
        ctype x;                                                                                   \
        memcpy(&x, v.data + sizeof(ctype) * (size_t)i, sizeof(x));                                 \
        return x;                                                                                  \
    }

PROTO_SCALAR_READERS_(u8, uint8_t, 8)
PROTO_SCALAR_READERS_(i8, int8_t, 8)
PROTO_SCALAR_READERS_(u16, uint16_t, 16)
PROTO_SCALAR_READERS_(i16, int16_t, 16)
PROTO_SCALAR_READERS_(u32, uint32_t, 32)
PROTO_SCALAR_READERS_(i32, int32_t, 32)
PROTO_SCALAR_READERS_(u64, uint64_t, 64)
PROTO_SCALAR_READERS_(i64, int64_t, 64)
PROTO_SCALAR_READERS_(f32, float, 32)
PROTO_SCALAR_READERS_(f64, double, 64)

static inline bool proto_read_bool(const uint8_t *tab, uint32_t voff, bool dflt)
{
    const uint8_t *p = proto_read_field(tab, voff);
    return p != NULL ? *p != 0 : dflt;
}

static inline bool proto_vec_bool_at(struct proto_vec v, uint32_t i)
{
    return v.data[i] != 0;
}

/* ------------------------------------------------------------------ verifier */

/*
 * The checks are inline (and forced so): the generated verifiers call them for every
 * field, and out-of-line calls cost more than the checks themselves. Only the error
 * path (formatting the message) is out of line and cold.
 *
 * Besides the FlatBuffers C++ verifier's rules, the work a frame can cause is bounded
 * by its size: at most len / 8 + 1 tables (each table needs its own 4-byte soffset and a
 * 4-byte offset to it, so only shared sub-tables exceed that), and at most 4 * len
 * bytes of vectors and strings visited (sharing one value many times is refused). A
 * small frame can then neither make verification slow nor make its readers copy or
 * print far more than it holds.
 */
struct proto_verifier {
    const uint8_t *buf;
    uint32_t len;
    uint32_t tables_left;
    uint64_t bytes_left;
    char *errmsg; /* may be NULL */
    size_t errmsg_bytes;
};

/* A verified table: its position, its vtable's, and their sizes. */
struct proto_vt {
    uint32_t tab;
    uint32_t vt;
    uint32_t vt_bytes;
    uint32_t tab_bytes;
};

#define PROTO_VF_INLINE static inline __attribute__((always_inline))

/* Writes "where: what (offset N)" into v->errmsg. */
__attribute__((cold, noinline)) void proto_vf_report(struct proto_verifier *v, const char *type,
                                                     const char *field, const char *what,
                                                     uint32_t pos);

PROTO_VF_INLINE int proto_vf_fail(struct proto_verifier *v, const char *type, const char *field,
                                  const char *what, uint32_t pos)
{
    proto_vf_report(v, type, field, what, pos);
    return TS_EPROTO;
}

PROTO_VF_INLINE int proto_vf_table(struct proto_verifier *v, uint32_t tab, uint32_t depth,
                                   struct proto_vt *t, const char *type)
{
    if (depth > TS_PROTO_DEPTH_MAX) {
        return proto_vf_fail(v, type, NULL, "nested too deep", tab);
    }
    if (v->tables_left == 0) {
        return proto_vf_fail(v, type, NULL, "too many tables", tab);
    }
    v->tables_left--;
    if ((tab & 3) != 0 || (uint64_t)tab + 4 > v->len) {
        return proto_vf_fail(v, type, NULL, "table misaligned or out of bounds", tab);
    }
    int64_t vt = (int64_t)tab - (int32_t)ts_load_le32(v->buf + tab);
    if (vt < 0 || (vt & 1) != 0 || vt + 4 > (int64_t)v->len) {
        return proto_vf_fail(v, type, NULL, "vtable misaligned or out of bounds", tab);
    }
    uint32_t vt_bytes = ts_load_le16(v->buf + vt);
    uint32_t tab_bytes = ts_load_le16(v->buf + vt + 2);
    if (vt_bytes < 4 || (vt_bytes & 1) != 0 || vt + vt_bytes > (int64_t)v->len) {
        return proto_vf_fail(v, type, NULL, "bad vtable size", (uint32_t)vt);
    }
    if (tab_bytes < 4 || (uint64_t)tab + tab_bytes > v->len) {
        return proto_vf_fail(v, type, NULL, "bad table size", tab);
    }
    t->tab = tab;
    t->vt = (uint32_t)vt;
    t->vt_bytes = vt_bytes;
    t->tab_bytes = tab_bytes;
    return 0;
}

PROTO_VF_INLINE uint32_t proto_vt_off(const struct proto_verifier *v, const struct proto_vt *t,
                                      uint32_t voff)
{
    return voff < t->vt_bytes ? ts_load_le16(v->buf + t->vt + voff) : 0;
}

/* A scalar or struct field of `bytes` at `align`: inside the table and aligned. */
PROTO_VF_INLINE int proto_vf_inline(struct proto_verifier *v, const struct proto_vt *t,
                                    uint32_t voff, uint32_t bytes, uint32_t align, const char *type,
                                    const char *field)
{
    uint32_t off = proto_vt_off(v, t, voff);
    if (off == 0) {
        return 0;
    }
    if (off < 4 || off + bytes > t->tab_bytes) {
        return proto_vf_fail(v, type, field, "field outside its table", t->tab + off);
    }
    if (((t->tab + off) & (align - 1)) != 0) {
        return proto_vf_fail(v, type, field, "field misaligned", t->tab + off);
    }
    return 0;
}

/* The offset stored at position pos: non-zero, below 2^31, pointing inside the buffer.
 * *target receives the position it points at. */
PROTO_VF_INLINE int proto_vf_offset_at(struct proto_verifier *v, uint32_t pos, uint32_t *target,
                                       const char *type, const char *field)
{
    *target = 0;
    if ((pos & 3) != 0 || (uint64_t)pos + 4 > v->len) {
        return proto_vf_fail(v, type, field, "offset misaligned or out of bounds", pos);
    }
    uint32_t o = ts_load_le32(v->buf + pos);
    if (o == 0 || o >= (1u << 31) || (uint64_t)pos + o >= v->len) {
        return proto_vf_fail(v, type, field, "offset zero or out of bounds", pos);
    }
    *target = pos + o;
    return 0;
}

/* An offset field: *target receives the position it points at, 0 when absent. */
PROTO_VF_INLINE int proto_vf_offset(struct proto_verifier *v, const struct proto_vt *t,
                                    uint32_t voff, uint32_t *target, const char *type,
                                    const char *field)
{
    *target = 0;
    uint32_t off = proto_vt_off(v, t, voff);
    if (off == 0) {
        return 0;
    }
    if (off < 4 || off + 4 > t->tab_bytes) {
        return proto_vf_fail(v, type, field, "field outside its table", t->tab + off);
    }
    return proto_vf_offset_at(v, t->tab + off, target, type, field);
}

PROTO_VF_INLINE int proto_vf_spend(struct proto_verifier *v, uint64_t bytes, const char *type,
                                   const char *field, uint32_t pos)
{
    if (bytes > v->bytes_left) {
        return proto_vf_fail(v, type, field, "shared data exceeds the frame's size", pos);
    }
    v->bytes_left -= bytes;
    return 0;
}

/* A vector at pos of elements of elem_bytes aligned to align; *count receives its length. */
PROTO_VF_INLINE int proto_vf_vector(struct proto_verifier *v, uint32_t pos, uint32_t elem_bytes,
                                    uint32_t align, uint32_t *count, const char *type,
                                    const char *field)
{
    *count = 0;
    if ((pos & 3) != 0 || (uint64_t)pos + 4 > v->len) {
        return proto_vf_fail(v, type, field, "vector misaligned or out of bounds", pos);
    }
    uint32_t n = ts_load_le32(v->buf + pos);
    uint64_t bytes = (uint64_t)n * elem_bytes;
    if ((uint64_t)pos + 4 + bytes > v->len) {
        return proto_vf_fail(v, type, field, "vector longer than the buffer", pos);
    }
    /* FlatBuffers' own builders do not align the elements of an empty vector. */
    if (n > 0 && ((pos + 4) & (align - 1)) != 0) {
        return proto_vf_fail(v, type, field, "vector elements misaligned", pos);
    }
    *count = n;
    return proto_vf_spend(v, bytes, type, field, pos);
}

PROTO_VF_INLINE int proto_vf_string(struct proto_verifier *v, uint32_t pos, const char *type,
                                    const char *field)
{
    if ((pos & 3) != 0 || (uint64_t)pos + 4 > v->len) {
        return proto_vf_fail(v, type, field, "string misaligned or out of bounds", pos);
    }
    uint32_t n = ts_load_le32(v->buf + pos);
    uint64_t nul = (uint64_t)pos + 4 + n;
    if (nul >= v->len) {
        return proto_vf_fail(v, type, field, "string longer than the buffer", pos);
    }
    if (v->buf[nul] != 0) {
        return proto_vf_fail(v, type, field, "string not terminated", pos);
    }
    return proto_vf_spend(v, n, type, field, pos);
}

/* Verifies the buffer's framing: [size prefix,] root offset and file identifier, and
 * sets the verifier's budgets. *root receives the root table's position. */
int proto_vf_buffer(struct proto_verifier *v, const uint8_t *buf, size_t len, bool frame,
                    const char *identifier, uint32_t *root);

/* ------------------------------------------------------------------ frames */

/*
 * Looks at the start of a byte stream. Returns the frame's total size (header
 * included) once a whole frame is present, 0 when more bytes are needed, or TS_EPROTO
 * (length not a multiple of 8 after the header, or too small) or TS_ETOOBIG (over
 * max_bytes). Borrows data.
 */
int64_t proto_frame_size(const uint8_t *data, size_t len, uint32_t max_bytes);

/* ------------------------------------------------------------------ JSON */

/* A growing text buffer for JSON dumps (tests, tools, logs; never the hot path). */
struct proto_json {
    const struct ts_allocator *alloc;
    char *buf;
    size_t len;
    size_t cap;
    int err;
    bool need_comma;
};

void proto_json_init(struct proto_json *j, const struct ts_allocator *alloc);
void proto_json_fini(struct proto_json *j);
void proto_json_raw(struct proto_json *j, const char *s, size_t n);
void proto_json_begin(struct proto_json *j, char c); /* '{' or '[' */
void proto_json_end(struct proto_json *j, char c);   /* '}' or ']' */
void proto_json_key(struct proto_json *j, const char *key);
void proto_json_u64(struct proto_json *j, uint64_t v);
void proto_json_i64(struct proto_json *j, int64_t v);
void proto_json_f64(struct proto_json *j, double v);
void proto_json_bool(struct proto_json *j, bool v);
void proto_json_str(struct proto_json *j, const char *s, size_t n);
void proto_json_bytes(struct proto_json *j, struct proto_bytes b);

#endif
