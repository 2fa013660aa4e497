#!/usr/bin/python3
"""(b) flatc -> Tessera: buffers that flatc builds from JSON decode in Tessera with the
same contents.

Inputs are JSON messages: the hand-written ones in json/ (realistic messages of every
top-level kind), the known-bug reproductions in json/known_bugs/, and the random
messages proto_sample_writer wrote (Tessera's own JSON of each). For every input:

  1. `flatc -b` builds a bare buffer, `flatc -b --size-prefixed` a frame, and
     `flatc -b --force-defaults` a buffer that stores fields equal to their default;
  2. Tessera decodes all three (proto_dump, bare and --frame) and dumps its JSON;
  3. `flatc --json --strict-json --defaults-json --raw-binary` prints flatc's own view
     of the bare buffer;
  4. Tessera's JSON of each of the three must equal flatc's view, as parsed JSON
     values (true is not 1);
  5. a random sample must come back as the very JSON it was written from, and a
     hand-written file's values must all appear in flatc's view (the file says what we
     think it says).

flatc is always given -o into the scratch directory (it overwrites without asking) and
many files per call. Files in json/known_bugs/ reproduce codec bugs (README.md): each
must still fail in the way KNOWN_BUGS describes (an expected failure, listed but not
counted); one that passes, or fails differently, fails the test. Random samples that
fail with the signature of a known bug are listed the same way. --strict counts every
failure, known bugs included.

Prints one line per failure, and ends with "N passed, M failed".
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cf_json  # noqa: E402

BATCH_FILES_MAX = 1000  # paths per command line: about 100 KB, far below ARG_MAX
FAILURES_SHOWN_MAX = 20

# Known codec bugs (README.md): the reproduction in json/known_bugs/<name>.json and the
# failure it must show while the bug is present.
KNOWN_BUGS = {
    "empty_vector_alignment": r"RaftBatch\.heartbeat_acks: vector elements misaligned",
}


class Input:
    def __init__(self, path, kind):
        self.path = path
        self.kind = kind  # "hand", "known" or "sample"
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.failures = []  # (check, detail)


def batches(items):
    for i in range(0, len(items), BATCH_FILES_MAX):
        yield items[i:i + BATCH_FILES_MAX]


def flatc_build(args, inputs, outdir, extra):
    """flatc -b every input into outdir; records a failure on inputs it rejects."""
    for batch in batches(inputs):
        cmd = [args.flatc, "-b"] + extra + ["-o", outdir, args.schema]
        try:
            cf_json.run(cmd + [i.path for i in batch])
            continue
        except RuntimeError:
            pass
        for i in batch:  # find the culprits one by one
            try:
                cf_json.run(cmd + [i.path])
            except RuntimeError as e:
                i.failures.append(("flatc -b", str(e)))


def flatc_view(args, inputs, bindir, outdir):
    """flatc's own JSON of each bare buffer: {name: value}."""
    bins = [os.path.join(bindir, i.name + ".bin") for i in inputs]
    bins = [b for b in bins if os.path.exists(b)]
    for batch in batches(bins):
        cf_json.run([args.flatc, "--json", "--strict-json", "--defaults-json", "--raw-binary",
                     "-o", outdir, args.schema, "--"] + batch)
    views = {}
    for i in inputs:
        path = os.path.join(outdir, i.name + ".json")
        if os.path.exists(path):
            with open(path) as f:
                views[i.name] = json.load(f)
    return views


def tessera_view(args, inputs, bindir, frame):
    """Tessera's JSON of each buffer: {name: (value or None, error or None)}."""
    names = [i.name for i in inputs if os.path.exists(os.path.join(bindir, i.name + ".bin"))]
    out = {}
    for batch in batches(names):
        cmd = [args.dump] + (["--frame"] if frame else [])
        _, text = cf_json.run(cmd + [os.path.join(bindir, n + ".bin") for n in batch],
                              ok_codes=(0, 1))
        lines = text.splitlines()
        if len(lines) != len(batch):
            raise RuntimeError("proto_dump printed %d lines for %d files"
                               % (len(lines), len(batch)))
        for n, line in zip(batch, lines):
            if line.startswith("error: "):
                out[n] = (None, line[len("error: "):])
            else:
                out[n] = (json.loads(line), None)
    return out


def has_empty_list(value, key):
    if isinstance(value, dict):
        return any((k == key and v == []) or has_empty_list(v, key) for k, v in value.items())
    if isinstance(value, list):
        return any(has_empty_list(v, key) for v in value)
    return False


def sample_known_bug(i):
    """For a random sample: the known bug that explains all its failures, or None.
    The signature of empty_vector_alignment: Tessera rejects a vector's alignment, and
    that vector is empty in flatc's view."""
    for _, detail in i.failures:
        m = re.search(r"\.(\w+): vector elements misaligned", detail)
        if not m or i.flatc is None or not has_empty_list(i.flatc, m.group(1)):
            return None
    return "empty_vector_alignment"


def known_bug_present(i):
    """For a file of json/known_bugs/: the failure that shows its bug, or None."""
    want = KNOWN_BUGS.get(i.name)
    for check_name, detail in i.failures:
        if want is not None and re.search(want, detail):
            return "%s: %s" % (check_name, detail)
    return None


