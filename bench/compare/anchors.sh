#!/usr/bin/env bash
# anchors.sh: the comparison anchors of bench/compare/kv_vs_etcd_zk.sh, from Debian
# packages only: a 3-node etcd cluster (etcd-server), a 3-node ZooKeeper ensemble
# (zookeeper) on 127.0.0.1, and etcd's own load tool, `benchmark` (tools/benchmark in
# etcd's source), built offline from Debian's etcd source package.
#
#   bench/compare/anchors.sh build-etcd-benchmark   # -> build/anchors/etcd-benchmark
#   bench/compare/anchors.sh etcd start|stop|status|endpoints|pids
#   bench/compare/anchors.sh zk   start|stop|status|endpoints|pids
#   bench/compare/anchors.sh stop                   # both clusters
#
# Everything a cluster writes (data, logs, pid files, zoo.cfg) lives under one directory,
# $ANCHORS_DIR (default /tmp/tessera-anchors); `stop` kills only the PIDs in its pid
# files, and only if /proc/PID/cmdline still names that directory (a recycled PID is
# left alone). Ports: $ANCHORS_PORT_BASE (default 24000) + offsets, checked free before
# a start:
#   etcd  client base+1..3   peer base+11..13
#   zk    client base+21..23 quorum base+31..33  election base+41..43
# `start` waits, bounded ($ANCHORS_START_TIMEOUT s, default 60), until the cluster is
# healthy: `etcdctl endpoint health` on all three endpoints; ZooKeeper's `srvr`
# four-letter word answered by all three nodes with one leader. On a timeout it prints
# the logs' tails, stops what it started and fails.
#
# The script can also be sourced (kv_vs_etcd_zk.sh does): it then only defines the
# functions anchors_* below.
#
# Building the etcd benchmark tool (build-etcd-benchmark), needing nothing but apt:
#   1. Debian ships etcd's Go packages (golang-etcd-server-dev, which pulls in every
#      golang-*-dev library etcd imports, under /usr/share/gocode) but not tools/, so the
#      tool's source comes from Debian's etcd *source* package, at the version of the
#      installed etcd-server. `apt-get source` needs deb-src entries; rather than touch
#      the machine's apt configuration, a private one is made under build/anchors/apt
#      with a deb-src line for each Debian repository the machine already uses
#      (`apt-get indextargets`), and its own lists and cache directories. The download
#      is checked by apt against the signed Sources index, as usual.
#   2. `dpkg-source -x` (dpkg-dev, part of build-essential) unpacks it with Debian's
#      patches applied.
#   3. `go build` in GOPATH mode (GO111MODULE=off, GOPROXY=off, GOFLAGS empty),
#      GOPATH = the unpacked tree + /usr/share/gocode: the way Debian builds Go
#      packages, so no module is fetched from anywhere.
set -uo pipefail

ANCHORS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ANCHORS_DIR=${ANCHORS_DIR:-/tmp/tessera-anchors}
ANCHORS_PORT_BASE=${ANCHORS_PORT_BASE:-24000}
ANCHORS_START_TIMEOUT=${ANCHORS_START_TIMEOUT:-60}
ANCHORS_BUILD=${ANCHORS_BUILD:-$ANCHORS_ROOT/build/anchors}
ETCD_BENCHMARK=${ETCD_BENCHMARK:-$ANCHORS_BUILD/etcd-benchmark}
ZK_HEAP=${ZK_HEAP:-1g} # upstream zkEnv.sh's default server heap (Debian's sets none)

anchors_log() { echo "anchors: $*" >&2; }

anchors_raise_nofile() { # 1,000 clients need more descriptors than the usual 1024
    local hard
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
    ulimit -n "$hard" 2>/dev/null || true
}

anchors_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

