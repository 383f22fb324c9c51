#!/usr/bin/env bash
# Whole-build benchmark: rbuild against the builders users would otherwise
# pick, on the same contexts and the same offline base images.
#
#   bench/build.sh [busybox|debian|all|python|node|rust|apps]   (default all)
#
# Contexts (bench/contexts/gen.sh): busybox multi-stage (~400 small files and
# one 50 MiB file), Debian bookworm RUN-heavy (users, dd/sha256sum/gzip, COPY
# of sources; no apt-get, so no network). Real applications on Debian
# bookworm (bench/contexts/apps/): python (apt with cache mounts, venv, pip),
# node (apt nodejs npm, npm ci), rust (apt cargo, vendored crates, cargo build --release);
# these fetch from Debian's mirror, PyPI and npm, and trust the host's CA
# bundle (a proxy's CA, as in CI behind one); the rust app's crates are
# vendored on the host first (`cargo vendor`, from crates.io). Scenarios, each one
# hyperfine run with every builder side by side:
#   cold     --no-cache
#   cached   the same build again, nothing changed
#   edit     one small file (conf/app.conf, copied late; for the apps one
#            source line) changes before every build (hyperfine --prepare)
# Builders: rbuild (always), docker BuildKit (DOCKER_BUILDKIT=1 /usr/bin/docker
# build; needs dockerd running, see /work/shared/PEERS.md), buildah build
# --layers, podman build --layers, with PEERS=... the docker classic
# builder ("classic"), and a current BuildKit ("buildctl": a private
# buildkitd with the OCI worker, from bench/lib/buildkitd, driven by
# `buildctl build --frontend dockerfile.v0`; in the default PEERS when
# $BUILDKITD and $BUILDCTL resolve). Missing peers are skipped with a note.
# buildctl's FROM images come from a loopback registry that its buildkitd
# takes for docker.io's mirror (the base images are pushed there first);
# its images stay in buildkitd's store, so the image check exports each one
# as an OCI tar (an untimed, cached build), loads it into a scratch rbuild
# store and runs it there.
# Every builder's image is run once after its first build and again after the
# edit scenario, and its output compared with what the host computes from the
# context: a builder that serves a stale cache fails here, not silently.
#
# env: RUNS=5             timed runs per builder and scenario (after 1 warm-up)
#      RBUILD=path        rbuild binary (default: scripts/build-release's static binary, built
#                         with cargo when missing)
#      PEERS="buildkit buildah podman [buildctl]"   peers to try (add "classic")
#      BUILDKITD=buildkitd, BUILDCTL=buildctl   a current BuildKit's binaries
#                         (paths or names on PATH; both needed for "buildctl")
#      BENCH_DIR=/var/tmp/rbuild-bench  contexts, base-image tars, rbuild's
#                         store (BENCH_DIR/rbuild-root), hyperfine JSON
#
# Output: per context a table of medians (seconds), rbuild's ratio to
# BuildKit and rbuild's own peak RSS (from its --report, one extra run per
# scenario; "own/RUN" MB when a RUN step's processes peaked higher).
# Timings on a shared machine are noisy: quote medians, compare within a run.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

what=${1:-all}
case $what in
busybox | debian | python | node | rust) kinds=$what ;;
all) kinds="busybox debian" ;;
apps) kinds="python node rust" ;;
*)
    echo "usage: $0 [busybox|debian|all|python|node|rust|apps]" >&2
    exit 2
    ;;
esac

RUNS=${RUNS:-5}
BUILDKITD=${BUILDKITD:-buildkitd}
BUILDCTL=${BUILDCTL:-buildctl}
bk_found() { command -v "$BUILDKITD" >/dev/null && command -v "$BUILDCTL" >/dev/null; }
if [ -z "${PEERS:-}" ]; then
    PEERS="buildkit buildah podman"
    if bk_found; then PEERS+=" buildctl"; else PEERS_NOTE=1; fi
