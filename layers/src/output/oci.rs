//! `--output type=oci`: an OCI image layout (image-spec `image-layout.md`), as a directory or
//! as a tar of one.
//!
//! Layout: `oci-layout` (`{"imageLayoutVersion":"1.0.0"}`), `index.json` with one manifest
//! descriptor (an image index's, for several platforms, as BuildKit writes it) per (image, name) annotated `org.opencontainers.image.ref.name=<name>` (an
//! image without names gets one unannotated entry), and `blobs/sha256/<hex>`.
//!
//! The name is written verbatim as given with `--tag` (e.g. `app:1.0`), after checking it
//! against the layout's `ref.name` grammar, so `skopeo … oci:DIR:app:1.0` and
//! `umoci … --image DIR:app:1.0` find it. (BuildKit writes only the tag part here and the full
//! name in `io.containerd.image.name`; the docker-archive writer follows Docker in that.)
//!
//! The directory is written by the shared layout writer ([`crate::oci_layout`]). Directory
//! semantics, decided here:
//! - `dest` missing or an empty directory: the layout is built in a temporary sibling
//!   directory and renamed into place, so the destination never holds half a layout.
//! - `dest` an existing OCI layout: the images are ADDED to it, under an exclusive `flock` on
//!   the directory: blobs are copied first (each atomically), then `index.json` is replaced
//!   atomically, with entries of the same `ref.name` replaced in place and others kept
//!   ([`merge_entries`]).
//!   Blobs no longer referenced are not removed (no garbage collection).
//! - anything else: an error; nothing is overwritten.
//!
//! The tar form holds the same files as the directory form, in sorted order with fixed
//! metadata, so it is byte-for-byte reproducible; it is streamed, to a temp file renamed into
//! place, or to stdout for `dest=-`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::atomic::{self, fsync_dir};
use super::tarball::Entries;
use super::{Destination, ExportImage, OutputError};
use crate::image::{BlobSource, ImageIndex};
use crate::oci_layout::{merge_entries, read_index, LayoutWriter, LockOn};
pub use crate::oci_layout::{OCI_LAYOUT_FILE, REF_NAME_ANNOTATION};
use crate::{Descriptor, Digest};

/// Writes `images` as an OCI layout to `dest` (directory, `.tar` file or stdout).
pub fn write_oci(
    dest: &Destination,
    images: &[ExportImage<'_>],
    source: &dyn BlobSource,
) -> Result<(), OutputError> {
    match dest {
        Destination::Dir(dir) => write_oci_dir(dir, images, source),
        Destination::TarFile(path) => write_tar_file(path, |w| write_oci_tar(w, images, source)),
        Destination::Stdout => {
            let out = write_oci_tar(io::BufWriter::new(io::stdout().lock()), images, source)?;
            flush(out)
        }
    }
}

pub(crate) fn flush(mut w: impl Write) -> Result<(), OutputError> {
    w.flush().map_err(|source| OutputError::Stream {
        op: "flushing",
        source,
    })
}

/// Streams a tar to a temp file next to `path`, then renames it into place.
pub(crate) fn write_tar_file(
    path: &Path,
    write: impl FnOnce(
        io::BufWriter<&mut fs::File>,
    ) -> Result<io::BufWriter<&mut fs::File>, OutputError>,
) -> Result<(), OutputError> {
    let mut tmp = atomic::temp_file_for(path)?;
    // Name the file in write errors (the tar writer only knows it has a stream).
    let w = write(io::BufWriter::new(tmp.as_file_mut())).map_err(|e| match e {
        OutputError::Stream { op, source } => OutputError::Io {
            op,
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })?;
    w.into_inner()
        .map_err(|e| OutputError::io("writing", path)(e.into_error()))?;
    Ok(tmp.commit()?)
}

/// Whether `name` matches the image-layout `ref.name` grammar:
/// `component ("/" component)*`, `component ::= alphanum (separator alphanum)*`,
/// `alphanum ::= [A-Za-z0-9]+`, `separator ::= [-._:@+] | "--"`.
pub fn is_valid_ref_name(name: &str) -> bool {
    fn component(c: &str) -> bool {
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_alphanumeric();
        let sep = |x: u8| matches!(x, b'-' | b'.' | b'_' | b':' | b'@' | b'+');
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
            } else if b[i..].starts_with(b"--") && b.get(i + 2).copied().is_some_and(alnum) {
                i += 2;
            } else if sep(b[i]) && b.get(i + 1).copied().is_some_and(alnum) {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }
    name.split('/').all(component)
}

/// The index entries for `images`: one per name, or one unnamed entry for an image without.
pub(crate) fn index_entries(images: &[ExportImage<'_>]) -> Result<Vec<Descriptor>, OutputError> {
    let mut out = Vec::new();
    for img in images {
        if img.names.is_empty() {
            out.push(img.image.descriptor().clone());
        }
        for name in img.names {
            if !is_valid_ref_name(name) {
                return Err(OutputError::InvalidRefName { name: name.clone() });
            }
            let mut d = img.image.descriptor().clone();
            d.annotations
                .insert(REF_NAME_ANNOTATION.to_string(), name.clone());
            out.push(d);
        }
    }
    Ok(out)
}

/// All blobs of `images`, each once, sorted.
pub(crate) fn all_blobs<'a>(images: &[ExportImage<'a>]) -> BTreeSet<&'a Digest> {
    images.iter().flat_map(|i| i.image.blob_digests()).collect()
}

