#!/usr/bin/env bash
# wal_vs_fio.sh: storage/wal (bench/micro/wal_bench) side by side with fio, on the same
# file system, in one invocation, and the ratios against the WAL issue's goals:
#   - single-record batches/s  >= 90% of fio's 4 KiB write+fdatasync IOPS;
#   - large-batch MB/s         >= 90% of fio's 1 MiB sequential write+fdatasync MB/s;
#   - 1,000 appenders of 256 B >= 200,000 appends/s on one shard.
#
# Order. This VM's disk is shared and its speed drifts by several times within minutes,
# far more than the effects measured, so fio and the WAL are interleaved: a survey of
# fio's file layouts (once), then --rounds rounds, each of fio's three anchor jobs and
# one wal_bench run of every configuration (--runs 1), in ABBA order (fio first in odd
# rounds, the WAL first in even ones) so that a steady drift hits both alike. Reported:
# medians over the rounds for both sides (the WAL table adds MAD, min and max), and each
# ratio both as the ratio of the medians and as the rounds' paired ratios.
#
# fio: ioengine=psync, iodepth 1, rw=write, fdatasync=1 (an fdatasync after every
# write), end_fsync=1, one job, one file in a temporary directory next to the WAL's.
# Why psync: the anchor is the plain pwrite + fdatasync loop that a log does at queue
# depth 1. At iodepth 1 fio's io_uring engine issues the same write, waits for it, then
# the fsync, so it measures the same two device round trips through another syscall
# path (the WAL links its write and fdatasync in one submission, which saves one
# user-kernel trip: microseconds against the hundreds of a flush). The survey runs one
# io_uring job as a cross-check.
#
# File layouts (what fdatasync has to make durable besides the data):
#   fresh      fallocate=native: fio calls fallocate(fd, 0, 0, size) before writing,
#              exactly what the WAL does for each 64 MiB segment (disk_uring's allocate).
#              On ext4 that leaves "unwritten" extents: the first write to each block
#              converts its extent, so fdatasync commits the journal as well. The file
#              is larger than a job can write (no time_based), so every write lands in
#              unwritten space, as the WAL's appends do.            <- the anchors
#   append     fallocate=none: the file grows with each write, so each fdatasync also
#              commits the allocation and the new size.                  (survey)
#   overwrite  a 512 MiB file written and synced first (dd), then written again
#              (time_based): fdatasync has only data to write. The WAL would see this
#              if it zero-filled or recycled its segments; with records much smaller
#              than a page it is close to it anyway, since a block is converted once
#              and then rewritten by the following batches.   (anchor for 4 KiB, survey
#              for 1 MiB)
#
# Usage: bench/compare/wal_vs_fio.sh [--dir DIR] [--rounds N] [--runtime S] [--quick]
#                                    [--no-build] [--date YYYY-MM-DD] [-- wal_bench flags]
#   --dir      where both write (default /tmp): one file system for both
#   --rounds   interleaved rounds (default 3; --quick: 2)
#   --runtime  seconds per fio job (default 5; --quick: 2)
#   --quick    wal_bench --quick and short fio jobs: a ~1 minute sanity run
#   --date     the date in the RESULTS.md rows (default today)
# Default: about 4 minutes. Prints fio's table, the WAL's table, the ratios and the rows
# for bench/RESULTS.md.
set -euo pipefail

orig_args=("$@")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=/tmp
rounds=""
runtime=""
quick=0
build=1
date=$(date +%F)
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --runtime) runtime=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --no-build) build=0; shift ;;
        --date) date=$2; shift 2 ;;
        --) shift; bench_args=("$@"); break ;;
        -h|--help) sed -n '2,48p' "$0"; exit 0 ;;
        *) echo "wal_vs_fio.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$quick" = 1 ]; then
    rounds=${rounds:-2}
    runtime=${runtime:-2}
    bench_args=(--quick ${bench_args[@]+"${bench_args[@]}"})
fi
rounds=${rounds:-3}
runtime=${runtime:-5}
case "$rounds$runtime" in
    *[!0-9]*) echo "wal_vs_fio.sh: --rounds and --runtime take whole numbers" >&2; exit 2 ;;
esac
[ "$rounds" -ge 1 ] && [ "$rounds" -le 20 ] || { echo "wal_vs_fio.sh: 1 <= rounds <= 20" >&2; exit 2; }

py=/usr/bin/python3
bench=$root/build/release/bench/micro/wal_bench
command -v fio >/dev/null || { echo "wal_vs_fio.sh: fio not found (apt-get install fio)" >&2; exit 1; }
[ -x "$py" ] || { echo "wal_vs_fio.sh: $py not found" >&2; exit 1; }
if [ "$build" = 1 ]; then
    (cd "$root" && cmake --preset release >/dev/null &&
     cmake --build build/release --target wal_bench >/dev/null)
fi
[ -x "$bench" ] || { echo "wal_vs_fio.sh: $bench not built" >&2; exit 1; }