fi
BENCH_DIR=${BENCH_DIR:-/var/tmp/rbuild-bench}
DOCKER=/usr/bin/docker # the 20.10 client: a newer one on PATH lacks buildx
TIME=/usr/bin/time
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
ROOT=$BENCH_DIR/rbuild-root

note() { echo "note: $*" >&2; }
die() {
    echo "error: $*" >&2
    exit 1
}

for tool in hyperfine jq; do
    command -v $tool >/dev/null || die "$tool not found; hint: apt-get install $tool"
done
[ -x $TIME ] || die "$TIME not found; hint: apt-get install time"

# ---- builders ---------------------------------------------------------

for peer in $PEERS; do
    case $peer in
    buildkit | classic | buildah | podman | buildctl) ;;
    *) die "unknown peer '$peer' in PEERS (known: buildkit classic buildah podman buildctl)" ;;
    esac
done

if [ -z "${RBUILD:-}" ]; then
    RBUILD=$("$repo/scripts/build-release")
fi
[ -x "$RBUILD" ] || die "RBUILD=$RBUILD is not an executable"
RBUILD=$(cd "$(dirname "$RBUILD")" && pwd)/$(basename "$RBUILD")

bk_hint="BUILDKITD=/path/to/buildkitd BUILDCTL=/path/to/buildctl (BuildKit's cmd/buildkitd and cmd/buildctl)"
[ -z "${PEERS_NOTE:-}" ] || note "buildctl (a current BuildKit) skipped: buildkitd or buildctl not found; hint: $bk_hint"

# A current BuildKit: its own buildkitd (bench/lib/buildkitd) and a loopback
# registry it takes as docker.io's mirror. Both stop when the script ends.
BK_DIR=$BENCH_DIR/buildctl
BK_ADDR=
BK_PORT=
stop_buildctl() {
    "$repo/bench/lib/stop-pidfiles" "$BK_DIR/daemon/buildkitd.pid" "$BK_DIR/registry/registry.pid"
}
start_buildctl() {
    [ -x /usr/bin/docker-registry ] || {
        note "buildctl skipped: /usr/bin/docker-registry missing (apt-get install docker-registry; it serves the base images)"
        return 1
    }
    mkdir -p "$BK_DIR/registry" "$BK_DIR/daemon"
    trap stop_buildctl EXIT
    BK_PORT=$("$repo/bench/lib/registry" "$BK_DIR/registry")
    "$BK_DIR/registry/fresh-registry" || {
        note "buildctl skipped: the mirror registry did not start (see $BK_DIR/registry/registry.log)"
        return 1
    }
    BK_ADDR=$(BUILDKITD=$BUILDKITD BUILDCTL=$BUILDCTL \
        "$repo/bench/lib/buildkitd" "$BK_DIR/daemon" "127.0.0.1:$BK_PORT") || {
        note "buildctl skipped: buildkitd did not start"
        return 1
    }
}

builders=()
if "$RBUILD" build --help >/dev/null 2>&1; then
    builders+=(rbuild)
else
    note "$RBUILD has no working 'build' command: rbuild skipped, peers only"
fi
for peer in $PEERS; do
    case $peer in
    buildkit | classic)
        if [ ! -x $DOCKER ]; then
            note "$peer skipped: $DOCKER missing (apt-get install docker.io)"
        elif ! $DOCKER info >/dev/null 2>&1; then
            note "$peer skipped: dockerd is not running; hint: setsid nohup dockerd" \
                "--iptables=false --ip-masq=false --ip-forward=false >dockerd.log 2>&1 &"
        else
            builders+=("$peer")
        fi
        ;;
    buildah | podman)
        if command -v "$peer" >/dev/null; then
            builders+=("$peer")
        else
            note "$peer skipped: not installed (apt-get install $peer; see PEERS.md for containers.conf)"
        fi
        ;;
    buildctl)
        if ! bk_found; then
            note "buildctl skipped: buildkitd or buildctl not found; hint: $bk_hint"
        elif start_buildctl; then
            builders+=(buildctl)
        fi
        ;;
    esac
