"""Parser for the subset of the FlatBuffers schema language that Tessera uses.

Tessera's C codec is generated from net/proto/tessera.fbs by protogen.py; the
conformance tests read the same model to walk messages generically. The subset:
namespace, file_identifier, root_type, attribute, enum (integer underlying type),
union (of tables), struct (scalars, enums, nested structs), table (scalars, enums,
strings, structs, tables, unions, vectors of scalars/enums/strings/structs/tables),
field defaults and the attributes id, required and deprecated. Anything else is
rejected with a message naming the line, so the generator never guesses.

flatc --require-explicit-ids compiles the same file in every build, so a schema that
flatc rejects never reaches this parser's output.
"""

import re

SCALARS = {
    # name: (size, c type, signed, is_float)
    "bool": (1, "bool", False, False),
    "byte": (1, "int8_t", True, False),
    "ubyte": (1, "uint8_t", False, False),
    "short": (2, "int16_t", True, False),
    "ushort": (2, "uint16_t", False, False),
    "int": (4, "int32_t", True, False),
    "uint": (4, "uint32_t", False, False),
    "long": (8, "int64_t", True, False),
    "ulong": (8, "uint64_t", False, False),
    "float": (4, "float", True, True),
    "double": (8, "double", True, True),
}
ALIASES = {
    "int8": "byte", "uint8": "ubyte", "int16": "short", "uint16": "ushort",
    "int32": "int", "uint32": "uint", "int64": "long", "uint64": "ulong",
    "float32": "float", "float64": "double",
}

TOKEN = re.compile(r'\s*(?:(//[^\n]*)|("[^"]*")|(-?[0-9][0-9a-fA-FxX.]*)|([A-Za-z_][A-Za-z0-9_.]*)|(.))')


class SchemaError(Exception):
    pass


