#!/usr/bin/env bash
# Benchmark of build-cache export/import between CI pipeline runs (--cache-to / --cache-from),
# on testdata/cache/python-style with a dependency layer of DEPS_MIB MiB (default 128):
#
#   run 1  cold: empty store, build development + production, push, export the cache (mode=max)
#   run 2  fresh empty store, same sources, import the cache (expected: every step cached,
#          no layer downloaded)
#   run 3  fresh empty store, one application file changed (expected: only production's
#          COPY . . reruns); repeated RUN3_REPEAT times (default 5), each with its own edit
#          and empty store, and reported as the median
#
# Prints a Markdown table: wall time, % of run 1, blob bytes downloaded (GET /v2/…/blobs/… as the
# registry logged them), bytes of new blobs the registry stored, what each push did, and the
# steps cached; then run 1's last stage (production) time, summed from the exact step times
# of its JSON progress, to judge the target "run 3 <= run 1's last stage + 20%" (run 3 also pays
# for resolving the base image, reading the cache and pushing).
#
# Starts its own registry on 127.0.0.1 and removes everything it made on exit.
# Usage: bash tests/bench/cache_pipeline.sh
# Environment: APP_MIB=N adds N MiB of generated source files (a code stage worth timing);
# LINK=1 makes production's code COPY a `COPY --link`; KEEP_WORK=1 keeps the scratch directory;
# DEPS_MIB (default 128); RUN3_REPEAT (default 5); RBUILD_BIN (default target/release/rbuild,
# built when missing); CACHE_FLAGS=0 runs the same runs without --cache-to/--cache-from (the
# baseline: every run is cold); RBUILD_UPLOAD_AHEAD=0 is passed on to rbuild (layers uploaded
# after the build instead of while written).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
deps_mib=${DEPS_MIB:-128}
cache_flags=${CACHE_FLAGS:-1}
epoch=1700000000

rbuild=${RBUILD_BIN:-$root/target/release/rbuild}
if [ ! -x "$rbuild" ]; then
  echo "building $rbuild (cargo build --release -p rbuild)" >&2
  cargo build --release -q -p rbuild
fi
for tool in docker-registry busybox python3 curl; do
  command -v "$tool" >/dev/null || { echo "cache_pipeline.sh: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-cache-bench.XXXXXX")
