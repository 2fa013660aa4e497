#!/usr/bin/env bash
# kv_vs_etcd_zk.sh: Tessera beside etcd and ZooKeeper, in one run on one machine, each as
# a 3-node cluster on loopback (127.0.0.1), one cluster at a time so that they never
# share the cores:
#   etcd       Debian's etcd-server, driven by etcd's own `benchmark` tool (tools/benchmark,
#              built offline from Debian's etcd source package: anchors.sh
#              build-etcd-benchmark);
#   ZooKeeper  Debian's zookeeper, driven by tessera-bench's zk driver (libzookeeper-mt);
#   Tessera    deploy/cluster.sh start 3, driven by tessera-bench.
# Workloads, 8-byte keys and 256-byte values, every client with 1 request in flight and
# its own connection (etcd: --conns = --clients; tessera-bench: --conns = --clients):
#   put-1      put, 1 client
#   put-100    put, 100 clients
#   put-1000   put, 1,000 clients
#   get-1000   linearizable get, 1,000 clients (etcd: range --consistency=l of one key;
#              ZooKeeper: sync + getData, tessera-bench's linearizable read on ZK;
#              Tessera: its default, linearizable; both over GET_KEYSPACE keys
#              written beforehand by a separate, unmeasured prefill run)
# Puts write keys drawn uniformly from PUT_KEYSPACE keys (etcd: --key-space-size). Keys
# are spelled the same on all three systems: etcd's benchmark writes Go's PutVarint of
# the key number into an 8-byte buffer, and tessera-bench does the same with
# --key-format varint, this script's default. With --key-format decimal, tessera-bench's
# own spelling, a small keyspace's keys share their first bytes and lie in one of
# Tessera's ranges (etcd's keys are unaffected: the option applies to tessera-bench).
# Before its workloads each cluster takes WARMUP unmeasured puts from 16 clients (the JVM
# of ZooKeeper compiles its hot paths; every system gets the same).
# For each system and workload: ops/s, p50 and p99 latency (µs), and the server CPU per
# operation: utime + stime (/proc/PID/stat, all threads) summed over the three server
# processes, before and after the workload, divided by the operations completed.
# Client and servers share this machine's cores, as they must on one machine.
#
# Every workload is bounded: a total count, and a timeout (--timeout S, default 300,
# 120 with --quick) after which the load tool is stopped: the row then shows what a
# tessera-bench run did before it (noted), or reads "timeout". Clusters are stopped on
# exit, whatever the exit (trap): only the PIDs this run started (anchors.sh's pid
# files; deploy/cluster.sh stop for Tessera). Environment: TESSERA_BENCH and CLUSTER_SH
# override the paths of tessera-bench and deploy/cluster.sh; the Tessera part expects
# `cluster.sh start 3`, `cluster.sh endpoints` (host:port,...), `cluster.sh pids` (the
# server PIDs, for CPU per operation) and `cluster.sh stop`.
#
#   bench/compare/kv_vs_etcd_zk.sh [--quick] [--only etcd,zk,tessera] [--timeout S]
#                                  [--key-format varint|decimal]
#                                  [--dir DIR] [--port-base P]
#
# Prints a Markdown table of every figure, then, when Tessera's figures exist, the ratios
# Tessera/anchor (written so that > 1 means Tessera is better: ops/s Tessera/anchor,
# latencies and CPU anchor/Tessera) and rows in the format of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

quick=0
only="etcd,zk,tessera"
key_format=varint
timeout_s=""
base_dir=/tmp
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    --key-format) key_format=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --dir) base_dir=$2; shift 2 ;;
    --port-base) export ANCHORS_PORT_BASE=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--quick] [--only etcd,zk,tessera] [--timeout S] [--dir DIR] [--port-base P] [--key-format varint|decimal]" >&2; exit 2 ;;
    esac
done

# ------------------------------------------------------------------ the workloads
KEY_SIZE=8
VAL_SIZE=256
PUT_KEYSPACE=100000
GET_KEYSPACE=1000
WORKLOADS=(put-1 put-100 put-1000 get-1000)
declare -A CLIENTS=([put-1]=1 [put-100]=100 [put-1000]=1000 [get-1000]=1000)
declare -A LABEL=([put-1]="put, 1 client, 1 in flight" [put-100]="put, 100 clients"
    [put-1000]="put, 1,000 clients" [get-1000]="linearizable get, 1,000 clients")
