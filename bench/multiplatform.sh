#!/usr/bin/env bash
# A two-platform build (linux/amd64 + linux/arm64, arm64 steps under
# qemu-user) against the two single-platform builds, each from a fresh
# store with --no-cache. Needs what cli/tests/build_multiplatform.rs needs
# (scripts/install-deps as root).
#
# usage: bench/multiplatform.sh [RBUILD_BINARY]   (default target/release/rbuild)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=${1:-$here/target/release/rbuild}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
"$here/testdata/make-busybox-multiarch" "$rbuild" "$root"
mkdir -p "$work/ctx"
cat >"$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM --platform=$BUILDPLATFORM busybox:multiarch AS host
RUN i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo built > /host.txt
FROM busybox:multiarch
COPY --from=host /host.txt /
RUN i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; uname -m > /arch.txt
DOCKERFILE
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
b() { "$rbuild" --root "$root" build -q --no-cache --platform "$1" "$work/ctx"; }
for run in 1 2 3; do
    amd=$(t b linux/amd64)
    arm=$(t b linux/arm64)
    both=$(t b linux/amd64,linux/arm64)
    printf 'run %s: linux/amd64 %.2fs  linux/arm64 %.2fs  sum %.2fs  two-platform %.2fs\n' \
        "$run" "$amd" "$arm" "$(echo "$amd + $arm" | bc)" "$both"
done
