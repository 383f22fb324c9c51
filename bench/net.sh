#!/usr/bin/env bash
# Container networking: start latency of `rbuild run IMAGE true` with
# --network none, the default bridge, a user network and a published
# port, beside `podman run` (its netavark bridge, private store) when
# podman is installed; then throughput of a 100 MB download from busybox
# httpd in a container through `-p 127.0.0.1:PORT:80` (rbuild's userspace
# forwarder; podman's rootful port forwarding through nftables DNAT).
# Needs root (bridges). Only loopback is used.
#
#   bench/net.sh                 # 50 runs each, 5 downloads
#   RUNS=20 DOWNLOADS=3 bench/net.sh
#   RBUILD=target/debug/rbuild bench/net.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-50}
downloads=${DOWNLOADS:-5}
rbuild=${RBUILD:-$(scripts/build-release)}
[ "$(id -u)" = 0 ] || { echo "bench/net.sh needs root (bridge networking)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

work=$(mktemp -d)
pids=()
podman=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((${#podman[@]})); then
    "${podman[@]}" rm -af >/dev/null 2>&1 || true
  fi
  "$rbuild" --root "$work/store" network rm benchnet >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
install -m 0755 "$rbuild" "$work/rbuild"
rbuild=$work/rbuild
rb=("$rbuild" --root "$work/store")

testdata/make-busybox "$rbuild" "$work/store" >/dev/null
"${rb[@]}" network create benchnet >/dev/null
"${rb[@]}" run --network none busybox true

podman=()
if command -v podman >/dev/null; then
  podman=(podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver vfs)
  "${rb[@]}" save busybox -o "$work/busybox.tar"
  "${podman[@]}" load -q -i "$work/busybox.tar" >/dev/null
  if ! "${podman[@]}" run --rm --network none docker.io/library/busybox:latest true; then
    echo "podman cannot run containers here: comparing without it" >&2
    podman=()
  fi
fi

uptime
cmds=(
  -n "rbuild run --network none" "${rb[*]} run --network none busybox true"
  -n "rbuild run (default bridge)" "${rb[*]} run busybox true"
  -n "rbuild run --network benchnet" "${rb[*]} run --network benchnet busybox true"
  -n "rbuild run -p 127.0.0.1::80" "${rb[*]} run -p 127.0.0.1::80 busybox true"
)
if ((${#podman[@]})); then
  cmds+=(
    -n "podman run --network none" "${podman[*]} run --rm --network none docker.io/library/busybox:latest true"
    -n "podman run (bridge)" "${podman[*]} run --rm docker.io/library/busybox:latest true"
    -n "podman run -p 127.0.0.1::80" "${podman[*]} run --rm -p 127.0.0.1::80 docker.io/library/busybox:latest true"
  )
fi
hyperfine -N --runs "$runs" --warmup 3 --export-json "$work/start.json" "${cmds[@]}" >"$work/hyperfine.log" 2>&1 ||
  { cat "$work/hyperfine.log"; exit 1; }
python3 - "$work/start.json" <<'PY'
import json, statistics, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = sorted(r["times"])
    p95 = t[min(len(t) - 1, int(len(t) * 0.95))]
    print(f"{r['command']:<34} median {statistics.median(t)*1000:7.1f} ms   p95 {p95*1000:7.1f} ms")
PY

# Throughput: 100 MB through a published port.
mkdir -p "$work/www"
head -c 100000000 /dev/urandom >"$work/www/big"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fetch() { # name port
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$2/big" && break; sleep 0.05; done
  local total=0
  for _ in $(seq "$downloads"); do
    local t
    t=$(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$2/big")
    total=$(python3 -c "print($total + $t)")
  done
  python3 -c "t=$total/$downloads; print(f'{\"$1\":<34} 100 MB in {t*1000:7.1f} ms  ({100/t:7.1f} MB/s)')"
}
port=$(free_port)
"${rb[@]}" run -p "127.0.0.1:$port:80" -v "$work/www:/www:ro" busybox httpd -f -p 80 -h /www &
pids+=($!)
fetch "rbuild -p (userspace forwarder)" "$port"
kill -KILL "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
"${rb[@]}" system check >/dev/null || true
if ((${#podman[@]})); then
  port=$(free_port)
  "${podman[@]}" run -d --rm -p "127.0.0.1:$port:80" -v "$work/www:/www:ro" docker.io/library/busybox:latest httpd -f -p 80 -h /www >/dev/null
  fetch "podman -p (rootful, netavark)" "$port"
  "${podman[@]}" rm -f -a -t 0 >/dev/null
fi
uptime