if [ $quick = 1 ]; then
    declare -A TOTAL=([put-1]=300 [put-100]=2000 [put-1000]=4000 [get-1000]=5000)
    WARMUP=500
    timeout_s=${timeout_s:-120}
else
    declare -A TOTAL=([put-1]=5000 [put-100]=30000 [put-1000]=60000 [get-1000]=100000)
    WARMUP=3000
    timeout_s=${timeout_s:-300}
fi

# tessera-bench --json: where the figures are in its one JSON object. A path is dotted
# ("latency_us.p50"); alternatives are separated by '|', the first present wins.
TB_FIELD_OPS_PER_SEC="ops_per_s|ops_per_sec"
TB_FIELD_P50_US="latency_us.p50|p50_us"
TB_FIELD_P99_US="latency_us.p99|p99_us"
TB_FIELD_OPS="ops|total"
TB_FIELD_ERRORS="errors"

TESSERA_BENCH=${TESSERA_BENCH:-$ROOT/build/release/bench/tessera-bench/tessera-bench}
CLUSTER_SH=${CLUSTER_SH:-$ROOT/deploy/cluster.sh}
HZ=$(getconf CLK_TCK)

# ------------------------------------------------------------------ setup and cleanup
mkdir -p "$base_dir"
tmp=$(mktemp -d "$base_dir/tessera-kvcmp.XXXXXX")
export ANCHORS_DIR=$tmp/anchors
# shellcheck source=bench/compare/anchors.sh
source "$ROOT/bench/compare/anchors.sh"
set -euo pipefail
tessera_started=0
load_pid=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$load_pid" ]; then kill -TERM "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; fi
    anchors_etcd_stop || true
    anchors_zk_stop || true
    if [ $tessera_started = 1 ]; then "$CLUSTER_SH" stop >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
anchors_raise_nofile

log() { echo "kv_vs_etcd_zk: $*" >&2; }

# bounded OUT COMMAND...: run a load tool under `timeout`, output to OUT; its exit status
# is in $rc. It runs in the background and is waited for, so that a signal to this script
# stops it at once (cleanup) instead of after the tool's own end.
bounded() {
    local out=$1
    shift
    rc=0
    timeout -k 10 "$timeout_s" "$@" >"$out" 2>&1 &
    load_pid=$!
    wait "$load_pid" || rc=$?
    load_pid=""
}

declare -A OPS P50 P99 CPU ERR NOTE NDONE
record_fail() { # sys wl note
    OPS[$1,$2]=""; NOTE[$1,$2]=$3
    log "$1 $2: $3"
}

# parse SOURCE FILE -> "ops_per_s p50_us p99_us ops errors" (SOURCE: etcd or tb)
parse() {
    TB_FIELDS="$TB_FIELD_OPS_PER_SEC;$TB_FIELD_P50_US;$TB_FIELD_P99_US;$TB_FIELD_OPS;$TB_FIELD_ERRORS" \
        /usr/bin/python3 - "$1" "$2" "${3:-0}" <<'EOF'
import json, os, re, sys
src, path, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(path, errors="replace").read()
if src == "etcd":
    # etcd's pkg/report: "Requests/sec:\tN", "50% in S secs.", "Error distribution:" then
    # "  [count]\terror" lines
    rps = re.search(r"Requests/sec:\s*([0-9.eE+-]+)", text)
    p50 = re.search(r"\b50% in ([0-9.eE+-]+) secs", text)
    p99 = re.search(r"\b99% in ([0-9.eE+-]+) secs", text)
    if not (rps and p50 and p99):
        sys.exit("no summary in the benchmark's output")
    errors = 0
    if "Error distribution" in text:
        errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", text.split("Error distribution", 1)[1], re.M))
    print(rps.group(1), float(p50.group(1)) * 1e6, float(p99.group(1)) * 1e6, total - errors, errors)
else:
    obj = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                pass
    if obj is None:
        sys.exit("no JSON object in tessera-bench's output")
    def get(spec, default=None):
        for alt in spec.split("|"):
            v = obj
            for k in alt.split("."):
                v = v.get(k) if isinstance(v, dict) else None
            if v is not None:
                return v
        if default is None:
            sys.exit("no field %s in tessera-bench's JSON" % spec)
        return default
    f = os.environ["TB_FIELDS"].split(";")
    print(get(f[0]), get(f[1]), get(f[2]), get(f[3], total), get(f[4], 0))
EOF
}

