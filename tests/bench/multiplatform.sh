#!/usr/bin/env bash
# Multi-platform builds (issue 14's benchmark): the sample apps of testdata/bench-apps built for
# linux/amd64 alone and for linux/amd64,linux/arm64 in one invocation, on this x86-64 machine —
# what the second platform costs — and emulated RUN steps against the same work run under QEMU
# directly.
#
# Phases, for each app (RUNS times, medians):
#   cold-1 / cold-2          empty store, one platform / two platforms
#   one-source-1 / -2        then one application file edited (c src/count.c, python
#                            app/summary.py, node src/routes.js) and built again
# The apps' RUN steps (apt-get, make, pip, npm) run natively for amd64 and under QEMU user
# emulation (binfmt_misc) for arm64: their Dockerfiles have no $BUILDPLATFORM stage, so this is
# the worst case for a second platform. Docker 20.10's `docker build` builds one platform per
# invocation (multi-platform needs buildx, not installed here), so there is no BuildKit column.
#
# Emulation: a CPU-bound shell loop (busybox sh, LOOP iterations, default 300000) as a RUN step of
# `--platform linux/arm64 --no-cache` (total wall time), against the same loop run by the arm64
# busybox under `chroot` (the kernel hands it to QEMU through binfmt_misc) and by
# `qemu-aarch64-static` explicitly, and natively by the host busybox.
#
# Bases (built with rbuild for both platforms, outside the timed phases, pushed to a local
# registry): debian (two debootstrap minbase roots; the arm64 one through QEMU, see
# testdata/multiarch/debian-base.sh), python and node on it, busybox (host + Debian's arm64
# busybox-static). The arm64 python and node bases install their packages under emulation: the
# first run of the script takes a while (BASE_STORE keeps them).
#
# Usage: bash tests/bench/multiplatform.sh > table.md
# Environment: RUNS (default 3); APPS (default "c python"; node works too, slowly); RBUILD_BIN
# (default target/release/rbuild); DEBIAN_ROOTFS, DEBIAN_ARM64_ROOTFS reuse debootstrapped trees;
# ARM64_BUSYBOX_DEB (default: apt-get download busybox-static:arm64); BASE_STORE=DIR keeps the
# bases' store between runs of the script; LOOP (default 300000).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
runs=${RUNS:-3}
apps=${APPS:-c python}
loop=${LOOP:-300000}
rbuild=${RBUILD_BIN:-$root/target/release/rbuild}
[ -x "$rbuild" ] || cargo build --release --locked -q -p rbuild
for tool in docker-registry debootstrap qemu-aarch64-static busybox python3 curl tar; do
  command -v "$tool" >/dev/null || { echo "multiplatform.sh: $tool is required" >&2; exit 1; }
