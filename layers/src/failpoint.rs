//! Test-only failpoints for crash-consistency tests (`tests/crash/crash.sh`).
//!
//! `RBUILD_FAILPOINT=<name>[@N][:panic][,…]` makes the process kill itself with `SIGKILL` the
//! `N`th time (default: the first) it reaches the named point — `kill -9` exactly there: no
//! destructor runs, no buffer is flushed, no lock is released other than by the kernel. With
//! `:panic` the point panics instead, on whatever thread reached it: the test that a bug on a
//! worker thread ends the build instead of hanging it. The
//! points are the moments where a crash could leave the store, a cache or a registry half
//! written; every one is listed in [`FAILPOINTS`] and placed exactly once in the code (a unit
//! test checks both).
//!
//! For crash tests only. When the variable is unset (or empty) nothing ever happens: [`hit`] is
//! one `OnceLock` read that finds nothing armed, and behaviour is unchanged. The variable is
//! read once, on the first [`hit`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms failpoints.
pub const ENV: &str = "RBUILD_FAILPOINT";

/// Every failpoint, `area.moment`. `tests/crash/crash.sh` reads this list from this file.
pub const FAILPOINTS: &[&str] = &[
    // Blob ingest (`Store::begin_blob` … `BlobWriter::commit`).
    "blob.before_fsync",
    "blob.before_rename",
    "blob.after_rename",
    // Small atomic files of the store: a cache record, `index.json` (tags).
    "record.before_rename",
    "tag.before_rename",
    // An unpacked layer snapshot, synced, not yet renamed into `snapshots/`.
    "snapshot.before_rename",
    // A layer being compressed into the store (after each chunk handed to the compressor).
    "layer.mid_compress",
    // RUN: the sandbox is running; the command finished, before its diff; during the diff walk.
    "run.started",
    "run.before_diff",
    "run.mid_diff",
    // Pulling a blob: after the first bytes arrived; all bytes arrived, before verification.
    "pull.mid_download",
    "pull.before_verify",
    // Pushing an image: after a blob upload; before the manifest PUT; after a manifest PUT.
    "push.after_blob",
    "push.before_manifest",
    "push.after_manifest",
    // Registry cache export: its layers pushed, before the cache manifest PUT.
    "cache.before_manifest",
    // Local cache export: after a blob copied into the directory; `index.json`'s temp file
    // written and synced, before its rename.
    "cache_local.mid_blobs",
    "cache_local.before_index_rename",
];

/// One armed point: kill (or panic) on the `nth` hit (1-based).
#[derive(Debug)]
struct Armed {
    name: String,
    nth: u64,
    panic: bool,
    hits: AtomicU64,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// Marks failpoint `name`: when `RBUILD_FAILPOINT` arms it and this is the hit it names, the
/// process kills itself with `SIGKILL`. A no-op otherwise (and always when the variable is
/// unset).
pub fn hit(name: &'static str) {
    let armed = ARMED.get_or_init(|| parse(&std::env::var(ENV).unwrap_or_default()));
    if armed.is_empty() {
        return;
    }
    for a in armed.iter().filter(|a| a.name == name) {
        if a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
            if a.panic {
                panic!("failpoint {name}@{}: panic", a.nth);
            }
            kill_self(name, a.nth);
        }
    }
}

/// Parses `name[@N][:panic],…`; names not in [`FAILPOINTS`] are reported (a typo would otherwise make a
/// crash test silently kill nothing) and ignored.
fn parse(spec: &str) -> Vec<Armed> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (point, panic) = match item.strip_suffix(":panic") {
            Some(point) => (point, true),
            None => (item, false),
        };
        let (name, nth) = match point.split_once('@') {
            Some((n, k)) => (n, k.parse::<u64>().ok().filter(|k| *k > 0)),
            None => (point, Some(1)),
        };
        match nth {
            Some(nth) if FAILPOINTS.contains(&name) => out.push(Armed {
                name: name.to_string(),
                nth,
                panic,
                hits: AtomicU64::new(0),
            }),
            _ => eprintln!("rbuild: {ENV}: ignoring {item:?} (not a failpoint[@N>0][:panic])"),
        }
    }
    out
}

fn kill_self(name: &str, nth: u64) -> ! {
    // The marker tells the crash script this point was reached (stderr is unbuffered).
    eprintln!("rbuild: failpoint {name}@{nth}: SIGKILL");
    // SAFETY: kill(2) with our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; it is delivered before kill(2) returns to user space in
    // practice. Should it not be, stop without unwinding either.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_spec_arms_named_points_on_their_nth_hit_and_ignores_unknown_names() {
        let armed = parse(
            "blob.before_rename@3, tag.before_rename,no.such,push.after_blob@0,run.started@2:panic",
        );
        let got: Vec<(&str, u64, bool)> = armed
            .iter()
            .map(|a| (a.name.as_str(), a.nth, a.panic))
            .collect();
        assert_eq!(
            got,
            [
                ("blob.before_rename", 3, false),
                ("tag.before_rename", 1, false),
                ("run.started", 2, true)
            ]
        );
        assert!(parse("").is_empty());
    }

    #[test]
    fn failpoint_names_are_unique_and_area_dot_moment() {
        let mut seen = std::collections::BTreeSet::new();
        for name in FAILPOINTS {
            assert!(seen.insert(*name), "{name} is listed twice");
            let (area, moment) = name.split_once('.').expect("area.moment");
            let ok =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            assert!(ok(area) && ok(moment), "{name} is not area.moment");
        }
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Every listed point is placed exactly once in the workspace's sources, and every placed
    /// point is listed: the crash script enumerates this list, so a point missing from the code
    /// would be a kill that never happens.
    #[test]
    fn every_failpoint_is_placed_exactly_once_and_every_placed_one_is_listed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in ["layers/src", "registry/src", "builder/src"] {
            rust_files(&root.join(krate), &mut files);
        }
        let this = Path::new(file!()).file_name().expect("file name");
        let mut sources = String::new();
        for f in files.iter().filter(|f| f.file_name() != Some(this)) {
            sources.push_str(&std::fs::read_to_string(f).expect("read source"));
        }
        for name in FAILPOINTS {
            let call = format!("failpoint::hit(\"{name}\")");
            assert_eq!(sources.matches(&call).count(), 1, "{call} placed once");
        }
        assert_eq!(
            sources.matches("failpoint::hit(").count(),
            FAILPOINTS.len(),
            "a failpoint::hit call names a point missing from FAILPOINTS"
        );
    }
}
