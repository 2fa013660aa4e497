#!/usr/bin/python3
"""(c) Tessera -> Python: flatc's generated Python code (flatc --python) with Debian's
python3-flatbuffers reads the frames Tessera wrote, and finds the same contents.

For every sample of proto_sample_writer (X.bin, a frame, and X.json, Tessera's JSON of
it) this script checks the file identifier, opens the root with
Message.GetRootAs(buf, 4) (past the size prefix), and walks the message generically:
the schema model of net/proto/gen/fbs.py says which fields each table has, and the
generated accessors are called by name (field `create_revision` -> CreateRevision();
vectors through Key(j) / KeyLength() / KeyIsNone(); unions through OpType() and Op(),
whose Table is Init()ed into the member's class; structs through Epoch() and their own
accessors). The walk builds a value shaped like Tessera's JSON (every scalar present,
enums and union types by name and numbers when unknown, absent tables, vectors, strings
and structs omitted, [ubyte] as lists of numbers) and compares it with the sample's
JSON, strictly (true is not 1).

Run with /usr/bin/python3 (python3-flatbuffers is installed for it only) and PYTHONPATH
holding build/<type>/net/proto/flatc and net/proto/gen. Ends with "N passed, M failed".
"""

import argparse
import glob
import importlib
import json
import keyword
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cf_json  # noqa: E402

try:
    import fbs  # net/proto/gen/fbs.py
    import flatbuffers.table
    from tessera.proto.Message import Message
except ImportError as e:
    print("FAIL: %s (PYTHONPATH must hold build/<type>/net/proto/flatc and net/proto/gen)\n"
          "0 passed, 1 failed" % e)
    sys.exit(1)

FAILURES_SHOWN_MAX = 20


def method(field_name):
    """flatc's Python accessor name: snake_case -> CamelCase, a trailing '_' on Python
    keywords (field `from` -> From_())."""
    camel = "".join(part[:1].upper() + part[1:] for part in field_name.split("_"))
    return camel + "_" if keyword.iskeyword(field_name) else camel


def py_class(schema, name):
    """The generated class for a table or struct: tessera.proto.<Name>.<Name>."""
    mod = importlib.import_module("%s.%s" % (schema.namespace, name))
    return getattr(mod, name)


class Walker:
    def __init__(self, schema):
        self.schema = schema

    def call(self, obj, name, *args):
        fn = getattr(obj, name, None)
        if fn is None:
            raise AttributeError("the generated %s has no method %s()"
                                 % (type(obj).__name__, name))
        return fn(*args)

    def enum(self, e, v):
        for vname, value in e.values:
            if value == v:
                return vname
        return v

    def scalar(self, t, v):
        if t.kind == "enum":
            return self.enum(t.ref, v)
        if t.name == "bool":
            return bool(v)
        return v

    def struct(self, st, obj):
        out = {}
        for f in st.fields:
            v = self.call(obj, method(f.name))
            out[f.name] = self.struct(f.type.ref, v) if f.type.kind == "struct" else \
                self.scalar(f.type, v)
        return out

    def string(self, raw):
        return raw.decode("utf-8", errors="surrogateescape")

    def vector(self, obj, f):
        m = method(f.name)
        if self.call(obj, m + "IsNone"):
            return None
        n = self.call(obj, m + "Length")
        e = f.type.elem
        items = [self.call(obj, m, j) for j in range(n)]
        if e.kind == "table":
            return [self.table(e.ref, x) for x in items]
        if e.kind == "struct":
            return [self.struct(e.ref, x) for x in items]
        if e.kind == "string":
            return [self.string(x) for x in items]
        return [self.scalar(e, x) for x in items]

    def union(self, obj, f, out):
        m = method(f.name)
        ty = self.call(obj, m + "Type")
        members = f.type.ref.members
        out[f.name + "_type"] = "NONE" if ty == 0 else \
            (members[ty - 1].name if ty <= len(members) else ty)
        value = self.call(obj, m)
        if value is None or ty == 0 or ty > len(members):
            return
        if not isinstance(value, flatbuffers.table.Table):
            raise TypeError("%s() returned %s, not a flatbuffers.table.Table"
                            % (m, type(value).__name__))
        member = py_class(self.schema, members[ty - 1].name)()
        member.Init(value.Bytes, value.Pos)
        out[f.name] = self.table(members[ty - 1], member)

    def table(self, t, obj):
        out = {}
        for f in t.fields:
            if f.deprecated:
                continue
            k = f.type.kind
            if k == "union":
                self.union(obj, f, out)
            elif k in ("scalar", "enum"):
                out[f.name] = self.scalar(f.type, self.call(obj, method(f.name)))
            elif k == "vector":
                v = self.vector(obj, f)
                if v is not None:
                    out[f.name] = v
            elif k == "string":
                v = self.call(obj, method(f.name))
                if v is not None:
                    out[f.name] = self.string(v)
            elif k == "struct":
                v = self.call(obj, method(f.name))
                if v is not None:
                    out[f.name] = self.struct(f.type.ref, v)
            elif k == "table":
                v = self.call(obj, method(f.name))
                if v is not None:
                    out[f.name] = self.table(f.type.ref, v)
            else:
                raise TypeError("field %s.%s: unexpected kind %s" % (t.name, f.name, k))
        return out


def check_sample(walker, root, path):
    """Returns None when the sample passes, else why not."""
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    if len(buf) < 8 or int.from_bytes(buf[:4], "little") != len(buf) - 4:
        return "not a frame: the length prefix is not the file size - 4"
    if not Message.MessageBufferHasIdentifier(buf, 0, size_prefixed=True):
        return "file identifier %s missing" % walker.schema.file_identifier
    msg = Message.GetRootAs(buf, 4)
    got = walker.table(root, msg)
    with open(os.path.splitext(path)[0] + ".json") as f:
        want = json.load(f)
    d = cf_json.difference(got, want)
    return None if d is None else "Python vs Tessera at " + d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schema", required=True)
    ap.add_argument("--samples", required=True, help="proto_sample_writer's directory")
    args = ap.parse_args()
    schema = fbs.load(args.schema)
    root = schema.by_name[schema.root_type]
    walker = Walker(schema)
    paths = sorted(glob.glob(os.path.join(args.samples, "*.bin")))
    if not paths:
        print("FAIL: no samples in %s: run proto_sample_writer first\n0 passed, 1 failed"
              % args.samples)
        return 1
    passed = failed = 0
    for path in paths:
        try:
            why = check_sample(walker, root, path)
        except Exception as e:  # a reader crash is a failure of this sample, not the run
            why = "%s: %s" % (type(e).__name__, e)
        if why is None:
            passed += 1
            continue
        failed += 1
        if failed <= FAILURES_SHOWN_MAX:
            variant, seed = os.path.splitext(os.path.basename(path))[0].rsplit("_s", 1)
            print("FAIL %s: %s\n  reproduce: proto_sample_writer DIR --per-variant 1 "
                  "--first-seed %s, then read DIR/%s_s%s.bin; the C++ view of it: "
                  "proto_oracle_test %s --variant %s --first-seed %s --seeds 1"
                  % (path, why, seed, variant, seed, args.schema, variant, seed))
    print("python3-flatbuffers %s read %d Tessera frames" % (
        getattr(flatbuffers, "__version__", "?"), len(paths)))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
