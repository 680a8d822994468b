#!/usr/bin/env bash
# rbuild against Docker's BuildKit on the sample apps of testdata/bench-apps, in one run, on the
# same machine, from the same local registry (issue 19's benchmark):
#
#   python      Flask + requests: `pip install -r requirements.txt` into a venv, then the code
#   node        `npm ci` + a terser build stage, and a runtime stage with `npm ci --omit=dev`
#   c           a Debian builder stage (`apt-get install` of packages.txt, make), busybox final stage
#   bigcontext  20,000 generated files (made by this script, not committed) and one COPY
#
# Phases, for each app and tool (rbuild, then BuildKit; the order alternates between runs):
#
#   cold         empty rbuild store / freshly started dockerd on an empty data dir, each on a
#                filesystem made for it (see "fresh filesystems" below)
#   no-op        the same build again, nothing changed
#   one-source   one application file edited (python app/summary.py, node src/routes.js,
#                c src/count.c, bigcontext one of its files)
#   dependency   requirements.txt gains a package / package.json + package-lock.json gain one
#                (testdata/bench-apps/node-deps-change) / packages.txt gains zlib1g-dev
#   export       the same build, with the image pushed and its build cache inline in it (Docker
#                20.10's `docker build` has no registry cache exporter and there is no buildx
#                here): rbuild `--push --cache-to type=inline`; BuildKit
#                `--build-arg BUILDKIT_INLINE_CACHE=1` + `docker push`
#   import       a fresh runner: rbuild with an empty store and `--cache-from` the image export
#                pushed; BuildKit on a freshly started dockerd with an empty data dir,
#                `--cache-from` its image
#   export-max   rbuild only: the build again, pushing every stage's steps and layers to a
#                registry cache (`--cache-to type=registry,mode=max`), which Docker 20.10 cannot
#   import-max   rbuild only: a fresh runner importing that cache
#
# Every phase is timed wall clock (the docker client's call for BuildKit, push included in
# export); RUNS runs (default 3) each start from the committed sources and empty stores, and the
# table shows medians and rbuild/BuildKit ratios against issue 19's goals. Peak memory is rbuild's
# maximum resident set (`/usr/bin/time -f %M`) over all its builds of the app; after the apps, a
# RUN writing a 1 GiB layer (compressed, pushed) and a fresh store building FROM it (downloaded,
# unpacked) give rbuild's peak memory on a large layer.
#
# Bases, made once per script run outside the timed phases and pushed to the local registry:
# debian (debootstrap --variant=minbase bookworm, with the host's CA certificates installed so
# that apt, pip and npm work behind a TLS-intercepting proxy), python (debian + python3, pip,
# venv from apt), node (debian + nodejs, npm from apt), busybox (Debian's busybox-static). They
# are built with rbuild.
#
# Usage: bash tests/bench/apps.sh > table.md
# Environment: RUNS (default 3); APPS (default "python node c bigcontext"); RBUILD_BIN (default
# target/release/rbuild, built when missing); DEBIAN_ROOTFS=DIR reuses a debootstrapped bookworm
# instead of running debootstrap; BASE_STORE=DIR keeps the rbuild store the bases are built in
# (so that a second run of the script does not install them again); KEEP_WORK=1 keeps the scratch
# directory; BIG_LAYER_MIB (default 1024, 0 skips) sizes the layer of the peak-memory check;
# FRESH_FS=0 runs cold and import phases in plain directories instead of fresh filesystems
# (FRESH_FS_GIB sizes those, sparse; default 8).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
runs=${RUNS:-3}
apps=${APPS:-python node c bigcontext}
docker_cli=/usr/bin/docker # Debian's docker.io; another `docker` on PATH may lack BuildKit

rbuild=${RBUILD_BIN:-$root/target/release/rbuild}
if [ ! -x "$rbuild" ]; then
  echo "building $rbuild (cargo build --release -p rbuild)" >&2
  cargo build --release -q -p rbuild
fi
for tool in docker-registry dockerd busybox python3 curl tar; do
  command -v "$tool" >/dev/null || { echo "apps.sh: $tool is required" >&2; exit 1; }
