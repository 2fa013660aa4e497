#!/usr/bin/env bash
# One command from a fresh Debian machine (root, apt works): installs the dependencies,
# builds the release configuration and shows what Tessera can do today.
#
# Tessera is being built bottom-up (see README.md, "Status"). Today this builds the
# foundation — core/util and the FlatBuffers wire codec — and runs the codec's
# benchmark against flatc's C++ code. When tesserad lands, this script starts a local
# 3-node cluster on loopback and runs a short tessera-bench against it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing dependencies (apt)"
./deploy/install-deps.sh

echo "== building (release)"
cmake --preset release >/dev/null
cmake --build build/release -j "$(nproc)"

echo
echo "== built"
for f in build/release/core/util/libts_util.a build/release/net/proto/libts_proto.a \
         build/release/bench/micro/proto_bench; do
    [ -e "$f" ] && echo "  $f"
done

echo
echo "== wire codec benchmark: Tessera's C codec vs flatc's C++ code (encode + verify + decode)"
./build/release/bench/micro/proto_bench --runs 5

cat <<'TXT'

== what next
  Run the whole test suite:        ./tests/run.sh
  Run one test binary:             ./build/release/tests/unit/net/proto/unit_net_proto
  Run one Criterion test:          ./build/release/tests/unit/net/proto/unit_net_proto \
                                       --filter 'proto_builder/put_request_reads_back'
  Benchmarks and their ratios:     bench/RESULTS.md
  The wire schema:                 net/proto/tessera.fbs
TXT
