//! `-f -` and the context `-`: standard input as the Dockerfile or as the build context, read
//! as buildx reads it (`build/opt.go`, `loadInputs`), turned into files before anything else
//! runs so that everything past the CLI sees ordinary paths.
//!
//! - `-f -`: standard input is the Dockerfile; the context is the directory given.
//! - context `-`: when the first bytes are a tar header (or gzip, bzip2 or xz magic: buildx's
//!   `isArchive`), standard input is the build context, with its own `.dockerignore`, and `-f`
//!   names a file inside it (default `Dockerfile`). Otherwise it is the Dockerfile and the
//!   context is empty; a `-f` then is ambiguous and refused, as buildx does.
//! - both at once is a usage error (standard input can be read once).
//!
//! The archive is untrusted: it is unpacked by the layer applier (every path resolved inside
//! the root by the kernel, `..` and absolute names refused, hard links that point out refused,
//! device files kept as inert placeholders) into a private scratch directory under the store,
//! which is removed when the build's options are dropped (or reclaimed by the next build or
//! `prune` after a crash).

use std::io::{self, Cursor, Read};
use std::path::{Component, Path, PathBuf};

use rbuild_layers::apply::{apply_layer, ApplyError, ApplyOptions};
use rbuild_layers::store::{ScratchDir, StoreError};

/// The longest Dockerfile read from standard input (a bound on memory, far above any real one).
pub const MAX_STDIN_DOCKERFILE: u64 = 16 << 20;

/// How many leading bytes decide whether standard input is an archive (buildx peeks two tar
/// blocks).
pub(super) const PEEK: usize = 1024;