# measure SYS WL PIDS OUTFILE SOURCE -- COMMAND...: run a bounded workload, sample the
# servers' CPU around it and record the figures.
measure() {
    local sys=$1 wl=$2 pids=$3 out=$4 src=$5
    shift 6
    local c0 c1 rc=0 r n
    log "$sys $wl: ${TOTAL[$wl]} ops, ${CLIENTS[$wl]} clients"
    # shellcheck disable=SC2086
    c0=$(anchors_cpu_ticks $pids)
    bounded "$out" "$@"
    # shellcheck disable=SC2086
    c1=$(anchors_cpu_ticks $pids)
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        # a load tool that prints its summary when stopped (tessera-bench) still gives
        # figures for the operations done; else the row only says so
        if [ "$src" = tb ] && r=$(parse "$src" "$out" 0 2>/dev/null); then
            read -r "OPS[$sys,$wl]" "P50[$sys,$wl]" "P99[$sys,$wl]" n "ERR[$sys,$wl]" <<<"$r"
            NDONE[$sys,$wl]=$n
            CPU[$sys,$wl]=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$n" 'BEGIN { if (n > 0) printf "%.1f", d * 1e6 / hz / n; else print "" }')
            NOTE[$sys,$wl]="stopped at the timeout (${timeout_s}s) after $n ops"
            log "$sys $wl: ${NOTE[$sys,$wl]}"
            return 0
        fi
        record_fail "$sys" "$wl" "timeout (${timeout_s}s)"
        return 0
    fi
    if ! r=$(parse "$src" "$out" "${TOTAL[$wl]}" 2>&1); then
        record_fail "$sys" "$wl" "failed (exit $rc): $r; $(tail -c 300 "$out" | tr '\r\n' '  ')"
        return 0
    fi
    read -r "OPS[$sys,$wl]" "P50[$sys,$wl]" "P99[$sys,$wl]" n "ERR[$sys,$wl]" <<<"$r"
    NDONE[$sys,$wl]=$n
    CPU[$sys,$wl]=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$n" 'BEGIN { if (n > 0) printf "%.1f", d * 1e6 / hz / n; else print "" }')
    [ $rc = 0 ] || NOTE[$sys,$wl]="exit $rc"
    log "$sys $wl: ${OPS[$sys,$wl]} ops/s, p50 ${P50[$sys,$wl]} us, p99 ${P99[$sys,$wl]} us, CPU ${CPU[$sys,$wl]} us/op, errors ${ERR[$sys,$wl]}"
}

value=$(head -c "$VAL_SIZE" /dev/zero | tr '\0' v)

run_etcd() {
    local bench eps pids wl c args
    if ! bench=$(anchors_build_etcd_benchmark); then
        for wl in "${WORKLOADS[@]}"; do record_fail etcd "$wl" "no etcd benchmark tool"; done
        return 0
    fi
    if ! anchors_etcd_start; then
        for wl in "${WORKLOADS[@]}"; do record_fail etcd "$wl" "cluster did not start"; done
        return 0
    fi
    eps=$(anchors_etcd_endpoints)
    pids=$(anchors_etcd_pids)
    ETCDCTL_API=3 timeout 20 etcdctl --endpoints="$eps" put getkey00 "$value" >/dev/null
    local rc
    bounded "$tmp/etcd-warmup.out" "$bench" --endpoints "$eps" --conns 16 --clients 16 \
        put --key-size "$KEY_SIZE" --val-size "$VAL_SIZE" --key-space-size "$PUT_KEYSPACE" --total "$WARMUP"
    [ "$rc" = 0 ] || log "etcd warm-up failed: $(tail -c 300 "$tmp/etcd-warmup.out")"
    for wl in "${WORKLOADS[@]}"; do
        c=${CLIENTS[$wl]}
        case $wl in
        put-*) args=(put --key-size "$KEY_SIZE" --val-size "$VAL_SIZE" --key-space-size "$PUT_KEYSPACE") ;;
        get-*) args=(range getkey00 --consistency l) ;;
        esac
        measure etcd "$wl" "$pids" "$tmp/etcd-$wl.out" etcd -- \
            "$bench" --precise --endpoints "$eps" --conns "$c" --clients "$c" "${args[@]}" --total "${TOTAL[$wl]}"
    done
    anchors_etcd_stop
}

