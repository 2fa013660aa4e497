#!/usr/bin/env bash
# Installs every Debian package that Tessera's build, tests and benchmarks use.
# Idempotent: packages already present are left alone. Nothing is fetched any
# other way than apt. Run as root (or with sudo available).
set -euo pipefail

packages=(
    # build
    build-essential cmake ninja-build pkg-config git
    clang libclang-rt-14-dev llvm
    # libraries
    liburing-dev libjemalloc-dev libcriterion-dev
    libzookeeper-mt-dev
    # wire format: flatc is the schema's authority; C++ headers and the Python
    # runtime are used by the conformance tests only
    flatbuffers-compiler libflatbuffers-dev python3 python3-flatbuffers
    # benchmarks: comparison anchors
    fio redis-server redis-tools liblmdb-dev lmdb-utils
    # benchmarks: etcd and ZooKeeper anchors (bench/compare/kv_vs_etcd_zk.sh):
    # the servers, etcdctl (health checks), and what builds etcd's own load tool
    # offline from Debian's etcd source package (bench/compare/anchors.sh
    # build-etcd-benchmark, run by the compare script when build/anchors/ lacks
    # it): the Go compiler, etcd's Go libraries with every golang-*-dev package
    # they import, and dpkg-source (dpkg-dev) to unpack the source package
    etcd-server etcd-client zookeeper golang-go golang-etcd-server-dev dpkg-dev
    # tools used by the test and bench scripts
    procps iproute2 valgrind
    # coverage report (tests/coverage.sh)
    gcovr
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
