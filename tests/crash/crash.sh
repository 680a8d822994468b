#!/usr/bin/env bash
# Crash consistency of rbuild (SECURITY.md, "Crash consistency and faults"): kills a build that
# pulls its base from a registry, runs, compresses, pushes and exports its cache, at many points,
# and checks what the kill left behind.
#
# Kill points: every test-only failpoint of layers/src/failpoint.rs that this build reaches
# (RBUILD_FAILPOINT=<name>[@N]: the process SIGKILLs itself exactly there), and N time offsets
# (`kill -9` of the whole process group at k × T/(N+1), T = a clean build's time). After each kill:
#   (a) `rbuild fsck` on the killed build's store says it is consistent (exit 0);
#   (b) no mount under the store and no process of the killed build is left;
#   (c) the rebuild with the same store and the same destinations succeeds, its image digest is
#       the clean reference build's, and the pushed image reads back (skopeo) with that digest;
#       the cache export it redid reads back too;
#   (d) after that rebuild, no temp data of dead processes is left in the store's tmp/ (and no
#       half-made snapshot, and no temp file in a local cache directory). CRASH_STRICT_TMP=0
#       makes this a warning.
#
# Usage: bash tests/crash/crash.sh
#   CRASH_POINTS=short   6 failpoints + 2 offsets (CI); default `all` (every failpoint case + 8
#                        offsets); or a comma-separated list of failpoint cases (name[@N]).
#   CRASH_OFFSETS=N      the number of time offsets (default 8, short: 2).
#   CRASH_STRICT_TMP=0   leftover temp data after the rebuild is a warning, not a failure.
#   RBUILD=path          the binary (default target/debug/rbuild, built if missing).
#   RBUILD_TEST_REGISTRY=host:port  a plain-HTTP registry on 127.0.0.1 (else one is started).
#   CRASH_KEEP=1         keep the scratch directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${CRASH_POINTS:-all}
strict_tmp=${CRASH_STRICT_TMP:-1}
epoch=1700000000

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'crash.sh: %s\n' "$*" >&2; exit 2; }

for tool in skopeo busybox findmnt setsid python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

rbuild=${RBUILD:-$root/target/debug/rbuild}
if [ ! -x "$rbuild" ]; then
  say "building rbuild"
  cargo build --locked -q --manifest-path "$root/Cargo.toml" -p rbuild --bins
fi