tb_run() { # sys wl pids target: one tessera-bench workload
    local sys=$1 wl=$2 pids=$3 target=$4 c=${CLIENTS[$2]} op ks cons=()
    case $wl in
    put-*) op="put"; ks=$PUT_KEYSPACE ;;
    get-*) op="get"; ks=$GET_KEYSPACE; cons=(--consistency linearizable) ;;
    esac
    measure "$sys" "$wl" "$pids" "$tmp/$sys-$wl.out" tb -- \
        "$TESSERA_BENCH" "$op" --target "$target" --clients "$c" --conns "$c" --inflight 1 \
        --total "${TOTAL[$wl]}" --key-size "$KEY_SIZE" --key-format "$key_format" --val-size "$VAL_SIZE" --keyspace "$ks" \
        "${cons[@]}" --json
}

tb_warmup() { # target: unmeasured puts first (ZooKeeper's JIT compiles its hot paths)
    local rc
    bounded "$tmp/warmup.out" "$TESSERA_BENCH" put --target "$1" --clients 16 --conns 16 --inflight 1 \
        --total "$WARMUP" --key-size "$KEY_SIZE" --key-format "$key_format" --val-size "$VAL_SIZE" --keyspace "$PUT_KEYSPACE"
    [ "$rc" = 0 ] || log "warm-up failed: $(tail -c 300 "$tmp/warmup.out")"
}

tb_prefill() { # target: write the GET_KEYSPACE keys read by get-*, outside any measurement
    local rc
    bounded "$tmp/prefill.out" "$TESSERA_BENCH" put --target "$1" --clients 16 --conns 16 --inflight 1 \
        --total 1 --key-size "$KEY_SIZE" --key-format "$key_format" --val-size "$VAL_SIZE" --keyspace "$GET_KEYSPACE" --prefill
    [ "$rc" = 0 ] || { log "prefill failed: $(tail -c 300 "$tmp/prefill.out")"; return 1; }
}

run_zk() {
    local wl pids target
    if [ ! -x "$TESSERA_BENCH" ]; then
        for wl in "${WORKLOADS[@]}"; do record_fail zk "$wl" "no $TESSERA_BENCH (cmake --build build/release)"; done
        return 0
    fi
    if ! anchors_zk_start; then
        for wl in "${WORKLOADS[@]}"; do record_fail zk "$wl" "ensemble did not start"; done
        return 0
    fi
    target=zk://$(anchors_zk_endpoints)
    pids=$(anchors_zk_pids)
    tb_warmup "$target"
    for wl in "${WORKLOADS[@]}"; do
        if [[ $wl == get-* ]] && ! tb_prefill "$target"; then record_fail zk "$wl" "prefill failed"; continue; fi
        tb_run zk "$wl" "$pids" "$target"
    done
    anchors_zk_stop
}

