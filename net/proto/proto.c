#include "net/proto/proto.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <inttypes.h>
#include <stdio.h>

/* ------------------------------------------------------------------ builder */

int proto_builder_init(struct proto_builder *b, const struct ts_allocator *alloc,
                       uint32_t initial_bytes, uint32_t limit_bytes)
{
    TS_ASSERT(alloc != NULL);
    TS_ASSERT(initial_bytes >= 64 && initial_bytes <= limit_bytes);
    TS_ASSERT(limit_bytes < (1u << 31));
    memset(b, 0, sizeof(*b));
    b->alloc = alloc;
    b->limit_bytes = limit_bytes;
    b->buf = ts_alloc(alloc, initial_bytes);
    if (b->buf == NULL) {
        return TS_ENOMEM;
    }
    b->cap = initial_bytes;
    proto_builder_reset(b);
    return 0;
}

void proto_builder_fini(struct proto_builder *b)
{
    ts_free(b->alloc, b->buf, b->cap);
    b->buf = NULL;
    b->cap = 0;
    b->size = 0;
}

void proto_builder_reset(struct proto_builder *b)
{
    TS_DASSERT(b->buf != NULL);
    b->size = 0;
    b->minalign = 1;
    b->err = 0;
    b->in_table = false;
    b->field_mask = 0;
    b->vtable_count = 0;
    b->vtable_next = 0;
}

int proto_builder_grow(struct proto_builder *b, uint32_t need)
{
    TS_ASSERT(b->cap - b->size < need);
    if (b->err != 0) {
        return b->err;
    }
    /* The finished buffer adds at most a frame header, root, identifier and padding. */
    uint64_t want = (uint64_t)b->size + need;
    if (want + 32 > b->limit_bytes) {
        b->err = TS_ETOOBIG;
        return b->err;
    }
    uint64_t cap = (uint64_t)b->cap * 2;
    while (cap < want + 32) {
        cap *= 2;
    }
    if (cap > b->limit_bytes) {
        cap = b->limit_bytes;
    }
    uint8_t *nb = ts_alloc(b->alloc, cap);
    if (nb == NULL) {
        b->err = TS_ENOMEM;
        return b->err;
    }
    /* Data sits at the end: move it to the end of the new buffer. */
    memcpy(nb + cap - b->size, b->buf + b->cap - b->size, b->size);
    ts_free(b->alloc, b->buf, b->cap);
    b->buf = nb;
    b->cap = (uint32_t)cap;
    TS_ASSERT(b->cap - b->size >= need);
    return 0;
}

static proto_ref vtable_find(struct proto_builder *b, const uint16_t *vt, uint32_t vt_bytes)
{
    for (uint32_t i = 0; i < b->vtable_count; i++) {
        proto_ref r = b->vtables[i];
        const uint8_t *p = b->buf + b->cap - r;
        if (ts_load_le16(p) == vt_bytes && memcmp(p, vt, vt_bytes) == 0) {
            return r;
        }
    }
    return 0;
}

static void vtable_remember(struct proto_builder *b, proto_ref r)
{
    if (b->vtable_count < TS_PROTO_VTABLE_CACHE_MAX) {
        b->vtables[b->vtable_count++] = r;
        return;
    }
    b->vtables[b->vtable_next] = r;
    b->vtable_next = (b->vtable_next + 1) % TS_PROTO_VTABLE_CACHE_MAX;
}