/// Writes an OCI layout directory at `dest` (see the module doc for the semantics).
pub fn write_oci_dir(
    dest: &Path,
    images: &[ExportImage<'_>],
    source: &dyn BlobSource,
) -> Result<(), OutputError> {
    let entries = index_entries(images)?;
    // Follows a symlink, so `dest` may be a link to an existing layout.
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() && dest.join("oci-layout").exists() => {
            return add_to_layout(dest, entries, images, source)
        }
        Ok(m) if m.is_dir() && is_empty_dir(dest)? => {}
        Ok(_) => {
            return Err(OutputError::DestNotEmpty {
                path: dest.to_path_buf(),
                what: " and is not an OCI image layout",
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(OutputError::io("inspecting", dest)(e)),
    }
    let parent = atomic::parent_of(dest);
    let tmp = atomic::temp_dir_for(dest, "oci")?;
    let root = tmp.path();
    let layout = LayoutWriter::create_private(root)?;
    for d in all_blobs(images) {
        layout.put_blob(d, source)?;
    }
    layout.sync_blob_dirs()?;
    layout.ensure_layout_file()?;
    let mut index = ImageIndex::new_oci();
    index.manifests = entries.clone();
    layout.commit_index(&index, || {})?;
    drop(layout);
    match fs::rename(root, dest) {
        Ok(()) => {
            let _ = tmp.keep();
            fsync_dir(&parent)
        }
        // Someone else created a layout there meanwhile: add to it instead.
        Err(e)
            if dest.join("oci-layout").exists()
                && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
        {
            add_to_layout(dest, entries, images, source)
        }
        Err(e) => Err(OutputError::io("renaming the finished layout to", dest)(e)),
    }
}

fn is_empty_dir(dir: &Path) -> Result<bool, OutputError> {
    Ok(fs::read_dir(dir)
        .map_err(OutputError::io("listing", dir))?
        .next()
        .is_none())
}

fn add_to_layout(
    dest: &Path,
    entries: Vec<Descriptor>,
    images: &[ExportImage<'_>],
    source: &dyn BlobSource,
) -> Result<(), OutputError> {
    let layout = LayoutWriter::open_locked(dest, LockOn::Directory)?;
    layout.check_layout_file()?;
    let mut index = read_index(dest)?.unwrap_or_else(ImageIndex::new_oci);
    for d in all_blobs(images) {
        layout.put_blob(d, source)?;
    }
    layout.sync_blob_dirs()?;
    merge_entries(&mut index, entries);
    Ok(layout.commit_index(&index, || {})?)
}

/// Streams the layout as a deterministic tar to `w`, returning `w`.
pub fn write_oci_tar<W: Write>(
    w: W,
    images: &[ExportImage<'_>],
    source: &dyn BlobSource,
) -> Result<W, OutputError> {
    let mut index = ImageIndex::new_oci();
    index.manifests = index_entries(images)?;
    let mut e = Entries::default();
    e.bytes("oci-layout", OCI_LAYOUT_FILE.to_vec());
    e.bytes("index.json", index.to_canonical_json());
    for d in all_blobs(images) {
        e.blob(d);
    }
    e.write(w, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_name_grammar_from_image_layout_spec() {
        for ok in [
            "latest",
            "v1.0",
            "app:1.0",
            "registry.example.com/team/app:1.0",
            "a--b",
            "a@b+c",
            "A_b",
        ] {
            assert!(is_valid_ref_name(ok), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "a//b", "/a", "a/", "a b", "a---b", "a..b", "app:", "ä",
        ] {
            assert!(!is_valid_ref_name(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn ref_names_from_the_grammar_are_valid(
            comps in proptest::collection::vec("[a-zA-Z0-9]{1,4}(([-._:@+]|--)[a-zA-Z0-9]{1,4}){0,3}", 1..4)
        ) {
            let name = comps.join("/");
            proptest::prop_assert!(is_valid_ref_name(&name), "{}", name);
        }

        #[test]
        fn ref_name_check_never_panics(s in ".{0,40}") {
            let _ = is_valid_ref_name(&s);
        }
    }
}