done
[ -x "$docker_cli" ] || { echo "apps.sh: $docker_cli (Debian's docker.io) is required" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "apps.sh: /usr/bin/time is required" >&2; exit 1; }
if [ -z "${DEBIAN_ROOTFS:-}" ]; then
  command -v debootstrap >/dev/null || { echo "apps.sh: debootstrap (or DEBIAN_ROOTFS) is required" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-apps-bench.XXXXXX")
registry_pid=
dockerd_pid=
dockerd_dir=
dockerd_n=0
log() { echo "[$(date +%T)] $*" >&2; }

# Lazily unmounts what a stopped dockerd left under $1, deepest first, so that rm -rf cannot
# reach into a mount.
unmount_under() {
  awk -v p="$1/" 'index($2, p) == 1 { print length($2), $2 }' /proc/self/mounts |
    sort -rn | cut -d' ' -f2- | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
# ---- fresh filesystems ----
# A fresh runner has a fresh disk. On a filesystem that has just deleted a tree the size of a
# store, creating as many files again is slow for a minute or more: without a journal (this
# machine's root filesystem has none), ext4 skips recently freed inodes (`recently_deleted`),
# reading their inode table blocks — `perf` put over half of a base unpack's busy time there
# when it ran right after the previous run's `rm -rf` — whichever tool came after a deletion.
# So every phase that models a fresh runner (cold, import, import-max, and each dockerd start)
# gets an ext4 of its own, made before the phase (not timed), on a loop device with direct I/O
# (pages are not cached twice), with the journal setting of $work's filesystem.
# FRESH_FS=0 keeps the old way (plain directories, emptied with rm -rf).
mkfs_opts=()
fresh_fs_on=${FRESH_FS:-1}
if [ "$fresh_fs_on" = 1 ]; then
  for tool in losetup mkfs.ext4 findmnt; do
    command -v "$tool" > /dev/null || { echo "apps.sh: $tool is missing (or set FRESH_FS=0)" >&2; exit 1; }
  done
  work_dev=$(basename "$(findmnt -no SOURCE -T "$work")")
  [ "$(cat "/sys/fs/ext4/$work_dev/journal_task" 2>/dev/null)" != "<none>" ] || mkfs_opts=(-O ^has_journal)
fi
fresh_fs() { # dir: an empty directory, on a filesystem of its own when FRESH_FS=1
  drop_fs "$1"
  mkdir -p "$1"
  [ "$fresh_fs_on" = 1 ] || return 0
  local dev
  truncate -s "${FRESH_FS_GIB:-8}G" "$1.img"
  # Inode tables written now, not by a kernel thread during the timed phases.
  mkfs.ext4 -q -F -E lazy_itable_init=0 "${mkfs_opts[@]}" "$1.img"
  dev=$(losetup -f --show --direct-io=on "$1.img")
  mount "$dev" "$1"
  losetup -d "$dev" # cleared when unmounted
}
drop_fs() { # dir
  [ -e "$1" ] || return 0
  unmount_under "$1"
  if mountpoint -q "$1"; then umount "$1" 2>/dev/null || umount -l "$1"; fi
  rm -rf "$1" "$1.img"
}
dockerd_stop() {
  [ -n "$dockerd_pid" ] || return 0
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=
  drop_fs "$dockerd_dir"
}
# shellcheck source=tests/bench/registry.sh
. "$root/tests/bench/registry.sh"
# shellcheck source=tests/bench/bases.sh
. "$root/tests/bench/bases.sh"
cleanup() {
  dockerd_stop
  stop_registry
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "kept $work" >&2
  else
    unmount_under "$work"
    rm -rf "$work"
  fi
}
trap cleanup EXIT INT TERM

# The registry, as tests/run.sh configures it.
start_registry "$work" warn

# A dockerd of our own (as tests/src/differential/buildkit.rs starts it): private socket, data
# root and exec root, no iptables, no bridge (builds use --network host); each start is a fresh
# runner with an empty data dir.
export DOCKER_CONFIG=$work/docker-config DOCKER_BUILDKIT=1
mkdir -p "$DOCKER_CONFIG"
dockerd_start() {
  dockerd_stop
  dockerd_n=$((dockerd_n + 1))
  dockerd_dir=$work/d$dockerd_n
  fresh_fs "$dockerd_dir"
  export DOCKER_HOST=unix://$dockerd_dir/docker.sock
  dockerd --iptables=false --ip-masq=false --bridge=none --host "$DOCKER_HOST" \
    --data-root "$dockerd_dir/data" --exec-root "$dockerd_dir/x" --pidfile "$dockerd_dir/dockerd.pid" \
    --insecure-registry "$reg" > "$work/dockerd.$dockerd_n.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 300); do
    "$docker_cli" version --format '{{.Server.Version}}' > "$work/docker-version" 2>/dev/null && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "apps.sh: dockerd did not start:" >&2
  tail -n 20 "$work/dockerd.$dockerd_n.log" >&2
  exit 1
}

# ---- bases (built with rbuild, outside the timed phases) ----
base_store=${BASE_STORE:-$work/base-store}
build_base() { # target (stage of $work/bases/Dockerfile)
  log "base $1"
  if ! "$rbuild" build "$work/bases" --store "$base_store" --progress plain --target "$1" \
    --tag "$reg/bench/$1:1" --push > "$work/base-$1.log" 2>&1; then
    echo "apps.sh: building the $1 base failed:" >&2
    tail -n 30 "$work/base-$1.log" >&2
    exit 1
  fi
}
# The bases' context (tests/bench/bases.sh): the host's platform only.
make_bases() {
  local b=$work/bases rootfs=${DEBIAN_ROOTFS:-} arch
  arch=$(dpkg --print-architecture)
  if [ -z "$rootfs" ]; then
    rootfs=$work/debootstrap
    log "debootstrap --variant=minbase bookworm"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian > "$work/debootstrap.log" 2>&1 ||
      { echo "apps.sh: debootstrap failed:" >&2; tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  fi
  bench_bases_dockerfile "$b"
  bench_root_tar "$rootfs" "$b/rootfs-$arch.tar"
  bench_busybox "$b/busybox-$arch" /bin/busybox
  for base in debian python node busybox; do build_base "$base"; done
}

# ---- the apps ----
app_args() { # app → build args, one per line
  case $1 in
    python) echo "BASE=$reg/bench/python:1" ;;
    node) echo "BASE=$reg/bench/node:1" ;;
    c) echo "BASE=$reg/bench/debian:1"; echo "FINAL=$reg/bench/busybox:1" ;;
    bigcontext) echo "BASE=$reg/bench/busybox:1" ;;
  esac
}
# A fresh copy of the app's committed sources in $1 (bigcontext: 20,000 generated files, 200
# directories of 100, 0.5-2 KiB each, the same bytes every run).
fresh_sources() { # app, dir
  rm -rf "$2"
  cp -R "$root/testdata/bench-apps/$1" "$2"
  if [ "$1" = bigcontext ]; then
    python3 - "$2/src" <<'PY'
import os, random, sys
rng = random.Random(19)
root = sys.argv[1]
for d in range(200):
    path = os.path.join(root, f"d{d:03d}")
    os.makedirs(path)
    for f in range(100):
        n = rng.randint(512, 2048)
        with open(os.path.join(path, f"f{d * 100 + f:05d}.txt"), "w") as out:
            out.write("".join(rng.choice("abcdefghijklmnopqrstuvwxyz \n") for _ in range(n)))
PY
  fi
}
edit_source() { # app, dir: one application file changes (in a way its build output shows)
  case $1 in
    python) printf '\n\nBENCH_EDIT = 1\n' >> "$2/app/summary.py" ;;
    node) printf '\nmodule.exports.benchEdit = 1;\n' >> "$2/src/routes.js" ;;
    c) printf '\nint bench_edit(void) { return 1; }\n' >> "$2/src/count.c" ;;
    bigcontext) printf 'edited\n' >> "$2/src/d042/f04242.txt" ;;
  esac
}
edit_deps() { # app, dir: the dependency list gains a package; false when the app has none
  case $1 in
    python) printf 'six==1.16.0\n' >> "$2/requirements.txt" ;;
    node) cp "$root/testdata/bench-apps/node-deps-change/package.json" \
      "$root/testdata/bench-apps/node-deps-change/package-lock.json" "$2/" ;;
    c) printf 'zlib1g-dev\n' >> "$2/packages.txt" ;;
    *) return 1 ;;
  esac
}

