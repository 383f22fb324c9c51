#!/usr/bin/env bash
# Registry push/pull throughput over loopback, beside skopeo on the same
# image in the same run.
#
#   bench/registry.sh [MiB] [RUNS]     (defaults 200 and 3)
#
# Builds rbuild in release mode, generates an image of 4 layers of random
# data (incompressible, so the pushed bytes are ~MiB) with
# `FROM scratch` + COPY, starts the distribution registry
# (/usr/bin/docker-registry) on 127.0.0.1 with storage under $BENCH_DIR
# (default /tmp), then times with hyperfine (each run on a fresh
# registry storage / fresh store):
#   rbuild push                     store → empty registry
#   rbuild pull                     registry → fresh store
#   skopeo copy docker-archive → registry   (the same image, exported)
#   skopeo copy registry → oci dir
# Reports MB/s (10^6 bytes of compressed blobs moved per second).
set -euo pipefail

MIB=${1:-200}
RUNS=${2:-3}
cd "$(dirname "$0")/.."
BASE=${BENCH_DIR:-/tmp}/rbuild-registry-bench
for tool in hyperfine skopeo /usr/bin/docker-registry; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool; hint: scripts/install-deps" >&2
        exit 1
    }
done

RB=$(scripts/build-release)

rm -rf "$BASE"
mkdir -p "$BASE/ctx"
cleanup() {
    [ -f "$BASE/registry.pid" ] && kill "$(cat "$BASE/registry.pid")" 2>/dev/null
    rm -rf "$BASE"
}
trap cleanup EXIT

# The image: 4 COPY layers of random bytes.
per=$((MIB / 4))
printf 'FROM scratch\n' >"$BASE/ctx/Dockerfile"
for i in 1 2 3 4; do
    head -c "$((per * 1024 * 1024))" /dev/urandom >"$BASE/ctx/data$i"
    printf 'COPY data%d /data%d\n' "$i" "$i" >>"$BASE/ctx/Dockerfile"
done
PORT=$(bench/lib/registry "$BASE")
REG=127.0.0.1:$PORT
"$BASE/fresh-registry"

export DOCKER_CONFIG=$BASE/docker-config
ROOT=$BASE/root
"$RB" --root "$ROOT" build -q -t "$REG/bench:1" "$BASE/ctx" >/dev/null
"$RB" --root "$ROOT" build -q -o "type=docker,dest=$BASE/image.tar" "$BASE/ctx" >/dev/null
# Bytes that travel: the blobs of the pushed image (manifest, config, layers).
BYTES=$("$RB" --root "$ROOT" inspect "$REG/bench:1" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)[0].get("Size") or 0)')
if [ "$BYTES" = 0 ]; then
    BYTES=$((MIB * 1024 * 1024))
fi
echo "image: $MIB MiB of random data in 4 layers, $BYTES bytes of layer blobs"

hyperfine --runs "$RUNS" --export-json "$BASE/push.json" \
    -n "rbuild push" --prepare "$BASE/fresh-registry" \
    "$RB --root $ROOT push -q $REG/bench:1 >/dev/null" \
    -n "skopeo copy docker-archive -> registry" --prepare "$BASE/fresh-registry" \
    "skopeo copy -q --dest-tls-verify=false docker-archive:$BASE/image.tar docker://$REG/bench:1"

# Pull sources: what each tool pushed once.
"$BASE/fresh-registry"
"$RB" --root "$ROOT" push -q "$REG/bench:1" >/dev/null
skopeo copy -q --dest-tls-verify=false "docker-archive:$BASE/image.tar" "docker://$REG/skbench:1"
hyperfine --runs "$RUNS" --export-json "$BASE/pull.json" \
    -n "rbuild pull (fresh root)" --prepare "rm -rf $BASE/pullroot" \
    "$RB --root $BASE/pullroot pull $REG/bench:1 >/dev/null" \
    -n "skopeo copy registry -> oci dir" --prepare "rm -rf $BASE/oci" \
    "skopeo copy -q --src-tls-verify=false docker://$REG/skbench:1 oci:$BASE/oci:x"

python3 - "$BYTES" "$BASE/push.json" "$BASE/pull.json" <<'PY'
import json, sys
size = int(sys.argv[1])
for path in sys.argv[2:]:
    for r in json.load(open(path))["results"]:
        mean, sd = r["mean"], r["stddev"] or 0.0
        print(f"{r['command']:40s} {mean:6.2f} s ± {sd:4.2f}"
              f"  {size / mean / 1e6:7.1f} MB/s")
PY
