//! Benchmark: no-op and one-file-changed rebuilds of a 3-stage Dockerfile over a 20,000-file
//! context, with the real `rbuild` binary (whole-process wall time, warm page cache).
//!
//! The context: `config/` (20 files), `deps/` (10,000 files) and `src/` (10,000 files), ~150 MB
//! of mixed text in all. Stages: `base` copies config, `deps` copies deps, `production` copies
//! src. The one-file change edits a file under `src/`, so exactly the last COPY rebuilds; its
//! reference is the time to write that layer alone (tar + gzip into the store, in process)
//! and `tar -c src | pigz -6` of the same files.
//! Run with `cargo bench -p rbuild --bench rebuild`; prints a markdown table.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES_PER_DIR: usize = 10_000;
const CONFIG_FILES: usize = 20;

fn text(seed: u64, size: usize) -> Vec<u8> {
    // Compressible pseudo-text: words from a small vocabulary.
    const WORDS: [&str; 16] = [
        "import", "function", "return", "const", "value", "module", "export", "class", "self",
        "data", "await", "string", "number", "object", "true", "false",
    ];
    let mut out = Vec::with_capacity(size + 16);
    let mut x = seed | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
        out.push(if x % 11 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(size);
    out
}

fn make_context(root: &Path) {
    std::fs::create_dir_all(root.join("config")).expect("mkdir");
    for i in 0..CONFIG_FILES {
        std::fs::write(root.join(format!("config/c{i}.conf")), text(i as u64, 300)).expect("write");
    }
    for (dir, seed) in [("deps", 1_000_000u64), ("src", 2_000_000u64)] {
        for i in 0..FILES_PER_DIR {
            let sub = root.join(format!("{dir}/m{:03}", i % 100));
            std::fs::create_dir_all(&sub).expect("mkdir");
            // Mostly small files plus a few larger ones: ~75 MB per directory.
            let size = if i % 100 == 0 { 400_000 } else { 3_500 };
            std::fs::write(sub.join(format!("f{i}.txt")), text(seed + i as u64, size))
                .expect("write");
        }
    }
    std::fs::write(
        root.join("Dockerfile"),
        "FROM scratch AS base\nCOPY config/ /etc/app/\n\
         FROM base AS deps\nCOPY deps/ /opt/deps/\n\
         FROM deps AS production\nWORKDIR /app\nCOPY src/ /app/src/\nCMD [\"/app/run\"]\n",
    )
    .expect("write Dockerfile");
}

fn rbuild(ctx: &Path, store: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("build")
        .arg(ctx)
        .args(["--progress", "quiet"])
        .env("RBUILD_STORE", store)
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .expect("run rbuild");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "rbuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    let store = dir.path().join("store");
    make_context(&ctx);

    let cold = rbuild(&ctx, &store);
    let noop = median((0..7).map(|_| rbuild(&ctx, &store)).collect());
    let changed_file = ctx.join("src/m007/f7.txt");
    let one_change = median(
        (0..5)
            .map(|i| {
                std::fs::write(&changed_file, text(9_000 + i, 3_500)).expect("edit");
                rbuild(&ctx, &store)
            })
            .collect(),
    );

    // Reference: the changed layer alone, written in process (tar + gzip + store).
    let layer_store =
        rbuild_layers::store::Store::open(&dir.path().join("layer-store")).expect("store");
    let layer_alone = median(
        (0..3)
            .map(|_| {
                let start = Instant::now();
                let entries = rbuild_layers::tar::entries_from_dir(
                    &ctx.join("src"),
                    &rbuild_layers::tar::DirOptions::default(),
                )
                .expect("entries");
                rbuild_layers::tar::write_layer(
                    &layer_store,
                    entries,
                    &rbuild_layers::tar::LayerOptions {
                        compression: rbuild_layers::Compression::Gzip,
                        level: None,
                        source_date_epoch: Some(0),
                        threads: None,
                    },
                )
                .expect("write layer");
                start.elapsed()
            })
            .collect(),
    );
    let pigz = median(
        (0..3)
            .map(|_| {
                let start = Instant::now();
                let ok = Command::new("sh")
                    .arg("-c")
                    .arg("tar -C \"$1\" -cf - src | pigz -6 > /dev/null")
                    .arg("sh")
                    .arg(&ctx)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "tar | pigz failed (is pigz installed?)");
                start.elapsed()
            })
            .collect(),
    );

    println!("| 3-stage build, 20,020-file context (~150 MB) | wall time |");
    println!("|---|---:|");
    println!("| cold build (empty store) | {} |", ms(cold));
    println!("| no-op rebuild (median of 7) | {} |", ms(noop));
    println!(
        "| one file changed under src/ (median of 5) | {} |",
        ms(one_change)
    );
    println!(
        "| reference: writing the changed layer alone, in process | {} |",
        ms(layer_alone)
    );
    println!("| reference: `tar -c src \\| pigz -6` | {} |", ms(pigz));
    println!(
        "\none-file-changed / layer alone = {:.2}x (target < 2x); no-op target < 100 ms",
        one_change.as_secs_f64() / layer_alone.as_secs_f64()
    );
}
