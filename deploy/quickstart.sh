#!/usr/bin/env bash
# One command from a fresh Debian machine (root, apt works): installs the dependencies,
# builds the release configuration and shows what Tessera can do today.
#
# Tessera is being built bottom-up (see README.md, "Status"). Today this builds the
# foundation — core/util, the FlatBuffers wire codec, the storage completion layer and
# the shard's write-ahead log — and runs their benchmarks: the codec against flatc's
# C++ code, the WAL's group commit on this machine's disk. When tesserad lands, this
# script starts a local 3-node cluster on loopback and runs a short tessera-bench.
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
         build/release/storage/wal/libts_wal.a build/release/tools/tessera-admin \
         build/release/bench/micro/proto_bench build/release/bench/micro/wal_bench; do
    [ -e "$f" ] && echo "  $f"
done

echo
echo "== wire codec benchmark: Tessera's C codec vs flatc's C++ code (encode + verify + decode)"
./build/release/bench/micro/proto_bench --runs 5

echo
echo "== write-ahead log: group commit on this disk (about 20 s)"
./build/release/bench/micro/wal_bench --quick

cat <<'TXT'

== what next
  Run the whole test suite:        ./tests/run.sh
  Run one test binary:             ./build/release/tests/unit/net/proto/unit_net_proto
  Run one Criterion test:          ./build/release/tests/unit/net/proto/unit_net_proto \
                                       --filter 'proto_builder/put_request_reads_back'
  Inspect a shard's log:           ./build/release/tools/tessera-admin wal dump DIR
                                   ./build/release/tools/tessera-admin wal check DIR
  WAL vs fio, side by side:        bench/compare/wal_vs_fio.sh
  Benchmarks and their ratios:     bench/RESULTS.md
  The wire schema:                 net/proto/tessera.fbs
TXT
