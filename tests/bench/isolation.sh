#!/usr/bin/env bash
# RUN isolation modes side by side (issue 12's benchmark): rbuild --isolation namespaces, chroot
# (as root with CAP_SYS_ADMIN dropped, as in a container with Docker's default capabilities) and,
# when ROOTLESS_USER names a user with a /etc/subuid range, rootless — against
# `buildah bud --isolation chroot` on the vfs storage driver, the unprivileged-container setup
# buildah documents. Same steps, same base, one run, this machine:
#
#   true      `RUN true` after a cache-busting build argument: the fixed cost of a step
#   files10k  a RUN appending a byte to each of 10,000 files made by a cached earlier step: the
#             step's time minus `true`'s is the cost of finding and writing what changed (diff)
#   apt       `apt-get update && apt-get install python3` (network, through the machine's proxy)
#
# Each workload is built once to warm the store (base pulled, earlier steps cached), then RUNS
# times with a new BUST value; the table gives medians of the whole build's wall clock, and the
# diff row (files10k − true) with its ratio to buildah's.
#
# Usage: bash tests/bench/isolation.sh > table.md
# Environment: RUNS (default 5); RBUILD_BIN (default target/release/rbuild, built when
# missing); DEBIAN_ROOTFS=DIR reuses a debootstrapped bookworm (else debootstrap runs);
# ROOTLESS_USER=NAME adds the rootless column; IN_PLACE=1 adds the in-place column (needs a
# Docker engine at DOCKER_HOST or the default socket: the rbuild image is built FROM the bench's
# base and each build runs in a fresh `docker run` with Docker's default profile, as the mode
# runs in CI; its time is measured inside the container, around rbuild alone, so the engine's
# container start is not counted); KEEP_WORK=1 keeps the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
runs=${RUNS:-5}

rbuild=${RBUILD_BIN:-$root/target/release/rbuild}
if [ ! -x "$rbuild" ]; then
  echo "building $rbuild (cargo build --release -p rbuild)" >&2
  cargo build --release --locked -p rbuild >&2
