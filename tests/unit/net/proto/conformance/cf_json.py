"""Helpers shared by the Python conformance tests: strict JSON comparison and
subprocess calls that forward stderr (so sanitizer reports reach ctest's output)."""

import subprocess
import sys


def difference(a, b, path="$"):
    """Returns None when a and b are equal JSON values, else where and how they differ.
    Stricter than ==: true is not 1, and 1 is not 1.0."""
    if type(a) is not type(b):
        return "%s: %r (%s) vs %r (%s)" % (path, a, type(a).__name__, b, type(b).__name__)
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return "%s.%s: only in the %s" % (path, k, "first" if k in a else "second")
            d = difference(a[k], b[k], "%s.%s" % (path, k))
            if d is not None:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return "%s: %d elements vs %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = difference(x, y, "%s[%d]" % (path, i))
            if d is not None:
                return d
        return None
    return None if a == b else "%s: %r vs %r" % (path, a, b)


def missing(part, whole, path="$"):
    """Returns None when every value given in `part` appears in `whole` (objects may have
    more keys in `whole`), else the first value that does not."""
    if isinstance(part, dict) and isinstance(whole, dict):
        for k, v in part.items():
            if k not in whole:
                return "%s.%s: absent" % (path, k)
            d = missing(v, whole[k], "%s.%s" % (path, k))
            if d is not None:
                return d
        return None
    if isinstance(part, list) and isinstance(whole, list) and len(part) == len(whole):
        for i, (x, y) in enumerate(zip(part, whole)):
            d = missing(x, y, "%s[%d]" % (path, i))
            if d is not None:
                return d
        return None
    return difference(part, whole, path)


def run(cmd, ok_codes=(0,)):
    """Runs cmd, forwarding its stderr. Returns (exit code, stdout); raises when the exit
    code is not in ok_codes (a crash, a sanitizer abort, bad usage)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       errors="replace")
    if p.stderr:
        sys.stderr.write(p.stderr)
    if p.returncode not in ok_codes:
        raise RuntimeError("%s exited with %d" % (" ".join(cmd[:3]) + " ...", p.returncode))
    return p.returncode, p.stdout
