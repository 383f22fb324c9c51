#!/usr/bin/env bash
# Container lifecycle benchmark: rbuild against podman on the same machine,
# the same busybox image (made offline by testdata/make-busybox, handed to
# podman through `rbuild save` → `podman load`) and no network (--network
# none on both, so networking costs are not compared).
#
#   bench/containers.sh
#
# Figures (milliseconds, medians of N runs):
#   run-d      `run -d IMAGE sh -c 'echo ready; sleep 600'` until `logs`
#              shows "ready" (start to first output, the monitor's log
#              pump included)
#   ps-100     `ps -a` with 100 containers (created, not running)
#   exec       `exec CTR true` into a running container
#   run-rm     `run --rm IMAGE true` in the foreground, start to exit (a
#              foreground run keeps a container record, removed on exit)
#
# env: RBUILD=path   rbuild binary (default target/release/rbuild, else
#                    target/debug/rbuild: say which in the figures you quote)
#      N=10          runs per figure
#      BENCH_DIR     scratch (default: a temp dir, removed afterwards)
# podman is skipped with a note when missing. Run as root. podman gets
# --ulimit nofile/nproc below the hard limits (runc fails to raise them in a
# container that may not).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
RBUILD=${RBUILD:-}
if [ -z "$RBUILD" ]; then
	if [ -x target/release/rbuild ]; then RBUILD=$repo/target/release/rbuild; else RBUILD=$repo/target/debug/rbuild; fi
fi
N=${N:-10}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/rbuild-ctr-bench.XXXXXX)}
root=$dir/root
mkdir -p "$dir"
cleanup() {
	"$RBUILD" --root "$root" ps -aq 2>/dev/null | xargs -r "$RBUILD" --root "$root" rm -f >/dev/null 2>&1 || true
	if [ -n "${have_podman:-}" ]; then
		podman ps -aq --filter label=rbuild-bench=1 | xargs -r podman rm -f >/dev/null 2>&1 || true
	fi
	[ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

echo "rbuild: $RBUILD"
testdata/make-busybox "$RBUILD" "$root" >/dev/null
have_podman=
if command -v podman >/dev/null; then
	"$RBUILD" --root "$root" save busybox -o "$dir/bb.tar"
	podman load -q -i "$dir/bb.tar" >/dev/null && have_podman=1
	podman tag localhost/busybox:latest rbuild-bench-busybox >/dev/null 2>&1 ||
		podman tag busybox:latest rbuild-bench-busybox >/dev/null 2>&1 || true
else
	echo "podman: not installed, skipped (apt-get install podman)"
fi

ms() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# run -d to first output: $1 = tool label, $2.. = command prefix
first_output() {
	local label=$1
	shift
	for i in $(seq "$N"); do
		local t0 id
		t0=$(ms)
		id=$("$@" run -d --network none --label rbuild-bench=1 $runflags "$image" sh -c 'echo ready; sleep 600')
		until "$@" logs "$id" 2>/dev/null | grep -q ready; do :; done
		echo $((($(ms) - t0) / 1000000))
		"$@" rm -f $rmflags "$id" >/dev/null
	done | median | sed "s/^/$label run-d ms: /"
}

ps_100() {
	local label=$1
	shift
	for i in $(seq 100); do "$@" create --network none --label rbuild-bench=1 $runflags "$image" true >/dev/null; done
	for i in $(seq "$N"); do
		local t0
		t0=$(ms)
		"$@" ps -a >/dev/null
		echo $((($(ms) - t0) / 1000000))
	done | median | sed "s/^/$label ps-100 ms: /"
	"$@" ps -aq --filter label=rbuild-bench=1 | xargs -r "$@" rm -f $rmflags >/dev/null
}

exec_latency() {
	local label=$1
	shift
	local id
	id=$("$@" run -d --network none --label rbuild-bench=1 $runflags "$image" sleep 600)
	"$@" exec "$id" true
	for i in $(seq "$N"); do
		local t0
		t0=$(ms)
		"$@" exec "$id" true
		echo $((($(ms) - t0) / 1000000))
	done | median | sed "s/^/$label exec ms: /"
	"$@" rm -f $rmflags "$id" >/dev/null
}

# A foreground run --rm, start to exit.
run_rm() {
	local label=$1
	shift
	"$@" run --rm --network none $runflags "$image" true
	for i in $(seq "$N"); do
		local t0
		t0=$(ms)
		"$@" run --rm --network none $runflags "$image" true
		echo $((($(ms) - t0) / 1000000))
	done | median | sed "s/^/$label run-rm ms: /"
}

image=busybox
runflags=
rmflags=
run_rm rbuild "$RBUILD" --root "$root"
first_output rbuild "$RBUILD" --root "$root"
ps_100 rbuild "$RBUILD" --root "$root"
exec_latency rbuild "$RBUILD" --root "$root"
if [ -n "$have_podman" ]; then
	image=rbuild-bench-busybox
	# This machine refuses raising rlimits, which podman does by default.
	rmflags="-t 0"
	runflags="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"
	run_rm podman podman
	first_output podman podman
	ps_100 podman podman
	exec_latency podman podman
fi
