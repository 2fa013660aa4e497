#!/usr/bin/env bash
# tessera_admin: `tessera-admin wal dump|check` against a known log and damaged copies.
#
#   tessera_admin_test.sh TESSERA_ADMIN WAL_FIXTURE [BTREE_FIXTURE]
#
# wal_fixture writes the same log on every run (same batches, same offsets), so each
# case gets a fresh copy in its own directory under one mktemp -d, removed at the end:
#   usage      exit codes and messages of the command line (2 on every usage error)
#   empty      an empty directory is a sound, empty log, and stays empty
#   clean      dump lists every record (count, types, aligned columns, the first record's
#              position), --json gives the same records as JSON, check says ok with the
#              right counts and no torn tail
#   torn       garbage after the last batch: reported as a torn tail, check still exits 0,
#              and inspecting twice reports it twice (inspection cuts nothing)
#   flip       a bit flipped in a batch that is not the log's last: exit 1 naming the file,
#              the offset and the group; in segment 1, and early in the last segment
#   flip-last  a bit flipped in the last batch cannot be told from a torn write (wal.h):
#              reported as a torn tail, that batch dropped, exit 0
#   btree      (with BTREE_FIXTURE) usage errors; a zero-byte file was never checkpointed;
#              check and stat (text and --json) of a known tree with deleted keys (the
#              fixture's keys, height, tree bytes, freelist chain pages and free pages;
#              every page accounted for); a byte of its root overwritten: exit 1 naming
#              the file and the page
# Prints "N passed, M failed" (checks). Exits 0 when all passed, 1 otherwise, 77 when
# io_uring is not available.
set -u

admin=${1:?usage: tessera_admin_test.sh TESSERA_ADMIN WAL_FIXTURE}
fixture=${2:?usage: tessera_admin_test.sh TESSERA_ADMIN WAL_FIXTURE}
btree_fixture=${3:-}
tmp=$(mktemp -d /tmp/tessera_admin.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "tessera_admin_test: FAIL: $*"; }

# is NAME GOT WANT
is() { if [ "$2" = "$3" ]; then pass; else fail "$1: got '$2', expected '$3'"; fi; }
# has NAME FILE ERE / lacks NAME FILE ERE
has() { if grep -qE -- "$3" "$2"; then pass; else fail "$1: /$3/ not in $(head -c 300 "$2")"; fi; }
lacks() { if grep -qE -- "$3" "$2"; then fail "$1: /$3/ found"; else pass; fi; }
# records FILE: the data lines of a text dump (all but the header)
records() { tail -n +2 "$1" | wc -l; }

# run OUT ARGS...: runs tessera-admin; OUT.out, OUT.err and OUT.rc keep what it did.
run() {
    local out=$1
    shift
    "$admin" "$@" >"$out.out" 2>"$out.err"
    echo $? >"$out.rc"
}

