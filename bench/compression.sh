#!/usr/bin/env bash
# Layer compression: throughput per codec and level over a real layer,
# compressed bytes beside docker's gzip, and a push of the image beside
# `skopeo copy` of the same image in the same run.
#
#   bench/compression.sh [MiB] [RUNS]      (defaults 200 and 3)
#   RSS_MIB=1024 bench/compression.sh      also: peak RSS of `rbuild push`
#                                          (gzip-6, zstd-9) of an image with
#                                          one 1 GiB layer
#
# The layer is real files: the host's /usr (libraries, binaries, share),
# copied until MiB, built into an image `FROM scratch` + `COPY`. Then:
#   1. rbuild's codec (store/examples/layer_bench) on that layer tar:
#      gzip levels 1, 6 (the default), 9; zstd levels 1, 3 (default), 9,
#      19 — MB/s of uncompressed tar, ratio, peak RSS. Beside them, GNU
#      `gzip -6 -n` (the deflate level docker's Go compress/gzip uses for
#      `docker push`) and `zstd -3 -T0` on the same bytes.
#   2. hyperfine, alternating, each run on an empty registry:
#        rbuild push (cold)  the gzip variant made and uploaded
#        rbuild push (warm)  the variant already in the store: upload only
#        skopeo copy         the same image (OCI dir, uncompressed layers)
#                            to the registry with --dest-compress (gzip)
#      and the bytes each left in the registry.
# Figures depend on what else runs on the machine; quote them as such.
set -euo pipefail

MIB=${1:-200}
RUNS=${2:-3}
cd "$(dirname "$0")/.."
BASE=${BENCH_DIR:-/tmp}/rbuild-compression-bench
for tool in hyperfine skopeo /usr/bin/docker-registry /usr/bin/time gzip zstd python3; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool; hint: scripts/install-deps" >&2
        exit 1
    }
done

