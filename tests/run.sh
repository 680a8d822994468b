#!/usr/bin/env bash
# rbuild's whole test suite, on a fresh machine: installs what the tests need, checks formatting and
# lints, starts a real registry on 127.0.0.1, runs `cargo test --workspace --locked`, and stops what it
# started. Usage: bash tests/run.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n==> %s\n' "$*"; }

# 1. Packages the tests drive (independent clients and real servers), installed only when missing.
packages=(docker-registry skopeo umoci crun busybox-static golang-go golang-github-moby-patternmatcher-dev
          pigz zstd openssl curl apache2-utils xz-utils bzip2 debootstrap docker.io openssh-client
          openssh-server git tinyproxy-bin uidmap qemu-user-static file)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: these packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  # docker.io is only a client and a daemon binary here: the differential corpus starts its own
  # dockerd on a private socket. policy-rc.d keeps the package from starting the system service
  # (there is no systemd; invoke-rc.d honours exit 101 as "not allowed").
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$made_policy" ] || rm -f "$policy"
fi

# 2. Formatting and lints are part of the suite.
say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

# 3. Servers, on loopback only, in a scratch directory removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-tests.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url, what
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null -k "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "tests/run.sh: $2 did not start; its log:" >&2
  cat "$3" >&2 || true
  return 1
}

say "starting a plain-HTTP registry (CNCF distribution) on 127.0.0.1"
port=$(free_port)
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<YAML
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $work/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/v2/" "the registry" "$work/registry/log"

export RBUILD_TEST_REGISTRY="127.0.0.1:$port"
export RBUILD_TEST_REGISTRY_LOG="$work/registry/log"

say "starting a TLS registry with htpasswd Basic auth on 127.0.0.1 (CA and certificate made here)"
tls="$work/tls-registry"
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rbuild test CA" \
  -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/san.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 2 -extfile "$tls/san.ext" -out "$tls/server.crt" 2>/dev/null
tls_user=rbuild-tester
tls_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
htpasswd -Bbn "$tls_user" "$tls_password" > "$tls/htpasswd"
tls_port=$(free_port)
cat > "$tls/config.yml" <<YAML
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $tls/data
auth:
  htpasswd:
    realm: rbuild-test
    path: $tls/htpasswd
http:
  addr: 127.0.0.1:$tls_port
  tls:
    certificate: $tls/server.crt
    key: $tls/server.key
YAML
docker-registry serve "$tls/config.yml" > "$tls/log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tls/ca.crt" "https://127.0.0.1:$tls_port/v2/" || true)
  [ "$code" = 401 ] && break
  sleep 0.1
done
[ "$code" = 401 ] || { echo "tests/run.sh: the TLS registry did not start; its log:" >&2; cat "$tls/log" >&2; exit 1; }
export RBUILD_TEST_TLS_REGISTRY="127.0.0.1:$tls_port"
export RBUILD_TEST_TLS_CA="$tls/ca.crt"
export RBUILD_TEST_TLS_USER="$tls_user"
export RBUILD_TEST_TLS_PASSWORD="$tls_password"
# In this suite, a missing tool is a failure, not a skip.
export RBUILD_REQUIRE_TOOLS=1
# buildx's default attestation (provenance mode=min on push) turns every pushed image into an
# index whose digest changes with each build's times; the tests that compare pushed digests (and
# tests/crash/crash.sh) predate it. e2e build_attestations removes this to test the default.
export BUILDX_NO_DEFAULT_ATTESTATIONS=1
export RBUILD_REQUIRE_DIFFERENTIAL=1
export RBUILD_TEST_SCRATCH="$work"

# 4. Users for the rootless tests (tests/tests/e2e/run_rootless.rs), made only when this runs as
# root, idempotently: one with subordinate id ranges in /etc/subuid and /etc/subgid, one without
# (rbuild then maps a single id). System users get no ranges from useradd itself.
if [ "$(id -u)" -eq 0 ]; then
  say "test users for rootless builds"
  for u in rbuild-rootless rbuild-single-id; do
    id -u "$u" >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$u"
  done
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    sed -i '/^rbuild-single-id:/d' "$f"
    grep -q '^rbuild-rootless:' "$f" || echo 'rbuild-rootless:300000:65536' >> "$f"
  done
  export RBUILD_TEST_ROOTLESS_USER=rbuild-rootless
  export RBUILD_TEST_SINGLE_ID_USER=rbuild-single-id
fi

say "cargo build"
cargo build --workspace --locked --bins -q

# 5. Multi-platform builds (tests/tests/e2e/build_multiplatform.rs): Debian's arm64 busybox-static
# (the foreign base image's one binary, kept under target/ between runs) and the QEMU emulators
# registered in binfmt_misc by rbuild itself (with the F flag foreign RUN steps need).
fixtures="$root/target/test-fixtures"
mkdir -p "$fixtures"
arm64_busybox="$fixtures/busybox-static_arm64.deb"
if [ ! -s "$arm64_busybox" ] && [ "$(id -u)" -eq 0 ]; then
  say "downloading Debian's arm64 busybox-static"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  (cd "$fixtures" && rm -f busybox-static_*_arm64.deb &&
    { apt-get download -qq busybox-static:arm64 2>/dev/null ||
      { apt-get update -qq && apt-get download -qq busybox-static:arm64; }; } &&
    mv busybox-static_*_arm64.deb "$arm64_busybox")
fi
[ -s "$arm64_busybox" ] && export RBUILD_TEST_ARM64_BUSYBOX_DEB="$arm64_busybox"
if [ "$(id -u)" -eq 0 ]; then
  say "registering the arm64 emulator in binfmt_misc"
  target/debug/rbuild binfmt --install arm64
fi
say "cargo test --workspace --locked"
cargo test --workspace --locked "$@"