proto_ref proto_table_end(struct proto_builder *b)
{
    TS_ASSERT(b->in_table);
    b->in_table = false;
    if (proto_reserve(b, 4, 4) == NULL) {
        return 0;
    }
    proto_ref table = b->size;
    uint32_t tab_bytes = table - b->table_begin;
    uint32_t slots = b->field_mask == 0 ? 0 : 64 - (uint32_t)__builtin_clzll(b->field_mask);
    TS_ASSERT(slots <= TS_PROTO_FIELDS_MAX);
    if (tab_bytes > UINT16_MAX) {
        b->err = TS_ETOOBIG;
        return 0;
    }
    uint16_t vt[2 + TS_PROTO_FIELDS_MAX];
    uint32_t vt_bytes = 4 + 2 * slots;
    vt[0] = (uint16_t)vt_bytes;
    vt[1] = (uint16_t)tab_bytes;
    for (uint32_t i = 0; i < slots; i++) {
        bool set = (b->field_mask >> i) & 1;
        vt[2 + i] = set ? (uint16_t)(table - b->field_loc[i]) : 0;
        TS_DASSERT(!set || b->field_loc[i] > b->table_begin);
    }
    proto_ref vref = vtable_find(b, vt, vt_bytes);
    if (vref == 0) {
        uint8_t *p = proto_reserve(b, vt_bytes, 2);
        if (p == NULL) {
            return 0;
        }
        memcpy(p, vt, vt_bytes);
        vref = b->size;
        vtable_remember(b, vref);
    }
    /* soffset = table position - vtable position = vref - table in distances. */
    ts_store_le32(b->buf + b->cap - table, (uint32_t)((int64_t)vref - (int64_t)table));
    return table;
}

uint8_t *proto_start_vector(struct proto_builder *b, uint32_t count, uint32_t elem_bytes,
                            uint32_t align, proto_ref *ref)
{
    TS_ASSERT(!b->in_table);
    TS_ASSERT(align > 0 && align <= 8 && (align & (align - 1)) == 0);
    *ref = 0;
    uint64_t bytes = (uint64_t)count * elem_bytes;
    if (bytes > b->limit_bytes) {
        if (b->err == 0) {
            b->err = TS_ETOOBIG;
        }
        return NULL;
    }
    uint8_t *elems = proto_reserve(b, (uint32_t)bytes, align < 4 ? 4 : align);
    if (elems == NULL) {
        return NULL;
    }
    uint32_t elems_size = b->size;
    uint8_t *len = proto_reserve(b, 4, 4);
    if (len == NULL) {
        return NULL;
    }
    TS_DASSERT(b->size == elems_size + 4);
    ts_store_le32(len, count);
    *ref = b->size;
    return len + 4;
}

proto_ref proto_create_vector(struct proto_builder *b, const void *elems, uint32_t count,
                              uint32_t elem_bytes, uint32_t align)
{
    proto_ref ref;
    uint8_t *p = proto_start_vector(b, count, elem_bytes, align, &ref);
    if (p != NULL && count > 0) {
        memcpy(p, elems, (size_t)count * elem_bytes);
    }
    return ref;
}

proto_ref proto_create_string(struct proto_builder *b, const char *s, uint32_t len)
{
    TS_ASSERT(!b->in_table);
    if (len >= b->limit_bytes) {
        if (b->err == 0) {
            b->err = TS_ETOOBIG;
        }
        return 0;
    }
    uint8_t *p = proto_reserve(b, len + 1, 4);
    if (p == NULL) {
        return 0;
    }
    memcpy(p, s, len);
    p[len] = 0;
    uint8_t *lp = proto_reserve(b, 4, 4);
    if (lp == NULL) {
        return 0;
    }
    ts_store_le32(lp, len);
    return b->size;
}

proto_ref proto_create_vec_ref(struct proto_builder *b, const proto_ref *refs, uint32_t count)
{
    proto_ref ref;
    uint8_t *p = proto_start_vector(b, count, 4, 4, &ref);
    if (p == NULL) {
        return 0;
    }
    /* Element i sits at distance ref - 4 - 4 * i from the end. */
    for (uint32_t i = 0; i < count; i++) {
        uint32_t at = ref - 4 - 4 * i;
        TS_ASSERT(refs[i] != 0 && refs[i] < at);
        ts_store_le32(p + 4 * (size_t)i, at - refs[i]);
    }
    return ref;
}

