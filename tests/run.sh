#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs dependencies, builds the
# debug (AddressSanitizer + UndefinedBehaviorSanitizer) and release configurations,
# runs every ctest test in both, then a short bounded libFuzzer session on the frame
# decoder (clang build). Prints Criterion's and ctest's summary lines and exits non-zero
# on any failure.
#
#   ./tests/run.sh              everything
#   TS_PRESETS=debug ./tests/run.sh     one configuration only
#   TS_FUZZ_SECONDS=0 ./tests/run.sh    skip the fuzz session
set -uo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh || { echo "tests/run.sh: installing dependencies failed" >&2; exit 1; }

jobs=$(nproc)
presets=${TS_PRESETS:-debug release}
fuzz_seconds=${TS_FUZZ_SECONDS:-30}
failed=0
total_pass=0
total_fail=0
summaries=()

run_preset() {
    local preset=$1 dir=build/$1
    echo "=== $preset: configure and build"
    cmake --preset "$preset" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j "$jobs" || return 1
    echo "=== $preset: ctest"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 | tee "$dir.ctest.log"
    local rc=${PIPESTATUS[0]}
    local log=$dir/Testing/Temporary/LastTest.log
    if [ -f "$log" ]; then
        grep -h "Synthesis:" "$log" | sed "s/^/[$preset] /" || true
    fi
    local line
    line=$(grep -E "tests passed, [0-9]+ tests failed out of" "$dir.ctest.log" | tail -1)
    summaries+=("[$preset] $line")
    if [[ $line =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
        total_fail=$((total_fail + BASH_REMATCH[1]))
        total_pass=$((total_pass + BASH_REMATCH[2] - BASH_REMATCH[1]))
    fi
    return "$rc"
}

for preset in $presets; do
    mkdir -p build
    if ! run_preset "$preset"; then
        echo "=== $preset: FAILED"
        failed=1
        total_fail=$((total_fail > 0 ? total_fail : 1))
    fi
done

if [ "$fuzz_seconds" -gt 0 ]; then
    echo "=== fuzz: $fuzz_seconds s on the frame decoder"
    if cmake --preset fuzz >build/fuzz.configure.log 2>&1 &&
        cmake --build build/fuzz -j "$jobs" --target fuzz_frame fuzz_seed_corpus &&
        tests/fuzz/run_short.sh build/fuzz "$fuzz_seconds"; then
        total_pass=$((total_pass + 1))
        summaries+=("[fuzz] frame decoder: no crash in $fuzz_seconds s")
    else
        echo "=== fuzz: FAILED"
        failed=1
        total_fail=$((total_fail + 1))
    fi
fi

echo
echo "=== summary"
for s in "${summaries[@]}"; do
    echo "$s"
done
echo "total: $total_pass passed, $total_fail failed"
exit "$failed"
