#!/usr/bin/env bash
# Runs rbuild's cargo-fuzz targets for a fixed time each and writes a results table.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 600 s, every target)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Targets run
# one after another with one worker (`-fork=1`: the machine is shared), starting from the
# committed seeds in testdata/fuzz/<target>/ plus a working corpus in tests/fuzz/corpus/<target>/
# (not committed). Fork mode with -ignore_crashes/-ignore_ooms/-ignore_timeouts keeps a target
# running after it finds a bug, so one shallow bug does not end the campaign; every failing
# input is kept in tests/fuzz/artifacts/<target>/. Logs go to tests/fuzz/logs/<target>.log and
# the table (target, seconds, executions, exec/s, corpus size, crashes) to
# tests/fuzz/results.md (override with RESULTS=path).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
secs=${1:-600}
shift || true
results=${RESULTS:-$here/results.md}

all_targets=(tar_apply dockerfile_parse dockerfile_expand manifest_parse cache_map tar_read
    dockerignore image_reference www_authenticate)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

# Input size caps: enough for the structures each parser reads, small enough that one
# execution stays cheap.
max_len() {
    case $1 in
        tar_apply | tar_read) echo 65536 ;;
        dockerfile_parse) echo 8192 ;;
        manifest_parse | cache_map) echo 16384 ;;
        dockerfile_expand | dockerignore | www_authenticate) echo 1024 ;;
        image_reference) echo 512 ;;
        *) echo 4096 ;;
    esac
}

# Release build with debug assertions and overflow checks (cargo-fuzz's default), no
# sanitizer: the code under test is safe Rust, and speed buys executions.
cargo +nightly fuzz build --fuzz-dir "$here" --sanitizer none
bin_dir=$here/target/x86_64-unknown-linux-gnu/release

mkdir -p "$here/logs"
{
    echo "| target | seconds | executions | exec/s | corpus | crashes (crash/oom/timeout) |"
    echo "|---|---:|---:|---:|---:|---|"
} > "$results.tmp"

for t in "${targets[@]}"; do
    corpus=$here/corpus/$t
    artifacts=$here/artifacts/$t
    log=$here/logs/$t.log
    mkdir -p "$corpus" "$artifacts" "$repo/testdata/fuzz/$t"
    echo "== $t: ${secs}s, log $log"
    start=$(date +%s)
    "$bin_dir/$t" "$corpus" "$repo/testdata/fuzz/$t" \
        -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 > "$log" 2>&1 || true
    elapsed=$(( $(date +%s) - start ))
    # Fork mode reports "#RUNS: cov: C ft: F corp: N exec/s: E oom/timeout/crash: O/T/X time: S".
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1 || true)
    runs=$(sed -nE 's/^#([0-9]+):.*/\1/p' <<< "$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<< "$last")
    ooms=$(sed -nE 's/.*oom\/timeout\/crash: ([0-9]+)\/([0-9]+)\/([0-9]+).*/\1/p' <<< "$last")
    timeouts=$(sed -nE 's/.*oom\/timeout\/crash: ([0-9]+)\/([0-9]+)\/([0-9]+).*/\2/p' <<< "$last")
    crashes=$(sed -nE 's/.*oom\/timeout\/crash: ([0-9]+)\/([0-9]+)\/([0-9]+).*/\3/p' <<< "$last")
    runs=${runs:-0}
    rate=$(( runs / (elapsed > 0 ? elapsed : 1) ))
    echo "| $t | $elapsed | $runs | $rate | ${corp:-?} | ${crashes:-?}/${ooms:-?}/${timeouts:-?} |" \
        | tee -a "$results.tmp"
done
mv "$results.tmp" "$results"
echo "results: $results"