declare -A times mem
record() { times[$1]="${times[$1]:-} $2"; }
failed() { # what, log
  echo "apps.sh: $1 failed; its log ends:" >&2
  tail -n 30 "$2" >&2
  exit 1
}
# Times one rbuild build: app, phase, store, context, extra args...
rb() {
  local app=$1 phase=$2 store=$3 ctx=$4 start end m
  shift 4
  local -a bargs=()
  while read -r a; do bargs+=(--build-arg "$a"); done < <(app_args "$app")
  local out=$work/logs/$app.$phase.$run.rbuild
  start=$(date +%s.%N)
  /usr/bin/time -f %M -o "$out.mem" "$rbuild" build "$ctx" --store "$store" --progress plain \
    "${bargs[@]}" "$@" > "$out.log" 2>&1 || failed "rbuild $app $phase (run $run)" "$out.log"
  end=$(date +%s.%N)
  record "$app|$phase|rbuild" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"
  m=$(tail -n 1 "$out.mem")
  [ "${mem[$app]:-0}" -ge "$m" ] || mem[$app]=$m
}
# Times one BuildKit build (plus a push for export): app, phase, context, extra args...
bk() {
  local app=$1 phase=$2 ctx=$3 start end
  shift 3
  local -a bargs=()
  while read -r a; do bargs+=(--build-arg "$a"); done < <(app_args "$app")
  local out=$work/logs/$app.$phase.$run.buildkit push=
  if [ "$phase" = export ]; then
    push=$reg/bench/$app:buildkit-$run
    set -- "$@" -t "$push" --build-arg BUILDKIT_INLINE_CACHE=1
  fi
  start=$(date +%s.%N)
  "$docker_cli" build --network host --progress plain -t "bench/$app:buildkit" "${bargs[@]}" "$@" "$ctx" \
    > "$out.log" 2>&1 || failed "BuildKit $app $phase (run $run)" "$out.log"
  if [ -n "$push" ]; then
    "$docker_cli" push "$push" >> "$out.log" 2>&1 || failed "docker push $app (run $run)" "$out.log"
  fi
  end=$(date +%s.%N)
  record "$app|$phase|buildkit" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"
}
# One phase for both tools; odd runs start with rbuild, even runs with BuildKit.
phase() { # app, phase, rbuild store, context, rbuild extra args (one string, split on spaces)...
  local app=$1 name=$2 store=$3 ctx=$4 extra=${5:-}
  log "$app: $name (run $run)"
  # shellcheck disable=SC2086
  if [ $((run % 2)) = 1 ]; then
    rb "$app" "$name" "$store" "$ctx" $extra
    bk_phase "$app" "$name" "$ctx"
  else
    bk_phase "$app" "$name" "$ctx"
    rb "$app" "$name" "$store" "$ctx" $extra
  fi
}
bk_phase() { # app, phase, context: BuildKit's side of a phase
  case $2 in
    cold | import) dockerd_start ;; # a fresh runner (not timed)
  esac
  if [ "$2" = import ]; then
    bk "$1" "$2" "$3" --cache-from "$reg/bench/$1:buildkit-$run"
  else
    bk "$1" "$2" "$3"
  fi
}