# expect NAME OUT CODE [TEXT out|err]...: the exit code, then fixed strings in the output.
expect() {
    local name=$1 out=$2 code=$3
    shift 3
    if [ "$(cat "$out.rc")" -ne "$code" ]; then
        fail "$name: exit $(cat "$out.rc"), expected $code; stderr: $(head -c 400 "$out.err")"
        return
    fi
    while [ $# -ge 2 ]; do
        if ! grep -qF -- "$1" "$out.$2"; then
            fail "$name: '$1' not in std$2: $(head -c 400 "$out.$2")"
            return
        fi
        shift 2
    done
    pass
}

# ------------------------------------------------------------------ usage
u=$tmp/usage
run "$u"
expect "no arguments" "$u" 2 "usage: tessera-admin" err
run "$u" --help
expect "--help" "$u" 0 "wal dump [--json] DIR" out "wal check DIR" out "btree check FILE" out \
    "btree stat [--json] FILE" out
run "$u" help
expect "help" "$u" 0 "usage: tessera-admin" out
run "$u" wal --help
expect "wal --help" "$u" 0 "tessera-admin wal check DIR" out
run "$u" wal
expect "wal alone" "$u" 2 "usage: tessera-admin wal" err
run "$u" wal dump --help
expect "wal dump --help" "$u" 0 "--json" out
run "$u" wal check --help
expect "wal check --help" "$u" 0 "Exit codes" out
run "$u" frobnicate
expect "unknown command" "$u" 2 "unknown command 'frobnicate'" err
run "$u" wal frob "$tmp"
expect "unknown wal command" "$u" 2 "unknown wal command 'frob'" err
run "$u" wal check
expect "missing DIR" "$u" 2 "missing DIR" err
run "$u" wal check "$tmp" "$tmp"
expect "extra argument" "$u" 2 "unexpected argument" err
run "$u" wal dump --bogus "$tmp"
expect "unknown option" "$u" 2 "unknown option '--bogus'" err
run "$u" wal check --json "$tmp"
expect "check has no --json" "$u" 2 "unknown option '--json'" err
run "$u" wal check "$tmp/nowhere"
expect "no such DIR" "$u" 2 "is not a directory" err
run "$u" btree stat "$tmp/file"
expect "btree stat of a missing file" "$u" 2 "is not a regular file" err

# ------------------------------------------------------------------ empty
mkdir "$tmp/empty"
e=$tmp/emptyrun
run "$e" wal check "$tmp/empty"
expect "empty check" "$e" 0 "records: 0 (empty log)" out "torn tail: none" out
run "$e" wal dump "$tmp/empty"
expect "empty dump" "$e" 0 "SEGMENT" out
is "empty dump lists nothing" "$(records "$e.out")" 0
is "inspecting left the empty directory empty" "$(ls -A "$tmp/empty")" ""

# ------------------------------------------------------------------ clean
# make_log NAME ARGS...: a fresh fixture log in $tmp/NAME; the fixture's stdout in
# $tmp/NAME.fx ("expect TYPE COUNT" lines, then what it damaged).
make_log() {
    local name=$1
    shift
    mkdir "$tmp/$name"
    "$fixture" "$tmp/$name" "$@" >"$tmp/$name.fx"
    local rc=$?
    if [ $rc -eq 77 ]; then
        echo "tessera_admin_test: io_uring unavailable: skipped"
        exit 77
    fi
    if [ $rc -ne 0 ]; then
        fail "wal_fixture $name $*: exit $rc"
        echo "$passed passed, $failed failed"
        exit 1
    fi
}
made() { awk -v t="$2" '$1 == "expect" && $2 == t { print $3 }' "$tmp/$1.fx"; }
types="ENTRY HARD_STATE TRUNCATE COMPACT SNAPSHOT REMOVE"

make_log clean
c=$tmp/cleanrun
run "$c" wal check "$tmp/clean"
expect "clean check" "$c" 0 "wal check $tmp/clean: ok" out "torn tail: none" out \
    "segments: 3 (0000000000000001.wal .. 0000000000000003.wal)" out \
    "groups: 3 live, 4 named in the log" out
total=$(awk '$1 == "records:" { print $2 }' "$c.out")
sum=0
for t in $types; do
    is "check counts the $t records the fixture made" \
        "$(awk -v t="$t" '$1 == t { print $2 }' "$c.out")" "$(made clean "$t")"
    sum=$((sum + $(made clean "$t")))
done
# Segments 2 and 3 each open with one GROUP_STATE record per live group (1, 2 and 3).
states=$(awk '$1 == "GROUP_STATE" { print $2 }' "$c.out")
is "GROUP_STATE records" "$states" 6
# Every write is one batch, framed by a BATCH record.
batches=$(awk '$1 == "BATCH" { print $2 }' "$c.out")
is "BATCH records: at least one per segment" "$((batches >= 3))" 1
is "records: made + GROUP_STATE + BATCH" "$total" $((sum + states + batches))

d=$tmp/dumprun
run "$d" wal dump "$tmp/clean"
expect "clean dump" "$d" 0 "3 segments, 3 groups" err
has "dump header" "$d.out" '^SEGMENT +OFFSET +LSN +TYPE +GROUP +TERM +INDEX +LEN$'
is "dump lists every record" "$(records "$d.out")" "$total"
is "dump columns are aligned" "$(awk '{ print length($0) }' "$d.out" | sort -u | wc -l)" 1
for t in $types; do
    is "dump lists the $t records" "$(awk -v t="$t" 'NR > 1 && $4 == t' "$d.out" | wc -l)" \
        "$(made clean "$t")"
done
# The first batch's BATCH record follows the 32-byte segment header; then, at offset and
# LSN 72, the first entry.
has "first batch" "$d.out" '^0000000000000001 +32 +32 +BATCH +0 +- +- +16$'
has "first record" "$d.out" '^0000000000000001 +72 +72 +ENTRY +1 +1 +1 +[0-9]+$'
has "no term or index: '-'" "$d.out" ' REMOVE +9 +- +- +0$'
has "GROUP_STATE: hard state's term, snap index" "$d.out" \
    '^0000000000000002 +72 +[0-9]+ +GROUP_STATE +[123] +[0-9]+ +[0-9]+ +[0-9]+$'

j=$tmp/jsonrun
run "$j" wal dump --json "$tmp/clean"
expect "clean dump --json" "$j" 0
is "--json gives one object per record" "$(wc -l <"$j.out")" "$total"
first='^\{"segment":1,"offset":72,"lsn":72,"type":"ENTRY","group":1,"term":1,"index":1,'
has "first JSON object" "$j.out" "$first"'"len":[0-9]+\}$'
if command -v python3 >/dev/null; then
    python3 - "$j.out" "$d.out" <<'EOF'
import json, sys
objs = [json.loads(line) for line in open(sys.argv[1])]
rows = [line.split() for line in open(sys.argv[2])][1:]
assert len(objs) == len(rows), (len(objs), len(rows))
keys = ["segment", "offset", "lsn", "type", "group", "term", "index", "len"]
for o, r in zip(objs, rows):
    num = lambda s: None if s == "-" else int(s)
    want = [int(r[0], 16), int(r[1]), int(r[2]), r[3], int(r[4]), num(r[5]), num(r[6]),
            int(r[7])]
    assert [o[k] for k in keys] == want, (o, r)
EOF
    is "every JSON object parses and matches its text line" $? 0
fi

# ------------------------------------------------------------------ torn
make_log torn --tear
read -r _ tseq toff < <(grep '^tear ' "$tmp/torn.fx")
torn="torn tail in $tmp/torn/$tseq.wal at offset $toff"
t=$tmp/tornrun
run "$t" wal check "$tmp/torn"
expect "a torn tail is sound" "$t" 0 "torn tail: wal: $torn" out "records: $total" out \
    "$torn" err
run "$t" wal check "$tmp/torn"
expect "inspecting cut nothing: the torn tail is still there" "$t" 0 "torn tail: wal: $torn" out
run "$t" wal dump "$tmp/torn"
expect "torn dump" "$t" 0 "$torn" err
is "torn dump lists every record" "$(records "$t.out")" "$total"
lacks "the torn tail is reported on stderr only" "$t.out" 'torn'

# ------------------------------------------------------------------ flip
# first_entry SEGMENT N: "offset group" of the Nth ENTRY record of a segment in the dump.
first_entry() {
    awk -v s="$1" 'NR > 1 && $1 == s && $4 == "ENTRY" { print $2, $5 }' "$d.out" | sed -n "$2p"
}
# A bit of the fifth entry of segment 1, past its 24-byte header and 16-byte term and
# index: the segment is not the last, so the log is corrupt.
read -r foff fgroup < <(first_entry 0000000000000001 5)
make_log flip --flip $((foff + 40))
f=$tmp/fliprun
run "$f" wal check "$tmp/flip"
expect "flip check exits 1" "$f" 1 \
    "$tmp/flip/0000000000000001.wal at offset $foff (group $fgroup)" err
lacks "a corrupt log gets no summary" "$f.out" ': ok'
run "$f" wal dump "$tmp/flip"
expect "flip dump exits 1" "$f" 1 "$tmp/flip/0000000000000001.wal at offset $foff" err
is "flip dump stops before the bad batch" \
    "$(awk -v o="$foff" 'NR > 1 && $1 == "0000000000000001" && $2 >= o' "$f.out" | wc -l)" 0

# The first entry of segment 3, the last: valid batches follow it, so it is no torn tail.
read -r loff lgroup < <(first_entry 0000000000000003 1)
make_log flip3 --flip $((loff + 40)) --segment 3
run "$f" wal check "$tmp/flip3"
expect "flip early in the last segment exits 1" "$f" 1 \
    "$tmp/flip3/0000000000000003.wal at offset $loff (group $lgroup)" err

# ------------------------------------------------------------------ flip-last
# The last batch holds only the REMOVE record (its BATCH record is the 40 bytes before
# it): a bit of its group id is flipped.
read -r _ roff _ < <(awk 'NR > 1 && $4 == "REMOVE"' "$d.out")
make_log fliplast --flip $((roff + 16)) --segment 3
run "$f" wal check "$tmp/fliplast"
expect "a flip in the last batch reads as a torn tail" "$f" 0 \
    "torn tail: wal: torn tail in $tmp/fliplast/0000000000000003.wal at offset $((roff - 40))" \
    out "records: $((total - 2))" out
lacks "the last batch's REMOVE is dropped" "$f.out" '^  REMOVE '

# ------------------------------------------------------------------ btree
if [ -n "$btree_fixture" ]; then
    b=$tmp/btree
    run "$b" btree
    expect "btree alone" "$b" 2 "usage: tessera-admin btree" err
    run "$b" btree check
    expect "btree check without FILE" "$b" 2 "missing FILE" err
    run "$b" btree check --json "$tmp"
    expect "btree check has no --json" "$b" 2 "unknown option '--json'" err
    run "$b" btree check "$tmp"
    expect "btree check of a directory" "$b" 2 "is not a regular file" err
    : >"$tmp/zero.tree"
    run "$b" btree check "$tmp/zero.tree"
    expect "a zero-byte tree was never checkpointed" "$b" 0 "never checkpointed" out

    if ! "$btree_fixture" "$tmp/t.tree" >"$tmp/t.fx" 2>"$tmp/t.fxerr"; then
        fail "btree_fixture: $(cat "$tmp/t.fxerr")"
    else
        fx() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/t.fx"; }
        keys=$(fx keys)
        height=$(fx height)
        tbytes=$(fx tree_bytes)
        flpages=$(fx freelist_pages)
        fpages=$(fx free_pages)
        is "the fixture's tree has a freelist chain" "$((flpages >= 1 && fpages >= 1))" 1
        run "$b" btree check "$tmp/t.tree"
        expect "btree check of a sound tree" "$b" 0 "btree check $tmp/t.tree: ok" out \
            "height: $height" out "keys: $keys (" out "page size: 512" out \
            "tree bytes: $tbytes" out ", freelist $flpages, free $fpages)" out
        run "$b" btree stat "$tmp/t.tree"
        expect "btree stat" "$b" 0 "keys: $keys" out "height: $height" out "user_len: 4" out \
            "tree_bytes: $tbytes" out "freelist_pages: $flpages" out "free_pages: $fpages" out
        # stat_of FIELD: a number from the text stat just printed.
        stat_of() { awk -F': ' -v k="$1" '$1 == k { print $2 }' "$b.out"; }
        is "every page is reachable or free" \
            $(($(stat_of meta_pages) + $(stat_of branch_pages) + $(stat_of leaf_pages) + \
                $(stat_of overflow_pages) + $(stat_of freelist_pages) + $(stat_of free_pages))) \
            "$(stat_of page_count)"
        is "tree_bytes is key_bytes + value_bytes" \
            $(($(stat_of key_bytes) + $(stat_of value_bytes))) "$tbytes"
        run "$b" btree stat --json "$tmp/t.tree"
        expect "btree stat --json" "$b" 0 "\"keys\":$keys," out "\"height\":$height," out \
            "\"tree_bytes\":$tbytes," out "\"freelist_pages\":$flpages," out \
            "\"free_pages\":$fpages," out
        is "btree stat --json is one line" "$(wc -l <"$b.out")" 1
        if command -v python3 >/dev/null; then
            python3 - "$b.out" <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))
kinds = ["meta", "branch", "leaf", "overflow", "freelist", "free"]
assert sum(o[k + "_pages"] for k in kinds) == o["page_count"], o
assert o["tree_bytes"] == o["key_bytes"] + o["value_bytes"], o
EOF
            is "btree stat --json parses and accounts for every page" $? 0
        fi
        # A byte in the root (stat names it), within its free space: the CRC no longer holds.
        run "$b" btree stat "$tmp/t.tree"
        root=$(awk -F': ' '$1 == "root_page" { print $2 }' "$b.out")
        printf 'Z' | dd of="$tmp/t.tree" bs=1 seek=$((root * 512 + 300)) conv=notrunc \
            status=none
        run "$b" btree check "$tmp/t.tree"
        expect "a damaged root exits 1" "$b" 1 "btree check: $tmp/t.tree: page $root:" err
        lacks "a corrupt tree gets no summary" "$b.out" ': ok'
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
