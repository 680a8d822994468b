//! `ADD` of a local tar archive: whether a file is one (by content, never by name) and its
//! extraction into layer entries below the destination. The archive is unpacked by the same
//! safe applier as layers (nothing escapes the scratch directory), then listed.

use std::path::Path;

use rbuild_layers::tar::{EntryKind as LayerKind, LayerEntry};

use super::dest::join_dest;
use super::{CopyEnv, CopyError};
use crate::solver::BuildError;

/// Whether `ADD` extracts the local file at `path`: by content, never by name (BuildKit, docker
/// 20.10: a tar, plain or gzip/bzip2/xz-compressed, is extracted; a `.tar.gz` that is not one,
/// a compressed file that holds no tar, and a zstd-compressed tar are copied as they are).
pub(super) fn is_extracted_archive(path: &Path) -> Result<bool, BuildError> {
    use rbuild_layers::apply::StreamFormat;
    let f = std::fs::File::open(path).map_err(BuildError::io("reading", path))?;
    Ok(matches!(
        rbuild_layers::apply::archive_format(f),
        Some(StreamFormat::Tar | StreamFormat::Gzip | StreamFormat::Bzip2 | StreamFormat::Xz)
    ))
}

/// Extracts a local archive (ADD) safely into a scratch directory, then lists it as entries
/// under `dest`. Ownership and modes come from the archive, as Docker's ADD keeps them.
pub(super) fn extract_archive(
    path: &Path,
    dest: &str,
    scratch: &Path,
    env: &CopyEnv<'_>,
) -> Result<Vec<LayerEntry>, BuildError> {
    let dir = scratch.join(format!(
        "add-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).map_err(BuildError::io("creating", &dir))?;
    let f = std::fs::File::open(path).map_err(BuildError::io("reading", path))?;
    let opts = rbuild_layers::apply::ApplyOptions::default();
    rbuild_layers::apply::apply_layer(&dir, f, &opts).map_err(|source| CopyError::Extract {
        path: path.to_path_buf(),
        source,
    })?;
    let mut entries =
        rbuild_layers::tar::entries_from_dir(&dir, &rbuild_layers::tar::DirOptions::default())?;
    for e in &mut entries {
        e.path = join_dest(dest, &e.path);
        if env.layer_options.source_date_epoch.is_some() {
            e.mtime = e.mtime.min(env.epoch);
        }
        if let LayerKind::Hardlink { target } = &mut e.kind {
            *target = join_dest(dest, target);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use crate::solver::copy::testutil::{context, copy_entries, paths};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn add_decides_extraction_by_content_not_by_name() {
        // BuildKit (docker 20.10): a `.tar.gz` that is text and a gzip that holds no tar are
        // copied; a tar named `.bin` is extracted; a zstd tar is copied as it is.
        let ctx = context(&[("fake.tar.gz", "not an archive\n"), ("t/inside", "in\n")]);
        let tar = |args: &[&str]| {
            let ok = std::process::Command::new("sh")
                .arg("-c")
                .arg(args.join(" "))
                .current_dir(ctx.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "{args:?}");
        };
        tar(&["gzip -c t/inside > notes.txt.gz"]);
        tar(&["tar -czf real.bin -C t inside"]);
        tar(&["tar -cf - -C t inside | zstd -q -c > z.tar.zst"]);
        for (line, want) in [
            ("ADD fake.tar.gz /a/", vec!["a", "a/fake.tar.gz"]),
            ("ADD notes.txt.gz /a/", vec!["a", "a/notes.txt.gz"]),
            ("ADD real.bin /a/", vec!["a", "a/inside"]),
            ("ADD real.bin /b", vec!["b", "b/inside"]),
            ("ADD z.tar.zst /a/", vec!["a", "a/z.tar.zst"]),
        ] {
            let out = copy_entries(ctx.path(), line).unwrap();
            assert_eq!(paths(&out), want, "{line}");
        }
    }

    #[test]
    fn add_of_an_archive_with_chown_creates_its_destination_owned_by_that_user() {
        // BuildKit (docker 20.10): the directories ADD creates for the archive (the
        // destination and its missing parents) are --chown's; the extracted entries keep the
        // archive's owners.
        let ctx = context(&[("t/sub/f", "in\n")]);
        let ok = std::process::Command::new("tar")
            .args(["-cf", "arch.tar", "t"])
            .current_dir(ctx.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        for (line, created) in [
            ("ADD --chown=1000:1000 arch.tar /x", vec!["x"]),
            ("ADD --chown=1000:1000 arch.tar /x/", vec!["x"]),
            ("ADD --chown=1000:1000 arch.tar /p/q", vec!["p", "p/q"]),
        ] {
            let out = copy_entries(ctx.path(), line).unwrap();
            let archived = u64::from(std::fs::metadata(ctx.path().join("t")).unwrap().uid());
            for e in &out {
                let want = if created.contains(&e.0.as_str()) {
                    1000
                } else {
                    archived
                };
                assert_eq!(e.3, want, "{line}: {e:?}");
            }
            assert!(
                out.iter().any(|e| e.0.ends_with("t/sub/f")),
                "{line}: {out:?}"
            );
        }
    }
}