anchors_cmdline_has() { # pid string: is the process alive and does its command line contain string?
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# ---------------------------------------------------------------- etcd benchmark tool

anchors_build_etcd_benchmark() {
    if [ -x "$ETCD_BENCHMARK" ] && [ "${1:-}" != --force ]; then
        echo "$ETCD_BENCHMARK"
        return 0
    fi
    local src_pkg src_ver gocode=/usr/share/gocode
    command -v go >/dev/null || { anchors_log "go is missing: deploy/install-deps.sh"; return 1; }
    command -v dpkg-source >/dev/null || { anchors_log "dpkg-source is missing (dpkg-dev): deploy/install-deps.sh"; return 1; }
    [ -d $gocode/src/go.etcd.io/etcd/clientv3 ] ||
        { anchors_log "$gocode/src/go.etcd.io/etcd missing (golang-etcd-server-dev): deploy/install-deps.sh"; return 1; }
    src_pkg=$(dpkg-query -W -f='${source:Package}' etcd-server 2>/dev/null)
    src_ver=$(dpkg-query -W -f='${source:Version}' etcd-server 2>/dev/null)
    [ -n "$src_pkg" ] && [ -n "$src_ver" ] || { anchors_log "etcd-server is not installed: deploy/install-deps.sh"; return 1; }

    local apt=$ANCHORS_BUILD/apt srcdir=$ANCHORS_BUILD/src
    rm -rf "$apt" "$srcdir"
    mkdir -p "$apt/etc/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$srcdir"
    # one deb-src entry per Debian repository the machine already uses
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
        sort -u | awk '{ print "deb-src " $1 " " $2 " " $3 }' >"$apt/etc/sources.list.d/deb-src.list"
    if [ ! -s "$apt/etc/sources.list.d/deb-src.list" ]; then
        anchors_log "no Debian repository found by 'apt-get indextargets': run apt-get update first"
        return 1
    fi
    local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/etc/sources.list.d"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root")
    anchors_log "fetching the source package $src_pkg=$src_ver with apt (private deb-src list in $apt)"
    apt-get -q "${opts[@]}" update >"$apt/update.log" 2>&1 ||
        { cat "$apt/update.log" >&2; return 1; }
    (cd "$srcdir" && apt-get -q "${opts[@]}" source --download-only "$src_pkg=$src_ver") >"$apt/source.log" 2>&1 ||
        { cat "$apt/source.log" >&2; return 1; }
    local dsc
    dsc=$(ls "$srcdir"/*.dsc | head -1)
    (cd "$srcdir" && dpkg-source -x "$(basename "$dsc")" etcd) >"$apt/unpack.log" 2>&1 ||
        { cat "$apt/unpack.log" >&2; return 1; }
    [ -d "$srcdir/etcd/tools/benchmark" ] || { anchors_log "no tools/benchmark in $src_pkg $src_ver"; return 1; }

    local gp=$ANCHORS_BUILD/gopath
    rm -rf "$gp"
    mkdir -p "$gp/src/go.etcd.io"
    mv "$srcdir/etcd" "$gp/src/go.etcd.io/etcd"
    anchors_log "building etcd's tools/benchmark offline (GOPATH mode, Debian's Go packages)"
    (cd "$gp/src/go.etcd.io/etcd" &&
        env GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$gp:$gocode" GOCACHE="$ANCHORS_BUILD/gocache" \
            go build -o "$ETCD_BENCHMARK.tmp" ./tools/benchmark) || { anchors_log "go build failed"; return 1; }
    mv "$ETCD_BENCHMARK.tmp" "$ETCD_BENCHMARK"
    echo "$src_pkg $src_ver" >"$ETCD_BENCHMARK.version"
    anchors_log "built $ETCD_BENCHMARK ($src_pkg $src_ver)"
    echo "$ETCD_BENCHMARK"
}

# ---------------------------------------------------------------- etcd cluster

anchors_etcd_endpoints() {
    local b=$ANCHORS_PORT_BASE
    echo "127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
}

anchors_etcd_pids() { cat "$ANCHORS_DIR"/etcd/n?.pid 2>/dev/null | tr '\n' ' '; }

anchors_etcd_status() {
    local eps
    eps=$(anchors_etcd_endpoints)
    ETCDCTL_API=3 timeout 10 etcdctl --endpoints="$eps" --dial-timeout=2s --command-timeout=3s endpoint health >/dev/null 2>&1
}

anchors_etcd_start() {
    command -v etcd >/dev/null && command -v etcdctl >/dev/null ||
        { anchors_log "etcd and etcdctl are needed (etcd-server, etcd-client): deploy/install-deps.sh"; return 1; }
    local b=$ANCHORS_PORT_BASE dir=$ANCHORS_DIR/etcd i cluster="" p
    if [ -n "$(anchors_etcd_pids)" ]; then anchors_log "etcd: pid files exist in $dir: stop first"; return 1; fi
    for p in $((b + 1)) $((b + 2)) $((b + 3)) $((b + 11)) $((b + 12)) $((b + 13)); do
        anchors_port_free "$p" || { anchors_log "port $p is in use (set ANCHORS_PORT_BASE)"; return 1; }
    done
    rm -rf "$dir"
    mkdir -p "$dir"
    for i in 1 2 3; do cluster+="${cluster:+,}n$i=http://127.0.0.1:$((b + 10 + i))"; done
    anchors_raise_nofile
    for i in 1 2 3; do
        nohup etcd --name "n$i" --data-dir "$dir/n$i.data" \
            --listen-client-urls "http://127.0.0.1:$((b + i))" \
            --advertise-client-urls "http://127.0.0.1:$((b + i))" \
            --listen-peer-urls "http://127.0.0.1:$((b + 10 + i))" \
            --initial-advertise-peer-urls "http://127.0.0.1:$((b + 10 + i))" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "tessera-anchor-$b" \
            --logger zap --log-outputs stderr --log-level warn \
            </dev/null >"$dir/n$i.log" 2>&1 &
        echo $! >"$dir/n$i.pid"
    done
    local deadline=$((SECONDS + ANCHORS_START_TIMEOUT))
    while ! anchors_etcd_status; do
        if [ $SECONDS -ge $deadline ]; then
            anchors_log "etcd: not healthy after ${ANCHORS_START_TIMEOUT}s"
            tail -n 5 "$dir"/n?.log >&2
            anchors_etcd_stop
            return 1
        fi
        for i in 1 2 3; do
            anchors_cmdline_has "$(cat "$dir/n$i.pid")" "$dir" ||
                { anchors_log "etcd n$i exited"; tail -n 20 "$dir/n$i.log" >&2; anchors_etcd_stop; return 1; }
        done
        sleep 0.5
    done
    anchors_log "etcd: 3 nodes healthy on $(anchors_etcd_endpoints) (pids $(anchors_etcd_pids), data in $dir)"
}

# ---------------------------------------------------------------- ZooKeeper ensemble

anchors_zk_endpoints() {
    local b=$ANCHORS_PORT_BASE
    echo "127.0.0.1:$((b + 21)),127.0.0.1:$((b + 22)),127.0.0.1:$((b + 23))"
}

anchors_zk_pids() { cat "$ANCHORS_DIR"/zk/n?.pid 2>/dev/null | tr '\n' ' '; }

anchors_zk_4lw() { # port word -> the answer (bounded)
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1; printf %s "$1" >&3; cat <&3' "$1" "$2" 2>/dev/null
}

anchors_zk_status() { # all three nodes serving, exactly one leader
    local b=$ANCHORS_PORT_BASE i out leaders=0
    for i in 1 2 3; do
        out=$(anchors_zk_4lw $((b + 20 + i)) srvr) || return 1
        case $out in
        *"Mode: leader"*) leaders=$((leaders + 1)) ;;
        *"Mode: follower"*) ;;
        *) return 1 ;;
        esac
    done
    [ $leaders -eq 1 ]
}

anchors_zk_start() {
    local java=/usr/bin/java jar=/usr/share/java/zookeeper.jar
    [ -x $java ] && [ -r $jar ] || { anchors_log "ZooKeeper is needed (zookeeper): deploy/install-deps.sh"; return 1; }
    local b=$ANCHORS_PORT_BASE dir=$ANCHORS_DIR/zk i p n
    if [ -n "$(anchors_zk_pids)" ]; then anchors_log "zk: pid files exist in $dir: stop first"; return 1; fi
    for p in $((b + 21)) $((b + 22)) $((b + 23)) $((b + 31)) $((b + 32)) $((b + 33)) $((b + 41)) $((b + 42)) $((b + 43)); do
        anchors_port_free "$p" || { anchors_log "port $p is in use (set ANCHORS_PORT_BASE)"; return 1; }
    done
    rm -rf "$dir"
    anchors_raise_nofile
    for i in 1 2 3; do
        n=$dir/n$i
        mkdir -p "$n/data"
        echo "$i" >"$n/data/myid"
        # Debian's /etc/zookeeper/conf/zoo.cfg defaults (tickTime, initLimit, syncLimit),
        # plus: no per-IP connection cap (all clients come from 127.0.0.1; the default is
        # 60), no Jetty admin server (all three would want port 8080), the 4lw words used
        # for health. Transaction log fsync stays on (forceSync default yes), as etcd's.
        cat >"$n/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$n/data
clientPort=$((b + 20 + i))
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,mntr
server.1=127.0.0.1:$((b + 31)):$((b + 41))
server.2=127.0.0.1:$((b + 32)):$((b + 42))
server.3=127.0.0.1:$((b + 33)):$((b + 43))
EOF
        # log4j.properties from Debian's conf dir, console only, at WARN
        sed -e 's/^log4j.rootLogger=.*/log4j.rootLogger=WARN, CONSOLE/' \
            /etc/zookeeper/conf/log4j.properties >"$n/log4j.properties" 2>/dev/null || true
        # Debian's zkServer.sh start-foreground command line (zkEnv.sh's CLASSPATH and
        # main class), with this node's conf dir first on the class path
        nohup $java "-Xmx$ZK_HEAP" "-Dzookeeper.log.dir=$n" -Dzookeeper.root.logger=WARN,CONSOLE \
            -cp "$n:$jar" org.apache.zookeeper.server.quorum.QuorumPeerMain "$n/zoo.cfg" \
            </dev/null >"$n/out.log" 2>&1 &
        echo $! >"$dir/n$i.pid"
    done
    local deadline=$((SECONDS + ANCHORS_START_TIMEOUT))
    while ! anchors_zk_status; do
        if [ $SECONDS -ge $deadline ]; then
            anchors_log "zk: not healthy after ${ANCHORS_START_TIMEOUT}s"
            tail -n 5 "$dir"/n?/out.log >&2
            anchors_zk_stop
            return 1
        fi
        for i in 1 2 3; do
            anchors_cmdline_has "$(cat "$dir/n$i.pid")" "$dir" ||
                { anchors_log "zk n$i exited"; tail -n 20 "$dir/n$i/out.log" >&2; anchors_zk_stop; return 1; }
        done
        sleep 0.5
    done
    anchors_log "zk: 3 nodes serving on $(anchors_zk_endpoints) (pids $(anchors_zk_pids), data in $dir)"
}

# ---------------------------------------------------------------- common

anchors_stop_dir() { # dir: TERM the PIDs of dir/*.pid (if they still are ours), then KILL after 15 s
    local dir=$1 f pid live=()
    for f in "$dir"/n?.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if anchors_cmdline_has "$pid" "$dir"; then
            kill -TERM "$pid" 2>/dev/null && live+=("$pid")
        fi
        rm -f "$f"
    done
    local t
    for t in $(seq 1 150); do
        local still=()
        for pid in "${live[@]}"; do anchors_cmdline_has "$pid" "$dir" && still+=("$pid"); done
        [ ${#still[@]} -eq 0 ] && return 0
        sleep 0.1
    done
    for pid in "${live[@]}"; do
        anchors_cmdline_has "$pid" "$dir" && { anchors_log "kill -KILL $pid"; kill -KILL "$pid" 2>/dev/null; }
    done
    return 0
}

anchors_etcd_stop() { anchors_stop_dir "$ANCHORS_DIR/etcd"; }
anchors_zk_stop() { anchors_stop_dir "$ANCHORS_DIR/zk"; }

anchors_cpu_ticks() { # pid... -> utime + stime (clock ticks, all threads) summed
    local pid sum=0 t
    for pid in "$@"; do
        t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null) || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

anchors_main() {
    case "${1:-}" in
    build-etcd-benchmark) shift; anchors_build_etcd_benchmark "$@" >/dev/null ;;
    etcd | zk)
        local sys=$1
        case "${2:-}" in
        start) "anchors_${sys}_start" ;;
        stop) "anchors_${sys}_stop" ;;
        status)
            if "anchors_${sys}_status"; then echo "$sys: healthy (pids $("anchors_${sys}_pids"))"
            else echo "$sys: not healthy"; return 1; fi ;;
        endpoints) "anchors_${sys}_endpoints" ;;
        pids) "anchors_${sys}_pids"; echo ;;
        *) echo "usage: $0 $sys start|stop|status|endpoints|pids" >&2; return 2 ;;
        esac ;;
    stop) anchors_etcd_stop; anchors_zk_stop ;;
    *)
        echo "usage: $0 build-etcd-benchmark [--force] | etcd|zk start|stop|status|endpoints|pids | stop" >&2
        return 2 ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    anchors_main "$@"
fi
