#!/usr/bin/env bash
# Sandbox start-run-teardown latency: `rbuild run` of `true` on a busybox
# image from the store (snapshots as overlay lower dirs, as users run it),
# on a rootfs directory (in place, and on a throw-away overlay), beside `runc run` of an
# equivalent bundle (config from `runc spec`, same rootfs), in one hyperfine
# session. Prints median and p95 per command; target: rbuild median <= 10 ms.
# `--network none` throughout: runc's bundle gets an empty network namespace
# too (a root `rbuild run` defaults to the bridge; bench/net.sh measures that).
#
# The machine is usually shared: `uptime` is printed before and after, and
# ROUNDS=n repeats the whole session n times (load drifts between the
# commands of one session) and also prints each command's median over the
# rounds. BASE=path/to/older/rbuild adds that binary's store run for an A/B
# in the same session.
#
#   bench/sandbox.sh            # 100 runs each
#   RUNS=20 bench/sandbox.sh
#   ROUNDS=5 RUNS=40 BASE=/tmp/rbuild-old bench/sandbox.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-100}
rbuild=${RBUILD:-$(scripts/build-release)}
command -v hyperfine >/dev/null || { echo "hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
command -v runc >/dev/null || { echo "runc is missing (apt-get install runc)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Run an installed copy, as users do: a binary fresh from the linker sits in
# the page cache in small folios, and every exec's page faults walk them
# (about 1 ms more per run here than the same bytes copied into place).
install -m 0755 "$rbuild" "$work/rbuild"
rbuild=$work/rbuild

rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp,root}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  mkdir -p "$rootfs/$(dirname "$applet")"
  [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
# runc needs the mount points in the image; give rbuild the same rootfs.
mkdir -p "$rootfs"/{proc,dev,sys}
touch "$rootfs"/etc/{hosts,hostname,resolv.conf}

bundle=$work/bundle
mkdir -p "$bundle"
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" "$rootfs" <<'PY'
import json, sys
path, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["root"] = {"path": rootfs, "readonly": False}
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
json.dump(c, open(path, "w"), indent=1)
PY

# The same rootfs as an image in a store; one run makes its snapshot.
"$rbuild" --root "$work/store" import "$rootfs" bench:latest >/dev/null
"$rbuild" --root "$work/store" run --network none bench:latest true

rounds=${ROUNDS:-1}
base_cmd=()
if [ -n "${BASE:-}" ]; then
  "$BASE" --root "$work/store" run --network none bench:latest true
  base_cmd=(-n "baseline: $BASE run IMAGE true" "$BASE --root $work/store run --network none bench:latest true")
fi
uptime
jsons=()
for round in $(seq "$rounds"); do
  json=${EXPORT_JSON:-$work/bench}-$round.json
  jsons+=("$json")
  hyperfine -N --runs "$runs" --warmup 5 --export-json "$json" \
    -n "rbuild run IMAGE true (store, overlay)" "$rbuild --root $work/store run --network none bench:latest true" \
    "${base_cmd[@]}" \
    -n "rbuild run --rootfs DIR true" "$rbuild run --network none --rootfs $rootfs true" \
    -n "rbuild run --rootfs DIR:O true (overlay)" "$rbuild run --network none --rootfs $rootfs:O true" \
    -n "runc run (busybox bundle, true)" "runc --root $work/runc-state run --bundle $bundle bench" \
    >"$work/hyperfine.log" 2>&1
done
uptime

python3 - "${jsons[@]}" <<'PY'
import json, statistics, sys
per_cmd = {}
for i, path in enumerate(sys.argv[1:], 1):
    res = json.load(open(path))["results"]
    if len(sys.argv) > 2:
        print(f"round {i}")
    print(f"{'command':60} {'median ms':>10} {'p95 ms':>8} {'runs':>5}")
    for r in res:
        t = sorted(r["times"])
        p95 = t[min(len(t) - 1, int(round(0.95 * (len(t) - 1))))]
        per_cmd.setdefault(r["command"], []).append((r["median"] * 1000, p95 * 1000))
        print(f"{r['command']:60} {r['median']*1000:10.2f} {p95*1000:8.2f} {len(t):5}")
if len(sys.argv) > 2:
    print("median over rounds")
    for cmd, v in per_cmd.items():
        print(f"{cmd:60} {statistics.median(m for m, _ in v):10.2f} {statistics.median(p for _, p in v):8.2f}")
PY
