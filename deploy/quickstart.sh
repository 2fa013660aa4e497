#!/usr/bin/env bash
# One command from a fresh Debian machine (root, apt works): installs the dependencies,
# builds the release configuration and shows what Tessera can do today.
#
# Tessera is being built bottom-up (see README.md, "Status"). Today this builds
# everything and shows what runs: the wire codec against flatc's C++ code, the WAL's
# group commit on this machine's disk, Raft's throughput in memory, a seeded simulated
# cluster under faults, and tesserad (the shards and the transport: it answers Ping)
# driven with pipelined pings over loopback. When the key-value server lands (issue 7),
# this script starts a local 3-node cluster and runs a short tessera-bench.
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

echo
echo "== Raft in memory: 3 replicas, batched 64-byte entries (about 20 s)"
./build/release/bench/micro/raft_bench --only-throughput --runs 3 --entries 1000000

echo
echo "== a simulated cluster under faults: 200 seeds (crashes, partitions, lost writes)"
./build/release/tests/sim/tessera-sim --seeds 200

echo
echo "== tesserad: one node, 2 shards, answering pipelined pings on loopback"
log=$(mktemp /tmp/tesserad.XXXXXX)
./build/release/tools/tesserad --listen 127.0.0.1:0 --shards 2 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
cat "$log"
port=$(sed -nE 's/.*:([0-9]+) with.*/\1/p' "$log")
./build/release/bench/micro/transport_bench --addr "127.0.0.1:$port" --conns 16 --depth 16 \
    --requests 1000000 --server-pid "$pid"
kill -TERM "$pid"
wait "$pid" && echo "tesserad stopped cleanly on SIGTERM"
rm -f "$log"

cat <<'TXT'

== what next
  Run the whole test suite:        ./tests/run.sh
  Run one test binary:             ./build/release/tests/unit/net/proto/unit_net_proto
  Run one Criterion test:          ./build/release/tests/unit/net/proto/unit_net_proto \
                                       --filter 'proto_builder/put_request_reads_back'
  Inspect a shard's log:           ./build/release/tools/tessera-admin wal dump DIR
                                   ./build/release/tools/tessera-admin wal check DIR
  WAL vs fio, side by side:        bench/compare/wal_vs_fio.sh
  Transport vs Redis, side by side: bench/compare/transport_vs_redis.sh
  Replay one simulated run:        ./build/release/tests/sim/tessera-sim --seed 42 --trace
  Soak the simulator:              ./build/release/tests/sim/tessera-sim --long --seconds 600
  Benchmarks and their ratios:     bench/RESULTS.md
  The wire schema:                 net/proto/tessera.fbs
TXT