done
has() {
    local b
    for b in "${builders[@]}"; do [ "$b" = "$1" ] && return 0; done
    return 1
}
# buildah and podman share containers/storage: importing with either serves both.
containers_cli() { if command -v podman >/dev/null; then echo podman; else echo buildah; fi; }

# The image tag each builder writes. buildah and podman get their own
# (their store is shared) so one never reuses the other's final image.
tag_of() {
    case $1 in
    rbuild | buildkit | buildctl) echo "bench-$2" ;;
    *) echo "bench-$2-$1" ;;
    esac
}

# The apps fetch packages while they build. rbuild's RUN steps share the
# host's network (as buildkitd's OCI worker without CNI does); docker's
# would sit on docker0, which has no NAT when dockerd runs with
# --iptables=false (as PEERS.md starts it), so docker gets the host's too.
docker_net() { if is_app "$1"; then echo "--network host"; fi; }

# buildctl's build of context $1 (the flags after `build`), its output
# flags left to the caller. buildkitd's OCI worker runs RUN steps on the
# host's network (bench/lib/buildkitd), as rbuild does.
buildctl_build() {
    local ctx=$BENCH_DIR/ctx-$1
    echo "$BUILDCTL --addr $BK_ADDR build --progress quiet --frontend dockerfile.v0 --local context=$ctx --local dockerfile=$ctx"
}

# The shell command that builds context $2 with builder $1; $3: extra flags.
build_cmd() {
    local b=$1 kind=$2 extra=${3:-} ctx=$BENCH_DIR/ctx-$2 tag
    tag=$(tag_of "$b" "$kind")
    case $b in
    rbuild) echo "$RBUILD --root $ROOT build -q -t $tag $extra $ctx" ;;
    buildkit) echo "env DOCKER_BUILDKIT=1 $DOCKER build -q $(docker_net "$kind") -t $tag $extra $ctx" ;;
    classic) echo "env DOCKER_BUILDKIT=0 $DOCKER build -q $(docker_net "$kind") -t $tag $extra $ctx" ;;
    buildah) echo "buildah build --layers -q -t $tag $extra $ctx" ;;
    podman) echo "podman build --layers -q -t $tag $extra $ctx" ;;
    buildctl) echo "$(buildctl_build "$kind") --output type=image,name=$tag $extra" ;;
    esac
}

# Runs builder $1's image of context $2 with its default command.
run_image() {
    local b=$1 tag
    tag=$(tag_of "$1" "$2")
    case $b in
    rbuild) "$RBUILD" --root "$ROOT" run --rm "$tag" ;;
    buildctl)
        # buildctl cannot run an image: export it (cached, untimed) as an
        # OCI tar, load that into a scratch rbuild store and run it there.
        local tar=$BK_DIR/check.tar scratch=$BK_DIR/check-root
        # shellcheck disable=SC2046 # buildctl_build is a word list by design
        $(buildctl_build "$2") --output "type=oci,dest=$tar,name=$tag" >&2 || return 1
        rm -rf "$scratch"
        "$RBUILD" --root "$scratch" load -q -i "$tar" >&2 || return 1
        rm -f "$tar"
        "$RBUILD" --root "$scratch" run --rm "$tag"
        ;;
    buildkit | classic) $DOCKER run --rm --network none "$tag" ;;
    podman) podman run --rm --network none "$tag" ;;
    buildah)
        if command -v podman >/dev/null; then
            podman run --rm --network none "localhost/$tag"
        else
            local ctr cmd
            mapfile -t cmd < <(buildah inspect --type image --format '{{json .OCIv1.Config.Cmd}}' "$tag" | jq -r '.[]')
            ctr=$(buildah from -q "$tag")
            buildah run --network none "$ctr" -- "${cmd[@]}" || { buildah rm "$ctr" >/dev/null; return 1; }
            buildah rm "$ctr" >/dev/null
        fi
        ;;
    esac
}