def check(i, flatc, tessera, source):
    """Compares the views of one input; appends to i.failures. tessera maps "buffer",
    "frame" and "buffer with defaults stored" to Tessera's (value, error)."""
    if i.failures:
        return
    if flatc is None:
        i.failures.append(("flatc --json", "no output for the binary"))
        return
    for what, (value, err) in tessera.items():
        if err is not None:
            i.failures.append(("Tessera decodes the " + what, err))
            continue
        d = cf_json.difference(flatc, value)
        if d is not None:
            i.failures.append(("Tessera's JSON of the %s equals flatc's" % what,
                               "flatc vs Tessera at " + d))
    bare = tessera["buffer"][0]
    if i.kind == "sample" and bare is not None:
        d = cf_json.difference(source, bare)
        if d is not None:
            i.failures.append(("round trip of Tessera's JSON through flatc -b", d))
    if i.kind == "hand":
        d = cf_json.missing(source, flatc)
        if d is not None:
            i.failures.append(("flatc's view holds every value of the file", d))


def gather(args):
    inputs = [Input(p, "hand") for p in sorted(glob.glob(os.path.join(args.json_dir, "*.json")))]
    inputs += [Input(p, "known") for p in sorted(glob.glob(os.path.join(args.known_dir, "*.json")))]
    inputs += [Input(p, "sample") for p in sorted(glob.glob(os.path.join(args.samples, "*.json")))]
    seen = {}
    for i in inputs:
        if i.name in seen:
            raise RuntimeError("two inputs named %s: %s and %s" % (i.name, seen[i.name], i.path))
        seen[i.name] = i.path
    return inputs


def report(args, inputs):
    passed = failed = expected = 0
    for i in inputs:
        if i.kind == "known":
            shown = known_bug_present(i)
            if shown is not None and not args.strict:
                expected += 1
                print("known bug %s still present (expected failure): %s" % (i.name, shown))
                continue
            if not i.failures:
                failed += 1
                print("FAIL %s: this known-bug reproduction now passes; if the bug is fixed, "
                      "move the file to json/ and update README.md" % i.path)
                continue
        if not i.failures:
            passed += 1
            continue
        bug = sample_known_bug(i) if i.kind == "sample" else None
        if bug is not None and not args.strict:
            expected += 1
            print("known bug %s (expected failure): %s: %s: %s"
                  % (bug, i.path, i.failures[0][0], i.failures[0][1]))
            continue
        failed += 1
        if failed > FAILURES_SHOWN_MAX:
            continue
        for c, detail in i.failures:
            print("FAIL %s (%s): %s: %s" % (i.path, i.kind, c, detail))
        print("  reproduce: mkdir -p /tmp/cf && %s -b -o /tmp/cf %s %s && %s /tmp/cf/%s.bin"
              % (args.flatc, args.schema, i.path, args.dump, i.name))
    kinds = {k: sum(1 for i in inputs if i.kind == k) for k in ("hand", "known", "sample")}
    print("inputs: %d hand-written, %d random samples, %d known-bug reproductions"
          % (kinds["hand"], kinds["sample"], kinds["known"]))
    print("%d expected failures from known codec bugs (see README.md), not counted" % expected)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flatc", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--dump", required=True, help="the proto_dump executable")
    ap.add_argument("--json-dir", required=True)
    ap.add_argument("--known-dir", required=True)
    ap.add_argument("--samples", required=True, help="proto_sample_writer's directory")
    ap.add_argument("--scratch", required=True, help="a directory this test owns")
    ap.add_argument("--strict", action="store_true",
                    help="count every failure, known bugs included")
    args = ap.parse_args()
    try:
        inputs = gather(args)
        if not any(i.kind == "sample" for i in inputs):
            raise RuntimeError("no samples in %s: run proto_sample_writer first" % args.samples)
        if os.path.isdir(args.scratch):
            shutil.rmtree(args.scratch)
        dirs = {d: os.path.join(args.scratch, d)
                for d in ("bin", "frame", "forced", "flatc_json")}
        for d in dirs.values():
            os.makedirs(d)
        flatc_build(args, inputs, dirs["bin"], [])
        flatc_build(args, inputs, dirs["frame"], ["--size-prefixed"])
        flatc_build(args, inputs, dirs["forced"], ["--force-defaults"])
        flatc = flatc_view(args, inputs, dirs["bin"], dirs["flatc_json"])
        views = {"buffer": tessera_view(args, inputs, dirs["bin"], False),
                 "frame": tessera_view(args, inputs, dirs["frame"], True),
                 "buffer with defaults stored": tessera_view(args, inputs, dirs["forced"],
                                                             False)}
    except (RuntimeError, OSError, ValueError) as e:
        print("FAIL: %s\n0 passed, 1 failed" % e)
        return 1
    for i in inputs:
        with open(i.path) as f:
            source = json.load(f)
        i.flatc = flatc.get(i.name)
        missing = (None, "no binary")
        check(i, i.flatc, {k: v.get(i.name, missing) for k, v in views.items()}, source)
    return report(args, inputs)


if __name__ == "__main__":
    sys.exit(main())
