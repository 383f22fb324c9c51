#!/usr/bin/env bash
# What a RUN that writes a big layer costs after its process exits: a
# busybox RUN writing SIZE_MB of files (FILES files) is built with
# --no-cache and --trace; prints the wall time, peak RSS (GNU time %M)
# and the RUN step's phases from the trace (process, diff, pack/hash,
# write, snapshot...), RUNS times.
#
#   bench/run_commit.sh
#
# env: SIZE_MB=300  FILES=3000  RUNS=3
#      RBUILD=path                         (default: the release binary)
#      BENCH_DIR=/var/tmp/rbuild-run-commit
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
SIZE_MB=${SIZE_MB:-300}
FILES=${FILES:-3000}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rbuild-run-commit}
if [ -z "${RBUILD:-}" ]; then
    RBUILD=$("$repo/scripts/build-release")
fi
mkdir -p "$BENCH_DIR/ctx"
ROOT=$BENCH_DIR/root
"$repo/testdata/make-busybox" "$RBUILD" "$ROOT" >/dev/null
kb=$((SIZE_MB * 1024 / FILES))
cat >"$BENCH_DIR/ctx/Dockerfile" <<EOF
FROM busybox
RUN mkdir /d && i=0 && while [ \$i -lt $FILES ]; do head -c ${kb}k /dev/urandom >/d/f\$i; i=\$((i+1)); done
EOF

for n in $(seq "$RUNS"); do
    # Each --no-cache run makes a new SIZE_MB layer: drop the previous one
    # (image, build cache index entries, blob and snapshot) first.
    "$RBUILD" --root "$ROOT" rmi run-commit >/dev/null 2>&1 || true
    "$RBUILD" --root "$ROOT" cache prune -a -f >/dev/null 2>&1 || true
    "$RBUILD" --root "$ROOT" system prune -f >/dev/null 2>&1 || true
    trace=$BENCH_DIR/trace-$n.json
    out=$(/usr/bin/time -f '%e %M' "$RBUILD" --root "$ROOT" build -q --no-cache \
        --trace "$trace" -t run-commit "$BENCH_DIR/ctx" 2>&1 >/dev/null | tail -1)
    echo "run $n: ${out% *} s, $((${out#* } / 1024)) MB peak RSS"
    python3 - "$trace" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
events = d["traceEvents"] if isinstance(d, dict) else d
spans = [e for e in events if e.get("ph") == "X"]
run = [e for e in spans if e["name"].startswith("[2/2] RUN")]
if run:
    r = run[0]
    t0, t1 = r["ts"], r["ts"] + r["dur"]
    print(f"  {r['name'][:40]}: {r['dur'] / 1e6:.2f} s")
    for e in spans:
        if e is not r and e.get("tid") == r.get("tid") and t0 <= e["ts"] <= t1:
            print(f"    {e['name']:<12} {e['dur'] / 1e6:7.2f} s")
for e in spans:
    if e["name"] in ("plan", "solve", "export"):
        print(f"  build {e['name']:<8} {e['dur'] / 1e6:7.2f} s")
EOF
done
