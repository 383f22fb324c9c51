#!/usr/bin/env bash
# A RUN-heavy application build without the download noise: the rust app
# of bench/build.sh (apt cargo + libc6-dev, vendored crates, cargo build
# --release), on a base image that already holds apt's downloads
# (`apt-get install --download-only`, built once per builder). Each timed
# build runs everything after FROM again: the `apt-get install` RUN (dpkg
# writes ~900 MB: the layer a builder must commit), the COPYs and `cargo
# build`. Between runs each builder's build cache and dangling images are
# pruned and `sync` writes back what a builder left dirty (docker's does
# not sync), untimed, so that no run pays for the one before.
#
# Builders run interleaved (one build of each, RUNS times), so a machine
# getting busier or quieter affects them alike; prints every run, then the
# medians and the first builder's time over each one's.
#
#   bench/run_layers_local.sh
#
# env: RUNS=5
#      RBUILD=path            rbuild binary (default: scripts/build-release)
#      RBUILD_BASE=path       another rbuild binary to compare with (optional)
#      DOCKER=1               also docker's BuildKit (DOCKER_BUILDKIT=1
#                             /usr/bin/docker build; needs dockerd running)
#      BENCH_DIR=/var/tmp/rbuild-bench   must hold ctx-rust and the
#                             debian:bookworm base: run `bench/build.sh rust`
#                             once first
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rbuild-bench}
ROOT=$BENCH_DIR/rbuild-root
if [ -z "${RBUILD:-}" ]; then
    RBUILD=$("$repo/scripts/build-release")
fi
[ -f "$BENCH_DIR/ctx-rust/Cargo.toml" ] || {
    echo "no $BENCH_DIR/ctx-rust: run bench/build.sh rust once first" >&2
    exit 1
}

ctx=$BENCH_DIR/ctx-rust-local
base_ctx=$BENCH_DIR/ctx-rust-local-base
rm -rf "$ctx" "$base_ctx"
cp -a "$BENCH_DIR/ctx-rust" "$ctx"
mkdir -p "$base_ctx"
cat >"$base_ctx/Dockerfile" <<'EOF'
FROM debian:bookworm
RUN apt-get update -q && apt-get install -y -q --no-install-recommends --download-only cargo libc6-dev
EOF
cat >"$ctx/Dockerfile" <<'EOF'
FROM run-layers-base:1
RUN apt-get install -y -q --no-install-recommends cargo libc6-dev \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY vendor ./vendor
COPY src ./src
RUN cargo build --release --locked --offline -q && cp target/release/app /usr/local/bin/app
CMD ["app"]
EOF

builders=("rbuild")
[ -n "${RBUILD_BASE:-}" ] && builders+=("rbuild-base")
[ "${DOCKER:-0}" = 1 ] && builders+=("buildkit")

build() {
    local who=$1 dir=$2 tag=$3
    case $who in
    rbuild) "$RBUILD" --root "$ROOT" build -q -t "$tag" "$dir" ;;
    rbuild-base) "$RBUILD_BASE" --root "$ROOT" build -q -t "$tag" "$dir" ;;
    buildkit) DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network host -t "$tag" "$dir" ;;
    esac
}

# Each run leaves a ~1 GB layer in the build cache; the base stays, as an
# image.
prune() {
    case $1 in
    rbuild | rbuild-base)
        "$RBUILD" --root "$ROOT" image prune -f >/dev/null 2>&1 || true
        "$RBUILD" --root "$ROOT" cache prune -a -f >/dev/null 2>&1 || true
        ;;
    buildkit)
        /usr/bin/docker image prune -f >/dev/null 2>&1 || true
        /usr/bin/docker builder prune -a -f >/dev/null 2>&1 || true
        ;;
    esac
}

# The base holding apt's downloads, once per store (rbuild's two binaries
# share one).
build rbuild "$base_ctx" run-layers-base:1 >/dev/null
if [ "${DOCKER:-0}" = 1 ]; then
    build buildkit "$base_ctx" run-layers-base:1 >/dev/null
fi
for who in "${builders[@]}"; do
    prune "$who"
done
sync

times=$(mktemp)
trap 'rm -f "$times"' EXIT
for i in $(seq "$RUNS"); do
    for who in "${builders[@]}"; do
        t0=$(date +%s%N)
        build "$who" "$ctx" run-layers:local >/dev/null
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        t=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))
        printf '%-12s run %d: %7s s  (load %s)\n' "$who" "$i" "$t" "$(cut -d' ' -f1 /proc/loadavg)"
        echo "$who $t" >>"$times"
        "${RBUILD}" --root "$ROOT" rmi run-layers:local >/dev/null 2>&1 || true
        [ "$who" = buildkit ] && { /usr/bin/docker rmi run-layers:local >/dev/null 2>&1 || true; }
        prune "$who"
        sync
    done
done

echo
python3 - "$times" "${builders[0]}" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, t = line.split()
    runs.setdefault(who, []).append(float(t))
first = statistics.median(runs[sys.argv[2]])
for who, ts in runs.items():
    m = statistics.median(ts)
    print(f"{who:<12} median {m:6.2f} s  (min {min(ts):.2f}, max {max(ts):.2f})"
          f"  {sys.argv[2]}/{who} = {first / m:.2f}")
EOF
