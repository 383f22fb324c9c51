#!/usr/bin/env bash
# Compressed bytes on the registry: rbuild push beside docker 20.10's
# `docker push` of the same image, in the same run.
#
#   bench/docker_bytes.sh [MiB]      (default 200; needs root for dockerd)
#
# The image is real files: the host's /usr copied until MiB, built
# `FROM scratch` + `COPY` by rbuild, saved as a docker-archive
# (uncompressed layers) and loaded into a private docker 20.10 daemon
# (its own data root, exec root and socket under $BENCH_DIR, a bridge of its own,
# no iptables, vfs; Debian's docker.io). Both push to a distribution
# registry on 127.0.0.1 (empty before each push), which stores exactly
# the bytes it was sent; the layer blob sizes there are compared:
#   docker push            Go's compress/gzip, default level
#   rbuild push            gzip-6 (the default), then zstd-3 and gzip-9
# Figures depend on the machine and what else runs; quote them as such.
set -euo pipefail

MIB=${1:-200}
cd "$(dirname "$0")/.."
BASE=${BENCH_DIR:-/var/tmp}/rbuild-docker-bytes
for tool in /usr/sbin/dockerd /usr/bin/docker /usr/bin/docker-registry python3; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool; hint: scripts/install-deps" >&2
        exit 1
    }
done
[ "$(id -u)" = 0 ] || {
    echo "dockerd needs root" >&2
    exit 1
}

RB=$(scripts/build-release)
rm -rf "$BASE"
mkdir -p "$BASE/ctx/files"
DK=$(mktemp -d /tmp/dkb.XXXX) # short: dockerd's sockets live under it
# dockerd's own bridge: started with --bridge=none, a dockerd deletes the
# host's docker0.
BR=rbdkb$$
cleanup() {
    [ -f "$DK/pid" ] && kill "$(cat "$DK/pid")" 2>/dev/null && sleep 2
    ip link del "$BR" 2>/dev/null || true
    [ -f "$BASE/registry.pid" ] && kill "$(cat "$BASE/registry.pid")" 2>/dev/null
    rm -rf "$BASE" "$DK"
}
trap cleanup EXIT

bench/lib/usr-files "$BASE/ctx/files" "$MIB"
printf 'FROM scratch\nCOPY files/ /\n' >"$BASE/ctx/Dockerfile"
ROOT=$BASE/root
export DOCKER_CONFIG=$BASE/docker-config BUILDX_NO_DEFAULT_ATTESTATIONS=1
"$RB" --root "$ROOT" build -q -t bench:src "$BASE/ctx" >/dev/null
"$RB" --root "$ROOT" save -o "$BASE/src.tar" bench:src
rm -rf "$BASE/ctx/files"

PORT=$(bench/lib/registry "$BASE")
REG=127.0.0.1:$PORT
fresh_registry() { "$BASE/fresh-registry"; }
# Layer blobs only (configs and manifests are a few hundred bytes).
layer_bytes() {
    find "$BASE/storage/docker/registry/v2/blobs" -name data -size +4k -printf '%s\n' | awk '{s += $1} END {print s}'
}

ip link add "$BR" type bridge
ip addr add 10.199.250.1/24 dev "$BR"
/usr/sbin/dockerd --data-root="$DK/data" --exec-root="$DK/x" --pidfile="$DK/pid" \
    --host="unix://$DK/sock" --bridge="$BR" --iptables=false --ip-masq=false \
    --ip-forward=false --storage-driver=vfs --containerd-namespace=rbuild-bench \
    --containerd-plugins-namespace=rbuild-bench-plugins >"$DK/log" 2>&1 </dev/null &
docker() { /usr/bin/docker --host="unix://$DK/sock" "$@"; }
for _ in $(seq 300); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
docker load -q -i "$BASE/src.tar" >/dev/null

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine), cores: $(nproc)"
echo "image: $MIB MiB of /usr, uncompressed layer $(tar -tvf "$BASE/src.tar" | awk '$3 > 1000000 {print $3}' | sort -n | tail -1) bytes"
fresh_registry
docker tag bench:src "$REG/docker:1"
start=$(date +%s.%N)
docker push -q "$REG/docker:1" >/dev/null
end=$(date +%s.%N)
D=$(layer_bytes)
printf '%-44s %12s bytes  %6.2f s\n' "docker 20.10 push (gzip)" "$D" "$(echo "$end - $start" | bc -l)"
for args in "" "--compression-format zstd" "--compression-level 9"; do
    fresh_registry
    rm -rf "$ROOT/store-v1/variants-v1"
    "$RB" --root "$ROOT" tag bench:src "$REG/rbuild:1"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$RB" --root "$ROOT" push -q $args "$REG/rbuild:1" >/dev/null
    end=$(date +%s.%N)
    B=$(layer_bytes)
    printf '%-44s %12s bytes  %6.2f s  (%.3f× docker'"'"'s)\n' "rbuild push ${args:-(gzip-6)}" "$B" \
        "$(echo "$end - $start" | bc -l)" "$(echo "$B / $D" | bc -l)"
done