registry_pid=
# shellcheck source=tests/bench/registry.sh
. "$root/tests/bench/registry.sh"
cleanup() {
  stop_registry
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT INT TERM

# The registry, as tests/run.sh configures it (info-level log: one line per request).
start_registry "$work" info

# The busybox base image (as tests/src/build.rs makes it), pushed to the registry.
bb=$work/busybox
mkdir -p "$bb/rootfs/bin" "$bb/rootfs/etc" "$bb/rootfs/tmp"
cp "$(command -v busybox)" "$bb/rootfs/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$bb/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$bb/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$bb/rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["/bin/sh"]\n' > "$bb/Dockerfile"
base=$reg/bench/busybox:1
SOURCE_DATE_EPOCH=0 RBUILD_STORE=$work/base-store "$rbuild" build "$bb" --progress quiet --tag "$base" --push \
  > "$work/base.log" 2>&1 || { echo "building the base image failed:" >&2; cat "$work/base.log" >&2; exit 1; }

src=$work/src
cp -R "$root/testdata/cache/python-style" "$src"
if [ "${LINK:-0}" = 1 ]; then
  # `COPY --link . .`: the code layer does not depend on the layers below it, so run 3 need not
  # download the dependency layer to add the code (BuildKit's reason for --link).
  sed -i 's/^COPY \. \.$/COPY --link . ./' "$src/Dockerfile"
  grep -q '^COPY --link \. \.$' "$src/Dockerfile"
fi
if [ "${APP_MIB:-0}" -gt 0 ]; then
  # A code base of APP_MIB MiB (text files, 64 KiB each, same bytes every run), so that the code
  # stage is large enough to time against run 3.
  python3 - "$src/vendor_code" "$APP_MIB" <<'PY'
import os, sys, random
root, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz_') for _ in range(rng.randint(2, 12))) for _ in range(4000)]
for i in range(mib * 16):
    d = os.path.join(root, f"pkg{i // 64:03d}")
    os.makedirs(d, exist_ok=True)
    out, size = [], 0
    while size < 65536:
        line = "def " + "_".join(rng.choice(words) for _ in range(3)) + "(x):\n    return x\n"
        out.append(line); size += len(line)
    with open(os.path.join(d, f"mod{i:05d}.py"), "w") as f:
        f.write("".join(out)[:65536])
PY
fi
cache_ref=$reg/bench/app-cache:main

blob_store_bytes() {
  du -sb "$work/registry/docker/registry/v2/blobs" 2>/dev/null | cut -f1 || echo 0
}

# Sums http.response.written of successful blob GETs in registry log lines after line $1.
blob_get_bytes_since() {
  tail -n +"$(($1 + 1))" "$work/registry.log" |
    grep 'http.request.method=GET' | grep 'http.response.status=200' |
    grep -E 'http.request.uri="/v2/[^"]*/blobs/sha256:' |
    sed -n 's/.*http.response.written=\([0-9]*\).*/\1/p' |
    awk '{ s += $1 } END { print s + 0 }'
}

human() {
  awk -v b="$1" 'BEGIN { split("B KiB MiB GiB", u, " "); i = 1; while (b >= 1024 && i < 4) { b /= 1024; i++ } printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'
}

declare -A wall down stored pushes cached last_stage
# Exact step times and counts from one run's JSON progress (stderr).
summarize_progress() { # file → "cached/total|pushes|production seconds"
  python3 - "$1" <<'PY'
import json, sys
names, cached, prod, up, mounted, there = {}, 0, 0.0, 0, 0, 0
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    t = e.get("type")
    if t == "step_started":
        names[e["id"]] = e.get("name", "")
    elif t == "step_cached" and names.get(e["id"], "").startswith("["):
        cached += 1
    elif t == "step_done" and names.get(e["id"], "").startswith("[production "):
        prod += e.get("elapsed", 0.0)
    elif t == "step_log" and "blob(s) uploaded" in e.get("line", ""):
        w = e["line"].replace(",", "").split()
        if w[1] == "step(s)":  # a cache export: "N step(s), U blob(s) uploaded, M mounted, K already there"
            w = w[2:]
        up, mounted, there = up + int(w[0]), mounted + int(w[3]), there + int(w[5])
steps = sum(1 for n in names.values() if n.startswith("["))
print(f"{cached}/{steps}|{up} up / {mounted} mounted / {there} there|{prod:.3f}")
PY
}
run() { # name, store, extra args...
  local name=$1 store=$2
  shift 2
  local lines_before stored_before start end
  lines_before=$(wc -l < "$work/registry.log")
  stored_before=$(blob_store_bytes)
  start=$(date +%s.%N)
  if ! SOURCE_DATE_EPOCH=$epoch RBUILD_STORE=$store "$rbuild" build "$src" --progress json \
    --target development --target production \
    --build-arg "BASE=$base" --build-arg "DEPS_MIB=$deps_mib" \
    --tag "$reg/bench/app:main" --push "$@" > "$work/$name.out" 2> "$work/$name.err"; then
    echo "cache_pipeline.sh: $name failed:" >&2
    tail -n 30 "$work/$name.err" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  wall[$name]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
  down[$name]=$(blob_get_bytes_since "$lines_before")
  stored[$name]=$(($(blob_store_bytes) - stored_before))
  local summary
  summary=$(summarize_progress "$work/$name.err")
  cached[$name]=${summary%%|*}
  summary=${summary#*|}
  pushes[$name]=${summary%%|*}
  last_stage[$name]=${summary#*|}
}

cache_args() { # import too?
  [ "$cache_flags" = 1 ] || return 0
  printf '%s\n' --cache-to "type=registry,ref=$cache_ref,mode=max"
  [ "$1" = import ] && printf '%s\n' --cache-from "type=registry,ref=$cache_ref"
  return 0
}

mapfile -t args1 < <(cache_args export)
mapfile -t args23 < <(cache_args import)
repeat=${RUN3_REPEAT:-5}
echo "run 1 (cold, DEPS_MIB=$deps_mib)..." >&2
run "run 1" "$work/store1" "${args1[@]}"
echo "run 2 (fresh store, same sources)..." >&2
run "run 2" "$work/store2" "${args23[@]}"
for i in $(seq 1 "$repeat"); do
  printf '\n# edited by the benchmark (%s)\n' "$i" >> "$src/lib/greeting.py"
  echo "run 3.$i (fresh store, one app file changed)..." >&2
  run "run 3.$i" "$work/store3.$i" "${args23[@]}"
  rm -rf "$work/store3.$i"
done
# The median run 3 (by wall time) stands for run 3.
median_of() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
run3_walls=$(for i in $(seq 1 "$repeat"); do echo "${wall[run 3.$i]}"; done)
run3_median=$(echo "$run3_walls" | median_of)
run3_stage_median=$(for i in $(seq 1 "$repeat"); do echo "${last_stage[run 3.$i]}"; done | median_of)
pick=1
for i in $(seq 1 "$repeat"); do
  awk -v a="${wall[run 3.$i]}" -v m="$run3_median" 'BEGIN { exit !(a <= m) }' && pick=$i && break
done
for k in wall down stored pushes cached last_stage; do
  declare -n arr=$k
  arr[run 3]=${arr[run 3.$pick]}
  unset -n arr
done
wall[run 3]=$run3_median

echo
echo "DEPS_MIB=$deps_mib, APP_MIB=${APP_MIB:-0}, cache flags: $([ "$cache_flags" = 1 ] && echo "--cache-to/--cache-from type=registry,mode=max" || echo none), upload ahead: $([ "${RBUILD_UPLOAD_AHEAD:-1}" = 0 ] && echo off || echo on), rbuild: $rbuild"
echo
echo "| run | wall time | % of run 1 | blob bytes downloaded | new blob bytes stored | pushes (blobs) | steps cached |"
echo "|---|---:|---:|---:|---:|---|---:|"
for name in "run 1" "run 2" "run 3"; do
  pct=$(awk -v a="${wall[$name]}" -v b="${wall[run 1]}" 'BEGIN { printf "%.0f%%", (b > 0 ? 100 * a / b : 0) }')
  label=$name
  [ "$name" = "run 3" ] && label="run 3 (median of $repeat)"
  echo "| $label | $(printf '%.2f' "${wall[$name]}") s | $pct | $(human "${down[$name]}") | $(human "${stored[$name]}") | ${pushes[$name]} | ${cached[$name]} |"
done
echo
limit=$(awk -v s="${last_stage[run 1]}" 'BEGIN { printf "%.3f", s * 1.2 }')
echo "run 3 wall times: $(echo $run3_walls | tr '\n' ' ')s; their own production step: median ${run3_stage_median} s."
echo "run 1's last stage (production steps): ${last_stage[run 1]} s; target for run 3: <= ${limit} s (+20%); run 3 took ${run3_median} s (median) -> $(awk -v a="$run3_median" -v l="$limit" 'BEGIN { print (a <= l ? "met" : "missed") }')."
