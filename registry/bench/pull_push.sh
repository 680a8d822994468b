#!/usr/bin/env bash
# Pull and push of an image with one 512 MiB (incompressible) layer to a local CNCF distribution
# registry, rbuild side by side with `skopeo copy` of the same image, in one run; wall time and
# peak RSS from /usr/bin/time. Every push goes to a freshly emptied registry (so nothing is
# skipped or mounted), pushes run in both orders, and dirty pages are flushed before each
# measurement. Usage: bash registry/bench/pull_push.sh [path/to/rbuild]
# (default target/release/rbuild, built if missing); BENCH_LAYER_MIB=N changes the layer size.
# Needs docker-registry, skopeo, GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
rbuild=${1:-target/release/rbuild}
[ -x "$rbuild" ] || cargo build --release -q -p rbuild
rbuild=$(realpath "$rbuild")
work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/data\nhttp:\n  addr: %s\n' "$work" "$reg" > "$work/config.yml"
reg_pid=
stop_registry() { [ -z "$reg_pid" ] || { kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; }; reg_pid=; }
fresh_registry() {
  stop_registry
  rm -rf "$work/data"
  docker-registry serve "$work/config.yml" > "$work/registry.log" 2>&1 &
  reg_pid=$!
  until curl -fsS -o /dev/null "http://$reg/v2/" 2>/dev/null; do sleep 0.1; done
}
trap 'stop_registry; rm -rf "$work"' EXIT

mkdir -p "$work/ctx" "$work/pull"
head -c $(( ${BENCH_LAYER_MIB:-512} * 1048576 )) /dev/urandom > "$work/ctx/big"
printf 'FROM scratch\nCOPY big /big\n' > "$work/ctx/Dockerfile"
SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store" "$rbuild" build "$work/ctx" -q \
  --tag "$reg/bench/img:v1" --output "type=oci,dest=$work/layout" > /dev/null

measure() { # label, command...
  local label=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2>&1
  read -r secs kb < "$work/time"
  printf '| %-34s | %8s | %8d |\n' "$label" "$secs" $((kb / 1024))
}
skopeo_push() {
  fresh_registry
  measure "skopeo copy oci: → registry (push)" skopeo copy -q --dest-tls-verify=false \
    "oci:$work/layout:v1" "docker://$reg/bench/img:v1"
}
rbuild_push() {
  fresh_registry
  measure "rbuild --push" env SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store" "$rbuild" build \
    "$work/ctx" -q --output "type=registry,name=$reg/bench/img:v1"
}
echo "| measurement                        | wall (s) | peak RSS (MiB) |"
echo "|---|---:|---:|"
skopeo_push; rbuild_push; rbuild_push; skopeo_push
# The registry now holds the image; pull it both ways.
measure "skopeo copy registry → oci: (pull)" skopeo copy -q --src-tls-verify=false \
  "docker://$reg/bench/img:v1" "oci:$work/skopeo-pull:v1"
printf 'FROM %s/bench/img:v1\n' "$reg" > "$work/pull/Dockerfile"
measure "rbuild FROM (pull, empty store)" env SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store-pull" \
  "$rbuild" build "$work/pull" -q
rm -rf "$work/skopeo-pull" "$work/store-pull"
measure "rbuild FROM (pull, empty store)" env SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store-pull" \
  "$rbuild" build "$work/pull" -q
measure "skopeo copy registry → oci: (pull)" skopeo copy -q --src-tls-verify=false \
  "docker://$reg/bench/img:v1" "oci:$work/skopeo-pull:v1"
