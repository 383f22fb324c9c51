#!/usr/bin/env bash
# Layer codec throughput and peak memory on a generated tree.
#
#   bench/layer.sh [MiB]        (default 1024)
#
# Builds the layer_bench example in release mode, generates a mixed tree
# (8 large files + many small ones) under $BENCH_DIR (default /tmp), then
# runs, each as its own process under /usr/bin/time -v:
#   pack+sha256 to a sink, parallel gzip (default level 6, and level 1),
#   zstd, unpack (to disk and tmpfs).
# Reports MB/s (10^6 bytes of uncompressed tar per second) and peak RSS.
# Page cache is warm for reads; unpack writes go to the page cache (no
# fsync). Timings depend on what else runs on the machine.
set -euo pipefail

MIB=${1:-1024}
cd "$(dirname "$0")/.."
BASE=${BENCH_DIR:-/tmp}/rbuild-layer-bench
TIME=/usr/bin/time
if [ ! -x "$TIME" ]; then
    echo "missing $TIME; hint: apt-get install time" >&2
    exit 1
fi

cargo build --release -q -p rbuild-store --example layer_bench
BIN=target/release/examples/layer_bench

rm -rf "$BASE"
mkdir -p "$BASE"
trap 'rm -rf "$BASE"' EXIT
"$BIN" gen "$BASE/tree" "$MIB"
"$BIN" pack-to "$BASE/tree" "$BASE/layer.tar" >/dev/null
cat "$BASE/layer.tar" >/dev/null # warm the page cache

run() {
    local name=$1
    shift
    local log="$BASE/$name.time"
    local line
    line=$("$TIME" -v -o "$log" "$BIN" "$@" 2>/dev/null | tail -1)
    local rss cpu
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$log")
    printf '%-10s %s  cpu %s s  peak RSS %d MB\n' "$name" "$line" "$cpu" "$((rss / 1024))"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine)"
echo "tree: $(du -sh "$BASE/tree" | cut -f1), tar: $(stat -c %s "$BASE/layer.tar") bytes, cores: $(nproc)"
run pack pack "$BASE/tree"
run gzip gzip "$BASE/layer.tar"
run gzip-l1 gzip "$BASE/layer.tar" 1
run zstd zstd "$BASE/layer.tar"
mkdir "$BASE/out"
run unpack unpack "$BASE/layer.tar" "$BASE/out"
# The same into tmpfs: the codec's own cost without the disk's create
# latency (ext4 on a shared VM disk dominates the line above).
SHM=/dev/shm/rbuild-layer-bench-out
if [ -d /dev/shm ] && [ "$(df -m --output=avail /dev/shm | tail -1)" -gt $((MIB * 2)) ]; then
    rm -rf "$SHM"
    mkdir "$SHM"
    trap 'rm -rf "$BASE" "$SHM"' EXIT
    run unpack-shm unpack "$BASE/layer.tar" "$SHM"
fi