# ---- base images ------------------------------------------------------

# Imports rootfs tar $2 as $1 (docker-style name:tag) into every builder
# that lacks it; $3 is the image's CMD. For buildctl it goes to the mirror
# registry as docker.io/library/$1, from an rbuild store of its own that
# keeps it (so the same digest every run: BuildKit's cache stays valid).
import_base() {
    local ref=$1 tar=$2 image_cmd=$3 b
    if has rbuild && ! "$RBUILD" --root "$ROOT" inspect "$ref" >/dev/null 2>&1; then
        "$RBUILD" --root "$ROOT" import --change "CMD $image_cmd" "$tar" "$ref" >/dev/null
    fi
    if { has buildkit || has classic; } && ! $DOCKER image inspect "$ref" >/dev/null 2>&1; then
        $DOCKER import --change "CMD $image_cmd" "$tar" "$ref" >/dev/null
    fi
    if { has buildah || has podman; }; then
        local cli full=docker.io/library/$ref
        cli=$(containers_cli)
        # Named as a pull would name it, so `FROM busybox` resolves locally.
        if ! $cli image exists "$full" 2>/dev/null && ! $cli inspect "$full" >/dev/null 2>&1; then
            if [ "$cli" = podman ]; then
                podman import -q --change "CMD $image_cmd" "$tar" "$full" >/dev/null
            else
                local ctr
                ctr=$(buildah from -q scratch)
                buildah add -q "$ctr" "$tar" / >/dev/null
                buildah config --cmd "$image_cmd" "$ctr"
                buildah commit -q "$ctr" "$full" >/dev/null
                buildah rm "$ctr" >/dev/null
            fi
        fi
    fi
    if has buildctl; then
        local push_root=$BK_DIR/push-root mirror_ref=127.0.0.1:$BK_PORT/library/$ref
        if ! "$RBUILD" --root "$push_root" inspect "$ref" >/dev/null 2>&1; then
            "$RBUILD" --root "$push_root" import --change "CMD $image_cmd" "$tar" "$ref" >/dev/null
        fi
        # rbuild reaches a loopback registry over plain HTTP, as docker does.
        "$RBUILD" --root "$push_root" tag "$ref" "$mirror_ref"
        "$RBUILD" --root "$push_root" push -q "$mirror_ref" >/dev/null
        "$RBUILD" --root "$push_root" rmi "$mirror_ref" >/dev/null
    fi
}

base_busybox() {
    local tar=$BENCH_DIR/busybox-rootfs.tar
    if [ ! -s "$tar" ]; then
        # The same rootfs as the tests' busybox image, flattened to a tar
        # every builder can import.
        local tmp
        tmp=$(mktemp -d "$BENCH_DIR/make-busybox.XXXXXX")
        "$repo/testdata/make-busybox" "$RBUILD" "$tmp/root" >/dev/null
        "$RBUILD" --root "$tmp/root" export busybox:latest -o "$tar.part"
        mv "$tar.part" "$tar"
        rm -rf "$tmp"
    fi
    import_base busybox:latest "$tar" '["sh"]'
}

base_debian() {
    local tar=$BENCH_DIR/debian-bookworm.tar
    "$repo/testdata/make-debian" "$tar"
    import_base debian:bookworm "$tar" '["bash"]'
}
base_python() { base_debian; }
base_node() { base_debian; }
base_rust() { base_debian; }

is_app() { case $1 in python | node | rust) return 0 ;; *) return 1 ;; esac }

# An app's context: its committed files plus the host's CA bundle, which
# the Dockerfiles point pip, npm and cargo at.
gen_app() {
    local kind=$1 out=$2
    rm -rf "$out"
    cp -r "$repo/bench/contexts/apps/$kind" "$out"
    cp /etc/ssl/certs/ca-certificates.crt "$out/host-ca.crt"
    if [ "$kind" = rust ]; then
        command -v cargo >/dev/null || die "cargo not found (the rust app's dependencies are vendored with it)"
        mkdir -p "$out/.cargo"
        (cd "$out" && cargo vendor --locked vendor 2>/dev/null >.cargo/config.toml)
    fi
}