fi
for tool in buildah docker-registry setpriv python3; do
  command -v "$tool" >/dev/null || { echo "isolation.sh: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/rbuild-isolation-bench.XXXXXX)
chmod 0755 "$work"
reg_pid=
cleanup() {
  [ -z "$reg_pid" ] || kill "$reg_pid" 2>/dev/null || true
  if [ "${KEEP_WORK:-0}" != 1 ]; then
    buildah --storage-driver vfs --root "$work/buildah" --runroot "$work/buildah-run" \
      rm --all >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break; sleep 0.1; done
reg=127.0.0.1:$port

# The base: a Debian minbase with the host's CA certificates (apt through the proxy), by rbuild.
rootfs=${DEBIAN_ROOTFS:-}
if [ -z "$rootfs" ]; then
  rootfs=$work/debian
  echo "debootstrap bookworm minbase" >&2
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" >&2
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$rootfs" update-ca-certificates >&2
fi
mkdir -p "$work/base"
tar --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -C "$rootfs" \
  -cf "$work/base/rootfs.tar" .
printf 'FROM scratch\nADD rootfs.tar /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' \
  > "$work/base/Dockerfile"
"$rbuild" --store "$work/base-store" --progress quiet --tag "$reg/bench/debian:1" --push "$work/base" >&2

mkdir -p "$work/ctx"
cat > "$work/ctx/true.Dockerfile" <<EOF
FROM $reg/bench/debian:1
ARG BUST
RUN true
EOF
cat > "$work/ctx/files10k.Dockerfile" <<EOF
FROM $reg/bench/debian:1
RUN mkdir /many && perl -e 'for (1..10000) { open F, ">", "/many/f\$_" or die; print F "a"; close F }'
ARG BUST
RUN perl -e 'for (1..10000) { open F, ">>", "/many/f\$_" or die; print F "b"; close F }'
EOF
cat > "$work/ctx/apt.Dockerfile" <<EOF
FROM $reg/bench/debian:1
ARG BUST
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 >/dev/null && rm -rf /var/lib/apt/lists/*
EOF

# The tools: `build TOOL WORKLOAD BUST` runs one build.
tools=(namespaces chroot)
if [ -n "${ROOTLESS_USER:-}" ]; then
  tools+=(rootless)
  chown -R "$ROOTLESS_USER" "$work/ctx"
  install -d -o "$ROOTLESS_USER" "$work/store-rootless"
fi
if [ "${IN_PLACE:-0}" = 1 ]; then
  tools+=(in-place)
  docker=${DOCKER_CLI:-/usr/bin/docker}
  echo "building the rbuild image FROM the bench's base" >&2
  "$rbuild" --store "$work/base-store" --progress quiet -f image/Dockerfile \
    --build-arg "BASE=$reg/bench/debian:1" --build-arg "RBUILD_BIN=${rbuild#$root/}" \
    --tag "$reg/bench/rbuild:1" --push . >&2
  "$docker" pull -q "$reg/bench/rbuild:1" >&2
  mkdir -p "$work/store-in-place"
fi
tools+=(buildah)
build() {
  local tool=$1 wl=$2 bust=$3
  local args=(--progress quiet --build-arg "BUST=$bust" -f "$work/ctx/$wl.Dockerfile" "$work/ctx")
  case $tool in
    namespaces) "$rbuild" --store "$work/store-$tool" --isolation namespaces "${args[@]}" ;;
    chroot) setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin \
              "$rbuild" --store "$work/store-$tool" --isolation chroot "${args[@]}" ;;
    rootless) setpriv --reuid "$ROOTLESS_USER" --regid "$ROOTLESS_USER" --init-groups \
                env HOME="$work/store-rootless" "$rbuild" --store "$work/store-rootless/store" \
                --isolation rootless "${args[@]}" ;;
    # One build per container: the mode replaces the container's files, rbuild's own included.
    # Prints the build's nanoseconds, measured in the container (`date` is the base image's
    # after the first step).
    in-place) "$docker" run --rm --network host -v "$work/ctx:/workspace" \
                -v "$work/store-in-place:/store" --entrypoint /bin/sh "$reg/bench/rbuild:1" -c \
                "a=\$(date +%s%N); rbuild --store /store --isolation in-place --progress quiet \
                 --build-arg BUST=$bust -f $wl.Dockerfile . >&2 || exit 1; b=\$(date +%s%N); \
                 echo \"IN_CONTAINER_NS \$((b - a))\"" ;;
    buildah) buildah --storage-driver vfs --root "$work/buildah" --runroot "$work/buildah-run" \
               bud --isolation chroot --layers --tls-verify=false --quiet \
               --build-arg "BUST=$bust" -f "$work/ctx/$wl.Dockerfile" "$work/ctx" ;;
  esac
}

declare -A median
for wl in true files10k apt; do
  for tool in "${tools[@]}"; do
    echo "warming $tool $wl" >&2
    build "$tool" "$wl" warm > "$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }
    times=()
    for i in $(seq 1 "$runs"); do
      t0=$(date +%s.%N)
      build "$tool" "$wl" "run-$i-$RANDOM" > "$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }
      t1=$(date +%s.%N)
      inside=$(sed -n 's/^IN_CONTAINER_NS //p' "$work/last.log")
      if [ -n "$inside" ]; then
        times+=("$(python3 -c "print(f'{$inside / 1e9:.2f}')")")
      else
        times+=("$(python3 -c "print(f'{$t1 - $t0:.2f}')")")
      fi
    done
    median[$tool.$wl]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$tool $wl: ${times[*]} (median ${median[$tool.$wl]})" >&2
  done
done

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
diffof() { python3 -c "print(f'{max($1 - $2, 0):.2f}')"; }
printf '| step (median s, %s runs) |' "$runs"
for tool in "${tools[@]}"; do
  case $tool in buildah) printf ' buildah chroot (vfs) |' ;; *) printf ' rbuild %s |' "$tool" ;; esac
done
printf '\n|---|'; for _ in "${tools[@]}"; do printf -- '---:|'; done; printf '\n'
for wl in true files10k apt; do
  printf '| %s |' "$wl"
  for tool in "${tools[@]}"; do printf ' %s |' "${median[$tool.$wl]}"; done
  printf '\n'
done
printf '| diff of 10,000 files (files10k − true) |'
for tool in "${tools[@]}"; do printf ' %s |' "$(diffof "${median[$tool.files10k]}" "${median[$tool.true]}")"; done
printf '\n\n'
bd=$(diffof "${median[buildah.files10k]}" "${median[buildah.true]}")
cd_=$(diffof "${median[chroot.files10k]}" "${median[chroot.true]}")
if python3 -c "import sys; sys.exit(0 if $bd > 0 else 1)"; then
  echo "chroot diff / buildah diff: $(ratio "$cd_" "$bd") (goal ≤ 0.5)"
fi
for tool in "${tools[@]}"; do
  [ "$tool" = namespaces ] && continue
  echo "apt, $tool / rbuild namespaces: $(ratio "${median[$tool.apt]}" "${median[namespaces.apt]}") (goal for rbuild modes ≤ 1.5)"
done
