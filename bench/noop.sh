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
#      BUILDCTL=1                     also a current BuildKit: a private
#                                     buildkitd with the OCI worker
#                                     (bench/lib/buildkitd) driven by buildctl,
#                                     FROM busybox served by a loopback
#                                     registry it takes as docker.io's mirror;
#                                     BUILDCTL=path and BUILDKITD=path name
#                                     the binaries (default: on PATH)
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

# A current BuildKit: its buildkitd and mirror registry stop when this ends.
bk_build=()
if [ -n "${BUILDCTL:-}" ]; then
    bkctl=$BUILDCTL
    [ "$bkctl" = 1 ] && bkctl=buildctl
    bkd=${BUILDKITD:-buildkitd}
    bk_dir=$BENCH_DIR/buildctl
    stop_buildctl() {
        "$repo/bench/lib/stop-pidfiles" "$bk_dir/daemon/buildkitd.pid" "$bk_dir/registry/registry.pid"
    }
    mkdir -p "$bk_dir/registry" "$bk_dir/daemon"
    trap stop_buildctl EXIT
    port=$("$repo/bench/lib/registry" "$bk_dir/registry")
    "$bk_dir/registry/fresh-registry"
    addr=$(BUILDKITD=$bkd BUILDCTL=$bkctl "$repo/bench/lib/buildkitd" "$bk_dir/daemon" "127.0.0.1:$port")
    # busybox from a store of its own (the same digest every run), pushed
    # as docker.io/library/busybox:latest's mirror copy.
    push_root=$bk_dir/push-root
    mirror_ref=127.0.0.1:$port/library/busybox:latest
    "$RBUILD" --root "$push_root" inspect busybox:latest >/dev/null 2>&1 ||
        "$repo/testdata/make-busybox" "$RBUILD" "$push_root" >/dev/null
    "$RBUILD" --root "$push_root" tag busybox:latest "$mirror_ref"
    "$RBUILD" --root "$push_root" push -q "$mirror_ref" >/dev/null
    "$RBUILD" --root "$push_root" rmi "$mirror_ref" >/dev/null
    bk_build=("$bkctl" --addr "$addr" build --progress quiet --frontend dockerfile.v0
        --local "context=$ctx" --local "dockerfile=$ctx" --output "type=image,name=noop")
    for _ in 1 2; do "${bk_build[@]}" >/dev/null; done
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
    if [ ${#bk_build[@]} -gt 0 ]; then
        out=$($TIME -f '%e %M' "${bk_build[@]}" 2>&1 >/dev/null | tail -1)
        secs[buildctl]+="${out% *} "
        rss[buildctl]+="- " # the client's; buildkitd's is below the table
    fi
done

# shellcheck disable=SC2086 # the lists are space-separated numbers
walk=$(median ${secs[find]})
echo "no-op rebuild, $FILES-file context, median of $RUNS (alternating)"
echo
echo "| what | seconds | × stat walk | peak RSS |"
echo "|---|---|---|---|"
others=()
[ "${DOCKER:-}" = 1 ] && others+=(buildkit)
[ ${#bk_build[@]} -gt 0 ] && others+=(buildctl)
for name in "${names[@]}" find "${others[@]}"; do
    # shellcheck disable=SC2086 # the lists are space-separated numbers
    s=$(median ${secs[$name]})
    # shellcheck disable=SC2086
    r=$(median ${rss[$name]})
    case $r in -) r=- ;; *) r="$((r / 1024)) MB" ;; esac
    printf '| %s | %s | %.2f | %s |\n' "$name" "$s" "$(echo "$s / $walk" | bc -l)" "$r"
done
if [ ${#bk_build[@]} -gt 0 ]; then
    echo
    echo "buildctl: $("$bkd" --version | sed 's/ *$//'); buildkitd's own peak RSS" \
        "over its life (VmHWM, the first cold build included):" \
        "$(($(awk '/^VmHWM/ {print $2}' "/proc/$(cat "$bk_dir/daemon/buildkitd.pid")/status") / 1024)) MB"
fi
