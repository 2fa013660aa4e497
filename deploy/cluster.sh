#!/usr/bin/env bash
# A local Tessera cluster on loopback, for trying it out and for the benchmarks.
#
#   deploy/cluster.sh start [N]    start N nodes (default 3) on 127.0.0.1:7001..700N
#   deploy/cluster.sh stop         SIGTERM the nodes this script started (their pid files)
#   deploy/cluster.sh status       which nodes run, and the cluster's own status
#   deploy/cluster.sh logs I       the log of node I
#   deploy/cluster.sh endpoints    "127.0.0.1:7001,127.0.0.1:7002,..." of the nodes
#   deploy/cluster.sh pids         the running nodes' pids, one per line
#
# Everything lives under $TESSERA_CLUSTER_DIR (default: ./build/cluster): node I's data
# in nI/, its log in nI.log, its pid in nI.pid. Only those pids are ever signalled.
# Environment: TESSERA_BIN (the build with tesserad and tessera; default build/release,
# else build/debug), TESSERA_BASE_PORT (7001), TESSERA_SHARDS (2), TESSERA_RANGES (64),
# TESSERA_PIN (set to pass --pin).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dir=${TESSERA_CLUSTER_DIR:-$here/build/cluster}
base=${TESSERA_BASE_PORT:-7001}
shards=${TESSERA_SHARDS:-2}
ranges=${TESSERA_RANGES:-64}
if [ -n "${TESSERA_BIN:-}" ]; then
    bin=$TESSERA_BIN
elif [ -x "$here/build/release/tools/tesserad" ]; then
    bin=$here/build/release/tools
else
    bin=$here/build/debug/tools
fi

nodes() { # the node numbers that have a pid file
    local f
    for f in "$dir"/n*.pid; do
        [ -e "$f" ] || continue
        f=${f##*/n}
        echo "${f%.pid}"
    done | sort -n
}

alive() { # pid file I names a running tesserad
    local pid
    pid=$(cat "$dir/n$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q tesserad
}

endpoints() {
    local out="" i
    for i in $(nodes); do
        out="$out${out:+,}127.0.0.1:$((base + i - 1))"
    done
    echo "$out"
}

start() {
    local n=${1:-3} i spec=""
    if [ "$n" -lt 1 ] || [ "$n" -gt 16 ]; then
        echo "cluster.sh: N must be 1..16" >&2
        exit 2
    fi
    [ -x "$bin/tesserad" ] || {
        echo "cluster.sh: no tesserad in $bin (build first: cmake --preset release && cmake --build build/release)" >&2
        exit 1
    }
    mkdir -p "$dir"
    for i in $(seq 1 "$n"); do
        spec="$spec${spec:+,}$i=127.0.0.1:$((base + i - 1))"
    done
    for i in $(seq 1 "$n"); do
        if alive "$i"; then
            echo "cluster.sh: node $i already runs (pid $(cat "$dir/n$i.pid"))"
            continue
        fi
        local args=(--data "$dir/n$i" --listen "127.0.0.1:$((base + i - 1))" --shards "$shards")
        if [ ! -e "$dir/n$i/cluster" ]; then
            args+=(--initial-cluster "$spec" --ranges "$ranges")
        fi
        [ -n "${TESSERA_PIN:-}" ] && args+=(--pin)
        nohup "$bin/tesserad" "${args[@]}" >>"$dir/n$i.log" 2>&1 &
        echo $! >"$dir/n$i.pid"
    done
    # Ready once every node listens and the cluster takes a write (bounded: 60 s).
    local eps
    eps=$(endpoints)
    for _ in $(seq 1 120); do
        if "$bin/tessera" --endpoints "$eps" --timeout-ms 2000 put /cluster.sh/ready ok >/dev/null 2>&1; then
            echo "cluster.sh: $n nodes up; endpoints $eps; data and logs in $dir"
            return 0
        fi
        for i in $(seq 1 "$n"); do
            if ! alive "$i"; then
                echo "cluster.sh: node $i exited; its log:" >&2
                tail -n 20 "$dir/n$i.log" >&2
                exit 1
            fi
        done
        sleep 0.5
    done
    echo "cluster.sh: the cluster did not take a write within 60 s; see $dir/n*.log" >&2
    exit 1
}

stop() {
    local i pid
    for i in $(nodes); do
        if alive "$i"; then
            pid=$(cat "$dir/n$i.pid")
            kill -TERM "$pid"
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "cluster.sh: node $i (pid $pid) did not stop in 10 s; sending SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
            echo "cluster.sh: node $i stopped"
        fi
        rm -f "$dir/n$i.pid"
    done
}

status() {
    local i any=0
    for i in $(nodes); do
        any=1
        if alive "$i"; then
            echo "node $i: running (pid $(cat "$dir/n$i.pid")), 127.0.0.1:$((base + i - 1))"
        else
            echo "node $i: not running"
        fi
    done
    if [ "$any" = 0 ]; then
        echo "no nodes (start with: deploy/cluster.sh start 3)"
        return 0
    fi
    "$bin/tessera" --endpoints "$(endpoints)" --output table members || true
}

case "${1:-}" in
start) start "${2:-3}" ;;
stop) stop ;;
status) status ;;
logs)
    [ -n "${2:-}" ] || { echo "usage: cluster.sh logs I" >&2; exit 2; }
    cat "$dir/n$2.log"
    ;;
endpoints) endpoints ;;
pids)
    for i in $(nodes); do
        if alive "$i"; then cat "$dir/n$i.pid"; fi
    done
    ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
