#!/usr/bin/python3
"""Writes Tessera's C codec for a FlatBuffers schema.

    protogen.py SCHEMA.fbs OUTDIR

writes OUTDIR/proto_gen.h (views, accessors, builders), OUTDIR/proto_gen.c (verifiers,
enum names, JSON dumpers) and OUTDIR/proto_gen_rand.h/.c (random message builders for
the conformance and mutation tests; linked into tests only). The runtime they use is
net/proto/proto.h. Naming: table PutRequest -> struct proto_put_request (a view);
proto_put_request_key() reads a field, proto_put_request_add_key() adds it while
building, between proto_put_request_begin() and proto_put_request_end().
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbs  # noqa: E402

PREFIX = "proto_"
RESERVED = ("begin", "end", "json", "verify", "vec_at", "vec_create")

READ_SUFFIX = {  # scalar -> runtime reader suffix
    "bool": "bool", "byte": "i8", "ubyte": "u8", "short": "i16", "ushort": "u16",
    "int": "i32", "uint": "u32", "long": "i64", "ulong": "u64", "float": "f32", "double": "f64",
}
ADD_SUFFIX = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
UINT = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}


def sn(name):
    return fbs.snake(name)


def ctype(scalar):
    return fbs.SCALARS[scalar][1]


def upper(name):
    return sn(name).upper()


def c_literal(scalar, v):
    if scalar == "bool":
        return "true" if v else "false"
    if fbs.SCALARS[scalar][3]:
        return repr(float(v))
    if scalar in ("long",):
        return "INT64_C(%d)" % v
    if scalar in ("ulong",):
        return "UINT64_C(%d)" % v
    return str(v)


class Out:
    def __init__(self):
        self.lines = []

    def __call__(self, text=""):
        self.lines.append(text)

    def text(self):
        return "\n".join(self.lines) + "\n"


# ---------------------------------------------------------------- header

def gen_enum(o, e):
    o("enum %s%s {" % (PREFIX, sn(e.name)))
    for vname, v in e.values:
        o("    %s%s_%s = %d," % (PREFIX.upper(), upper(e.name), upper(vname), v))
    o("};")
    o("/* The value's name in the schema, or NULL for a value this schema does not know. */")
    o("const char *%s%s_name(int64_t v);" % (PREFIX, sn(e.name)))
    o()


def gen_union_enum(o, u):
    o("enum %s%s {" % (PREFIX, sn(u.name)))
    o("    %s%s_NONE = 0," % (PREFIX.upper(), upper(u.name)))
    for i, m in enumerate(u.members):
        o("    %s%s_%s = %d," % (PREFIX.upper(), upper(u.name), upper(m.name), i + 1))
    o("};")
    o("const char *%s%s_name(int64_t v);" % (PREFIX, sn(u.name)))
    o()


def struct_field_ctype(f):
    if f.type.kind == "struct":
        return "struct %s%s" % (PREFIX, sn(f.type.ref.name))
    return ctype(f.type.scalar_name())


def gen_struct(o, st):
    n = PREFIX + sn(st.name)
    N = n.upper()
    o("#define %s_BYTES %du" % (N, st.size))
    o("#define %s_ALIGN %du" % (N, st.align))
    o("struct %s {" % n)
    for f in st.fields:
        o("    %s %s;" % (struct_field_ctype(f), f.name))
    o("};")
    o()
    o("static inline struct %s %s_read(const uint8_t *p)" % (n, n))
    o("{")
    o("    struct %s s;" % n)
    for f in st.fields:
        if f.type.kind == "struct":
            o("    s.%s = %s%s_read(p + %d);" % (f.name, PREFIX, sn(f.type.ref.name), f.offset))
        else:
            sc = f.type.scalar_name()
            size = fbs.SCALARS[sc][0]
            if sc == "bool":
                o("    s.%s = p[%d] != 0;" % (f.name, f.offset))
            else:
                o("    {")
                o("        %s u;" % UINT[size])
                o("        memcpy(&u, p + %d, %d);" % (f.offset, size))
                o("        memcpy(&s.%s, &u, %d);" % (f.name, size))
                o("    }")
    o("    return s;")
    o("}")
    o()
    o("/* Writes the wire layout, padding included, into p[0..%s_BYTES). */" % N)
    o("static inline void %s_write(uint8_t *p, const struct %s *s)" % (n, n))
    o("{")
    o("    memset(p, 0, %d);" % st.size)
    for f in st.fields:
        if f.type.kind == "struct":
            o("    %s%s_write(p + %d, &s->%s);" % (PREFIX, sn(f.type.ref.name), f.offset, f.name))
        elif f.type.scalar_name() == "bool":
            o("    p[%d] = s->%s ? 1 : 0;" % (f.offset, f.name))
        else:
            o("    memcpy(p + %d, &s->%s, %d);" % (f.offset, f.name, f.type.size()))
    o("}")
    o()
    o("static inline struct %s %s_vec_at(struct proto_vec v, uint32_t i)" % (n, n))
    o("{")
    o("    return %s_read(v.data + %s_BYTES * (size_t)i);" % (n, N))
    o("}")
    o()
    o("static inline proto_ref %s_vec_create(struct proto_builder *b, const struct %s *items,"
      % (n, n))
    o("                                      uint32_t count)")
    o("{")
    o("    proto_ref ref;")
    o("    uint8_t *p = proto_start_vector(b, count, %s_BYTES, %s_ALIGN, &ref);" % (N, N))
    o("    for (uint32_t i = 0; p != NULL && i < count; i++) {")
    o("        %s_write(p + %s_BYTES * (size_t)i, &items[i]);" % (n, N))
    o("    }")
    o("    return ref;")
    o("}")
    o()


def gen_table_reader(o, t):
    n = PREFIX + sn(t.name)
    for f in t.fields:
        if f.deprecated:
            continue
        for r in RESERVED:
            if f.name == r or f.name.startswith("add_") or f.name.startswith("has_"):
                raise fbs.SchemaError("%s.%s: the name clashes with generated functions"
                                      % (t.name, f.name))
        k = f.type.kind
        fn = "%s_%s" % (n, f.name)
        vo = f.voffset()
        if k in ("scalar", "enum"):
            sc = f.type.scalar_name()
            o("static inline %s %s(struct %s t)" % (ctype(sc), fn, n))
            o("{")
            o("    return proto_read_%s(t.tab, %d, %s);" % (READ_SUFFIX[sc], vo,
                                                           c_literal(sc, f.default)))
            o("}")
        elif k == "string":
            o("static inline struct proto_str %s(struct %s t)" % (fn, n))
            o("{")
            o("    return proto_read_str(t.tab, %d);" % vo)
            o("}")
        elif k == "vector" and f.type.elem.kind == "scalar" and f.type.elem.name == "ubyte":
            o("static inline struct proto_bytes %s(struct %s t)" % (fn, n))
            o("{")
            o("    return proto_read_bytes(t.tab, %d);" % vo)
            o("}")
        elif k == "vector":
            o("static inline struct proto_vec %s(struct %s t)" % (fn, n))
            o("{")
            o("    return proto_read_vec(t.tab, %d);" % vo)
            o("}")
        elif k == "struct":
            sname = PREFIX + sn(f.type.ref.name)
            o("static inline struct %s %s(struct %s t)" % (sname, fn, n))
            o("{")
            o("    const uint8_t *p = proto_read_field(t.tab, %d);" % vo)
            o("    return p != NULL ? %s_read(p) : (struct %s){0};" % (sname, sname))
            o("}")
        elif k == "table":
            tname = PREFIX + sn(f.type.ref.name)
            o("static inline struct %s %s(struct %s t)" % (tname, fn, n))
            o("{")
            o("    return (struct %s){proto_read_ref(t.tab, %d)};" % (tname, vo))
            o("}")
        elif k == "union":
            u = f.type.ref
            o("static inline uint8_t %s_type(struct %s t)" % (fn, n))
            o("{")
            o("    return proto_read_u8(t.tab, %d, 0);" % f.type_voffset())
            o("}")
            for i, m in enumerate(u.members):
                mname = PREFIX + sn(m.name)
                o("static inline struct %s %s_as_%s(struct %s t)" % (mname, fn, sn(m.name), n))
                o("{")
                o("    return (struct %s){%s_type(t) == %d ? proto_read_ref(t.tab, %d) : NULL};"
                  % (mname, fn, i + 1, vo))
                o("}")
        o("static inline bool %s_has_%s(struct %s t)" % (n, f.name, n))
        o("{")
        o("    return proto_read_field(t.tab, %d) != NULL;" % vo)
        o("}")
    o("static inline struct %s %s_vec_at(struct proto_vec v, uint32_t i)" % (n, n))
    o("{")
    o("    return (struct %s){proto_vec_ref_at(v, i)};" % n)
    o("}")
    o("void %s_json(struct proto_json *j, struct %s t);" % (n, n))
    o()


def gen_table_builder(o, t):
    n = PREFIX + sn(t.name)
    align = max([4] + [f.type.align() for f in t.fields if f.type.kind in ("scalar", "enum", "struct")])
    o("static inline void %s_begin(struct proto_builder *b)" % n)
    o("{")
    o("    proto_table_begin(b, %d);" % align)
    o("}")
    for f in t.fields:
        if f.deprecated:
            continue
        k = f.type.kind
        fn = "%s_add_%s" % (n, f.name)
        if k in ("scalar", "enum"):
            sc = f.type.scalar_name()
            size = fbs.SCALARS[sc][0]
            o("static inline void %s(struct proto_builder *b, %s v)" % (fn, ctype(sc)))
            o("{")
            o("    if (v != %s) {" % c_literal(sc, f.default))
            if sc == "bool":
                o("        proto_add_u8(b, %d, 1);" % f.id)
            else:
                o("        %s u;" % UINT[size])
                o("        memcpy(&u, &v, %d);" % size)
                o("        proto_add_%s(b, %d, u);" % (ADD_SUFFIX[size], f.id))
            o("    }")
            o("}")
        elif k == "struct":
            sname = PREFIX + sn(f.type.ref.name)
            o("static inline void %s(struct proto_builder *b, const struct %s *v)" % (fn, sname))
            o("{")
            o("    uint8_t *p = proto_add_struct(b, %d, %s_BYTES, %s_ALIGN);"
              % (f.id, sname.upper(), sname.upper()))
            o("    if (p != NULL) {")
            o("        %s_write(p, v);" % sname)
            o("    }")
            o("}")
        elif k == "union":
            o("/* Adds the union's value and type; type 0 or ref 0 adds nothing. */")
            o("static inline void %s(struct proto_builder *b, uint8_t type, proto_ref v)" % fn)
            o("{")
            o("    if (type != 0 && v != 0) {")
            o("        proto_add_ref(b, %d, v);" % f.id)
            o("        proto_add_u8(b, %d, type);" % (f.id - 1))
            o("    }")
            o("}")
        else:
            o("static inline void %s(struct proto_builder *b, proto_ref v)" % fn)
            o("{")
            o("    proto_add_ref(b, %d, v);" % f.id)
            o("}")
    o("static inline proto_ref %s_end(struct proto_builder *b)" % n)
    o("{")
    o("    return proto_table_end(b);")
    o("}")
    o()


def gen_header(s):
    o = Out()
    o("/* Generated by net/proto/gen/protogen.py from net/proto/tessera.fbs. Do not edit.")
    o(" *")
    o(" * Views, accessors and builders for every table of the schema; see net/proto/proto.h")
    o(" * for the format, the verification contract and ownership: every view borrows the")
    o(" * buffer it was read from. A view's accessors return the schema default when the")
    o(" * view or the field is absent, so optional sub-tables can be read without checks;")
    o(" * test `.tab != NULL` (or proto_X_has_f) where absence matters. */")
    o("#ifndef TS_NET_PROTO_PROTO_GEN_H")
    o("#define TS_NET_PROTO_PROTO_GEN_H")
    o()
    o('#include "net/proto/proto.h"')
    o()
    o("#include <stdbool.h>")
    o("#include <stdint.h>")
    o("#include <string.h>")
    o()
    o('#define PROTO_FILE_IDENTIFIER "%s"' % s.file_identifier)
    o()
    for e in s.enums:
        gen_enum(o, e)
    for u in s.unions:
        gen_union_enum(o, u)
    for st in s.structs:
        gen_struct(o, st)
    for t in s.tables:
        o("struct %s%s {" % (PREFIX, sn(t.name)))
        o("    const uint8_t *tab;")
        o("};")
    o()
    for t in s.tables:
        o("/* ---------------------------------------------------------------- %s */" % t.name)
        o()
        gen_table_reader(o, t)
        gen_table_builder(o, t)
    root = PREFIX + sn(s.root_type)
    o("/* ---------------------------------------------------------------- root: %s */"
      % s.root_type)
    o()
    o("/*")
    o(" * Verifies a whole buffer (a frame when `frame`, else a bare buffer), then gives its")
    o(" * root. Returns 0, or TS_EPROTO with a reason in errmsg (which may be NULL). The view")
    o(" * borrows buf. Nothing in buf is read before it is checked.")
    o(" */")
    o("int %s_decode(const uint8_t *buf, size_t len, bool frame, struct %s *out, char *errmsg,"
      % (root, root))
    o("                  size_t errmsg_bytes);")
    o()
    o("/* Finishes a builder with this root (and the file identifier); see proto_builder_finish. */")
    o("static inline int %s_finish(struct proto_builder *b, proto_ref root, bool frame," % root)
    o("                                 const uint8_t **out, uint32_t *out_len)")
    o("{")
    o("    return proto_builder_finish(b, root, PROTO_FILE_IDENTIFIER, frame, out, out_len);")
    o("}")
    o()
    o("#endif")
    return o.text()


# ---------------------------------------------------------------- source

def gen_enum_names(o, name, values):
    o("const char *%s%s_name(int64_t v)" % (PREFIX, sn(name)))
    o("{")
    o("    switch (v) {")
    for vname, v in values:
        o("    case %d:" % v)
        o('        return "%s";' % vname)
    o("    default:")
    o("        return NULL;")
    o("    }")
    o("}")
    o()


def verify_field(o, t, f):
    name, tn = f.name, t.name
    k = f.type.kind
    vo = f.voffset()
    if f.required:
        o("    if (proto_vt_off(v, &t, %d) == 0) {" % vo)
        o('        return proto_vf_fail(v, "%s", "%s", "required field missing", tab);' % (tn, name))
        o("    }")
    if k in ("scalar", "enum", "struct"):
        o('    if ((rc = proto_vf_inline(v, &t, %d, %d, %d, "%s", "%s")) != 0) {'
          % (vo, f.type.size(), f.type.align(), tn, name))
        o("        return rc;")
        o("    }")
        return
    if k == "union":
        o('    if ((rc = proto_vf_inline(v, &t, %d, 1, 1, "%s", "%s_type")) != 0) {'
          % (f.type_voffset(), tn, name))
        o("        return rc;")
        o("    }")
    o('    if ((rc = proto_vf_offset(v, &t, %d, &pos, "%s", "%s")) != 0) {' % (vo, tn, name))
    o("        return rc;")
    o("    }")
    if k == "union":
        u = f.type.ref
        o("    {")
        o("        uint32_t ty_off = proto_vt_off(v, &t, %d);" % f.type_voffset())
        o("        uint8_t ty = ty_off != 0 ? v->buf[tab + ty_off] : 0;")
        o("        switch (ty) {")
        o("        case 0:")
        o("            break;")
        for i, m in enumerate(u.members):
            o("        case %d:" % (i + 1))
            o("            if (pos != 0 && (rc = verify_%s(v, pos, depth + 1)) != 0) {" % sn(m.name))
            o("                return rc;")
            o("            }")
            o("            break;")
        o("        default:")
        o('            return proto_vf_fail(v, "%s", "%s", "unknown union type", tab);' % (tn, name))
        o("        }")
        o("    }")
        return
    o("    if (pos != 0) {")
    if k == "string":
        o('        if ((rc = proto_vf_string(v, pos, "%s", "%s")) != 0) {' % (tn, name))
        o("            return rc;")
        o("        }")
    elif k == "table":
        o("        if ((rc = verify_%s(v, pos, depth + 1)) != 0) {" % sn(f.type.ref.name))
        o("            return rc;")
        o("        }")
    elif k == "vector":
        e = f.type.elem
        o('        if ((rc = proto_vf_vector(v, pos, %d, %d, &count, "%s", "%s")) != 0) {'
          % (e.size(), min(e.align(), 8), tn, name))
        o("            return rc;")
        o("        }")
        if e.kind in ("table", "string"):
            o("        for (uint32_t i = 0; i < count; i++) {")
            o("            uint32_t el;")
            o('            if ((rc = proto_vf_offset_at(v, pos + 4 + 4 * i, &el, "%s", "%s")) != 0) {'
              % (tn, name))
            o("                return rc;")
            o("            }")
            if e.kind == "table":
                o("            if ((rc = verify_%s(v, el, depth + 1)) != 0) {" % sn(e.ref.name))
            else:
                o('            if ((rc = proto_vf_string(v, el, "%s", "%s")) != 0) {' % (tn, name))
            o("                return rc;")
            o("            }")
            o("        }")
    o("    }")


def gen_verifier(o, t):
    o("static int verify_%s(struct proto_verifier *v, uint32_t tab, uint32_t depth)" % sn(t.name))
    o("{")
    o("    struct proto_vt t;")
    o('    int rc = proto_vf_table(v, tab, depth, &t, "%s");' % t.name)
    o("    if (rc != 0) {")
    o("        return rc;")
    o("    }")
    has_off = any(f.type.kind not in ("scalar", "enum", "struct") for f in t.fields)
    has_vec = any(f.type.kind == "vector" for f in t.fields)
    if has_off:
        o("    uint32_t pos;")
    if has_vec:
        o("    uint32_t count;")
    for f in t.fields:
        verify_field(o, t, f)
    o("    return 0;")
    o("}")
    o()


def json_value(o, t, f, view, ind="    "):
    """Emits the JSON for one present field of view."""
    k = f.type.kind
    acc = "%s%s_%s(%s)" % (PREFIX, sn(t.name), f.name, view)
    if k == "scalar":
        sc = f.type.name
        if sc == "bool":
            o(ind + "proto_json_bool(j, %s);" % acc)
        elif fbs.SCALARS[sc][3]:
            o(ind + "proto_json_f64(j, %s);" % acc)
        elif fbs.SCALARS[sc][2]:
            o(ind + "proto_json_i64(j, %s);" % acc)
        else:
            o(ind + "proto_json_u64(j, %s);" % acc)
    elif k == "enum":
        json_enum(o, f.type.ref, acc, ind)
    elif k == "string":
        o(ind + "proto_json_str(j, %s.ptr, %s.len);" % (acc, acc))
    elif k == "struct":
        o(ind + "json_%s(j, %s);" % (sn(f.type.ref.name), acc))
    elif k == "table":
        o(ind + "%s%s_json(j, %s);" % (PREFIX, sn(f.type.ref.name), acc))
    elif k == "vector":
        e = f.type.elem
        if e.kind == "scalar" and e.name == "ubyte":
            o(ind + "proto_json_bytes(j, %s);" % acc)
            return
        o(ind + "{")
        o(ind + "    struct proto_vec vec = %s;" % acc)
        o(ind + "    proto_json_begin(j, '[');")
        o(ind + "    for (uint32_t i = 0; i < vec.len; i++) {")
        ii = ind + "        "
        if e.kind == "table":
            o(ii + "%s%s_json(j, %s%s_vec_at(vec, i));" % (PREFIX, sn(e.ref.name), PREFIX,
                                                          sn(e.ref.name)))
        elif e.kind == "struct":
            o(ii + "json_%s(j, %s%s_vec_at(vec, i));" % (sn(e.ref.name), PREFIX, sn(e.ref.name)))
        elif e.kind == "string":
            o(ii + "struct proto_str s = proto_vec_str_at(vec, i);")
            o(ii + "proto_json_str(j, s.ptr, s.len);")
        elif e.kind == "enum":
            json_enum(o, e.ref, "proto_vec_%s_at(vec, i)" % READ_SUFFIX[e.ref.underlying], ii)
        else:
            sc = e.name
            fnj = "bool" if sc == "bool" else ("f64" if fbs.SCALARS[sc][3] else
                                                ("i64" if fbs.SCALARS[sc][2] else "u64"))
            o(ii + "proto_json_%s(j, proto_vec_%s_at(vec, i));" % (fnj, READ_SUFFIX[sc]))
        o(ind + "    }")
        o(ind + "    proto_json_end(j, ']');")
        o(ind + "}")


def json_enum(o, e, expr, ind):
    o(ind + "{")
    o(ind + "    int64_t ev = (int64_t)%s;" % expr)
    o(ind + "    const char *en = %s%s_name(ev);" % (PREFIX, sn(e.name)))
    o(ind + "    if (en != NULL) {")
    o(ind + "        proto_json_str(j, en, strlen(en));")
    o(ind + "    } else {")
    o(ind + "        proto_json_i64(j, ev);")
    o(ind + "    }")
    o(ind + "}")


def gen_struct_json(o, st):
    n = PREFIX + sn(st.name)
    o("static void json_%s(struct proto_json *j, struct %s s)" % (sn(st.name), n))
    o("{")
    o("    proto_json_begin(j, '{');")
    for f in st.fields:
        o('    proto_json_key(j, "%s");' % f.name)
        if f.type.kind == "struct":
            o("    json_%s(j, s.%s);" % (sn(f.type.ref.name), f.name))
        elif f.type.kind == "enum":
            json_enum(o, f.type.ref, "s.%s" % f.name, "    ")
        else:
            sc = f.type.name
            fnj = "bool" if sc == "bool" else ("f64" if fbs.SCALARS[sc][3] else
                                                ("i64" if fbs.SCALARS[sc][2] else "u64"))
            o("    proto_json_%s(j, s.%s);" % (fnj, f.name))
    o("    proto_json_end(j, '}');")
    o("}")
    o()


def gen_table_json(o, t):
    n = PREFIX + sn(t.name)
    o("void %s_json(struct proto_json *j, struct %s t)" % (n, n))
    o("{")
    o("    proto_json_begin(j, '{');")
    for f in t.fields:
        if f.deprecated:
            continue
        k = f.type.kind
        if k == "union":
            u = f.type.ref
            o('    proto_json_key(j, "%s_type");' % f.name)
            json_enum(o, u, "%s_%s_type(t)" % (n, f.name), "    ")
            for m in u.members:
                mv = "%s_%s_as_%s(t)" % (n, f.name, sn(m.name))
                o("    if (%s.tab != NULL) {" % mv)
                o('        proto_json_key(j, "%s");' % f.name)
                o("        %s%s_json(j, %s);" % (PREFIX, sn(m.name), mv))
                o("    }")
            continue
        if k in ("scalar", "enum"):
            o('    proto_json_key(j, "%s");' % f.name)
            json_value(o, t, f, "t")
            continue
        o("    if (%s_has_%s(t)) {" % (n, f.name))
        o('        proto_json_key(j, "%s");' % f.name)
        json_value(o, t, f, "t", "        ")
        o("    }")
    o("    proto_json_end(j, '}');")
    o("}")
    o()


def gen_source(s):
    o = Out()
    o("/* Generated by net/proto/gen/protogen.py from net/proto/tessera.fbs. Do not edit. */")
    o('#include "net/proto/proto_gen.h"')
    o()
    o('#include "core/util/err.h"')
    o()
    o("#include <string.h>")
    o()
    for e in s.enums:
        gen_enum_names(o, e.name, e.values)
    for u in s.unions:
        gen_enum_names(o, u.name, [("NONE", 0)] + [(m.name, i + 1) for i, m in enumerate(u.members)])
    for t in s.tables:
        o("static int verify_%s(struct proto_verifier *v, uint32_t tab, uint32_t depth);"
          % sn(t.name))
    o()
    for t in s.tables:
        gen_verifier(o, t)
    for st in s.structs:
        gen_struct_json(o, st)
    for t in s.tables:
        gen_table_json(o, t)
    root = PREFIX + sn(s.root_type)
    o("int %s_decode(const uint8_t *buf, size_t len, bool frame, struct %s *out, char *errmsg,"
      % (root, root))
    o("                  size_t errmsg_bytes)")
    o("{")
    o("    struct proto_verifier v = {.errmsg = errmsg, .errmsg_bytes = errmsg_bytes};")
    o("    uint32_t root;")
    o("    out->tab = NULL;")
    o("    int rc = proto_vf_buffer(&v, buf, len, frame, PROTO_FILE_IDENTIFIER, &root);")
    o("    if (rc == 0) {")
    o("        rc = verify_%s(&v, root, 1);" % sn(s.root_type))
    o("    }")
    o("    if (rc == 0) {")
    o("        out->tab = buf + root;")
    o("    }")
    o("    return rc;")
    o("}")
    return o.text()


# ---------------------------------------------------------------- random builders (tests)

def rand_scalar(sc, default):
    """An expression for a random value of scalar sc, the default a third of the time."""
    size = fbs.SCALARS[sc][0]
    c = ctype(sc)
    if sc == "bool":
        return "(bool)(ts_rand_u64(r) & 1)"
    if fbs.SCALARS[sc][3]:
        return "(ts_rand_chance(r, 1, 3) ? (%s)%s : (%s)((int64_t)ts_rand_below(r, 2000000) - 1000000) / 8)" % (
            c, repr(float(default)), c)
    del size
    return "(ts_rand_chance(r, 1, 3) ? (%s)%s : (%s)rand_bits(r))" % (c, c_literal(sc, default), c)


def rand_enum(e):
    vals = ", ".join(str(v) for _, v in e.values)
    return "rand_pick(r, (const int64_t[]){%s}, %d)" % (vals, len(e.values))


def gen_rand_table(o, t):
    n = PREFIX + sn(t.name)
    o("proto_ref %srand_%s(struct proto_builder *b, struct ts_rand *r, uint32_t depth,"
      % (PREFIX, sn(t.name)))
    o("                    uint32_t force)")
    o("{")
    o("    (void)force;")
    o("    (void)depth;")
    live = [f for f in t.fields if not f.deprecated]
    # Children first (back-to-front building).
    for f in live:
        k = f.type.kind
        var = "c_" + f.name
        if k == "string":
            o("    proto_ref %s = ts_rand_chance(r, 3, 4) ? rand_string(b, r) : 0;" % var)
        elif k == "table":
            o("    proto_ref %s = depth < RAND_DEPTH_MAX && ts_rand_chance(r, 2, 3)" % var)
            o("                       ? %srand_%s(b, r, depth + 1, 0) : 0;" % (PREFIX, sn(f.type.ref.name)))
        elif k == "union":
            u = f.type.ref
            o("    uint8_t %s_type = force != 0 ? (uint8_t)force" % var)
            o("                         : (uint8_t)ts_rand_below(r, %d);" % (len(u.members) + 1))
            o("    proto_ref %s = 0;" % var)
            o("    switch (%s_type) {" % var)
            for i, m in enumerate(u.members):
                o("    case %d:" % (i + 1))
                o("        %s = %srand_%s(b, r, depth + 1, 0);" % (var, PREFIX, sn(m.name)))
                o("        break;")
            o("    default:")
            o("        break;")
            o("    }")
        elif k == "vector":
            e = f.type.elem
            o("    proto_ref %s = 0;" % var)
            o("    if (ts_rand_chance(r, 3, 4)) {")
            if e.kind == "scalar" and e.name == "ubyte":
                o("        %s = rand_bytes(b, r);" % var)
            elif e.kind in ("table", "string"):
                o("        uint32_t n = depth < RAND_DEPTH_MAX ? (uint32_t)ts_rand_below(r, 4) : 0;")
                o("        proto_ref refs[4];")
                o("        for (uint32_t i = 0; i < n; i++) {")
                if e.kind == "table":
                    o("            refs[i] = %srand_%s(b, r, depth + 1, 0);" % (PREFIX, sn(e.ref.name)))
                else:
                    o("            refs[i] = rand_string(b, r);")
                o("        }")
                o("        %s = proto_create_vec_ref(b, refs, n);" % var)
            elif e.kind == "struct":
                sname = PREFIX + sn(e.ref.name)
                o("        uint32_t n = (uint32_t)ts_rand_below(r, 4);")
                o("        struct %s items[4];" % sname)
                o("        for (uint32_t i = 0; i < n; i++) {")
                o("            items[i] = rand_%s(r);" % sn(e.ref.name))
                o("        }")
                o("        %s = %s_vec_create(b, items, n);" % (var, sname))
            else:
                sc = e.scalar_name()
                c = ctype(sc)
                val = rand_enum(e.ref) if e.kind == "enum" else rand_scalar(sc, 0)
                o("        uint32_t n = (uint32_t)ts_rand_below(r, 6);")
                o("        %s items[6];" % c)
                o("        for (uint32_t i = 0; i < n; i++) {")
                o("            items[i] = (%s)%s;" % (c, val))
                o("        }")
                o("        %s = proto_create_vector(b, items, n, %d, %d);" % (var, e.size(), e.align()))
            o("    }")
    o("    %s_begin(b);" % n)
    # Add in decreasing alignment to keep padding small, as flatc's builders do.
    def align_of(f):
        return f.type.align() if f.type.kind != "union" else 4
    for f in sorted(live, key=lambda f: -align_of(f)):
        k = f.type.kind
        var = "c_" + f.name
        if k == "scalar":
            o("    %s_add_%s(b, %s);" % (n, f.name, rand_scalar(f.type.name, f.default)))
        elif k == "enum":
            o("    %s_add_%s(b, (%s)(ts_rand_chance(r, 1, 3) ? %d : %s));"
              % (n, f.name, ctype(f.type.scalar_name()), f.default, rand_enum(f.type.ref)))
        elif k == "struct":
            o("    if (ts_rand_chance(r, 3, 4)) {")
            o("        struct %s%s sv = rand_%s(r);" % (PREFIX, sn(f.type.ref.name), sn(f.type.ref.name)))
            o("        %s_add_%s(b, &sv);" % (n, f.name))
            o("    }")
        elif k == "union":
            o("    %s_add_%s(b, %s_type, %s);" % (n, f.name, var, var))
        else:
            o("    %s_add_%s(b, %s);" % (n, f.name, var))
    o("    return %s_end(b);" % n)
    o("}")
    o()


def gen_rand_struct(o, st):
    n = PREFIX + sn(st.name)
    o("static struct %s rand_%s(struct ts_rand *r)" % (n, sn(st.name)))
    o("{")
    o("    struct %s s;" % n)
    o("    memset(&s, 0, sizeof(s));")
    for f in st.fields:
        if f.type.kind == "struct":
            o("    s.%s = rand_%s(r);" % (f.name, sn(f.type.ref.name)))
        elif f.type.kind == "enum":
            o("    s.%s = (%s)%s;" % (f.name, ctype(f.type.scalar_name()), rand_enum(f.type.ref)))
        else:
            o("    s.%s = %s;" % (f.name, rand_scalar(f.type.name, 0)))
    o("    return s;")
    o("}")
    o()


def variants(s):
    """Every message kind: (root union member, nested union member or 0)."""
    root = s.by_name[s.root_type]
    out = []
    ufields = [f for f in root.fields if f.type.kind == "union"]
    assert len(ufields) == 1, "the root table has one union: its body"
    for i, m in enumerate(ufields[0].type.ref.members):
        inner = [f for f in m.fields if f.type.kind == "union"]
        if len(inner) == 1:
            for j, mm in enumerate(inner[0].type.ref.members):
                out.append((i + 1, j + 1, "%s.%s" % (m.name, mm.name)))
        else:
            out.append((i + 1, 0, m.name))
    return out


def gen_rand(s):
    h = Out()
    h("/* Generated by net/proto/gen/protogen.py from net/proto/tessera.fbs. Do not edit.")
    h(" *")
    h(" * Random messages for the conformance and mutation tests: every field is set to a")
    h(" * random value, left at its default, or left absent, from a seeded generator. */")
    h("#ifndef TS_NET_PROTO_PROTO_GEN_RAND_H")
    h("#define TS_NET_PROTO_PROTO_GEN_RAND_H")
    h()
    h('#include "core/util/rand.h"')
    h('#include "net/proto/proto_gen.h"')
    h()
    for t in s.tables:
        h("proto_ref %srand_%s(struct proto_builder *b, struct ts_rand *r, uint32_t depth,"
          % (PREFIX, sn(t.name)))
        h("                    uint32_t force);")
    h()
    h("/* Message kinds: each member of the root union, and for Request and Response each")
    h(" * member of their own union. */")
    h("uint32_t proto_rand_variant_count(void);")
    h("const char *proto_rand_variant_name(uint32_t variant);")
    h("/* Builds a random root message of the given kind; returns its reference. */")
    h("proto_ref proto_rand_variant(struct proto_builder *b, struct ts_rand *r, uint32_t variant);")
    h()
    h("#endif")
    c = Out()
    c("/* Generated by net/proto/gen/protogen.py from net/proto/tessera.fbs. Do not edit. */")
    c('#include "net/proto/proto_gen_rand.h"')
    c()
    c("#include <string.h>")
    c()
    c("#define RAND_DEPTH_MAX 6u")
    c()
    c("static uint64_t rand_bits(struct ts_rand *r)")
    c("{")
    c("    /* Small, large and boundary values. */")
    c("    switch (ts_rand_below(r, 4)) {")
    c("    case 0:")
    c("        return ts_rand_below(r, 256);")
    c("    case 1:")
    c("        return ~(uint64_t)0 - ts_rand_below(r, 4);")
    c("    default: {")
    c("        /* Two statements: the order of two calls in one expression is unspecified. */")
    c("        uint64_t v = ts_rand_u64(r);")
    c("        return v >> ts_rand_below(r, 64);")
    c("    }")
    c("    }")
    c("}")
    c()
    c("static int64_t rand_pick(struct ts_rand *r, const int64_t *values, uint32_t n)")
    c("{")
    c("    /* Mostly a known value; sometimes one this schema does not know (forward")
    c("     * compatibility: readers must accept it). */")
    c("    if (ts_rand_chance(r, 1, 10)) {")
    c("        return 100 + (int64_t)ts_rand_below(r, 20);")
    c("    }")
    c("    return values[ts_rand_below(r, n)];")
    c("}")
    c()
    c("static proto_ref rand_bytes(struct proto_builder *b, struct ts_rand *r)")
    c("{")
    c("    uint8_t tmp[40];")
    c("    uint32_t n = (uint32_t)ts_rand_below(r, sizeof(tmp));")
    c("    for (uint32_t i = 0; i < n; i++) {")
    c("        tmp[i] = (uint8_t)ts_rand_u64(r);")
    c("    }")
    c("    return proto_create_bytes(b, tmp, n);")
    c("}")
    c()
    c("static proto_ref rand_string(struct proto_builder *b, struct ts_rand *r)")
    c("{")
    c("    char tmp[24];")
    c("    uint32_t n = (uint32_t)ts_rand_below(r, sizeof(tmp));")
    c("    for (uint32_t i = 0; i < n; i++) {")
    c("        tmp[i] = (char)('a' + ts_rand_below(r, 26));")
    c("    }")
    c("    return proto_create_string(b, tmp, n);")
    c("}")
    c()
    for st in s.structs:
        gen_rand_struct(c, st)
    for t in s.tables:
        gen_rand_table(c, t)
    vs = variants(s)
    root = s.by_name[s.root_type]
    body_members = [f for f in root.fields if f.type.kind == "union"][0].type.ref.members
    c("static const struct {")
    c("    uint8_t body;")
    c("    uint8_t inner;")
    c("    const char *name;")
    c("} variants[] = {")
    for b_, i_, name in vs:
        c('    {%d, %d, "%s"},' % (b_, i_, name))
    c("};")
    c()
    c("uint32_t proto_rand_variant_count(void)")
    c("{")
    c("    return (uint32_t)(sizeof(variants) / sizeof(variants[0]));")
    c("}")
    c()
    c("const char *proto_rand_variant_name(uint32_t variant)")
    c("{")
    c("    return variant < proto_rand_variant_count() ? variants[variant].name : NULL;")
    c("}")
    c()
    c("proto_ref proto_rand_variant(struct proto_builder *b, struct ts_rand *r, uint32_t variant)")
    c("{")
    c("    proto_ref body = 0;")
    c("    switch (variants[variant].body) {")
    for i, m in enumerate(body_members):
        c("    case %d:" % (i + 1))
        c("        body = %srand_%s(b, r, 1, variants[variant].inner);" % (PREFIX, sn(m.name)))
        c("        break;")
    c("    default:")
    c("        break;")
    c("    }")
    rn = PREFIX + sn(s.root_type)
    bf = [f for f in root.fields if f.type.kind == "union"][0]
    c("    %s_begin(b);" % rn)
    c("    %s_add_%s(b, variants[variant].body, body);" % (rn, bf.name))
    c("    return %s_end(b);" % rn)
    c("}")
    return h.text(), c.text()


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: protogen.py SCHEMA.fbs OUTDIR\n")
        return 2
    try:
        s = fbs.load(sys.argv[1])
    except fbs.SchemaError as e:
        sys.stderr.write("protogen: %s\n" % e)
        return 1
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rh, rc = gen_rand(s)
    files = {
        "proto_gen.h": gen_header(s),
        "proto_gen.c": gen_source(s),
        "proto_gen_rand.h": rh,
        "proto_gen_rand.c": rc,
    }
    for name, text in files.items():
        path = os.path.join(out, name)
        old = None
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
        if old != text:  # keep timestamps when nothing changed
            with open(path, "w") as f:
                f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