work=$(mktemp -d "$dir/wal_vs_fio.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/out
mkdir -p "$out"

# Commits the journal (and the discards of deleted files, on a file system mounted with
# discard) so that a job does not pay for the previous one's cleanup.
settle() {
    sync -f "$work"
}

# fio_job NAME BS LAYOUT [ENGINE]: one fio job, its JSON in $out/NAME.json.
fio_job() {
    local name=$1 bs=$2 layout=$3 engine=${4:-psync}
    local file=$work/fio.dat
    local args=(--name="$name" --filename="$file" --rw=write --bs="$bs" --ioengine="$engine"
                --iodepth=1 --fdatasync=1 --end_fsync=1 --runtime="$runtime"
                --output-format=json --output="$out/$name.json")
    rm -f "$file"
    settle
    case $layout in
        fresh)
            # Larger than a job can write, so that no block is written twice.
            fio "${args[@]}" --size=$([ "$bs" = 4k ] && echo 1G || echo 16G) --fallocate=native ;;
        append)
            fio "${args[@]}" --size=1G --fallocate=none ;;
        overwrite)
            dd if=/dev/zero of="$file" bs=1M count=512 conv=fsync status=none
            fio "${args[@]}" --size=512M --fallocate=none --time_based ;;
    esac
    rm -f "$file"
    echo "  fio $name done" >&2
}

anchors() {
    fio_job "r$1_4k_fresh" 4k fresh
    fio_job "r$1_4k_overwrite" 4k overwrite
    fio_job "r$1_1m_fresh" 1M fresh
}

wal() {
    settle
    echo "  wal_bench round $1: ${bench_args[*]+${bench_args[*]}} --runs 1" >&2
    "$bench" --dir "$work" ${bench_args[@]+"${bench_args[@]}"} --runs 1 \
        --json-out "$out/wal_r$1.json" > "$out/wal_r$1.txt"
}

echo "wal_vs_fio: $(date -u +%Y-%m-%dT%H:%M:%SZ), kernel $(uname -r), $(nproc) CPUs," \
     "$(df -PT "$work" | awk 'NR==2 {print $2 " on " $1}'), $(fio --version)," \
     "fio jobs of ${runtime} s, $rounds rounds" | tee "$out/header.txt" >&2
echo "survey of fio's layouts" >&2
fio_job s_4k_append 4k append
fio_job s_4k_fresh_uring 4k fresh io_uring
fio_job s_1m_overwrite 1M overwrite
for r in $(seq 1 "$rounds"); do
    echo "round $r" >&2
    if [ $((r % 2)) = 1 ]; then anchors "$r"; wal "$r"; else wal "$r"; anchors "$r"; fi
done

# The command as given, less --date (not part of what was measured).
cmd="bench/compare/wal_vs_fio.sh"
skip=0
for a in ${orig_args[@]+"${orig_args[@]}"}; do
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    if [ "$a" = --date ]; then skip=1; continue; fi
    cmd="$cmd $a"
done

"$py" - "$out" "$rounds" "$cmd" "$date" <<'PYEOF'
import json, os, statistics, sys

out, rounds, cmd, date = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
GOAL_FRACTION = 0.90
GOAL_APPENDS = 200000.0
R = range(1, rounds + 1)


def fio(name):
    """IOPS, MB/s (10^6 bytes) and fdatasync latency percentiles (us) of one job."""
    with open(os.path.join(out, name + ".json")) as f:
        job = json.load(f)["jobs"][0]
    w = job["write"]
    sync = job.get("sync", {}).get("lat_ns", {}).get("percentile", {})
    return {"iops": w["iops"], "mbs": w["bw_bytes"] / 1e6,
            "p50": sync.get("50.000000", 0) / 1e3, "p99": sync.get("99.000000", 0) / 1e3}


def med(v):
    return statistics.median(v)


with open(os.path.join(out, "header.txt")) as f:
    print(f.read().strip())
print("\n== fio: rw=write, psync unless noted, iodepth 1, fdatasync after every write ==")
print("%-20s %4s %-10s %-8s %10s %9s %12s %12s" % (
    "job", "bs", "layout", "engine", "IOPS", "MB/s", "sync p50 us", "sync p99 us"))
jobs = [("s_4k_append", "4k", "append", "psync"), ("s_4k_fresh_uring", "4k", "fresh", "io_uring"),
        ("s_1m_overwrite", "1M", "overwrite", "psync")]
for r in R:
    jobs += [("r%d_4k_fresh" % r, "4k", "fresh", "psync"),
             ("r%d_4k_overwrite" % r, "4k", "overwrite", "psync"),
             ("r%d_1m_fresh" % r, "1M", "fresh", "psync")]
fres = {}
for name, bs, layout, engine in jobs:
    x = fres[name] = fio(name)
    print("%-20s %4s %-10s %-8s %10.0f %9.2f %12.0f %12.0f" % (
        name, bs, layout, engine, x["iops"], x["mbs"], x["p50"], x["p99"]))
