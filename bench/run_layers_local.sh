#!/usr/bin/env bash
# A RUN-heavy application build without the download noise: the rust app
# of bench/build.sh (apt cargo + libc6-dev, vendored crates, cargo build
# --release), with apt's downloads in a step every build keeps cached
# (`--download-only`) and everything after it run again on each build: the
# `apt-get install` RUN (dpkg writes ~900 MB: the layer a builder must
# commit), the COPYs and `cargo build`. Each build passes a new `N` build
# arg, which the install step is the first to use.
#
# Builders run interleaved (one build of each, RUNS times), so a machine
# getting busier or quieter affects them alike; prints every run, then the
# medians and each builder's ratio to the first one.
#
#   bench/run_layers_local.sh
#
# env: RUNS=4
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
RUNS=${RUNS:-4}
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
rm -rf "$ctx"
cp -a "$BENCH_DIR/ctx-rust" "$ctx"
cat >"$ctx/Dockerfile" <<'EOF'
FROM debian:bookworm
RUN apt-get update -q && apt-get install -y -q --no-install-recommends --download-only cargo libc6-dev
ARG N
RUN echo "$N" && apt-get install -y -q --no-install-recommends cargo libc6-dev \
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
    local who=$1 n=$2
    case $who in
    rbuild) "$RBUILD" --root "$ROOT" build -q --build-arg "N=$n" -t run-layers:local "$ctx" ;;
    rbuild-base) "$RBUILD_BASE" --root "$ROOT" build -q --build-arg "N=$n" -t run-layers:local "$ctx" ;;
    buildkit) DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network host --build-arg "N=$n" -t run-layers:local "$ctx" ;;
    esac
}

prune() {
    case $1 in
    rbuild | rbuild-base) "$RBUILD" --root "$ROOT" image prune -f >/dev/null 2>&1 || true ;;
    buildkit) /usr/bin/docker image prune -f >/dev/null 2>&1 || true ;;
    esac
}

# Warm-up: the download step, cached from here on, for every builder.
for who in "${builders[@]}"; do
    build "$who" warm >/dev/null
done

times=$(mktemp)
trap 'rm -f "$times"' EXIT
for i in $(seq "$RUNS"); do
    for who in "${builders[@]}"; do
        t0=$(date +%s%N)
        build "$who" "$i-$RANDOM" >/dev/null
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        t=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))
        printf '%-12s run %d: %7s s  (load %s)\n' "$who" "$i" "$t" "$(cut -d' ' -f1 /proc/loadavg)"
        echo "$who $t" >>"$times"
        prune "$who"
    done
done

echo
first=${builders[0]}
python3 - "$times" "$first" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, t = line.split()
    runs.setdefault(who, []).append(float(t))
base = statistics.median(runs[sys.argv[2]])
for who, ts in runs.items():
    m = statistics.median(ts)
    print(f"{who:<12} median {m:6.2f} s  (min {min(ts):.2f}, max {max(ts):.2f})"
          f"  {sys.argv[2]}/{who} = {base / m:.2f}")
EOF
# Each build leaves its RUN layers in the build cache: ~1 GB per run.
"$RBUILD" --root "$ROOT" cache prune --keep-storage 1gb -f >/dev/null 2>&1 || true
