//! Benchmark: hashing a build context (20,000 files / ~150 MB) next to a 50,000-file
//! `node_modules/` excluded by `.dockerignore`.
//!
//! Prints a markdown table comparing rbuild cold (no stat cache), cold while filling the stat
//! cache, warm (stat cache, nothing changed), the practical limit
//! `find … -type f -print0 | xargs -0 -P2 -n500 openssl dgst -sha256` over the same files, and
//! the cost of the excluded `node_modules/` against listing its top directory.
//! Run with `cargo bench -p rbuild --bench context_hash`. All timings use a warm page cache.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rbuild::context::{Context, IgnoreRules};

const SMALL_FILES: usize = 19_950;
const BIG_FILES: usize = 50;
const BIG_SIZE: usize = 1_800_000;
const DIRS: usize = 200;
const NODE_PACKAGES: usize = 500;
const NODE_FILES_PER_PACKAGE: usize = 100;

fn fill(seed: u64, buf: &mut [u8]) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn write(path: &Path, seed: u64, size: usize) {
    let mut buf = vec![0u8; size];
    fill(seed, &mut buf);
    std::fs::write(path, buf).expect("writing fixture file");
}

fn generate(root: &Path) -> (usize, u64) {
    for d in 0..DIRS {
        std::fs::create_dir_all(root.join(format!("src/m{:02}/d{d:03}", d % 40))).expect("mkdir");
    }
    let sizes: Vec<usize> = (0..SMALL_FILES + BIG_FILES)
        .map(|i| {
            if i < BIG_FILES {
                BIG_SIZE
            } else {
                500 + (i * 7919) % 5000
            }
        })
        .collect();
    sizes.par_iter().enumerate().for_each(|(i, &size)| {
        let d = i % DIRS;
        let p = root.join(format!("src/m{:02}/d{d:03}/f{i:05}.dat", d % 40));
        write(&p, i as u64, size);
    });
    (0..NODE_PACKAGES).into_par_iter().for_each(|p| {
        let dir = root.join(format!("node_modules/pkg{p:03}/lib"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..NODE_FILES_PER_PACKAGE {
            write(&dir.join(format!("m{f:03}.js")), (p * 1000 + f) as u64, 200);
        }
    });
    std::fs::write(root.join(".dockerignore"), "node_modules\n").expect("write");
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /app\n").expect("write");
    (sizes.len() + 2, sizes.iter().map(|s| *s as u64).sum())
}

fn wait_next_second() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    std::thread::sleep(Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()) + 1_000_000,
    ));
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // Only `cargo bench` (which passes `--bench`) runs the 1-2 minute benchmark; a test build
    // of the bench target returns at once.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("context_hash: run with `cargo bench -p rbuild --bench context_hash`");
        return;
    }
    // RBUILD_BENCH_FIXTURE=<dir> keeps the fixture there and reuses it on the next run.
    let kept = std::env::var_os("RBUILD_BENCH_FIXTURE").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = kept.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let root = base.join("ctx");
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir store");
    let t = Instant::now();
    let (files, bytes) = if root.join("Dockerfile").exists() {
        let files = SMALL_FILES + BIG_FILES + 2;
        let bytes = (BIG_FILES * BIG_SIZE) as u64
            + (BIG_FILES..SMALL_FILES + BIG_FILES)
                .map(|i| (500 + (i * 7919) % 5000) as u64)
                .sum::<u64>();
        (files, bytes)
    } else {
        generate(&root)
    };
    eprintln!(
        "fixture: {files} files / {:.0} MB + {} excluded in {:.1}s",
        bytes as f64 / 1e6,
        NODE_PACKAGES * NODE_FILES_PER_PACKAGE,
        t.elapsed().as_secs_f64()
    );
    // Files written in the session's second would be racy (never trusted by the stat cache).
    wait_next_second();
    let rules = IgnoreRules::load(&root, &root.join("Dockerfile")).expect("rules");

    let run = |cache: Option<&Path>| {
        let t = Instant::now();
        let ctx = Context::scan(&root, &rules, cache).expect("scan");
        let d = ctx.content_digest(".").expect("digest");
        (t.elapsed(), d, ctx.stats())
    };
    let script = format!(
        "find '{r}' -path '{r}/node_modules' -prune -o -type f -print0 | xargs -0 -P2 -n500 openssl dgst -sha256 | wc -l",
        r = root.display()
    );
    let openssl_run = || {
        let t = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("run openssl pipeline");
        (
            t.elapsed(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    // Alternate the two so machine load affects both alike; report medians of 3.
    let mut colds = Vec::new();
    let mut openssls = Vec::new();
    let mut openssl_files = String::new();
    let mut first = None;
    for _ in 0..3 {
        let (t, d, s) = run(None);
        colds.push(t);
        first.get_or_insert((d, s));
        let (t, n) = openssl_run();
        openssls.push(t);
        openssl_files = n;
    }
    colds.sort();
    openssls.sort();
    let (cold, openssl) = (colds[1], openssls[1]);
    let (d_cold, s_cold) = first.expect("three cold runs");
    let (cold_fill, d_fill, _) = run(Some(&store));
    let mut warm_times = Vec::new();
    let mut warm_stats = None;
    for _ in 0..5 {
        let (t, d, s) = run(Some(&store));
        assert_eq!(d, d_cold, "warm digest equals cold digest");
        warm_times.push(t);
        warm_stats = Some(s);
    }
    warm_times.sort();
    let warm = warm_times[warm_times.len() / 2];
    let warm_stats = warm_stats.expect("five warm runs");
    assert_eq!(d_cold, d_fill);
    assert_eq!(warm_stats.files_read, 0, "warm run must read nothing");
    assert_eq!(
        s_cold.files_read, files,
        "every file incl. Dockerfile and .dockerignore"
    );

    let t = Instant::now();
    let top = std::fs::read_dir(root.join("node_modules"))
        .expect("list")
        .count();
    let list = t.elapsed();
    let scan_only = |n: usize| {
        let mut v: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                let ctx = Context::scan(&root, &rules, None).expect("scan");
                assert_eq!(ctx.stats().entries, files + DIRS + 40 + 1);
                t.elapsed()
            })
            .collect();
        v.sort();
        v[v.len() / 2]
    };
    let with_nm = scan_only(5);
    std::fs::rename(root.join("node_modules"), base.join("nm-away")).expect("move");
    let without_nm = scan_only(5);
    std::fs::rename(base.join("nm-away"), root.join("node_modules")).expect("move back");

    println!(
        "| measurement ({files} files, {:.0} MB; node_modules: {} files excluded) | time |",
        bytes as f64 / 1e6,
        NODE_PACKAGES * NODE_FILES_PER_PACKAGE
    );
    println!("|---|---|");
    println!(
        "| rbuild cold: scan + hash, no stat cache (median of 3, {} files read) | {} |",
        s_cold.files_read,
        ms(cold)
    );
    println!(
        "| rbuild cold, filling the stat cache (incl. fsync'd write) | {} |",
        ms(cold_fill)
    );
    println!(
        "| rbuild warm: scan + stat cache, nothing changed (median of 5, {} files read) | {} |",
        warm_stats.files_read,
        ms(warm)
    );
    println!("| `find … -print0 \\| xargs -0 -P2 -n500 openssl dgst -sha256` (median of 3, {openssl_files} files) | {} |", ms(openssl));
    println!(
        "| list node_modules/ top dir ({top} entries) | {} |",
        ms(list)
    );
    println!(
        "| scan only, node_modules present (median of 5) | {} |",
        ms(with_nm)
    );
    println!(
        "| scan only, node_modules absent (median of 5) | {} |",
        ms(without_nm)
    );
}