int proto_builder_finish(struct proto_builder *b, proto_ref root, const char *identifier,
                         bool frame, const uint8_t **out, uint32_t *out_len)
{
    TS_ASSERT(!b->in_table);
    if (b->err != 0) {
        return b->err;
    }
    TS_ASSERT(root != 0 && root <= b->size);
    uint32_t head = 4 + (identifier != NULL ? PROTO_IDENTIFIER_BYTES : 0);
    uint32_t align = b->minalign;
    if (frame) {
        head += PROTO_FRAME_HEADER_BYTES;
        align = PROTO_FRAME_ALIGN > align ? PROTO_FRAME_ALIGN : align;
    }
    uint8_t *p = proto_reserve(b, head, align);
    if (p == NULL) {
        return b->err;
    }
    uint8_t *rootp = frame ? p + PROTO_FRAME_HEADER_BYTES : p;
    uint32_t root_at = b->size - (uint32_t)(rootp - p);
    ts_store_le32(rootp, root_at - root);
    if (identifier != NULL) {
        memcpy(rootp + 4, identifier, PROTO_IDENTIFIER_BYTES);
    }
    if (frame) {
        ts_store_le32(p, b->size - PROTO_FRAME_HEADER_BYTES);
        TS_ASSERT(b->size % PROTO_FRAME_ALIGN == 0);
    }
    if (b->size > b->limit_bytes) {
        b->err = TS_ETOOBIG;
        return b->err;
    }
    *out = p;
    *out_len = b->size;
    return 0;
}

/* ------------------------------------------------------------------ verifier */

void proto_vf_report(struct proto_verifier *v, const char *type, const char *field,
                     const char *what, uint32_t pos)
{
    if (v->errmsg != NULL && v->errmsg_bytes > 0) {
        snprintf(v->errmsg, v->errmsg_bytes, "%s%s%s: %s (offset %" PRIu32 ")", type,
                 field != NULL ? "." : "", field != NULL ? field : "", what, pos);
    }
}

int proto_vf_buffer(struct proto_verifier *v, const uint8_t *buf, size_t len, bool frame,
                    const char *identifier, uint32_t *root)
{
    v->buf = buf;
    v->tables_left = 0;
    v->bytes_left = 0;
    if (len > TS_FRAME_BYTES_MAX) {
        v->len = 0;
        return proto_vf_fail(v, "buffer", NULL, "larger than the frame limit", 0);
    }
    v->len = (uint32_t)len;
    v->tables_left = (uint32_t)(len / 8 + 1);
    if (v->tables_left > TS_PROTO_TABLES_MAX) {
        v->tables_left = TS_PROTO_TABLES_MAX;
    }
    v->bytes_left = 4 * (uint64_t)len;
    uint32_t start = 0;
    if (frame) {
        if (len < PROTO_FRAME_HEADER_BYTES || ts_load_le32(buf) != len - PROTO_FRAME_HEADER_BYTES) {
            return proto_vf_fail(v, "frame", NULL, "length prefix does not match", 0);
        }
        start = PROTO_FRAME_HEADER_BYTES;
    }
    /* The smallest buffer: root offset, identifier, a 4-byte table and a 4-byte vtable. */
    uint32_t min = 12 + (identifier != NULL ? PROTO_IDENTIFIER_BYTES : 0);
    if (len - start < min) {
        return proto_vf_fail(v, "buffer", NULL, "too small", start);
    }
    if (identifier != NULL && memcmp(buf + start + 4, identifier, PROTO_IDENTIFIER_BYTES) != 0) {
        return proto_vf_fail(v, "buffer", NULL, "wrong file identifier", start + 4);
    }
    return proto_vf_offset_at(v, start, root, "buffer", "root");
}

/* ------------------------------------------------------------------ frames */