run_tessera() {
    local wl pids eps target
    if [ ! -x "$CLUSTER_SH" ] || [ ! -x "$TESSERA_BENCH" ]; then
        for wl in "${WORKLOADS[@]}"; do record_fail tessera "$wl" "no deploy/cluster.sh or tessera-bench yet"; done
        return 0
    fi
    tessera_started=1
    if ! "$CLUSTER_SH" start 3 >"$tmp/cluster.out" 2>&1; then
        log "deploy/cluster.sh start 3 failed: $(tail -c 500 "$tmp/cluster.out")"
        for wl in "${WORKLOADS[@]}"; do record_fail tessera "$wl" "cluster did not start"; done
        return 0
    fi
    eps=$("$CLUSTER_SH" endpoints)
    target=tessera://$eps
    # the servers' PIDs, for CPU per operation: `deploy/cluster.sh pids` (one or more
    # PIDs, space or line separated); without it the CPU column stays empty
    pids=$("$CLUSTER_SH" pids 2>/dev/null | tr '\n' ' ' | grep -E '^[0-9 ]+$' || true)
    [ -n "$pids" ] || log "deploy/cluster.sh pids gave nothing: Tessera's CPU per op is not measured"
    tb_warmup "$target"
    for wl in "${WORKLOADS[@]}"; do
        if [[ $wl == get-* ]] && ! tb_prefill "$target"; then record_fail tessera "$wl" "prefill failed"; continue; fi
        tb_run tessera "$wl" "$pids" "$target"
        [ -n "$pids" ] || CPU[tessera,$wl]=""
    done
    "$CLUSTER_SH" stop >/dev/null 2>&1 || true
    tessera_started=0
}

systems=()
for s in etcd zk tessera; do
    if [[ ",$only," == *",$s,"* ]]; then systems+=("$s"); fi
done
start=$SECONDS
declare -A LOAD

# The disk's own floor for a durable write: fio, 4 KiB pwrite + fdatasync at queue depth
# 1 (psync), 10 s, on the file system the clusters use. The issue's goal: a single
# client's put p99 at most 1.5x this p99.
FIO_P99=""
if command -v fio >/dev/null && [[ ",$only," == *",tessera,"* ]]; then
    fio_dir=$(mktemp -d "$base_dir/tessera-kvcmp-fio.XXXXXX")
    if fio --name=fdatasync --directory="$fio_dir" --ioengine=psync --rw=write --bs=4k \
        --size=256m --fdatasync=1 --runtime=10 --time_based --output-format=json \
        >"$fio_dir/out.json" 2>/dev/null; then
        FIO_P99=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["sync"]["lat_ns"]["percentile"]; print("%.1f" % (float(j["99.000000"]) / 1000))' "$fio_dir/out.json" 2>/dev/null || true)
    fi
    rm -rf "$fio_dir"
    log "fio 4 KiB write + fdatasync p99: ${FIO_P99:-n/a} us"
fi
for s in "${systems[@]}"; do
    # other work on the machine skews every figure: the load average is printed with them
    LOAD[$s]=$(cut -d' ' -f1 /proc/loadavg)
    log "$s: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    "run_$s"
done

# ------------------------------------------------------------------ report
declare -A NAME=([etcd]="etcd $(dpkg-query -W -f='${Version}' etcd-server 2>/dev/null)"
    [zk]="ZooKeeper $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null)" [tessera]="Tessera")
fmt() { [ -n "${1:-}" ] && awk -v v="$1" "BEGIN { printf \"$2\", v }" || printf 'n/a'; }

echo
echo "3-node clusters on 127.0.0.1, $(nproc) cores, $(date -u +%F), $([ $quick = 1 ] && echo "--quick" || echo "full") run," \
    "$KEY_SIZE B keys, $VAL_SIZE B values, 1 request in flight per client, one connection per client," \
    "$((SECONDS - start)) s"
printf "1-minute load average when each system started:"
for s in "${systems[@]}"; do printf " %s %s" "${NAME[$s]%% *}" "${LOAD[$s]}"; done
echo
echo
echo "| workload | system | ops done / asked | ops/s | p50 µs | p99 µs | server CPU µs/op | errors | note |"
echo "|---|---|---|---|---|---|---|---|---|"
for wl in "${WORKLOADS[@]}"; do
    for s in "${systems[@]}"; do
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "${LABEL[$wl]}" "${NAME[$s]}" "${NDONE[$s,$wl]:-0} / ${TOTAL[$wl]}" \
            "$(fmt "${OPS[$s,$wl]:-}" %.0f)" "$(fmt "${P50[$s,$wl]:-}" %.0f)" "$(fmt "${P99[$s,$wl]:-}" %.0f)" \
            "$(fmt "${CPU[$s,$wl]:-}" %.1f)" "${ERR[$s,$wl]:-}" "${NOTE[$s,$wl]:-}"
    done
done

