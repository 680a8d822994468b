# Sourced by the bench scripts (apps.sh, multiplatform.sh): the base images' build context.
# Each base is a stage of one Dockerfile, built with rbuild for every target platform from files
# named after it: rootfs-$TARGETARCH.tar (a debootstrapped Debian root) and busybox-$TARGETARCH/.
# python and node build FROM the debian stage, so that their cache keys do not name a run's
# registry port (a kept BASE_STORE then saves the installs).

# bench_busybox DIR BINARY: a busybox root filesystem at DIR with BINARY as /bin/busybox, the
# host busybox's applets (Debian builds every architecture's with one configuration) and root's
# passwd and group.
bench_busybox() {
  mkdir -p "$1/bin" "$1/etc" "$1/tmp"
  cp "$2" "$1/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$1/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$1/etc/passwd"
  printf 'root:x:0:\n' > "$1/etc/group"
}

# bench_root_tar TREE TAR: the tree as one tar. ADD of a local tar keeps owners and modes; device
# nodes, /proc and /sys stay empty as in published Debian images; downloaded packages and apt
# lists are left out.
bench_root_tar() {
  tar -C "$1" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' -cf "$2" .
}

# bench_bases_dockerfile DIR: DIR/Dockerfile with the base stages and DIR/certs/ with the host's
# extra CA certificates (apt, pip and npm behind this machine's TLS-intercepting proxy).
bench_bases_dockerfile() {
  mkdir -p "$1/certs"
  cp /usr/local/share/ca-certificates/*.crt "$1/certs/" 2>/dev/null || true
  cat > "$1/Dockerfile" <<'DOCKERFILE'
FROM scratch AS debian
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
CMD ["bash"]

FROM debian AS python
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
CMD ["python3"]

FROM debian AS node
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]

FROM scratch AS busybox
ARG TARGETARCH
COPY busybox-${TARGETARCH}/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/sh"]
DOCKERFILE
}