int64_t proto_frame_size(const uint8_t *data, size_t len, uint32_t max_bytes)
{
    TS_ASSERT(max_bytes <= TS_FRAME_BYTES_MAX);
    if (len < PROTO_FRAME_HEADER_BYTES) {
        return 0;
    }
    uint64_t total = (uint64_t)ts_load_le32(data) + PROTO_FRAME_HEADER_BYTES;
    if (total > max_bytes) {
        return TS_ETOOBIG;
    }
    if (total % PROTO_FRAME_ALIGN != 0 || total < 24) {
        return TS_EPROTO;
    }
    return len >= total ? (int64_t)total : 0;
}

/* ------------------------------------------------------------------ JSON */

void proto_json_init(struct proto_json *j, const struct ts_allocator *alloc)
{
    TS_ASSERT(alloc != NULL);
    *j = (struct proto_json){.alloc = alloc};
}

void proto_json_fini(struct proto_json *j)
{
    ts_free(j->alloc, j->buf, j->cap);
    j->buf = NULL;
    j->cap = j->len = 0;
}

void proto_json_raw(struct proto_json *j, const char *s, size_t n)
{
    if (j->err != 0) {
        return;
    }
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap != 0 ? j->cap : 256;
        while (cap < j->len + n + 1) {
            cap *= 2;
        }
        char *nb =
            j->buf == NULL ? ts_alloc(j->alloc, cap) : ts_realloc(j->alloc, j->buf, j->cap, cap);
        if (nb == NULL) {
            j->err = TS_ENOMEM;
            return;
        }
        j->buf = nb;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
}

static void json_comma(struct proto_json *j)
{
    if (j->need_comma) {
        proto_json_raw(j, ",", 1);
    }
    j->need_comma = true;
}

void proto_json_begin(struct proto_json *j, char c)
{
    json_comma(j);
    proto_json_raw(j, &c, 1);
    j->need_comma = false;
}

void proto_json_end(struct proto_json *j, char c)
{
    proto_json_raw(j, &c, 1);
    j->need_comma = true;
}

void proto_json_key(struct proto_json *j, const char *key)
{
    proto_json_str(j, key, strlen(key));
    proto_json_raw(j, ":", 1);
    j->need_comma = false;
}

void proto_json_u64(struct proto_json *j, uint64_t v)
{
    char tmp[24];
    json_comma(j);
    proto_json_raw(j, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%" PRIu64, v));
}

void proto_json_i64(struct proto_json *j, int64_t v)
{
    char tmp[24];
    json_comma(j);
    proto_json_raw(j, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%" PRId64, v));
}

void proto_json_f64(struct proto_json *j, double v)
{
    char tmp[32];
    json_comma(j);
    proto_json_raw(j, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%.17g", v));
}

void proto_json_bool(struct proto_json *j, bool v)
{
    json_comma(j);
    proto_json_raw(j, v ? "true" : "false", v ? 4 : 5);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    bool surrogate = cp >= 0xd800 && cp <= 0xdfff;
    return overlong || surrogate || cp > 0x10ffff ? 0 : len;
}

/* Valid UTF-8 passes through; control characters are escaped; a byte that is not part
 * of valid UTF-8 is written as \u00XX (lossy, but the output stays valid JSON). */
void proto_json_str(struct proto_json *j, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    json_comma(j);
    proto_json_raw(j, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            proto_json_raw(j, esc, 2);
            i++;
        } else if (c >= 0x20 && c < 0x7f) {
            proto_json_raw(j, s + i, 1);
            i++;
        } else {
            size_t len = c >= 0x80 ? utf8_seq(u + i, n - i) : 0;
            if (len > 0) {
                proto_json_raw(j, s + i, len);
                i += len;
            } else {
                proto_json_raw(j, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c));
                i++;
            }
        }
    }
    proto_json_raw(j, "\"", 1);
}

void proto_json_bytes(struct proto_json *j, struct proto_bytes b)
{
    proto_json_begin(j, '[');
    for (uint32_t i = 0; i < b.len; i++) {
        proto_json_u64(j, b.data[i]);
    }
    proto_json_end(j, ']');
}
