#!/usr/bin/env bash
# Pull and push of an image with one 512 MiB (incompressible) layer to a local CNCF distribution
# registry, rbuild side by side with `skopeo copy` of the same image, in one run; wall time and
# peak RSS from /usr/bin/time. Usage: bash registry/bench/pull_push.sh [path/to/rbuild]
# (default target/release/rbuild, built if missing). Needs docker-registry, skopeo, GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
rbuild=${1:-target/release/rbuild}
[ -x "$rbuild" ] || cargo build --release -q -p rbuild
rbuild=$(realpath "$rbuild")
work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/data\nhttp:\n  addr: 127.0.0.1:%s\n' "$work" "$port" > "$work/config.yml"
docker-registry serve "$work/config.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
trap 'kill $reg_pid 2>/dev/null || true; wait $reg_pid 2>/dev/null || true; rm -rf "$work"' EXIT
until curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/"; do sleep 0.1; done
reg=127.0.0.1:$port

mkdir -p "$work/ctx" "$work/pull"
head -c 536870912 /dev/urandom > "$work/ctx/big"
printf 'FROM scratch\nCOPY big /big\n' > "$work/ctx/Dockerfile"
SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store" "$rbuild" build "$work/ctx" -q \
  --tag "$reg/bench/img:v1" --output "type=oci,dest=$work/layout" > /dev/null

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2>&1
  read -r secs kb < "$work/time"
  printf '| %-34s | %8s | %8d |\n' "$label" "$secs" $((kb / 1024))
}
echo "| measurement                        | wall (s) | peak RSS (MiB) |"
echo "|---|---:|---:|"
# Each push goes to a fresh repository so nothing is mounted or skipped.
measure "skopeo copy oci: → registry (push)" skopeo copy -q --dest-tls-verify=false \
  "oci:$work/layout:v1" "docker://$reg/bench/skopeo-push:v1"
measure "rbuild --push" env SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store" "$rbuild" build "$work/ctx" -q \
  --output "type=registry,name=$reg/bench/rbuild-push:v1"
measure "skopeo copy registry → oci: (pull)" skopeo copy -q --src-tls-verify=false \
  "docker://$reg/bench/rbuild-push:v1" "oci:$work/skopeo-pull:v1"
printf 'FROM %s/bench/skopeo-push:v1\n' "$reg" > "$work/pull/Dockerfile"
measure "rbuild FROM (pull, empty store)" env SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store-pull" "$rbuild" build "$work/pull" -q
