#!/usr/bin/env bash
# transport_vs_redis.sh: Tessera's transport (tesserad answering Ping, driven by
# bench/micro/transport_bench) side by side with redis-server answering PING (driven by
# redis-benchmark -t ping), both from Debian, in one invocation on loopback, at the same
# connection counts and pipeline depth. Issue 6's goals: with 2 shards, >= 1.5x Redis's
# PING throughput, and no more server CPU per message than Redis.
#
# For each connection count C in 1, 16 and 256 (pipeline depth D = 16, 64-byte payloads):
#   redis   redis-server --port P --save "" --appendonly no (single-threaded, as Debian
#           ships it), redis-benchmark -p P -t ping_mbulk -c C -P D -n N -q (the RESP
#           form of PING; -t ping would also run PING_INLINE and double the server CPU);
#   tessera tesserad --listen 127.0.0.1:P --shards S for S = 1 and 2, transport_bench
#           --conns C --depth D --requests N --payload 64.
# Server CPU per message is the server process's utime + stime (/proc/PID/stat, all its
# threads) over the run, divided by the requests answered. Client and server share this
# VM's two cores, as they would on any one machine; both clients are single-threaded.
#
# Rounds: --rounds R (default 3), each running every configuration once, Redis and
# Tessera alternating first; medians over the rounds are printed, then one line per
# comparison in the format of bench/RESULTS.md.
#
#   bench/compare/transport_vs_redis.sh [--rounds R] [--requests N]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3
requests=2000000
depth=16
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds R] [--requests N]" >&2; exit 2 ;;
    esac
done
build=build/release
tesserad=$build/tools/tesserad
client=$build/bench/micro/transport_bench
for f in "$tesserad" "$client"; do
    [ -x "$f" ] || { echo "missing $f: cmake --preset release && cmake --build $build" >&2; exit 1; }
done
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
    { echo "redis-server and redis-benchmark are needed: deploy/install-deps.sh" >&2; exit 1; }

tmp=$(mktemp -d /tmp/tessera-transport.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cpu_ns() { # utime + stime of a process, in ns
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) * 1e9 / hz }' "/proc/$1/stat"
}

wait_port() { # wait (bounded) until something accepts on 127.0.0.1:$1
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

run_redis() { # conns -> "ops/s cpu_us_per_op"
    local port pid c0 c1 out rate
    port=$(free_port)
    redis-server --port "$port" --save "" --appendonly no --daemonize no \
        --logfile "$tmp/redis.log" &
    pid=$!
    pids+=("$pid")
    wait_port "$port"
    c0=$(cpu_ns "$pid")
    out=$(redis-benchmark -p "$port" -t ping_mbulk -c "$1" -P "$depth" -n "$requests" -q 2>/dev/null |
        tr '\r' '\n' | grep -E '^PING_MBULK' | tail -1)
    c1=$(cpu_ns "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rate=$(echo "$out" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /requests/) print $(i-1) }')
    echo "$rate $(awk -v a="$c0" -v b="$c1" -v n="$requests" 'BEGIN { printf "%.3f", (b - a) / 1e3 / n }')"
}

run_tessera() { # shards conns -> "ops/s cpu_us_per_op"
    local port pid out
    port=$(free_port)
    "$tesserad" --listen "127.0.0.1:$port" --shards "$1" --log-level warn >"$tmp/tesserad.out" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$port"
    out=$("$client" --addr "127.0.0.1:$port" --conns "$2" --depth "$depth" \
        --requests "$requests" --payload 64 --server-pid "$pid")
    kill -TERM "$pid"
    wait "$pid" || { echo "tesserad did not exit cleanly" >&2; cat "$tmp/tesserad.out" >&2; exit 1; }
    echo "$out" | sed -E 's/.*: ([0-9.]+) requests\/s, server CPU ([0-9.]+) us\/request/\1 \2/'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A rate cpu
for round in $(seq 1 "$rounds"); do
    for c in 1 16 256; do
        order=("redis" "t1" "t2")
        if [ $((round % 2)) -eq 0 ]; then order=("t2" "t1" "redis"); fi
        for side in "${order[@]}"; do
            case $side in
            redis) r=$(run_redis "$c") ;;
            t1) r=$(run_tessera 1 "$c") ;;
            t2) r=$(run_tessera 2 "$c") ;;
            esac
            rate[$side,$c]+="${r%% *} "
            cpu[$side,$c]+="${r##* } "
            echo "round $round conns $c $side: ${r%% *} requests/s, ${r##* } us CPU/request" >&2
        done
    done
done

today=$(date +%F)
printf "\n%-8s %-10s %14s %16s\n" conns server "requests/s" "CPU us/request"
for c in 1 16 256; do
    for side in redis t1 t2; do
        rm_=$(echo "${rate[$side,$c]}" | tr ' ' '\n' | grep . | median)
        cm_=$(echo "${cpu[$side,$c]}" | tr ' ' '\n' | grep . | median)
        printf "%-8s %-10s %14.0f %16.3f\n" "$c" "$side" "$rm_" "$cm_"
        eval "R_${side}_$c=$rm_; C_${side}_$c=$cm_"
    done
done
echo
for c in 1 16 256; do
    for s in 1 2; do
        eval "tr=\$R_t${s}_$c; rr=\$R_redis_$c; tc=\$C_t${s}_$c; rc=\$C_redis_$c"
        printf "| Ping, %s conns, pipeline %s, 64 B: Tessera %s shard(s) vs redis-server PING (requests/s) | %.0f | %.0f | %.2f | %s | \`bench/compare/transport_vs_redis.sh\` |\n" \
            "$c" "$depth" "$s" "$tr" "$rr" "$(awk -v a="$tr" -v b="$rr" 'BEGIN { print a / b }')" "$today"
        printf "| same, server CPU per request (us; ratio: Redis / Tessera) | %.3f | %.3f | %.2f | %s | \`bench/compare/transport_vs_redis.sh\` |\n" \
            "$tc" "$rc" "$(awk -v a="$tc" -v b="$rc" 'BEGIN { print b / a }')" "$today"
    done
done