# The file the edit scenario changes, and the command that changes it.
edit_file() {
    case $1 in
    python) echo "$BENCH_DIR/ctx-$1/app.py" ;;
    node) echo "$BENCH_DIR/ctx-$1/index.js" ;;
    rust) echo "$BENCH_DIR/ctx-$1/src/main.rs" ;;
    *) echo "$BENCH_DIR/ctx-$1/conf/app.conf" ;;
    esac
}
edit_cmd() {
    local f
    f=$(edit_file "$1")
    case $1 in
    python) echo "echo \"# edit \$(date +%s%N)\" >> $f" ;;
    node) echo "echo \"// edit \$(date +%s%N)\" >> $f" ;;
    rust) echo "sed -i \"s|let edit = [0-9]*;|let edit = 1\$(date +%N | cut -c1-8);|\" $f" ;;
    *) echo "echo \"edit \$(date +%s%N)\" >> $f" ;;
    esac
}

# ---- expected output --------------------------------------------------

# What the context's final image must print, computed on the host from the
# generated context (mirrors the Dockerfile's CMD).
expected() {
    local kind=$1 ctx=$BENCH_DIR/ctx-$1 words
    case $kind in
    python) echo "python app 3.0.3 2.32.3 6.0.2" && return ;;
    node) echo "node app 4.19.2 4.17.21 5.4.5" && return ;;
    rust)
        echo "rust app 1234 1.5 13 $(sed -n 's/.*let edit = \([0-9]*\);.*/\1/p' "$ctx/src/main.rs")"
        return
        ;;
    esac
    # The CMD's unquoted $(...) splits the line into words.
    read -ra words < <(tail -n 1 "$ctx/conf/app.conf")
    case $kind in
    busybox)
        (
            cd "$ctx"
            find src -type f | LC_ALL=C sort >"$BENCH_DIR/files.txt"
            echo "sources $(xargs cat <"$BENCH_DIR/files.txt" | md5sum | cut -d' ' -f1) $(wc -l <"$BENCH_DIR/files.txt")"
            echo "blob $(sha256sum blob.bin | cut -c1-64) $(stat -c %s blob.bin)"
        )
        ;;
    debian)
        echo "user app 30"
        if [ ! -s "$BENCH_DIR/debian-data.sha256" ]; then
            local d
            d=$(mktemp -d "$BENCH_DIR/data.XXXXXX")
            (
                cd "$d"
                export LC_ALL=C # the glob's order, as in the image
                for i in $(seq 1 24); do
                    yes "rbuild bench chunk $i" | dd of="chunk$i" bs=64k count=64 iflag=fullblock status=none
                done
                dd if=/dev/zero of=zero.bin bs=1M count=32 status=none
                sha256sum chunk* zero.bin | sha256sum | cut -c1-64
            ) >"$BENCH_DIR/debian-data.sha256"
            rm -rf "$d"
        fi
        echo "data $(cat "$BENCH_DIR/debian-data.sha256")"
        (
            cd "$ctx"
            echo "sources $(find src -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64) $(find src -type f | wc -l)"
        )
        ;;
    esac
    echo "conf ${words[*]}"
}

# Runs every builder's image and drops the builders whose output differs
# from the expected one (with the diff), so a wrong build never gets timed.
check_images() {
    local kind=$1 when=$2 want got b kept=()
    want=$(expected "$kind")
    for b in "${builders[@]}"; do
        if got=$(run_image "$b" "$kind" 2>"$BENCH_DIR/run.err") && [ "$got" = "$want" ]; then
            kept+=("$b")
        else
            note "$b: $kind image $when prints the wrong output; $b dropped"
            diff <(echo "$want") <(echo "$got") | sed 's/^/    /' >&2 || true
            sed 's/^/    stderr: /' "$BENCH_DIR/run.err" | tail -n 5 >&2
        fi
    done
    builders=("${kept[@]}")
}