work=$(mktemp -d "${RBUILD_TEST_SCRATCH:-${TMPDIR:-/tmp}}/rbuild-crash.XXXXXX")
registry_pid=
build_pid=
cleanup() {
  # (Under set -e: a failing command here would replace the script's exit status.)
  # Interrupted mid-case: the build's process group goes too.
  if [ -n "$build_pid" ]; then kill -9 -- "-$build_pid" 2>/dev/null || true; fi
  # A failed case may have left mounts: never let rm -rf walk into them.
  { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  if [ "${CRASH_KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the registry -------------------------------------------------------------------------
start_registry() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/registry"
  cat > "$work/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && { reg=127.0.0.1:$port; return; }
    sleep 0.1
  done
  cat "$work/registry/log" >&2
  die "the registry did not start"
}
if [ -n "${RBUILD_TEST_REGISTRY:-}" ]; then
  reg=$RBUILD_TEST_REGISTRY
else
  say "starting a registry on 127.0.0.1"
  start_registry
fi
# Repositories of this run, apart from any other run's on a shared registry.
ns=crash-$$-$RANDOM

# Pushed digests are compared: no default provenance (whose times differ per build), as buildx's
# BUILDX_NO_DEFAULT_ATTESTATIONS.
export BUILDX_NO_DEFAULT_ATTESTATIONS="${BUILDX_NO_DEFAULT_ATTESTATIONS:-1}"

# --- the base image (pushed, so that every build pulls it) and the build context ----------
say "making the busybox base image $reg/$ns/base:1"
base=$work/base
mkdir -p "$base/rootfs/bin" "$base/rootfs/etc" "$base/rootfs/tmp"
cp "$(command -v busybox)" "$base/rootfs/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$base/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$base/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$base/rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\n' > "$base/Dockerfile"
SOURCE_DATE_EPOCH=0 "$rbuild" build "$base" --store "$work/base-store" --progress quiet \
  --tag "$reg/$ns/base:1" --push >/dev/null

ctx=$work/ctx
mkdir -p "$ctx/app/conf"
seq 1 400000 > "$ctx/app/numbers.txt"             # ~2.6 MiB of context
for i in $(seq 1 40); do echo "setting $i" > "$ctx/app/conf/c$i.conf"; done
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $reg/$ns/base:1 AS deps
# A few MiB written by a RUN, in many files and directories (a diff walk with some depth).
RUN mkdir -p /opt/data && seq 1 500000 > /opt/data/big.txt \\
 && for d in a b c d e f g h; do mkdir -p /opt/tree/\$d; for f in 1 2 3 4 5 6 7 8; do \\
      echo "\$d\$f" > /opt/tree/\$d/\$f; done; done
COPY app/ /src/
RUN wc -c /src/numbers.txt /opt/data/big.txt > /opt/sizes && cat /src/conf/*.conf > /opt/conf.all

FROM $reg/$ns/base:1
COPY --from=deps /opt/ /opt/
COPY app/conf/ /etc/app/
CMD ["cat", "/opt/sizes"]
DOCKERFILE

# --- running and killing builds -----------------------------------------------------------
# args_for CASE VARIANT: the build's arguments; each case pushes to its own repositories.
args_for() {
  local case=$1 variant=$2 cache
  if [ "$variant" = local ]; then
    cache="type=local,dest=$work/cases/$case/cache,mode=max"
  else
    cache="type=registry,ref=$reg/$ns/cache-$case:1,mode=max"
  fi
  printf '%s\n' build "$ctx" --store "$work/cases/$case/store" --progress plain \
    --tag "$reg/$ns/app-$case:1" --push --cache-to "$cache" \
    --metadata-file "$work/cases/$case/metadata.json"
}

# run_build CASE VARIANT LOG [env…]: runs a build in its own session (process group) in the
# background; sets $build_pid.
run_build() {
  local case=$1 variant=$2 log=$3
  shift 3
  local -a args
  mapfile -t args < <(args_for "$case" "$variant")
  mkdir -p "$work/cases/$case"
  env SOURCE_DATE_EPOCH=$epoch "$@" setsid "$rbuild" "${args[@]}" > "$log" 2>&1 &
  build_pid=$!
}

image_digest() { # metadata file
  python3 -c 'import json,sys
m=json.load(open(sys.argv[1]))
def find(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "containerimage.digest": return x
            r = find(x)
            if r: return r
    elif isinstance(v, list):
        for x in v:
            r = find(x)
            if r: return r
print(find(m) or "")' "$1" 2>/dev/null || true
}

# Processes of a killed build: its process group, and anything naming its store.
leftover_processes() { # pgid store
  { pgrep -g "$1" 2>/dev/null || true; pgrep -f -- "$2" 2>/dev/null || true; } | sort -u | tr '\n' ' '
}
leftover_mounts() { # store
  grep -cF " $1/" /proc/self/mountinfo || true
}

# Temp data nobody alive owns (checked when no rbuild of this case runs), as the kinds found:
# tmp/<kind>-… of the store, snapshots/tmp-… (`snapshot`), a local cache's temp files (`cache`).
leftover_tmp() { # case
  local d=$work/cases/$1
  {
    find "$d/store/tmp" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sed 's/-.*//' || true
    find "$d/store/snapshots" -mindepth 1 -maxdepth 1 -name 'tmp-*' -printf 'snapshot\n' 2>/dev/null || true
    find "$d/cache" -name '.rbuild-tmp-*' -printf 'cache\n' 2>/dev/null || true
  } | sort -u | paste -sd, -
}

# The pushed image and the exported cache read back from where the rebuild put them.
check_pushed() { # case variant → prints "" when fine, else what is wrong
  local case=$1 variant=$2 got
  got=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/$ns/app-$case:1" 2>&1) ||
    { echo "skopeo: $got"; return; }
  [ "$got" = "$ref_digest" ] || { echo "pushed $got"; return; }
  if [ "$variant" = local ]; then
    python3 - "$work/cases/$case/cache" <<'PY' || echo "local cache unreadable"
import json, os, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
m = idx["manifests"][0]["digest"].split(":")[1]
man = json.load(open(os.path.join(d, "blobs", "sha256", m)))
for b in [man["config"]] + man["layers"]:
    p = os.path.join(d, "blobs", "sha256", b["digest"].split(":")[1])
    assert os.path.getsize(p) == b["size"], p
PY
  else
    skopeo inspect --tls-verify=false --raw "docker://$reg/$ns/cache-$case:1" >/dev/null 2>&1 ||
      echo "cache manifest unreadable"
  fi
}

