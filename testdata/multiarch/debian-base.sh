#!/usr/bin/env bash
# A two-platform Debian bookworm base image (linux/amd64 + linux/arm64) made on this machine —
# there is no Docker Hub here — and pushed as one image index by rbuild (issue 14's "slower
# script"). The arm64 root is made with `debootstrap --arch=arm64 --foreign`, its second stage run
# through QEMU user emulation registered in binfmt_misc (Debian's qemu-user-static, registered
# with `rbuild binfmt --install arm64`); both roots get the host's extra CA certificates, so that
# apt, pip and npm in RUN steps work behind this machine's TLS-intercepting proxy.
#
# Usage: bash testdata/multiarch/debian-base.sh REGISTRY/REPOSITORY:TAG
# Environment: RBUILD_BIN (default target/release/rbuild); DEBIAN_ROOTFS / DEBIAN_ARM64_ROOTFS
# reuse debootstrapped trees instead of making them (they are not modified); WORK (default a
# temporary directory, removed at the end) holds the trees and the build context.
# Needs root (debootstrap, chroot), debootstrap, qemu-user-static and a reachable Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
ref=${1:?usage: debian-base.sh REGISTRY/REPOSITORY:TAG}
rbuild=${RBUILD_BIN:-$root/target/release/rbuild}
[ -x "$rbuild" ] || cargo build --release --locked -p rbuild -q

work=${WORK:-}
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-debian-base.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/ctx"

"$rbuild" binfmt --install arm64 >/dev/null

add_cas() { # rootfs
  if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$1/usr/local/share/ca-certificates"
    cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"
    chroot "$1" update-ca-certificates >/dev/null
  fi
}

make_root() { # arch dir
  local arch=$1 dir=$2
  echo "debootstrap --arch=$arch bookworm (minbase)" >&2
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    debootstrap --variant=minbase --include=ca-certificates bookworm "$dir" >&2
  else
    # The second stage runs the arm64 root's own programs: through binfmt_misc and QEMU.
    debootstrap --arch="$arch" --foreign --variant=minbase --include=ca-certificates bookworm "$dir" >&2
    chroot "$dir" /debootstrap/debootstrap --second-stage >&2
  fi
  add_cas "$dir"
}

for arch in amd64 arm64; do
  case $arch in
    amd64) given=${DEBIAN_ROOTFS:-} ;;
    arm64) given=${DEBIAN_ARM64_ROOTFS:-} ;;
  esac
  tree=$given
  if [ -z "$tree" ]; then
    tree="$work/root-$arch"
    make_root "$arch" "$tree"
  fi
  # The tree as one tar (numeric owners kept), without what no build reads.
  tar -C "$tree" --numeric-owner --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* \
    --exclude=./var/cache/apt/archives/*.deb -cf "$work/ctx/rootfs-$arch.tar" .
done

cat > "$work/ctx/Dockerfile" <<'EOF'
FROM scratch
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["bash"]
EOF
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0} "$rbuild" build "$work/ctx" --progress plain \
  --platform linux/amd64,linux/arm64 --tag "$ref" --push >&2
skopeo inspect --tls-verify=false --raw "docker://$ref"
