#!/usr/bin/env bash
# Layer check (STYLE R1). Fails when:
#  - anything under core/ includes liburing, jemalloc or another I/O library;
#  - core/ includes from storage/, net/, shard/ or tools/;
#  - storage/ or net/ include from shard/ or tools/;
#  - deploy/ holds C sources.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"
fail=0
report() { echo "layer check: $*" >&2; fail=1; }

hits=$(grep -rnE '^\s*#\s*include\s*[<"](liburing|jemalloc|sys/epoll|pthread)' core 2>/dev/null || true)
[ -z "$hits" ] || report "core/ must not include I/O or thread libraries:
$hits"
hits=$(grep -rnE '^\s*#\s*include\s*"(storage|net|shard|tools)/' core 2>/dev/null || true)
[ -z "$hits" ] || report "core/ must not include upper layers:
$hits"
hits=$(grep -rnE '^\s*#\s*include\s*"(shard|tools)/' storage net 2>/dev/null || true)
[ -z "$hits" ] || report "storage/ and net/ must not include shard/ or tools/:
$hits"
hits=$(find deploy -name '*.[ch]' 2>/dev/null || true)
[ -z "$hits" ] || report "deploy/ holds no C: $hits"
exit $fail
