#!/bin/sh
# run_short.sh BUILD_DIR SECONDS: a short, bounded fuzz session of fuzz_frame.
#
# Configures and builds nothing: BUILD_DIR must be a TS_FUZZ=ON build (preset `fuzz`)
# in which fuzz_frame and fuzz_seed_corpus are already built. Writes a fresh seed
# corpus into a temporary directory, fuzzes for SECONDS with a 2 GiB RSS limit, prints a
# summary (runs, exec/s, coverage) and exits 0, or 1 when the fuzzer found a crash, a
# leak, a timeout or an out-of-memory input (its reproducer is kept under
# BUILD_DIR/tests/fuzz/artifacts/ with the log), or 2 on a usage or setup error.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR SECONDS" >&2
    exit 2
fi
build=$1
seconds=$2
case $seconds in
    '' | *[!0-9]*) echo "run_short.sh: SECONDS must be a whole number" >&2; exit 2 ;;
esac

fuzzer=$build/tests/fuzz/fuzz_frame
seeder=$build/tests/fuzz/fuzz_seed_corpus
for exe in "$fuzzer" "$seeder"; do
    if [ ! -x "$exe" ]; then
        echo "run_short.sh: $exe is missing: build it first, e.g." >&2
        echo "  cmake --preset fuzz && cmake --build build/fuzz --target fuzz_frame fuzz_seed_corpus" >&2
        exit 2
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT INT TERM
artifacts=$build/tests/fuzz/artifacts
mkdir -p "$work/corpus" "$artifacts" || exit 2

"$seeder" "$work/corpus" >/dev/null || { echo "run_short.sh: seed corpus failed" >&2; exit 2; }
seeds=$(ls "$work/corpus" | wc -l)

log=$work/fuzz.log
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$work/corpus" >"$log" 2>&1
rc=$?

# libFuzzer's last status line looks like
#   #123456 DONE   cov: 1234 ft: 5678 corp: 210/40Kb lim: 4096 exec/s: 4115 rss: 120Mb
status=$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED)' "$log" | tail -n 1)
runs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log")
speed=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log")
cov=$(echo "$status" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
ft=$(echo "$status" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
corp=$(echo "$status" | sed -n 's/.*corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p')
rss=$(sed -n 's/^stat::peak_rss_mb:[[:space:]]*//p' "$log")
# "INFO: Loaded 1 modules   (9876 inline 8-bit counters): ..." gives the edges there are.
edges=$(sed -n 's/^INFO: Loaded 1 modules *(\([0-9]*\) inline 8-bit counters).*/\1/p' "$log")

echo "fuzz_frame: ${seconds}s, ${seeds} seeds, runs ${runs:-?}, exec/s ${speed:-?}," \
     "cov ${cov:-?}/${edges:-?} edges, ft ${ft:-?}, corpus ${corp:-?}, peak rss ${rss:-?} MB"

if [ $rc -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY: ' "$log"; then
    cp "$log" "$artifacts/fuzz.log"
    echo "fuzz_frame: FAILED (exit $rc); log: $artifacts/fuzz.log" >&2
    grep -E 'ERROR:|runtime error|SUMMARY:|Test unit written to|artifact_prefix' "$log" | head -n 20 >&2
    echo "reproduce: $fuzzer <artifact>" >&2
    exit 1
fi
echo "fuzz_frame: OK"
exit 0