ratio() { # a b -> a/b, or n/a
    if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
    else printf 'n/a'; fi
}
have_tessera=0
for wl in "${WORKLOADS[@]}"; do [ -n "${OPS[tessera,$wl]:-}" ] && have_tessera=1; done
if [ $have_tessera = 1 ]; then
    echo
    echo "Ratios, > 1 means Tessera is better (ops/s: Tessera/anchor; p50, p99, CPU per op: anchor/Tessera)"
    echo
    echo "| workload | anchor | ops/s | p50 | p99 | server CPU per op |"
    echo "|---|---|---|---|---|---|"
    for wl in "${WORKLOADS[@]}"; do
        for a in etcd zk; do
            [[ " ${systems[*]} " == *" $a "* ]] || continue
            printf "| %s | %s | %s | %s | %s | %s |\n" "${LABEL[$wl]}" "${NAME[$a]}" \
                "$(ratio "${OPS[tessera,$wl]:-}" "${OPS[$a,$wl]:-}")" "$(ratio "${P50[$a,$wl]:-}" "${P50[tessera,$wl]:-}")" \
                "$(ratio "${P99[$a,$wl]:-}" "${P99[tessera,$wl]:-}")" "$(ratio "${CPU[$a,$wl]:-}" "${CPU[tessera,$wl]:-}")"
        done
    done
    echo
    echo "Rows for bench/RESULTS.md:"
    today=$(date -u +%F)
    keys="8 B keys"
    [ "$key_format" = varint ] && keys="8 B keys spelled as etcd's benchmark spells them"
    cmd="bench/compare/kv_vs_etcd_zk.sh"
    [ "$key_format" = varint ] || cmd="$cmd --key-format $key_format"
    for wl in "${WORKLOADS[@]}"; do
        for a in etcd zk; do
            [[ " ${systems[*]} " == *" $a "* ]] || continue
            [ -n "${OPS[tessera,$wl]:-}" ] && [ -n "${OPS[$a,$wl]:-}" ] || continue
            printf "| 3-node cluster, %s, %s, 256 B values: Tessera vs %s (ops/s) | %.0f ops/s | %.0f ops/s | %s | %s | \`%s\` |\n" \
                "${LABEL[$wl]}" "$keys" "${NAME[$a]}" "${OPS[tessera,$wl]}" "${OPS[$a,$wl]}" \
                "$(ratio "${OPS[tessera,$wl]}" "${OPS[$a,$wl]}")" "$today" "$cmd"
            if [ -n "${P99[tessera,$wl]:-}" ] && [ -n "${P99[$a,$wl]:-}" ]; then
                printf "| same, p99 latency (µs; ratio: %s / Tessera) | %.0f | %.0f | %s | %s | \`%s\` |\n" \
                    "${NAME[$a]%% *}" "${P99[tessera,$wl]}" "${P99[$a,$wl]}" "$(ratio "${P99[$a,$wl]}" "${P99[tessera,$wl]}")" "$today" "$cmd"
            fi
            if [ -n "${CPU[tessera,$wl]:-}" ] && [ -n "${CPU[$a,$wl]:-}" ]; then
                printf "| same, server CPU per operation (µs, 3 servers, from /proc; ratio: %s / Tessera) | %s | %s | %s | %s | \`%s\` |\n" \
                    "${NAME[$a]%% *}" "${CPU[tessera,$wl]}" "${CPU[$a,$wl]}" "$(ratio "${CPU[$a,$wl]}" "${CPU[tessera,$wl]}")" "$today" "$cmd"
            fi
        done
    done
    if [ -n "$FIO_P99" ] && [ -n "${P99[tessera,put-1]:-}" ]; then
        goal=$(awk -v f="$FIO_P99" 'BEGIN { printf "%.1f", 1.5 * f }')
        printf "| 3-node cluster, put, 1 client, %s: Tessera p99 vs 1.5x fio's 4 KiB write+fdatasync p99 (µs; goal: ratio >= 1) | %.0f | %s (fio p99 %s) | %s | %s | \`%s\` |\n" \
            "$keys" "${P99[tessera,put-1]}" "$goal" "$FIO_P99" "$(ratio "$goal" "${P99[tessera,put-1]}")" "$today" "$cmd"
    fi
fi
