#!/usr/bin/env bash
# Line and branch coverage (STYLE R23): builds the `coverage` preset, runs the whole
# ctest suite, and prints gcovr's summary per file for the library code (core/,
# storage/, net/; tests, benchmarks and generated code excluded). Not part of
# tests/run.sh: it is a report, and its numbers are read, not gated.
#
# Lines holding only a TS_ASSERT / TS_DASSERT are excluded: their failing side is a
# programmer error that no test may reach (tests that expect an abort run in a child
# that never writes its counters), so it would only hide the real decisions.
#
#   ./tests/coverage.sh            summary on stdout
#   ./tests/coverage.sh --html     also build/coverage/coverage.html
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh >/dev/null
cmake --preset coverage >/dev/null
cmake --build build/coverage -j "$(nproc)"
find build/coverage -name '*.gcda' -delete
ctest --test-dir build/coverage -j "$(nproc)" --output-on-failure | tail -3
args=(--root . --object-directory build/coverage
      --filter 'core/' --filter 'storage/' --filter 'net/proto/proto\.c'
      --exclude-unreachable-branches --exclude-lines-by-pattern '^\s*TS_D?ASSERT\(.*\);\s*$'
      --print-summary)
if [ "${1:-}" = "--html" ]; then
    args+=(--html-details build/coverage/coverage.html)
fi
gcovr "${args[@]}" --branches
