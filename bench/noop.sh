#!/usr/bin/env bash
# No-op rebuild of a large context against its floor: a fully cached
# `COPY . /app` of a node_modules-like tree of N files, run back to back
# with a bare stat walk of the same tree (`find -printf '%s %T@ %i'`),
# alternating, RUNS times; medians and their ratio, plus peak RSS (GNU
# time %M). With RBUILD_BASE, a second rbuild binary (e.g. the one before
# a change) is measured in the same loop, on its own store.
#
#   bench/noop.sh
#
# env: FILES=100000                   files in the context
#      RUNS=7                         alternating rounds (median taken)
#      RBUILD=path                    rbuild binary (default: the static
#                                     release binary, built when missing)
#      RBUILD_BASE=path               optional second binary to compare
#      BENCH_DIR=/var/tmp/rbuild-noop context and stores
#      DOCKER=1                       also BuildKit (docker 20.10, started
#                                     by the caller; /usr/bin/docker)
#
# The machine is shared and noisy: only ratios within one run mean much.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
FILES=${FILES:-100000}
RUNS=${RUNS:-7}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rbuild-noop}
TIME=/usr/bin/time
[ -x $TIME ] || {
    echo "error: $TIME not found; hint: apt-get install time" >&2
    exit 1
}
if [ -z "${RBUILD:-}" ]; then
    RBUILD=$("$repo/scripts/build-release")
fi
mkdir -p "$BENCH_DIR"
ctx=$BENCH_DIR/files-$FILES

# A node_modules-like tree: N files of 1-8 KiB, 20 per directory, 3 deep
# (bench/lib/node-tree, as bench/scale.sh).
if [ ! -f "$ctx/.done" ]; then
    rm -rf "$ctx"
    mkdir -p "$ctx"
    "$repo/bench/lib/node-tree" "$ctx" "$FILES"
    printf 'FROM busybox\nCOPY . /app\n' >"$ctx/Dockerfile"
    touch "$ctx/.done"
fi

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

names=(rbuild)
bins=("$RBUILD")
if [ -n "${RBUILD_BASE:-}" ]; then
    names+=(rbuild-base)
    bins+=("$RBUILD_BASE")
fi
# Each binary its own store (stat cache formats may differ), warmed up:
# the first build is cold, the second fills the stat cache.
for i in "${!bins[@]}"; do
    root=$BENCH_DIR/root-${names[$i]}
    "$repo/testdata/make-busybox" "${bins[$i]}" "$root" >/dev/null
    for _ in 1 2; do "${bins[$i]}" --root "$root" build -q -t noop "$ctx" >/dev/null 2>&1; done
done
if [ "${DOCKER:-}" = 1 ]; then
    for _ in 1 2; do DOCKER_BUILDKIT=1 /usr/bin/docker build -q -t noop "$ctx" >/dev/null; done
fi

declare -A secs rss
for _ in $(seq "$RUNS"); do
    for i in "${!bins[@]}"; do
        out=$($TIME -f '%e %M' "${bins[$i]}" --root "$BENCH_DIR/root-${names[$i]}" \
            build -q -t noop "$ctx" 2>&1 >/dev/null | tail -1)
        secs[${names[$i]}]+="${out% *} "
        rss[${names[$i]}]+="${out#* } "
    done
    out=$($TIME -f '%e %M' find "$ctx" -printf '%s %T@ %i\n' 2>&1 >/dev/null | tail -1)
    secs[find]+="${out% *} "
    rss[find]+="${out#* } "
    if [ "${DOCKER:-}" = 1 ]; then
        out=$(DOCKER_BUILDKIT=1 $TIME -f '%e %M' /usr/bin/docker build -q -t noop "$ctx" 2>&1 >/dev/null | tail -1)
        secs[buildkit]+="${out% *} "
        rss[buildkit]+="- "
    fi
done

walk=$(median ${secs[find]})
echo "no-op rebuild, $FILES-file context, median of $RUNS (alternating)"
echo
echo "| what | seconds | × stat walk | peak RSS |"
echo "|---|---|---|---|"
for name in "${names[@]}" find ${DOCKER:+buildkit}; do
    s=$(median ${secs[$name]})
    r=$(median ${rss[$name]})
    case $r in -) r=- ;; *) r="$((r / 1024)) MB" ;; esac
    printf '| %s | %s | %.2f | %s |\n' "$name" "$s" "$(echo "$s / $walk" | bc -l)" "$r"
done