# ---- timing -----------------------------------------------------------

# One hyperfine run per scenario, every builder side by side.
# $1 kind, $2 scenario, $3 extra build flags, $4 prepare command (or empty).
measure() {
    local kind=$1 scenario=$2 extra=$3 prepare=$4 b args=()
    for b in "${builders[@]}"; do
        args+=(-n "$b" "$(build_cmd "$b" "$kind" "$extra")")
    done
    [ -n "$prepare" ] && args=(--prepare "$prepare" "${args[@]}")
    echo "== $kind / $scenario" >&2
    hyperfine --runs "$RUNS" --warmup 1 --style basic \
        --export-json "$BENCH_DIR/$kind-$scenario.json" "${args[@]}" >&2
}

# rbuild's own peak RSS in MB for one build (an extra, untimed run), from
# its --report (`timing.memory`): GNU time's %M would be the largest of
# rbuild and the processes its RUN steps ran (pip, npm, rustc), so with a
# RUN step it says nothing about rbuild. "own/RUN" when a RUN ran one
# bigger; GNU time's figure for a binary whose report lacks it.
rss() {
    local kind=$1 extra=$2 prepare=$3 report=$BENCH_DIR/rss-report.json
    [ -n "$prepare" ] && sh -c "$prepare"
    rm -f "$report"
    # shellcheck disable=SC2046 # build_cmd is a word list by design
    if ! $TIME -f %M -o "$BENCH_DIR/rss" $(build_cmd rbuild "$kind" "--report $report $extra") >/dev/null 2>"$BENCH_DIR/rss.err"; then
        # time's exit status is the build's; keep what it said.
        cp "$BENCH_DIR/rss.err" "$BENCH_DIR/rss-failed-$kind.err"
        note "rbuild: the peak-RSS build of $kind failed: see $BENCH_DIR/rss-failed-$kind.err"
        echo "failed"
        return
    fi
    local own run
    own=$(jq -r '.timing.memory.peak_rss_bytes // empty' "$report" 2>/dev/null || true)
    run=$(jq -r '.timing.memory.run_peak_rss_bytes // empty' "$report" 2>/dev/null || true)
    if [ -z "$own" ]; then
        echo $(($(tail -n 1 "$BENCH_DIR/rss") / 1024))
    elif [ "${run:-0}" -gt "$own" ]; then
        echo "$((own >> 20))/$((run >> 20))"
    else
        echo $((own >> 20))
    fi
}

median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"; }

table() {
    local kind=$1 s b line m r
    echo
    echo "$kind: median seconds of $RUNS runs (1 warm-up); load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
    line=$(printf '%-8s' scenario)
    for b in "${builders[@]}"; do line+=$(printf ' %9s' "$b"); done
    for b in buildkit buildctl; do
        has rbuild && has $b && line+=$(printf ' %16s' "rbuild/$b")
    done
    has rbuild && line+=$(printf ' %15s' "rbuild RSS")
    echo "$line"
    for s in cold cached edit; do
        line=$(printf '%-8s' $s)
        for b in "${builders[@]}"; do
            m=$(median "$BENCH_DIR/$kind-$s.json" "$b")
            line+=$(printf ' %9.3f' "$m")
        done
        for b in buildkit buildctl; do
            if has rbuild && has $b; then
                r=$(jq -rn --argjson a "$(median "$BENCH_DIR/$kind-$s.json" rbuild)" \
                    --argjson b "$(median "$BENCH_DIR/$kind-$s.json" $b)" '$a / $b')
                line+=$(printf ' %15.2fx' "$r")
            fi
        done
        has rbuild && line+=$(printf ' %12s MB' "${RSS[$kind-$s]}")
        echo "$line"
    done
    [ ${#wrong[@]} -eq 0 ] || echo "WRONG IMAGE after the edit scenario (timings void): ${wrong[*]}"
}

version_of() {
    case $1 in
    rbuild) "$RBUILD" --version | head -n 1 ;;
    buildkit | classic) echo "$1 (docker $($DOCKER version --format '{{.Server.Version}}'))" ;;
    buildah | podman) $1 --version ;;
    buildctl) echo "$("$BUILDKITD" --version | sed "s/ *$//") (OCI worker, $(runc --version | head -n 1))" ;;
    esac
}