mkdir -p "$work/logs"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "bases"
make_bases
for run in $(seq 1 "$runs"); do
  for app in $apps; do
    src=$work/src-$app
    fresh_sources "$app" "$src"
    fresh_fs "$work/fs-$app"
    fresh_fs "$work/fs-$app-fresh"
    store=$work/fs-$app/store
    phase "$app" cold "$store" "$src" "-t $reg/bench/$app:rbuild"
    phase "$app" no-op "$store" "$src" "-t $reg/bench/$app:rbuild"
    edit_source "$app" "$src"
    phase "$app" one-source "$store" "$src" "-t $reg/bench/$app:rbuild"
    if edit_deps "$app" "$src"; then
      phase "$app" dependency "$store" "$src" "-t $reg/bench/$app:rbuild"
    fi
    phase "$app" export "$store" "$src" \
      "-t $reg/bench/$app:rbuild-$run --push --cache-to type=inline"
    phase "$app" import "$work/fs-$app-fresh/store" "$src" \
      "-t $reg/bench/$app:rbuild --cache-from type=registry,ref=$reg/bench/$app:rbuild-$run"
    fresh_fs "$work/fs-$app-fresh"
    # rbuild only: every stage's steps and layers in a registry cache (mode=max), which
    # Docker 20.10's BuildKit cannot export, and a fresh runner importing it.
    log "$app: export-max, import-max (run $run, rbuild only)"
    rb "$app" export-max "$store" "$src" -t "$reg/bench/$app:rbuild-$run" --push \
      --cache-to "type=registry,ref=$reg/bench/$app-cache:rbuild-$run,mode=max"
    rb "$app" import-max "$work/fs-$app-fresh/store" "$src" -t "$reg/bench/$app:rbuild" \
      --cache-from "type=registry,ref=$reg/bench/$app-cache:rbuild-$run"
    drop_fs "$work/fs-$app"
    drop_fs "$work/fs-$app-fresh"
  done
done
dockerd_stop