anchor = {
    "4k_fresh": [fres["r%d_4k_fresh" % r]["iops"] for r in R],
    "4k_overwrite": [fres["r%d_4k_overwrite" % r]["iops"] for r in R],
    "1m_fresh": [fres["r%d_1m_fresh" % r]["mbs"] for r in R],
}
print("anchors, median of %d rounds: 4k fresh %.0f IOPS, 4k overwrite %.0f IOPS, "
      "1M fresh %.1f MB/s" % (rounds, med(anchor["4k_fresh"]), med(anchor["4k_overwrite"]),
                              med(anchor["1m_fresh"])))

wal = {}  # config key -> list of per-round results
order = []
for r in R:
    with open(os.path.join(out, "wal_r%d.json" % r)) as f:
        for x in json.load(f)["results"]:
            key = (x["workload"], x["record_bytes"], x["groups"], x["batch"], x["appenders"])
            if key not in wal:
                wal[key] = []
                order.append(key)
            wal[key].append(x)
with open(os.path.join(out, "wal_r1.txt")) as f:
    first = f.readline().strip()
print("\n== wal_bench, one run per round, %d rounds ==" % rounds)
print(first.replace("1 runs", "1 run per round"))
print("%-9s %6s %6s %6s %6s %11s %9s %11s %11s %9s %9s %9s %9s %8s %8s %9s" % (
    "workload", "bytes", "groups", "k|N", "rounds", "appends/s", "MAD", "min", "max", "pay MB/s",
    "log MB/s", "fsyncs/s", "rec/fsync", "p50 us", "p99 us", "p99.9 us"))


def per_round(key, metric):
    return [x[metric]["median"] for x in wal[key]]


for key in order:
    a = per_round(key, "appends_per_s")
    m = med(a)
    mad = med([abs(v - m) for v in a])
    lat = lambda p: med([x["latency_us"][p] for x in wal[key]])
    print("%-9s %6d %6d %6d %6d %11.0f %9.0f %11.0f %11.0f %9.2f %9.2f %9.0f %9.1f %8.0f %8.0f %9.0f" % (
        key[0], key[1], key[2], key[3] or key[4], len(a), m, mad, min(a), max(a),
        med(per_round(key, "payload_mb_per_s")), med(per_round(key, "log_mb_per_s")),
        med(per_round(key, "fsyncs_per_s")), med(per_round(key, "records_per_fsync")),
        lat("p50"), lat("p99"), lat("p999")))
print("appends/s: median over rounds (MAD, min, max); other columns: medians over rounds of "
      "each round's figure")

rows = []


def ratio(label, key, metric, unit, anchor_key, anchor_unit, goal, anchor_const=None):
    if key not in wal:
        return
    t = per_round(key, metric)
    an = [anchor_const] * rounds if anchor_const else anchor[anchor_key]
    x = med(t) / med(an)
    paired = ", ".join("%.2f" % (a / b) for a, b in zip(t, an))
    verdict = "" if goal is None else (" MEETS >= %.2f" % goal if x >= goal else " MISSES >= %.2f" % goal)
    print("%-62s %10.1f / %10.1f = %5.2f (rounds: %s)%s" % (label, med(t), med(an), x, paired, verdict))
    rows.append("| %s | %.1f %s | %.1f %s | %.2f | %s | `%s` |" % (
        label, med(t), unit, med(an), anchor_unit, x, date, cmd))


print("\n== ratios, Tessera / anchor (> 1: Tessera better) ==")
for size in (64, 256, 4096, 65536):
    key = ("batch", size, 1, 1, 0)
    ratio("WAL 1-record batches of %d B / fio 4 KiB fdatasync, fresh" % size, key,
          "appends_per_s", "batches/s", "4k_fresh", "IOPS", GOAL_FRACTION)
    ratio("WAL 1-record batches of %d B / fio 4 KiB fdatasync, overwrite" % size, key,
          "appends_per_s", "batches/s", "4k_overwrite", "IOPS", None)
ratio("WAL batches of 1024 x 64 KiB / fio 1 MiB fdatasync, fresh", ("batch", 65536, 1, 1024, 0),
      "payload_mb_per_s", "MB/s", "1m_fresh", "MB/s", GOAL_FRACTION)
ratio("WAL batches of 256 x 64 KiB / fio 1 MiB fdatasync, fresh", ("batch", 65536, 1, 256, 0),
      "payload_mb_per_s", "MB/s", "1m_fresh", "MB/s", GOAL_FRACTION)
ratio("WAL batches of 16 x 64 KiB (1 MiB) / fio 1 MiB fdatasync, fresh", ("batch", 65536, 1, 16, 0),
      "payload_mb_per_s", "MB/s", "1m_fresh", "MB/s", None)
for key in order:
    if key[0] == "appenders" and key[1] == 256:
        ratio("WAL %d appenders x 256 B, %d groups / 200,000 appends/s goal" % (key[4], key[2]),
              key, "appends_per_s", "appends/s", None, "appends/s (goal)",
              1.0 if key[4] == 1000 else None, anchor_const=GOAL_APPENDS)

print("\n== rows for bench/RESULTS.md ==")
for row in rows:
    print(row)
PYEOF