declare -A RSS
summary=("builders: $(for b in "${builders[@]}"; do printf '%s; ' "$(version_of "$b")"; done)")
for kind in $kinds; do
    all_builders=("${builders[@]}")
    echo "== $kind: base image, context" >&2
    "base_$kind"
    if is_app "$kind"; then
        gen_app "$kind" "$BENCH_DIR/ctx-$kind"
    else
        "$repo/bench/contexts/gen.sh" "$kind" "$BENCH_DIR/ctx-$kind"
    fi
    edit=$(edit_cmd "$kind")

    # A first build per builder, then its image must print the right thing.
    built=()
    for b in "${builders[@]}"; do
        if sh -c "$(build_cmd "$b" "$kind")" >"$BENCH_DIR/build.log" 2>&1; then
            built+=("$b")
        else
            note "$b: first build of $kind failed; $b dropped (last lines below)"
            tail -n 15 "$BENCH_DIR/build.log" | sed 's/^/    /' >&2
        fi
    done
    builders=("${built[@]}")
    check_images "$kind" "after its first build"
    if [ ${#builders[@]} -eq 0 ]; then
        note "no builder left for $kind"
        builders=("${all_builders[@]}")
        continue
    fi

    measure "$kind" cold --no-cache ""
    measure "$kind" cached "" ""
    measure "$kind" edit "" "$edit"
    # The last edit must show in every image: a cache that missed the
    # change would make the edit scenario look fast and wrong. hyperfine
    # runs the builders one after the other and edits before each run, so
    # each builds once more to catch up with the final edit.
    for b in "${builders[@]}"; do
        sh -c "$(build_cmd "$b" "$kind")" >"$BENCH_DIR/build.log" 2>&1 ||
            note "$b: build after the edit scenario failed"
    done
    timed=("${builders[@]}")
    check_images "$kind" "after the edit scenario"
    wrong=()
    for b in "${timed[@]}"; do has "$b" || wrong+=("$b"); done
    builders=("${timed[@]}") # the table still shows them, flagged
    if has rbuild; then
        RSS[$kind-cold]=$(rss "$kind" --no-cache "")
        RSS[$kind-cached]=$(rss "$kind" "" "")
        RSS[$kind-edit]=$(rss "$kind" "" "$edit")
    fi
    summary+=("$(table "$kind")")
    builders=("${all_builders[@]}")
done

# Dangling images from the --no-cache runs add up (a 50 MiB layer per run;
# a 1 GB image per cold run of the rust app). So does each builder's build
# cache (its records for every cold run): rbuild's store reached 22 GB over
# one `apps` run and two reruns, and filled the disk.
if has rbuild; then
    "$RBUILD" --root "$ROOT" image prune -f >/dev/null || true
    "$RBUILD" --root "$ROOT" cache prune -f --keep-storage 1gb >/dev/null || true
fi
if has buildkit || has classic; then
    $DOCKER image prune -f >/dev/null || true
    $DOCKER builder prune -f --keep-storage 1gb >/dev/null || true
fi
if has buildah || has podman; then $(containers_cli) image prune -f >/dev/null 2>&1 || true; fi
if has buildctl; then "$BUILDCTL" --addr "$BK_ADDR" prune --keep-storage 1024 >/dev/null || true; fi

printf '%s\n' "${summary[@]}"