# ---- peak memory on a large layer (rbuild only) ----
# A RUN writes BIG_LAYER_MIB of random bytes (one layer, compressed and pushed), then a fresh
# store builds FROM that image with a RUN reading the file (the layer downloaded and unpacked).
big_mib=${BIG_LAYER_MIB:-1024}
big_write= big_read= big_write_s= big_read_s=
if [ "$big_mib" -gt 0 ]; then
  big=$work/big
  mkdir -p "$big/write" "$big/read"
  printf 'ARG BASE\nFROM ${BASE}\nRUN head -c %d /dev/urandom > /big.bin\n' $((big_mib * 1048576)) > "$big/write/Dockerfile"
  printf 'ARG BASE\nFROM ${BASE}\nRUN wc -c /big.bin\n' > "$big/read/Dockerfile"
  big_step() { # name, context, store, base, extra args...
    local name=$1 ctx=$2 st=$3 base=$4 start end
    shift 4
    log "big layer: $name ($big_mib MiB)"
    start=$(date +%s.%N)
    /usr/bin/time -f %M -o "$big/$name.mem" "$rbuild" build "$ctx" --store "$st" --progress plain \
      --build-arg "BASE=$base" "$@" > "$big/$name.log" 2>&1 || failed "rbuild big layer $name" "$big/$name.log"
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" -v k="$(tail -n 1 "$big/$name.mem")" 'BEGIN { printf "%.0f MiB in %.1f s", k / 1024, b - a }'
  }
  big_write=$(big_step write "$big/write" "$big/store-w" "$reg/bench/busybox:1" -t "$reg/bench/big:1" --push)
  rm -rf "$big/store-w"
  big_read=$(big_step read "$big/read" "$big/store-r" "$reg/bench/big:1")
  rm -rf "$big/store-r"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table ----
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
goal_of() {
  case $1 in
    cold) echo 0.8 ;; no-op) echo 0.25 ;; one-source) echo 0.5 ;; export) echo 0.8 ;; import) echo 0.5 ;; *) echo "" ;;
  esac
}
echo "$(date -u +%F), $(nproc) cores, load average $load_before before / $load_after after;" \
  "RUNS=$runs (medians); rbuild $("$rbuild" --version 2>/dev/null | awk '{ print $NF }') ($rbuild)," \
  "Docker $(cat "$work/docker-version" 2>/dev/null || echo '?') (BuildKit in dockerd, \`docker build\`)."
echo
echo "| app | phase | rbuild s | BuildKit s | ratio | goal | met? |"
echo "|---|---|---:|---:|---:|---:|---|"
for app in $apps; do
  for p in cold no-op one-source dependency export import export-max import-max; do
    [ -n "${times[$app|$p|rbuild]:-}" ] || continue
    r=$(echo "${times[$app|$p|rbuild]}" | median)
    if [ -z "${times[$app|$p|buildkit]:-}" ]; then
      printf '| %s | %s | %.2f | — | — | — | — |\n' "$app" "$p" "$r"
      continue
    fi
    b=$(echo "${times[$app|$p|buildkit]}" | median)
    ratio=$(awk -v r="$r" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? r / b : 0) }')
    g=$(goal_of "$p")
    if [ -n "$g" ]; then
      met=$(awk -v x="$ratio" -v g="$g" 'BEGIN { print (x <= g ? "yes" : "no") }')
      g="≤ $g"
    else
      g="—" met="—"
    fi
    printf '| %s | %s | %.2f | %.2f | %s | %s | %s |\n' "$app" "$p" "$r" "$b" "$ratio" "$g" "$met"
  done
done
echo
printf 'rbuild peak RSS over all builds of an app:'
for app in $apps; do
  printf ' %s %s MiB;' "$app" "$(awk -v k="${mem[$app]:-0}" 'BEGIN { printf "%.0f", k / 1024 }')"
done
echo
if [ -n "$big_write" ]; then
  echo
  echo "rbuild peak RSS on a $big_mib MiB layer: RUN writing it, compressed and pushed: $big_write;" \
    "FROM it in an empty store, RUN reading it (downloaded, unpacked): $big_read."
fi
echo
echo "All times per phase (s): "
for app in $apps; do
  for p in cold no-op one-source dependency export import export-max import-max; do
    [ -n "${times[$app|$p|rbuild]:-}" ] || continue
    echo "- $app $p: rbuild${times[$app|$p|rbuild]}; BuildKit${times[$app|$p|buildkit]:- —}"
  done
done
