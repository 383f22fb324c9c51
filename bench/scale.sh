#!/usr/bin/env bash
# How rbuild's build time and memory grow with the context: contexts of
# many small files (a node_modules-like tree) and of one large file, each
# built `COPY . /app` on busybox: first (--no-cache with no stat cache, so
# every file is hashed), cold (--no-cache), fully cached, and after a
# one-file edit. Next to each: a bare stat walk of the same tree
# (`find -printf '%s %T@ %i'`, the floor for a no-op rebuild).
#
#   bench/scale.sh [files|big|all]          (default all)
#
# env: SIZES_FILES="1000 10000 100000"   file counts
#      SIZES_BIG="10 100 1024 2048"      single-file sizes, MiB
#      RUNS=3                            runs per scenario (median taken)
#      RBUILD=path                       rbuild binary (default: the static
#                                        release binary, built when missing)
#      BENCH_DIR=/var/tmp/rbuild-scale   contexts and the store
#
# Prints a markdown table: seconds (median of RUNS) and peak RSS (MB, GNU
# time %M) per scenario. Linear cost shows as a constant per-file or per-MB
# figure down a column; RSS should stay flat in the file count.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
what=${1:-all}
SIZES_FILES=${SIZES_FILES:-1000 10000 100000}
SIZES_BIG=${SIZES_BIG:-10 100 1024 2048}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rbuild-scale}
TIME=/usr/bin/time
[ -x $TIME ] || {
    echo "error: $TIME not found; hint: apt-get install time" >&2
    exit 1
}
if [ -z "${RBUILD:-}" ]; then
    RBUILD=$("$repo/scripts/build-release")
fi
mkdir -p "$BENCH_DIR"
ROOT=$BENCH_DIR/root
rb() { "$RBUILD" --root "$ROOT" "$@"; }

# busybox, offline (testdata/make-busybox imports it into the store).
"$repo/testdata/make-busybox" "$RBUILD" "$ROOT" >/dev/null

# A node_modules-like tree: N files of 1-8 KiB, 20 per directory, 3 deep.
make_files() {
    local dir=$1 n=$2
    [ -f "$dir/.done" ] && return
    rm -rf "$dir"
    mkdir -p "$dir"
    "$repo/bench/lib/node-tree" "$dir" "$n"
    printf 'FROM busybox\nCOPY . /app\n' >"$dir/Dockerfile"
    echo "one" >"$dir/edit.txt"
    touch "$dir/.done"
}

make_big() {
    local dir=$1 mib=$2
    [ -f "$dir/.done" ] && return
    rm -rf "$dir"
    mkdir -p "$dir"
    head -c $((mib * 1024 * 1024)) /dev/urandom >"$dir/big.bin"
    printf 'FROM busybox\nCOPY . /app\n' >"$dir/Dockerfile"
    echo "one" >"$dir/edit.txt"
    touch "$dir/.done"
}

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Runs `rbuild build ARGS` RUNS times (PREP before each); prints "secs rss_mb".
measure() {
    local prep=$1
    shift
    local times=() rss=()
    for _ in $(seq "$RUNS"); do
        eval "$prep"
        local out
        out=$($TIME -f '%e %M' "$RBUILD" --root "$ROOT" build -q "$@" 2>&1 >/dev/null | tail -1)
        times+=("${out% *}")
        rss+=("${out#* }")
    done
    echo "$(median "${times[@]}") $(($(median "${rss[@]}") / 1024))"
}

walk() {
    local dir=$1 times=()
    for _ in $(seq "$RUNS"); do
        local t
        t=$({ $TIME -f '%e' find -H "$dir" -printf '%s %T@ %i\n' >/dev/null; } 2>&1 | tail -1)
        times+=("$t")
    done
    median "${times[@]}"
}

row() {
    local label=$1 dir=$2
    local first cold cached edit
    # A first build hashes every file: no stat cache yet.
    first=$(measure "rm -f '$ROOT'/store-v1/cache-v1/context/*.stat" --no-cache -t scale "$dir")
    cold=$(measure "" --no-cache -t scale "$dir")
    rb build -q -t scale "$dir" >/dev/null
    cached=$(measure "" -t scale "$dir")
    edit=$(measure "echo \$RANDOM >> '$dir/edit.txt'" -t scale "$dir")
    printf '| %s | %s s, %s MB | %s s, %s MB | %s s, %s MB | %s s, %s MB | %s s |\n' "$label" \
        ${first% *} ${first#* } ${cold% *} ${cold#* } ${cached% *} ${cached#* } \
        ${edit% *} ${edit#* } "$(walk "$dir")"
}

echo "| context | first (no stat cache) | cold | cached | one-file edit | stat walk |"
echo "|---|---|---|---|---|---|"
if [ "$what" = files ] || [ "$what" = all ]; then
    for n in $SIZES_FILES; do
        make_files "$BENCH_DIR/files-$n" "$n"
        row "$n files" "$BENCH_DIR/files-$n"
    done
fi
if [ "$what" = big ] || [ "$what" = all ]; then
    for mib in $SIZES_BIG; do
        make_big "$BENCH_DIR/big-$mib" "$mib"
        row "one $mib MiB file" "$BENCH_DIR/big-$mib"
    done
fi