def snake(name):
    """CamelCase -> snake_case (PutRequest -> put_request, RaftBatch -> raft_batch)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


class Type:
    """kind: scalar, enum, string, struct, table, union, vector. For vector, elem is
    the element Type. For scalar, name is the scalar name; for enum/struct/table/union,
    ref is the definition."""

    def __init__(self, kind, name=None, ref=None, elem=None):
        self.kind, self.name, self.ref, self.elem = kind, name, ref, elem

    def scalar_name(self):
        """The wire scalar of a scalar or enum type."""
        if self.kind == "scalar":
            return self.name
        if self.kind == "enum":
            return self.ref.underlying
        raise SchemaError("not a scalar: %s" % self.kind)

    def size(self):
        if self.kind in ("scalar", "enum"):
            return SCALARS[self.scalar_name()][0]
        if self.kind == "struct":
            return self.ref.size
        return 4  # offsets

    def align(self):
        if self.kind in ("scalar", "enum"):
            return self.size()
        if self.kind == "struct":
            return self.ref.align
        return 4


class Enum:
    def __init__(self, name, underlying, values, line):
        self.name, self.underlying, self.values, self.line = name, underlying, values, line
        self.is_union = False


class Union:
    def __init__(self, name, members, line):
        self.name, self.members, self.line = name, members, line  # members: [Table]
        self.is_union = True


class Field:
    def __init__(self, name, type_, id_, default, attrs, line):
        self.name, self.type, self.id, self.default = name, type_, id_, default
        self.required = "required" in attrs
        self.deprecated = "deprecated" in attrs
        self.line = line
        self.offset = None  # struct fields only

    def voffset(self):
        return 4 + 2 * self.id

    def type_voffset(self):
        """For a union field: the vtable slot of its _type field (id - 1)."""
        return 4 + 2 * (self.id - 1)


class Struct:
    def __init__(self, name, fields, line):
        self.name, self.fields, self.line = name, fields, line
        self.size = self.align = 0


class Table:
    def __init__(self, name, fields, line):
        self.name, self.fields, self.line = name, fields, line


class Schema:
    def __init__(self):
        self.namespace = ""
        self.file_identifier = None
        self.root_type = None
        self.enums, self.unions, self.structs, self.tables = [], [], [], []
        self.by_name = {}


class Parser:
    def __init__(self, text, path):
        self.path = path
        self.toks = []
        line = 1
        for m in TOKEN.finditer(text):
            whole = m.group(0)
            comment, string, number, ident, punct = m.groups()
            line_here = line + whole[: len(whole) - len(whole.lstrip())].count("\n")
            line += whole.count("\n")
            if comment is not None:
                continue
            if string is not None:
                self.toks.append(("str", string[1:-1], line_here))
            elif number is not None:
                self.toks.append(("num", number, line_here))
            elif ident is not None:
                self.toks.append(("id", ident, line_here))
            elif punct is not None and not punct.isspace():
                self.toks.append(("p", punct, line_here))
        self.i = 0

    def error(self, msg, line=None):
        if line is None:
            line = self.toks[min(self.i, len(self.toks) - 1)][2] if self.toks else 0
        raise SchemaError("%s:%d: %s" % (self.path, line, msg))

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", None, 0)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if tok[0] == "eof":
            self.error("unexpected end of schema")
        if (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            self.error("expected %s, found %r" % (value or kind, tok[1]))
        self.i += 1
        return tok

    def accept(self, value):
        tok = self.peek()
        if tok[0] in ("p", "id") and tok[1] == value:
            self.i += 1
            return True
        return False

    def parse(self):
        s = Schema()
        pending = []  # (kind, name, body tokens) resolved after all names are known
        while self.peek()[0] != "eof":
            kw = self.take("id")
            line = kw[2]
            if kw[1] == "namespace":
                s.namespace = self.take("id")[1]
                self.take("p", ";")
            elif kw[1] == "file_identifier":
                s.file_identifier = self.take("str")[1]
                if len(s.file_identifier) != 4:
                    self.error("file_identifier must be 4 characters")
                self.take("p", ";")
            elif kw[1] == "root_type":
                s.root_type = self.take("id")[1]
                self.take("p", ";")
            elif kw[1] == "attribute":
                self.take("str")
                self.take("p", ";")
            elif kw[1] in ("enum", "union", "struct", "table"):
                pending.append(self.parse_decl(kw[1], line, s))
            elif kw[1] == "include":
                self.error("include is not supported")
            else:
                self.error("unknown declaration %r" % kw[1])
        for resolve in pending:
            resolve()
        self.check(s)
        return s

    def parse_decl(self, kind, line, s):
        name = self.take("id")[1]
        if name in s.by_name:
            self.error("%s declared twice" % name)
        if kind == "enum":
            self.take("p", ":")
            under = self.take("id")[1]
            under = ALIASES.get(under, under)
            if under not in SCALARS or SCALARS[under][3] or under == "bool":
                self.error("enum %s needs an integer underlying type" % name)
            self.take("p", "{")
            values, nxt = [], 0
            while not self.accept("}"):
                vname = self.take("id")[1]
                if self.accept("="):
                    nxt = int(self.take("num")[1], 0)
                values.append((vname, nxt))
                nxt += 1
                if not self.accept(","):
                    self.take("p", "}")
                    break
            e = Enum(name, under, values, line)
            s.enums.append(e)
            s.by_name[name] = e
            return lambda: None
        if kind == "union":
            self.take("p", "{")
            names = []
            while not self.accept("}"):
                names.append((self.take("id")[1], self.peek()[2]))
                if not self.accept(","):
                    self.take("p", "}")
                    break
            u = Union(name, [], line)
            s.unions.append(u)
            s.by_name[name] = u

            def resolve_union():
                for n, ln in names:
                    t = s.by_name.get(n)
                    if not isinstance(t, Table):
                        self.error("union %s member %s is not a table" % (name, n), ln)
                    u.members.append(t)
            return resolve_union
        # struct or table
        if self.peek()[1] == "(":
            self.error("attributes on %s %s are not supported" % (kind, name))
        self.take("p", "{")
        raw = []
        while not self.accept("}"):
            fname_tok = self.take("id")
            self.take("p", ":")
            vec = self.accept("[")
            tname = self.take("id")[1]
            if vec:
                self.take("p", "]")
            default = None
            if self.accept("="):
                tok = self.take()
                default = tok[1]
            attrs = {}
            if self.accept("("):
                while not self.accept(")"):
                    an = self.take("id")[1]
                    av = None
                    if self.accept(":"):
                        av = self.take()[1]
                    attrs[an] = av
                    if not self.accept(","):
                        self.take("p", ")")
                        break
            self.take("p", ";")
            raw.append((fname_tok[1], tname, vec, default, attrs, fname_tok[2]))
        obj = (Struct if kind == "struct" else Table)(name, [], line)
        (s.structs if kind == "struct" else s.tables).append(obj)
        s.by_name[name] = obj

        def resolve_fields():
            for fname, tname, vec, default, attrs, ln in raw:
                t = self.resolve_type(s, tname, ln)
                if vec:
                    if t.kind in ("union", "vector"):
                        self.error("vectors of %s are not supported" % t.kind, ln)
                    t = Type("vector", elem=t)
                if kind == "struct":
                    if vec or t.kind not in ("scalar", "enum", "struct"):
                        self.error("struct fields must be scalars, enums or structs", ln)
                    if attrs or default is not None:
                        self.error("struct fields take no attributes or defaults", ln)
                    obj.fields.append(Field(fname, t, None, None, {}, ln))
                    continue
                if "id" not in attrs:
                    self.error("field %s.%s needs an explicit id" % (name, fname), ln)
                unknown = set(attrs) - {"id", "required", "deprecated"}
                if unknown:
                    self.error("unsupported attributes %s" % sorted(unknown), ln)
                if default is not None and t.kind not in ("scalar", "enum"):
                    self.error("only scalars take defaults", ln)
                obj.fields.append(Field(fname, t, int(attrs["id"]), self.default_of(t, default, ln),
                                        attrs, ln))
        return resolve_fields

    def default_of(self, t, default, ln):
        if t.kind == "enum":
            if default is None:
                return 0
            for vname, v in t.ref.values:
                if vname == default:
                    return v
            return int(default, 0)
        if t.kind != "scalar":
            return None
        if t.name == "bool":
            return {None: 0, "false": 0, "true": 1, "0": 0, "1": 1}[default]
        if SCALARS[t.name][3]:
            return float(default) if default is not None else 0.0
        return int(default, 0) if default is not None else 0

    def resolve_type(self, s, tname, ln):
        tname = ALIASES.get(tname, tname)
        if tname in SCALARS:
            return Type("scalar", name=tname)
        if tname == "string":
            return Type("string")
        d = s.by_name.get(tname)
        if d is None:
            self.error("unknown type %s" % tname, ln)
        if isinstance(d, Enum):
            return Type("enum", ref=d)
        if isinstance(d, Union):
            return Type("union", ref=d)
        if isinstance(d, Struct):
            return Type("struct", ref=d)
        return Type("table", ref=d)

    def check(self, s):
        for st in s.structs:
            layout_struct(st, self)
        for t in s.tables:
            ids = {}
            for f in t.fields:
                slots = [f.id - 1, f.id] if f.type.kind == "union" else [f.id]
                for slot in slots:
                    if slot < 0 or slot in ids:
                        self.error("%s.%s: id %d clashes or is negative" % (t.name, f.name, slot),
                                   f.line)
                    ids[slot] = f
            if ids and sorted(ids) != list(range(len(ids))):
                self.error("%s: field ids must be contiguous from 0" % t.name, t.line)
        if s.root_type and not isinstance(s.by_name.get(s.root_type), Table):
            self.error("root_type %s is not a table" % s.root_type)


def layout_struct(st, parser):
    """C-like layout, as flatc does: each field at its natural alignment, the size
    rounded up to the struct's alignment."""
    if st.size:
        return
    off, align = 0, 1
    for f in st.fields:
        if f.type.kind == "struct":
            layout_struct(f.type.ref, parser)
        a = f.type.align()
        off = (off + a - 1) // a * a
        f.offset = off
        off += f.type.size()
        align = max(align, a)
    st.size = (off + align - 1) // align * align
    st.align = align
    if st.size == 0:
        parser.error("struct %s is empty" % st.name, st.line)


def load(path):
    with open(path) as f:
        return Parser(f.read(), path).parse()