# --- the clean reference build ------------------------------------------------------------
say "clean reference build (fresh store, registry cache)"
start=$(date +%s.%N)
run_build ref registry "$work/ref.log"
wait "$build_pid" || { cat "$work/ref.log" >&2; die "the clean build failed"; }
end=$(date +%s.%N)
ref_digest=$(image_digest "$work/cases/ref/metadata.json")
[ -n "$ref_digest" ] || { cat "$work/cases/ref/metadata.json" >&2; die "no digest in the metadata file"; }
say "reference $ref_digest"
# The local cache variant gives the same image.
start2=$(date +%s.%N)
run_build ref-local local "$work/ref-local.log"
wait "$build_pid" || { cat "$work/ref-local.log" >&2; die "the clean build with a local cache failed"; }
end2=$(date +%s.%N)
[ "$(image_digest "$work/cases/ref-local/metadata.json")" = "$ref_digest" ] ||
  die "the clean build with a local cache gave another digest"
# The time offsets spread over the faster of the two (the first also warms the page cache).
clean_ms=$(python3 -c "print(int(min($end - $start, $end2 - $start2) * 1000))")
say "a clean build takes ${clean_ms} ms"

# --- the cases ----------------------------------------------------------------------------
# The failpoints: read from the source, so that a new point is a new case.
mapfile -t all_points < <(sed -n '/^pub const FAILPOINTS/,/^];/p' "$root/layers/src/failpoint.rs" |
  grep -o '"[a-z_]*\.[a-z_]*"' | tr -d '"')
[ "${#all_points[@]}" -ge 12 ] || die "could not read the failpoints from layers/src/failpoint.rs"
# Which hit of a point to kill at, when the first is not the interesting one (a later blob, a
# chunk in the middle of a layer, a directory deep in the diff).
nth_of() {
  case $1 in
    blob.before_fsync) echo 2 ;; blob.before_rename) echo 3 ;; blob.after_rename) echo 4 ;;
    record.before_rename) echo 2 ;; layer.mid_compress) echo 2 ;; run.mid_diff) echo 3 ;;
    pull.mid_download) echo 2 ;; push.after_blob) echo 2 ;; cache_local.mid_blobs) echo 2 ;;
    *) echo 1 ;;
  esac
}
short_points=(blob.before_rename run.started pull.mid_download push.before_manifest
              cache.before_manifest cache_local.before_index_rename)
case $mode in
  all) points=("${all_points[@]}"); offsets=${CRASH_OFFSETS:-8} ;;
  short) points=("${short_points[@]}"); offsets=${CRASH_OFFSETS:-2} ;;
  *) IFS=, read -r -a points <<< "$mode"; offsets=${CRASH_OFFSETS:-0} ;;
esac
cases=()
for p in "${points[@]}"; do
  case $p in *@*) cases+=("fp:$p") ;; *) cases+=("fp:$p@$(nth_of "$p")") ;; esac
done
for k in $(seq 1 "$offsets"); do cases+=("t:$((clean_ms * k / (offsets + 1)))"); done