done
"$rbuild" binfmt --install arm64 >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-mp-bench.XXXXXX")
log() { echo "[$(date +%T)] $*" >&2; }
# shellcheck source=tests/bench/registry.sh
. "$root/tests/bench/registry.sh"
# shellcheck source=tests/bench/bases.sh
. "$root/tests/bench/bases.sh"
cleanup() {
  stop_registry
  [ "${KEEP_WORK:-0}" = 1 ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT INT TERM
start_registry "$work" warn

# ---- bases ----
base_store=${BASE_STORE:-$work/base-store}
b=$work/bases
deb=${ARM64_BUSYBOX_DEB:-}
if [ -z "$deb" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
  (cd "$work" && apt-get download -qq busybox-static:arm64 2>/dev/null)
  deb=$(ls "$work"/busybox-static_*_arm64.deb)
fi
dpkg-deb -x "$deb" "$work/busybox-arm64-deb"
bench_bases_dockerfile "$b"
bench_busybox "$b/busybox-amd64" /bin/busybox
bench_busybox "$b/busybox-arm64" "$work/busybox-arm64-deb/bin/busybox"
amd64_root=${DEBIAN_ROOTFS:-}
if [ -z "$amd64_root" ]; then
  amd64_root=$work/root-amd64
  log "debootstrap amd64"
  debootstrap --variant=minbase bookworm "$amd64_root" > "$work/debootstrap-amd64.log" 2>&1
fi
arm64_root=${DEBIAN_ARM64_ROOTFS:-}
if [ -z "$arm64_root" ]; then
  arm64_root=$work/root-arm64
  log "debootstrap arm64 (second stage under QEMU)"
  debootstrap --arch=arm64 --foreign --variant=minbase bookworm "$arm64_root" > "$work/debootstrap-arm64.log" 2>&1
  chroot "$arm64_root" /debootstrap/debootstrap --second-stage >> "$work/debootstrap-arm64.log" 2>&1
fi
bench_root_tar "$amd64_root" "$b/rootfs-amd64.tar"
bench_root_tar "$arm64_root" "$b/rootfs-arm64.tar"
needed_bases="debian busybox"
for app in $apps; do
  case $app in python | node) needed_bases="$needed_bases $app" ;; esac
done
for base in $needed_bases; do
  log "base $base (both platforms)"
  SOURCE_DATE_EPOCH=0 "$rbuild" build "$b" --store "$base_store" --progress plain --target "$base" \
    --platform linux/amd64,linux/arm64 --tag "$reg/bench/$base:1" --push > "$work/base-$base.log" 2>&1 ||
    { echo "multiplatform.sh: the $base base failed:" >&2; tail -n 30 "$work/base-$base.log" >&2; exit 1; }
done

# ---- the apps ----
app_args() {
  case $1 in
    python) echo "--build-arg BASE=$reg/bench/python:1" ;;
    node) echo "--build-arg BASE=$reg/bench/node:1" ;;
    c) echo "--build-arg BASE=$reg/bench/debian:1 --build-arg FINAL=$reg/bench/busybox:1" ;;
  esac
}
edit_source() { # app dir
  case $1 in
    c) printf '\n/* edited */\n' >> "$2/src/count.c" ;;
    python) printf '\n# edited\n' >> "$2/app/summary.py" ;;
    node) printf '\n// edited\n' >> "$2/src/routes.js" ;;
  esac
}
now() { date +%s.%N; }
timed() { # out-file command...
  local out=$1 t0 t1
  shift
  t0=$(now)
  if ! "$@" > "$work/last.log" 2>&1; then
    echo "multiplatform.sh: failed: $*" >&2
    tail -n 40 "$work/last.log" >&2
    exit 1
  fi
  t1=$(now)
  python3 -c "print(f'{$t1 - $t0:.2f}')" >> "$out"
}
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for app in $apps; do
  for n in 1 2; do
    case $n in 1) platforms=linux/amd64 ;; 2) platforms=linux/amd64,linux/arm64 ;; esac
    for r in $(seq 1 "$runs"); do
      log "$app, $n platform(s), run $r"
      src=$work/src-$app
      rm -rf "$src" "$work/store"
      cp -R "$root/testdata/bench-apps/$app" "$src"
      # shellcheck disable=SC2046
      timed "$work/$app-cold-$n" "$rbuild" build "$src" --store "$work/store" --progress plain \
        --platform "$platforms" $(app_args "$app")
      edit_source "$app" "$src"
      # shellcheck disable=SC2046
      timed "$work/$app-one-source-$n" "$rbuild" build "$src" --store "$work/store" --progress plain \
        --platform "$platforms" $(app_args "$app")
    done
  done
done

# ---- emulated RUN against QEMU run directly ----
e=$work/emu
mkdir -p "$e"
cat > "$e/Dockerfile" <<EOF
FROM $reg/bench/busybox:1
RUN i=0; while [ \$i -lt $loop ]; do i=\$((i+1)); done; echo \$i
EOF
script="i=0; while [ \$i -lt $loop ]; do i=\$((i+1)); done; echo \$i"
for r in $(seq 1 "$runs"); do
  log "emulation, run $r"
  timed "$work/emu-rbuild" "$rbuild" build "$e" --store "$work/emu-store" --progress plain \
    --platform linux/arm64 --no-cache
  timed "$work/emu-chroot" chroot "$b/busybox-arm64" /bin/sh -c "$script"
  timed "$work/emu-qemu" qemu-aarch64-static "$b/busybox-arm64/bin/busybox" sh -c "$script"
  timed "$work/emu-native" chroot "$b/busybox-amd64" /bin/sh -c "$script"
done

# ---- the table ----
echo "## Multi-platform builds (tests/bench/multiplatform.sh, RUNS=$runs, medians, seconds)"
echo
echo "$(nproc) CPUs; $(uname -m) host; arm64 RUN steps under $(qemu-aarch64-static --version | head -n1)."
echo
echo "| app | cold, 1 platform | cold, 2 platforms | second platform | one-source, 1 | one-source, 2 |"
echo "|---|---|---|---|---|---|"
for app in $apps; do
  c1=$(median "$work/$app-cold-1"); c2=$(median "$work/$app-cold-2")
  o1=$(median "$work/$app-one-source-1"); o2=$(median "$work/$app-one-source-2")
  extra=$(python3 -c "print(f'+{$c2 - $c1:.2f} (x{$c2 / $c1:.1f})')")
  echo "| $app | $c1 | $c2 | $extra | $o1 | $o2 |"
done
echo
echo "| $loop-iteration busybox sh loop | seconds |"
echo "|---|---|"
echo "| rbuild \`RUN\`, --platform linux/arm64 --no-cache (whole build) | $(median "$work/emu-rbuild") |"
echo "| chroot into the arm64 busybox (binfmt_misc → QEMU) | $(median "$work/emu-chroot") |"
echo "| qemu-aarch64-static busybox sh | $(median "$work/emu-qemu") |"
echo "| native amd64 busybox | $(median "$work/emu-native") |"
