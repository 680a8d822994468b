#!/usr/bin/env bash
# Push and pull against a local CNCF distribution registry, rbuild side by side with `skopeo
# copy` of the same image in one run (issue 15's benchmark), for two images:
#   big     one 512 MiB incompressible layer (BENCH_LAYER_MIB changes the size)
#   layers  40 layers of 8 MiB each (BENCH_LAYERS / BENCH_LAYERS_MIB change them)
# Wall time and peak RSS from /usr/bin/time. Every push goes to a freshly emptied registry (so
# nothing is skipped or mounted); a pull starts from an empty store and writes an OCI layout
# (`FROM` + `--output type=oci`: a bare `FROM` downloads nothing since pulls are lazy), as
# `skopeo copy docker:// oci:` does. Each measurement runs twice, the tools in alternating
# order; dirty pages are flushed before each.
#
# Usage: bash registry/bench/pull_push.sh [RBUILD [RBUILD_BEFORE]] > table.md
# RBUILD defaults to target/release/rbuild (built if missing); RBUILD_BEFORE, if given, is a
# second binary measured the same way (e.g. the last commit on the old HTTP client), so the
# table shows before and after in one run. Needs docker-registry, skopeo, GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
rbuild=${1:-target/release/rbuild}
[ -x "$rbuild" ] || cargo build --release -q -p rbuild
rbuild=$(realpath "$rbuild")
before=${2:-}
[ -z "$before" ] || before=$(realpath "$before")
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

# The two images' contexts; each is built once into a store per binary (outside the timings)
# and written as an OCI layout for skopeo.
mkdir -p "$work/big" "$work/layers"
head -c $(( ${BENCH_LAYER_MIB:-512} * 1048576 )) /dev/urandom > "$work/big/big"
printf 'FROM scratch\nCOPY big /big\n' > "$work/big/Dockerfile"
n=${BENCH_LAYERS:-40}
echo 'FROM scratch' > "$work/layers/Dockerfile"
for i in $(seq 1 "$n"); do
  head -c $(( ${BENCH_LAYERS_MIB:-8} * 1048576 )) /dev/urandom > "$work/layers/f$i"
  echo "COPY f$i /f$i" >> "$work/layers/Dockerfile"
done
tools=(rbuild)
[ -z "$before" ] || tools+=(before)
bin_of() { if [ "$1" = before ]; then echo "$before"; else echo "$rbuild"; fi; }
name_of() { if [ "$1" = before ]; then echo "rbuild (before)"; else echo rbuild; fi; }
for img in big layers; do
  for t in "${tools[@]}"; do
    # skopeo's layout is rbuild's (two versions may name different image digests).
    out=()
    [ "$t" = before ] || out=(--output "type=oci,dest=$work/layout-$img,tar=false")
    SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store-$t-$img" "$(bin_of "$t")" build "$work/$img" -q \
      "${out[@]}" > /dev/null 2> "$work/setup.log" || { cat "$work/setup.log" >&2; exit 1; }
  done
done

measure() { # label, command...
  local label=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2>&1
  read -r secs kb < "$work/time"
  printf '| %-44s | %8s | %8d |\n' "$label" "$secs" $((kb / 1024))
}
push() { # tool, image
  fresh_registry
  if [ "$1" = skopeo ]; then
    measure "$2: skopeo copy oci: → registry (push)" skopeo copy -q --dest-tls-verify=false \
      "oci:$work/layout-$2" "docker://$reg/bench/$2:v1"
  else
    measure "$2: $(name_of "$1") push" env SOURCE_DATE_EPOCH=0 RBUILD_STORE="$work/store-$1-$2" \
      "$(bin_of "$1")" build "$work/$2" -q --insecure-registry "$reg" \
      --output "type=registry,name=$reg/bench/$2:v1"
  fi
}
pull() { # tool, image (the registry holds it)
  rm -rf "$work/pulled" "$work/store-pull"
  if [ "$1" = skopeo ]; then
    measure "$2: skopeo copy registry → oci: (pull)" skopeo copy -q --src-tls-verify=false \
      "docker://$reg/bench/$2:v1" "oci:$work/pulled:v1"
  else
    mkdir -p "$work/pull-ctx"
    printf 'FROM %s/bench/%s:v1\n' "$reg" "$2" > "$work/pull-ctx/Dockerfile"
    measure "$2: $(name_of "$1") pull (FROM + oci output)" env SOURCE_DATE_EPOCH=0 \
      RBUILD_STORE="$work/store-pull" "$(bin_of "$1")" build "$work/pull-ctx" -q \
      --insecure-registry "$reg" --output "type=oci,dest=$work/pulled,tar=false"
  fi
}
echo "| measurement | wall (s) | peak RSS (MiB) |"
echo "|---|---:|---:|"
order=(skopeo "${tools[@]}")
reversed=()
for ((k = ${#order[@]} - 1; k >= 0; k--)); do reversed+=("${order[k]}"); done
for img in big layers; do
  for t in "${order[@]}" "${reversed[@]}"; do push "$t" "$img"; done
  for t in "${order[@]}" "${reversed[@]}"; do pull "$t" "$img"; done
done