failures=0
kills=0
rows=()
i=0
for c in "${cases[@]}"; do
  i=$((i + 1))
  name=c$i
  if [ "${c#fp:}" != "$c" ]; then
    point=${c#fp:}
    label=$point
    case $point in cache_local.*) variant=local ;; *) variant=registry ;; esac
  else
    point=
    offset=${c#t:}
    label="kill -9 at ${offset}ms"
    # Offsets alternate between the two cache kinds.
    if [ $((i % 2)) = 0 ]; then variant=local; else variant=registry; fi
  fi
  say "case $i/${#cases[@]}: $label ($variant cache)"
  log=$work/cases/$name.log
  mkdir -p "$work/cases/$name"
  killed=no
  if [ -n "$point" ]; then
    run_build "$name" "$variant" "$log" RBUILD_FAILPOINT="$point"
    # (bash would report the job "Killed" on stderr: that is the point.)
    rc=0; { wait "$build_pid"; } 2>/dev/null || rc=$?
    if [ "$rc" = 137 ] && grep -q "failpoint ${point}: SIGKILL" "$log"; then killed=yes
    elif [ "$rc" = 0 ]; then killed="not reached"
    else killed="exit $rc"; fi
  else
    # On a loaded machine a build may finish before its offset: then it is tried again, with
    # a fresh store and destinations, at 60% of the offset (at most 3 tries).
    for attempt in 1 2 3; do
      [ "$attempt" = 1 ] || { name=c${i}-$attempt; log=$work/cases/$name.log; mkdir -p "$work/cases/$name"; }
      run_build "$name" "$variant" "$log"
      sleep "$(python3 -c "print($offset / 1000)")"
      if kill -0 "$build_pid" 2>/dev/null; then
        kill -9 -- "-$build_pid" 2>/dev/null && killed=yes
      else
        killed="finished first"
      fi
      { wait "$build_pid"; } 2>/dev/null || true
      [ "$killed" = yes ] && break
      offset=$((offset * 6 / 10))
    done
    label="kill -9 at ${offset}ms"
  fi
  store=$work/cases/$name/store

  # (b) leftovers of the killed build; what dies with it (the RUN helper via PDEATHSIG, the
  # sandbox with its namespaces) may take a moment.
  procs= ; mounts=0
  for _ in $(seq 1 50); do
    procs=$(leftover_processes "$build_pid" "$store")
    mounts=$(leftover_mounts "$store")
    [ -z "$procs" ] && [ "$mounts" = 0 ] && break
    sleep 0.1
  done
  # (a) fsck
  fsck=ok
  if ! "$rbuild" fsck --store "$store" > "$work/cases/$name.fsck" 2>&1 ||
     ! grep -q "the store is consistent" "$work/cases/$name.fsck"; then
    fsck=FAIL
  fi
  # (c) the rebuild, same store, same destinations
  run_build "$name" "$variant" "$work/cases/$name.rebuild.log"
  rebuild=ok
  if ! wait "$build_pid"; then
    rebuild="FAIL (exit)"
  else
    got=$(image_digest "$work/cases/$name/metadata.json")
    if [ "$got" != "$ref_digest" ]; then
      rebuild="FAIL ($got)"
    else
      bad=$(check_pushed "$name" "$variant")
      [ -z "$bad" ] || rebuild="FAIL ($bad)"
    fi
  fi
  # (d) temp data of dead owners, once the rebuild has run
  tmp_left=$(leftover_tmp "$name")
  tmp=ok
  if [ -n "$tmp_left" ]; then
    if [ "$strict_tmp" = 1 ]; then tmp="FAIL ($tmp_left)"; else tmp="warn ($tmp_left)"; fi
  fi

  left=ok
  [ -z "$procs" ] || left="FAIL (pids $procs)"
  [ "$mounts" = 0 ] || left="FAIL ($mounts mounts)"
  ok=1
  if [ "$killed" = yes ]; then
    kills=$((kills + 1))
  elif [ -n "$point" ]; then
    ok=0 # a failpoint that kills nothing tests nothing
  fi
  for v in "$fsck" "$left" "$rebuild" "$tmp"; do [ "${v#FAIL}" = "$v" ] || ok=0; done
  if [ "$ok" = 0 ]; then
    failures=$((failures + 1))
    say "case $i failed; logs: $log, $work/cases/$name.fsck, $work/cases/$name.rebuild.log"
    CRASH_KEEP=1
  fi
  rows+=("$(printf '%-34s %-8s %-14s %-5s %-10s %-20s %s' "$label" "$variant" "$killed" "$fsck" \
    "$left" "$tmp" "$rebuild")")
  # Kills that are over leave nothing to keep but what failed.
  [ "$ok" = 0 ] || rm -rf "$work/cases/$name"
done

printf '\n%-34s %-8s %-14s %-5s %-10s %-20s %s\n' "kill point" "cache" "killed?" "fsck" \
  "leftovers" "tmp after rebuild" "rebuild digest"
printf '%s\n' "${rows[@]}"
printf '\n%d cases, %d killed, %d failed; clean build %d ms; reference %s\n' "${#cases[@]}" \
  "$kills" "$failures" "$clean_ms" "$ref_digest"
[ "$failures" = 0 ]
