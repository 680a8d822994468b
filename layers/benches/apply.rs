//! Benchmark: applying a ~1 GiB layer (many files of mixed sizes) with `apply_layer`, against
//! `gzip -dc | tar -x` and `tar -x` of the same uncompressed tar, with peak RSS of each.
//!
//! Run: `cargo bench -p rbuild-layers --bench apply`. Environment:
//! - `RBUILD_BENCH_MB` (default 1024): uncompressed layer size in MiB.
//! - `RBUILD_BENCH_DIR` (default `/dev/shm` when present): where layers are generated and
//!   extracted. tmpfs keeps the comparison about CPU and syscalls rather than a shared disk.
//!
//! Every measurement runs in a child process under `/usr/bin/time -f "%e %M"` (wall seconds,
//! peak RSS in KiB); the rbuild runs re-execute this binary in "child" mode.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rbuild_layers::{apply_layer, ApplyOptions};

const CHILD_ENV: &str = "RBUILD_BENCH_CHILD";

/// xorshift64*: deterministic content without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Writes `layer.tar` and `layer.tar.gz` of about `total` bytes: 70% of files 1–16 KiB, 25%
/// 16 KiB–1 MiB, 5% 1–32 MiB; contents alternate random and text-like 64 KiB blocks (so gzip
/// has work to do and the result is about half the size).
fn generate(dir: &Path, total: u64) -> (PathBuf, PathBuf, u64) {
    let tar_path = dir.join("layer.tar");
    let gz_path = dir.join("layer.tar.gz");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let file = std::fs::File::create(&tar_path).expect("create layer.tar");
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789\n"
        .iter()
        .cycle()
        .take(1 << 20)
        .copied()
        .collect();
    let mut written = 0u64;
    let mut files = 0u64;
    let mut buf = vec![0u8; 32 << 20];
    while written < total {
        let pick = rng.next() % 100;
        let size = match pick {
            0..=69 => 1024 + rng.next() % (15 * 1024),
            70..=94 => 16 * 1024 + rng.next() % (1 << 20),
            _ => (1 << 20) + rng.next() % (31 << 20),
        } as usize;
        let data = &mut buf[..size];
        // Alternate 64 KiB blocks of random and text-like bytes.
        for (blk, block) in data.chunks_mut(64 * 1024).enumerate() {
            if (blk + files as usize) % 2 == 0 {
                for chunk in block.chunks_mut(8) {
                    let r = rng.next().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
            } else {
                block.copy_from_slice(&text[..block.len()]);
            }
        }
        let name = format!("d{}/e{}/f{files}", files % 97, files % 13);
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &name, &data[..]).expect("append");
        written += size as u64 + 512;
        files += 1;
    }
    b.into_inner().expect("finish tar").flush().expect("flush");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -1 -c {} > {}",
            tar_path.display(),
            gz_path.display()
        ))
        .status()
        .expect("gzip");
    assert!(status.success());
    (tar_path, gz_path, files)
}

/// Runs `cmd` under `/usr/bin/time`, returning (wall seconds, peak RSS KiB).
fn timed(cmd: &str) -> (f64, u64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "sh", "-c", cmd])
        .output()
        .expect("run /usr/bin/time");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default().to_string();
    let mut parts = last.split_whitespace();
    let secs: f64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    let rss: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (secs, rss)
}

fn fresh(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("clean output");
    }
    std::fs::create_dir(&out).expect("mkdir output");
    out
}

fn child(layer: &str, out: &str) {
    let start = Instant::now();
    let file = std::fs::File::open(layer).expect("open layer");
    let rep = apply_layer(Path::new(out), file, &ApplyOptions::default()).expect("apply");
    eprintln!(
        "applied {} entries, {} bytes, diff_id {} in {:.2?}",
        rep.entries,
        rep.bytes,
        rep.diff_id,
        start.elapsed()
    );
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (layer, out) = spec.split_once('\n').expect("child spec");
        child(layer, out);
        return;
    }
    let mb: u64 = std::env::var("RBUILD_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let base = std::env::var("RBUILD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            }
        });
    let work = tempfile::Builder::new()
        .prefix("rbuild-bench-")
        .tempdir_in(&base)
        .expect("work dir");
    let dir = work.path();
    let gen = Instant::now();
    let (tar_path, gz_path, files) = generate(dir, mb << 20);
    let tar_len = std::fs::metadata(&tar_path).expect("stat").len();
    let gz_len = std::fs::metadata(&gz_path).expect("stat").len();
    eprintln!(
        "generated {files} files, tar {} MiB, gzip {} MiB in {:.1?} under {}",
        tar_len >> 20,
        gz_len >> 20,
        gen.elapsed(),
        base.display()
    );
    let exe = std::env::current_exe().expect("current exe");
    let me = |layer: &Path, out: &Path| {
        format!(
            "{CHILD_ENV}='{}\n{}' {}",
            layer.display(),
            out.display(),
            exe.display()
        )
    };

    let mut rows: Vec<(String, f64, u64)> = Vec::new();
    let mut run = |label: &str, cmd: String| {
        let (secs, rss) = timed(&cmd);
        rows.push((label.to_string(), secs, rss));
    };
    let out = fresh(dir);
    run(
        "gzip -dc > /dev/null (decompression only)",
        format!("gzip -dc {} > /dev/null", gz_path.display()),
    );
    run(
        "`gzip -dc \\| tar -x`",
        format!(
            "gzip -dc {} | tar -x -C {}",
            gz_path.display(),
            out.display()
        ),
    );
    let out = fresh(dir);
    run("rbuild apply_layer (gzip)", me(&gz_path, &out));
    let out = fresh(dir);
    run(
        "`tar -x` (uncompressed)",
        format!("tar -x -f {} -C {}", tar_path.display(), out.display()),
    );
    let out = fresh(dir);
    run("rbuild apply_layer (uncompressed)", me(&tar_path, &out));
    fresh(dir);

    println!(
        "\nLayer: {files} files, {} MiB uncompressed, {} MiB gzip -1; extracted into {}\n",
        tar_len >> 20,
        gz_len >> 20,
        base.display()
    );
    println!("| method | wall (s) | MiB/s (uncompressed) | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|");
    for (label, secs, rss) in rows {
        println!(
            "| {label} | {secs:.2} | {:.0} | {:.1} |",
            (tar_len >> 20) as f64 / secs,
            rss as f64 / 1024.0
        );
    }
}