RB=$(scripts/build-release)
# The codec example with build-release's target and flags: it shares that
# build's dependencies instead of a second release build of them.
HOST=$(rustc -vV | sed -n 's/^host: //p')
FLAGS_VAR=CARGO_TARGET_$(echo "$HOST" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
env "$FLAGS_VAR=-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --locked -q --target "$HOST" -p rbuild-store --example layer_bench
CODEC=target/$HOST/release/examples/layer_bench

rm -rf "$BASE"
mkdir -p "$BASE/ctx/files"
cleanup() {
    [ -f "$BASE/registry.pid" ] && kill "$(cat "$BASE/registry.pid")" 2>/dev/null
    rm -rf "$BASE"
}
trap cleanup EXIT

# Real files from /usr until MiB (sorted walk: the same set every run).
bench/lib/usr-files "$BASE/ctx/files" "$MIB"
printf 'FROM scratch\nCOPY files/ /\n' >"$BASE/ctx/Dockerfile"
ROOT=$BASE/root
export DOCKER_CONFIG=$BASE/docker-config
"$RB" --root "$ROOT" build -q -t bench:src "$BASE/ctx" >/dev/null
# The layer tar as the store holds it (uncompressed: digest = diffID).
LAYER=$("$RB" --root "$ROOT" inspect --format '{{index .RootFS.Layers 0}}' bench:src)
TAR=$ROOT/store-v1/blobs/sha256/${LAYER#sha256:}
SIZE=$(stat -c %s "$TAR")
cat "$TAR" >/dev/null # warm the page cache

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine), cores: $(nproc)"
echo "layer: $(find "$BASE/ctx/files" -type f | wc -l) files from /usr, tar $SIZE bytes"
echo
echo "== 1. codec throughput (MB/s of uncompressed tar), ratio, peak RSS"
codec() {
    local name=$1
    shift
    local log=$BASE/time.log
    local err=$BASE/codec.err
    local line
    line=$(/usr/bin/time -v -o "$log" "$@" 2>"$err" | tail -1)
    local rss out
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    out=$(grep -o 'compressed size [0-9]*' "$err" | awk '{print $3}')
    printf '%-14s %8s MB/s  %5.2fx  %11s bytes  peak RSS %4d MB\n' "$name" \
        "$(awk '{print $(NF-1)}' <<<"$line")" "$(echo "$SIZE / $out" | bc -l)" "$out" "$((rss / 1024))"
}
for level in 1 6 9; do codec "rbuild gzip-$level" "$CODEC" gzip "$TAR" "$level"; done
for level in 1 3 9 19; do codec "rbuild zstd-$level" "$CODEC" zstd "$TAR" "$level"; done
tool() {
    local name=$1
    shift
    local start end out
    start=$(date +%s.%N)
    out=$("$@" <"$TAR" | wc -c)
    end=$(date +%s.%N)
    printf '%-14s %8.0f MB/s  %5.2fx  %11s bytes\n' "$name" \
        "$(echo "$SIZE / ($end - $start) / 1000000" | bc -l)" "$(echo "$SIZE / $out" | bc -l)" "$out"
}
tool "gzip -6 -n" gzip -6 -n -c
tool "zstd -3 -T0" zstd -3 -T0 -q -c
echo

echo "== 2. push of the image (registry on 127.0.0.1, empty before every run)"
PORT=$(bench/lib/registry "$BASE")
REG=127.0.0.1:$PORT
# skopeo's source: the same image, layers uncompressed, as an OCI dir.
"$RB" --root "$ROOT" build -q -o "type=oci,dest=$BASE/src.tar,compression=uncompressed" "$BASE/ctx" >/dev/null
mkdir "$BASE/src-oci"
tar -xf "$BASE/src.tar" -C "$BASE/src-oci"
# Cold: forget the variant (its record), push the uncompressed image.
COLD="$BASE/fresh-registry && rm -rf $ROOT/store-v1/variants-v1 && $RB --root $ROOT tag bench:src $REG/bench:1"
hyperfine --runs "$RUNS" --style basic \
    --prepare "$COLD" -n "rbuild push (cold: compress + upload)" "$RB --root $ROOT push -q $REG/bench:1" \
    --prepare "$BASE/fresh-registry" -n "rbuild push (warm: variant reused)" "$RB --root $ROOT push -q $REG/bench:1" \
    --prepare "$BASE/fresh-registry" -n "skopeo copy --dest-compress" \
    "skopeo copy -q --dest-tls-verify=false --dest-compress oci:$BASE/src-oci docker://$REG/skopeo:1"
registry_bytes() {
    find "$BASE/storage/docker/registry/v2/blobs" -name data -size +100k -printf '%s\n' | awk '{s += $1} END {print s}'
}
"$BASE/fresh-registry"
"$RB" --root "$ROOT" tag bench:src "$REG/bench:1"
"$RB" --root "$ROOT" push -q "$REG/bench:1" >/dev/null
echo "bytes in the registry after rbuild push:  $(registry_bytes)"
"$BASE/fresh-registry"
skopeo copy -q --dest-tls-verify=false --dest-compress "oci:$BASE/src-oci" "docker://$REG/skopeo:1"
echo "bytes in the registry after skopeo copy:  $(registry_bytes)"

if [ -n "${RSS_MIB:-}" ]; then
    echo
    echo "== 3. peak RSS of a push of one ${RSS_MIB} MiB layer (compress + upload)"
    # The tree, the layer blob, its snapshot and the gzip variant.
    need=$((RSS_MIB * 4))
    free=$(df -m --output=avail "$BASE" | tail -1)
    if [ "$free" -lt "$need" ]; then
        echo "skipped: needs ~$need MB free under $BASE, has $free MB"
        exit 0
    fi
    mkdir -p "$BASE/big"
    # Compressible and not trivial: the codec example's generated tree.
    "$CODEC" gen "$BASE/big/files" "$RSS_MIB"
    printf 'FROM scratch\nCOPY files/ /\n' >"$BASE/big/Dockerfile"
    "$RB" --root "$ROOT" build -q -t "$REG/big:1" "$BASE/big" >/dev/null
    rm -rf "$BASE/big/files"
    "$BASE/fresh-registry"
    for args in "" "--compression-format zstd --compression-level 9"; do
        "$BASE/fresh-registry"
        rm -rf "$ROOT/store-v1/variants-v1"
        # shellcheck disable=SC2086
        /usr/bin/time -v -o "$BASE/push.time" "$RB" --root "$ROOT" push -q $args "$REG/big:1" >/dev/null
        awk -F': ' -v what="rbuild push ${args:-(gzip-6)}" '/Maximum resident set size/ {rss = $2}
            /Elapsed/ {t = $2} END {printf "%s: peak RSS %d MB, elapsed %s\n", what, rss / 1024, t}' "$BASE/push.time"
    done
fi