/// Why standard input could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StdinError {
    #[error("invalid argument: can't use stdin for both build context and dockerfile: give the context as a directory with -f -, or put the Dockerfile in the context tar")]
    Both,
    #[error("ambiguous Dockerfile source: standard input is not a tar archive, so it is the Dockerfile, and -f {0} names one too: pipe a tar of the context instead, or drop -f")]
    Ambiguous(PathBuf),
    #[error("standard input is empty: with the context -, pipe a tar of the build context (or a Dockerfile) into rbuild")]
    Empty,
    #[error("reading standard input: {0}")]
    Read(#[source] io::Error),
    #[error("the Dockerfile on standard input is over {} MiB; write it to a file and pass -f FILE", MAX_STDIN_DOCKERFILE >> 20)]
    TooLarge,
    #[error("unpacking the build context from standard input: {0}")]
    Unpack(#[source] ApplyError),
    #[error("-f {0:?}: with the context on standard input, -f names a file inside the archive: give a relative path that stays inside it")]
    FileOutside(PathBuf),
    #[error("making a scratch directory for standard input: {0}")]
    Scratch(#[source] StoreError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What standard input became. Dropping it removes the files.
#[derive(Debug)]
pub struct StdinInputs {
    /// Where they are; removed on drop.
    dir: ScratchDir,
    /// The build context, when it came from standard input (unpacked, or empty).
    pub context: Option<PathBuf>,
    /// The Dockerfile, when it came from standard input or names a file in that context.
    pub dockerfile: Option<PathBuf>,
    /// Whether the Dockerfile's text itself came from standard input (shown as `stdin`).
    pub dockerfile_is_stdin: bool,
}

impl StdinInputs {
    /// The scratch directory holding them.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Whether the context or `-f` is `-` (standard input is to be read).
pub fn uses_stdin(context: &Path, file: Option<&Path>) -> bool {
    is_dash(context) || file.is_some_and(is_dash)
}

/// Reads `stdin` when the context or `-f` is `-`, into a directory `scratch` makes (called only
/// then). `None` when neither is.
pub fn materialise(
    context: &Path,
    file: Option<&Path>,
    stdin: impl Read,
    scratch: impl FnOnce() -> Result<ScratchDir, StoreError>,
) -> Result<Option<StdinInputs>, StdinError> {
    if !uses_stdin(context, file) {
        return Ok(None);
    }
    let context_dash = is_dash(context);
    let file_dash = file.is_some_and(is_dash);
    if context_dash && file_dash {
        return Err(StdinError::Both);
    }
    let dir = scratch().map_err(StdinError::Scratch)?;
    if file_dash {
        let dockerfile = write_dockerfile(dir.path(), stdin, Vec::new())?;
        return Ok(Some(StdinInputs {
            dir,
            context: None,
            dockerfile: Some(dockerfile),
            dockerfile_is_stdin: true,
        }));
    }
    let mut stdin = stdin;
    let head = peek(&mut stdin)?;
    if head.is_empty() {
        return Err(StdinError::Empty);
    }
    let context = dir.path().join("context");
    std::fs::create_dir(&context).map_err(|source| StdinError::Write {
        path: context.clone(),
        source,
    })?;
    if is_archive(&head) {
        // A context holds files, not layer changes: a `.wh.` name is refused, as it is in a
        // directory context (it was taken as a whiteout and the file silently dropped).
        let opts = ApplyOptions {
            whiteouts: rbuild_layers::apply::WhiteoutMode::Refuse,
            ..ApplyOptions::default()
        };
        apply_layer(&context, Cursor::new(head).chain(stdin), &opts).map_err(StdinError::Unpack)?;
        let dockerfile = file.map(|f| inside(&context, f)).transpose()?;
        return Ok(Some(StdinInputs {
            dir,
            context: Some(context),
            dockerfile,
            dockerfile_is_stdin: false,
        }));
    }
    if let Some(f) = file {
        return Err(StdinError::Ambiguous(f.to_path_buf()));
    }
    let dockerfile = write_dockerfile(dir.path(), stdin, head)?;
    Ok(Some(StdinInputs {
        dir,
        context: Some(context),
        dockerfile: Some(dockerfile),
        dockerfile_is_stdin: true,
    }))
}

/// Up to [`PEEK`] leading bytes (fewer only at the end of the stream).
fn peek(r: &mut impl Read) -> Result<Vec<u8>, StdinError> {
    let mut head = Vec::with_capacity(PEEK);
    r.by_ref()
        .take(PEEK as u64)
        .read_to_end(&mut head)
        .map_err(StdinError::Read)?;
    Ok(head)
}

/// buildx's `isArchive`: bzip2, gzip or xz magic, or a first tar header that reads (checksum
/// and all). Not zstd: buildx reads a zstd stream as a Dockerfile.
pub(super) fn is_archive(head: &[u8]) -> bool {
    const MAGIC: [&[u8]; 3] = [
        &[0x42, 0x5A, 0x68],
        &[0x1F, 0x8B, 0x08],
        &[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00],
    ];
    if MAGIC.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    matches!(
        rbuild_layers::apply::archive_format(head),
        Some(rbuild_layers::apply::StreamFormat::Tar)
    )
}

/// `head` and the rest of `r` (bounded) written as `<dir>/Dockerfile`.
fn write_dockerfile(dir: &Path, r: impl Read, head: Vec<u8>) -> Result<PathBuf, StdinError> {
    let mut text = head;
    let room = (MAX_STDIN_DOCKERFILE + 1).saturating_sub(text.len() as u64);
    r.take(room)
        .read_to_end(&mut text)
        .map_err(StdinError::Read)?;
    if text.len() as u64 > MAX_STDIN_DOCKERFILE {
        return Err(StdinError::TooLarge);
    }
    let path = dir.join("Dockerfile");
    std::fs::write(&path, &text).map_err(|source| StdinError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// `-f f` inside the unpacked context: relative, no `..`. (The Dockerfile is then read by path;
/// a symlink in the archive is followed like one in a context directory.)
pub(super) fn inside(context: &Path, f: &Path) -> Result<PathBuf, StdinError> {
    let ok = f
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok || f.as_os_str().is_empty() {
        return Err(StdinError::FileOutside(f.to_path_buf()));
    }
    Ok(context.join(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (
        tempfile::TempDir,
        impl Fn() -> Result<ScratchDir, StoreError>,
    ) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        (d, move || {
            rbuild_layers::store::Store::scratch_dir_at(&root, "stdin")
        })
    }

    /// A tar (by the `tar` crate) of `(path, content)` files.
    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, c) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(c.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, c.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn no_scratch() -> Result<ScratchDir, StoreError> {
        panic!("no scratch directory is needed")
    }

    #[test]
    fn neither_dash_reads_nothing() {
        let r = materialise(
            Path::new("."),
            Some(Path::new("Dockerfile")),
            io::empty(),
            no_scratch,
        );
        assert!(r.unwrap().is_none());
    }

    #[test]
    fn both_dashes_are_refused_before_reading() {
        let r = materialise(
            Path::new("-"),
            Some(Path::new("-")),
            io::empty(),
            no_scratch,
        );
        assert!(matches!(r, Err(StdinError::Both)));
    }

    #[test]
    fn dash_f_is_the_dockerfile_and_the_context_stays() {
        let (_d, s) = store();
        let got = materialise(
            Path::new("ctx"),
            Some(Path::new("-")),
            &b"FROM scratch\n"[..],
            s,
        )
        .unwrap()
        .unwrap();
        assert!(got.context.is_none());
        assert!(got.dockerfile_is_stdin);
        let df = got.dockerfile.clone().unwrap();
        assert_eq!(std::fs::read_to_string(&df).unwrap(), "FROM scratch\n");
        let dir = got.dir().to_path_buf();
        drop(got);
        assert!(!dir.exists(), "removed on drop");
    }

    #[test]
    fn a_tar_on_stdin_is_the_context_and_f_names_a_file_in_it() {
        let (_d, s) = store();
        let t = tar_of(&[
            ("Dockerfile", "FROM scratch\n"),
            ("sub/D2", "FROM x\n"),
            (".dockerignore", "*.log\n"),
        ]);
        let got = materialise(Path::new("-"), None, &t[..], &s)
            .unwrap()
            .unwrap();
        let ctx = got.context.clone().unwrap();
        assert_eq!(
            std::fs::read_to_string(ctx.join("sub/D2")).unwrap(),
            "FROM x\n"
        );
        assert!(ctx.join(".dockerignore").exists());
        assert!(got.dockerfile.is_none(), "the default: CONTEXT/Dockerfile");
        let got = materialise(Path::new("-"), Some(Path::new("sub/D2")), &t[..], &s)
            .unwrap()
            .unwrap();
        assert_eq!(
            got.dockerfile,
            Some(got.context.clone().unwrap().join("sub/D2"))
        );
        for bad in ["../x", "/etc/passwd", ""] {
            let r = materialise(Path::new("-"), Some(Path::new(bad)), &t[..], &s);
            assert!(matches!(r, Err(StdinError::FileOutside(_))), "{bad}");
        }
    }

    /// A context is files: `.wh.NAME` would otherwise be taken as a whiteout and the file
    /// dropped without a word (a directory context holding one is refused when its layer is
    /// written).
    #[test]
    fn a_whiteout_name_in_a_context_tar_is_refused_not_applied() {
        let (_d, s) = store();
        for name in [".wh.secret", "sub/.wh..wh..opq"] {
            let t = tar_of(&[("Dockerfile", "FROM scratch\n"), (name, "x\n")]);
            match materialise(Path::new("-"), None, &t[..], &s) {
                Err(StdinError::Unpack(e)) => {
                    assert!(e.to_string().contains("reserved for OCI whiteouts"), "{e}")
                }
                other => panic!("{name}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn a_gzipped_tar_is_a_context_too() {
        let (_d, s) = store();
        let t = tar_of(&[("Dockerfile", "FROM scratch\n")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &t).unwrap();
        let gz = gz.finish().unwrap();
        let got = materialise(Path::new("-"), None, &gz[..], s)
            .unwrap()
            .unwrap();
        assert!(got.context.unwrap().join("Dockerfile").exists());
    }

    #[test]
    fn text_on_stdin_is_the_dockerfile_with_an_empty_context() {
        let (_d, s) = store();
        let long = format!("FROM scratch\n{}", "# comment\n".repeat(300));
        let got = materialise(Path::new("-"), None, long.as_bytes(), &s)
            .unwrap()
            .unwrap();
        let ctx = got.context.clone().unwrap();
        assert_eq!(std::fs::read_dir(&ctx).unwrap().count(), 0);
        assert!(got.dockerfile_is_stdin);
        assert_eq!(
            std::fs::read_to_string(got.dockerfile.unwrap()).unwrap(),
            long
        );
        let r = materialise(
            Path::new("-"),
            Some(Path::new("Dockerfile")),
            &b"FROM a\n"[..],
            &s,
        );
        assert!(matches!(r, Err(StdinError::Ambiguous(_))));
        let r = materialise(Path::new("-"), None, io::empty(), &s);
        assert!(matches!(r, Err(StdinError::Empty)));
    }

    #[test]
    fn a_dockerfile_over_the_bound_is_refused() {
        let (_d, s) = store();
        let big = io::repeat(b'#').take(MAX_STDIN_DOCKERFILE + 10);
        let r = materialise(Path::new("ctx"), Some(Path::new("-")), big, s);
        assert!(matches!(r, Err(StdinError::TooLarge)));
    }

    #[test]
    fn an_archive_that_climbs_out_is_refused_and_writes_nothing_outside() {
        let (d, s) = store();
        // A raw header: the `tar` crate refuses to write `..` names itself.
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../canary");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut t = h.as_bytes().to_vec();
        t.extend_from_slice(&[b'x'; 512]);
        t.extend_from_slice(&[0; 1024]);
        let r = materialise(Path::new("-"), None, &t[..], s);
        assert!(matches!(r, Err(StdinError::Unpack(_))), "{r:?}");
        let mut found = Vec::new();
        for e in walk(d.path()) {
            if e.file_name().is_some_and(|n| n == "canary") {
                found.push(e);
            }
        }
        assert!(found.is_empty(), "{found:?}");
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = vec![p.to_path_buf()];
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }
}
