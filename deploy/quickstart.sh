#!/usr/bin/env bash
# One command from a fresh Debian machine (root, apt works): installs the dependencies,
# builds the release configuration and shows what Tessera can do today.
#
# Then it starts a local 3-node cluster on loopback (deploy/cluster.sh), runs 10 s of
# tessera-bench puts and 10 s of linearizable gets against it, prints their summaries
# and shows the CLI. The cluster keeps running for you to try: stop it with
#   TESSERA_CLUSTER_DIR=build/quickstart deploy/cluster.sh stop
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

dir=build/quickstart
export TESSERA_CLUSTER_DIR="$PWD/$dir" TESSERA_BIN="$PWD/build/release/tools"
export TESSERA_BASE_PORT=${TESSERA_BASE_PORT:-7001}
eps="127.0.0.1:$TESSERA_BASE_PORT,127.0.0.1:$((TESSERA_BASE_PORT + 1)),127.0.0.1:$((TESSERA_BASE_PORT + 2))"

echo
echo "== a local 3-node cluster on loopback (2 shards each, 64 ranges, data in $dir)"
./deploy/cluster.sh start 3

echo
echo "== tessera-bench: 10 s of puts, 64 clients, 8-byte keys, 256-byte values"
./build/release/bench/tessera-bench/tessera-bench put --endpoints "$eps" --duration 10 \
    --clients 64 --conns 8 --inflight 1 --key-size 8 --val-size 256 --keyspace 100000

echo
echo "== tessera-bench: 10 s of linearizable gets of those keys, 64 clients"
./build/release/bench/tessera-bench/tessera-bench get --endpoints "$eps" --duration 10 \
    --clients 64 --conns 8 --inflight 1 --key-size 8 --val-size 256 --keyspace 100000

echo
echo "== the CLI"
cli="./build/release/tools/tessera --endpoints $eps"
set -x
$cli put greeting "hello, tessera"
$cli get greeting
$cli --output json get greeting
$cli range "" --prefix --count-only
$cli members --output table
$cli ranges --limit 3
{ set +x; } 2>/dev/null

cat <<'TXT'

== what next
  The cluster is still running:    export TESSERA_ENDPOINTS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
                                   ./build/release/tools/tessera put k v; ./build/release/tools/tessera get k
                                   ./build/release/tools/tessera --help
  Add a 4th node (it joins through the meta range and serves by forwarding; kill %1 stops it):
                                   ./build/release/tools/tesserad --data build/quickstart/n4 \
                                       --listen 127.0.0.1:7004 --join 127.0.0.1:7001 &
  Its status, and stopping it:     TESSERA_CLUSTER_DIR=build/quickstart deploy/cluster.sh status
                                   TESSERA_CLUSTER_DIR=build/quickstart deploy/cluster.sh stop
  Load it:                         ./build/release/bench/tessera-bench/tessera-bench --help
  Run the whole test suite:        ./tests/run.sh
  Run one test binary:             ./build/release/tests/unit/net/proto/unit_net_proto
  Run one Criterion test:          ./build/release/tests/unit/net/proto/unit_net_proto \
                                       --filter 'proto_builder/put_request_reads_back'
  Inspect a shard's log:           ./build/release/tools/tessera-admin wal dump DIR
                                   ./build/release/tools/tessera-admin wal check DIR
  WAL vs fio, side by side:        bench/compare/wal_vs_fio.sh
  Transport vs Redis, side by side: bench/compare/transport_vs_redis.sh
  Codec vs flatc's C++ code:       ./build/release/bench/micro/proto_bench --runs 5
  Raft in memory:                  ./build/release/bench/micro/raft_bench
  Replay one simulated run:        ./build/release/tests/sim/tessera-sim --seed 42 --trace
  Soak the simulator:              ./build/release/tests/sim/tessera-sim --long --seconds 600
  Benchmarks and their ratios:     bench/RESULTS.md
  The wire schema:                 net/proto/tessera.fbs
TXT
