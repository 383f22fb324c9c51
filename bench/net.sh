#!/usr/bin/env bash
# Container networking: start latency of `rbuild run IMAGE true` with
# --network none, the default bridge, a user network and a published
# port, beside `podman run` (its netavark bridge, private store) when
# podman is installed; then throughput of a 100 MB download from busybox
# httpd in a container through `-p 127.0.0.1:PORT:80` (rbuild's userspace
# forwarder; podman's rootful port forwarding through nftables DNAT).
# Needs root (bridges). Only loopback is used.
#
# Then rootless (user nobody through setpriv; pasta): start latency with
# --network none, the default (pasta) and -p, 100 MB through -p (pasta's
# -t); and the two rootless backends side by side without rbuild, each
# carrying a namespace's traffic to a host httpd on 127.0.0.1: pasta
# (through the gateway address it maps to the host) and slirp4netns
# (10.0.2.2), start to first byte and 100 MB; and inbound, httpd in the
# namespace published by pasta's -t and by slirp4netns's hostfwd.
#
#   bench/net.sh                 # 50 runs each, 5 downloads
#   RUNS=20 DOWNLOADS=3 bench/net.sh
#   RBUILD=target/debug/rbuild bench/net.sh
#   PARTS=rootless bench/net.sh  # only the rootless part (PARTS=root: only root's)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-50}
downloads=${DOWNLOADS:-5}
parts=${PARTS:-root,rootless}
rbuild=${RBUILD:-$(scripts/build-release)}
[ "$(id -u)" = 0 ] || { echo "bench/net.sh needs root (bridge networking)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

work=$(mktemp -d)
chmod 0755 "$work"
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
if [[ ,$parts, == *,root,* ]] && command -v podman >/dev/null; then
  podman=(podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver vfs)
  "${rb[@]}" save busybox -o "$work/busybox.tar"
  "${podman[@]}" load -q -i "$work/busybox.tar" >/dev/null
  if ! "${podman[@]}" run --rm --network none docker.io/library/busybox:latest true; then
    echo "podman cannot run containers here: comparing without it" >&2
    podman=()
  fi
fi

# Shared by both parts.
mkdir -p "$work/www"
head -c 100000000 /dev/urandom >"$work/www/big"
echo small >"$work/www/small"
chmod -R a+rX "$work/www"
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
medians() {
  python3 - "$1" <<'PY'
import json, statistics, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = sorted(r["times"])
    p95 = t[min(len(t) - 1, int(len(t) * 0.95))]
    print(f"{r['command']:<34} median {statistics.median(t)*1000:7.1f} ms   p95 {p95*1000:7.1f} ms")
PY
}

if [[ ,$parts, == *,root,* ]]; then
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
medians "$work/start.json"

# Throughput: 100 MB through a published port.
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
fi

if [[ ,$parts, == *,rootless,* ]]; then
  if ! command -v pasta >/dev/null || ! command -v setpriv >/dev/null; then
    echo "rootless part skipped: pasta or setpriv is missing (scripts/install-deps)" >&2
  else
    uptime
    nobody=(setpriv --reuid 65534 --regid 65534 --clear-groups env HOME="$work/nobody" TMPDIR="$work/nobody")
    mkdir -p "$work/nobody"
    chown 65534:65534 "$work/nobody"
    "${nobody[@]}" testdata/make-busybox "$rbuild" "$work/nobody/store" >/dev/null
    nrb="${nobody[*]} $rbuild --root $work/nobody/store"
    $nrb run --network none busybox true
    hyperfine -N --runs "$runs" --warmup 3 --export-json "$work/rootless.json" \
      -n "rootless run --network none" "$nrb run --network none busybox true" \
      -n "rootless run (default: pasta)" "$nrb run busybox true" \
      -n "rootless run -p 127.0.0.1::80" "$nrb run -p 127.0.0.1::80 busybox true" \
      >"$work/hyperfine.log" 2>&1 || { cat "$work/hyperfine.log"; exit 1; }
    medians "$work/rootless.json"
    port=$(free_port)
    $nrb run -p "127.0.0.1:$port:80" -v "$work/www:/www:ro" busybox httpd -f -p 80 -h /www &
    pids+=($!)
    fetch "rootless -p (pasta -t)" "$port"
    kill -KILL "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

    # The backends alone: a namespace fetching from a host httpd on loopback.
    gw=$(ip route show default | awk '{print $3; exit}')
    port=$(free_port)
    busybox httpd -f -p "127.0.0.1:$port" -h "$work/www" &
    pids+=($!)
    cat >"$work/slirp.sh" <<'SH'
#!/bin/bash
# usage: slirp.sh URL: curl URL from a new namespace that slirp4netns serves
unshare -rn sh -c 'while ! ip -4 addr show tap0 2>/dev/null | grep -q inet; do sleep 0.002; done; curl -sf -o /dev/null "$0"' "$1" &
p=$!
# slirp4netns joins the namespace of $p: wait until unshare made it.
while [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.001; done
slirp4netns --configure --mtu=65520 "$p" tap0 >/dev/null 2>&1 &
s=$!
wait "$p"; r=$?
kill "$s"
exit $r
SH
    chmod 0755 "$work/slirp.sh"
    backends=(-n "pasta: namespace up + GET small" "${nobody[*]} pasta --config-net -q -f -- curl -sf -o /dev/null http://$gw:$port/small")
    big=(-n "pasta: namespace up + GET 100 MB" "${nobody[*]} pasta --config-net -q -f -- curl -sf -o /dev/null http://$gw:$port/big")
    if command -v slirp4netns >/dev/null; then
      backends+=(-n "slirp4netns: namespace up + GET small" "${nobody[*]} $work/slirp.sh http://10.0.2.2:$port/small")
      big+=(-n "slirp4netns: namespace up + GET 100 MB" "${nobody[*]} $work/slirp.sh http://10.0.2.2:$port/big")
    else
      echo "slirp4netns is not installed: pasta alone (apt-get install slirp4netns to compare)" >&2
    fi
    hyperfine -N --runs "$runs" --warmup 3 --export-json "$work/backends.json" "${backends[@]}" \
      >"$work/hyperfine.log" 2>&1 || { cat "$work/hyperfine.log"; exit 1; }
    medians "$work/backends.json"
    hyperfine -N --runs "$downloads" --warmup 1 --export-json "$work/big.json" "${big[@]}" \
      >"$work/hyperfine.log" 2>&1 || { cat "$work/hyperfine.log"; exit 1; }
    medians "$work/big.json"

    # Inbound, the backends alone: httpd in the namespace, 100 MB through
    # pasta's -t and through slirp4netns's hostfwd (its API socket).
    port=$(free_port)
    "${nobody[@]}" pasta --config-net -q -f -t "127.0.0.1/$port:80" -u none -T none -U none \
      -- busybox httpd -f -p 80 -h "$work/www" &
    pids+=($!)
    fetch "pasta -t (alone)" "$port"
    # (pasta leaves the command it spawned running: end that too.)
    spawned=$(cat "/proc/${pids[-1]}/task/${pids[-1]}/children" 2>/dev/null || true)
    kill "${pids[-1]}" $spawned 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true
    if command -v slirp4netns >/dev/null; then
      cat >"$work/slirp-in.sh" <<'SH'
#!/bin/bash
# usage: slirp-in.sh PORT WWW: httpd in a namespace slirp4netns serves, on 127.0.0.1:PORT
unshare -rn sh -c 'while ! ip -4 addr show tap0 2>/dev/null | grep -q inet; do sleep 0.002; done; exec busybox httpd -f -p 80 -h "$0"' "$2" &
p=$!
while [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.001; done
api=$HOME/slirp-api.sock
rm -f "$api"
slirp4netns --configure --mtu=65520 --api-socket "$api" "$p" tap0 >/dev/null 2>&1 &
s=$!
trap 'kill $p $s 2>/dev/null' TERM EXIT
while [ ! -S "$api" ]; do sleep 0.01; done
python3 -c 'import socket, sys
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
c.sendall(("{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_addr\":\"127.0.0.1\",\"host_port\":%s,\"guest_port\":80}}" % sys.argv[2]).encode())
c.recv(4096)' "$api" "$1"
wait "$p"
SH
      chmod 0755 "$work/slirp-in.sh"
      port=$(free_port)
      "${nobody[@]}" "$work/slirp-in.sh" "$port" "$work/www" &
      pids+=($!)
      fetch "slirp4netns hostfwd (alone)" "$port"
      kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
    fi
  fi
fi
uptime
