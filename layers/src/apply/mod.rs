//! Applying (unpacking) a layer tar onto a directory, safely.
//!
//! Used to pull base images, assemble RUN roots, write `type=local` output and `ADD` local
//! archives. Layers are untrusted: every path is contained by the kernel (see [`root`]), names
//! that climb above the root are rejected (see [`path`]), metadata records are bounded (see
//! [`tar`]), and the work is linear in the number of entries. The uncompressed stream's sha256
//! (the layer's DiffID) is computed while applying.
//!
//! On error the directory may hold a partial result; callers discard it (the snapshot cache
//! unpacks into a temporary directory for exactly that reason).

mod decompress;
mod donor;
mod error;
mod path;
mod pipe;
mod root;
pub(crate) mod tar;
mod unpack;

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

pub use decompress::{decompress, detect, StreamFormat};
pub use error::ApplyError;
pub use path::PATH_MAX;
pub use tar::{MAX_ENTRY_SIZE, MAX_LONG_NAME, MAX_PAX_BYTES};

use crate::{Digest, Sha256Hasher};

/// The format of a tar archive, plain or compressed, decided by content the way Docker's `ADD`
/// decides (moby's `archive.IsArchivePath`): the stream decompresses (by magic bytes) and its
/// first tar header reads, checksum and all. `None` for anything else — including a file named
/// like an archive, and a compressed file whose content is not a tar.
pub fn archive_format<R: Read>(r: R) -> Option<StreamFormat> {
    let (format, stream) = decompress(r).ok()?;
    let mut reader = tar::TarReader::new(std::io::BufReader::new(stream));
    matches!(reader.next_entry(), Ok(Some(_))).then_some(format)
}

/// How OCI whiteout entries (`.wh.NAME`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete the named lower entries (flattening layers into one tree).
    #[default]
    Apply,
    /// Keep the layer as an overlayfs lower directory: `.wh.NAME` becomes a 0:0 character
    /// device and `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
    /// Requires root (CAP_MKNOD, CAP_SYS_ADMIN for `trusted.*`).
    Overlay,
    /// The archive is no image layer (a build context sent on standard input): a `.wh.` name
    /// is refused rather than taken as a whiteout, as a directory context holding one is when
    /// its layer is written.
    Refuse,
}

/// What becomes of a layer's block and character devices (see [`crate::device`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceMode {
    /// An inert placeholder: an empty mode-000 regular file recording the device in an xattr.
    /// Never a usable device node; for every tree under the store (snapshots, scratch, cache).
    #[default]
    Placeholder,
    /// A real node (`mknod`, root only; skipped with a warning otherwise). Only for a tree
    /// written for the user outside the store (`--output type=local`, as BuildKit does).
    Create,
}

/// Options for [`apply_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Restore the entries' uid/gid (`chown`). Default: true when running as root.
    pub same_owner: bool,
    /// Block and character devices: placeholders (default) or real nodes.
    pub devices: DeviceMode,
    pub whiteouts: WhiteoutMode,
    /// The snapshot directories of the layers below, topmost first, when this layer is unpacked
    /// on its own (overlay snapshots): a directory the layer only implies (`etc/x` without
    /// `etc/`) takes its mode, owner and times from the first of them that has it, as
    /// containerd's `WithParents` does, so the merged view keeps `/tmp` 1777. Empty: 0755.
    pub parents: Vec<std::path::PathBuf>,
    /// The directory this layer was just written from (a RUN's overlay upper directory, which
    /// the caller gives up): regular files are moved from it instead of written, the tar still
    /// deciding every byte and attribute (see `donor.rs`). Unusable: ignored.
    pub donor: Option<std::path::PathBuf>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            same_owner: rustix::process::geteuid().is_root(),
            devices: DeviceMode::Placeholder,
            whiteouts: WhiteoutMode::Apply,
            parents: Vec::new(),
            donor: None,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Tar entries applied (whiteouts included, extended headers not).
    pub entries: u64,
    /// Length of the uncompressed tar stream.
    pub bytes: u64,
    /// Things skipped or not restored (device nodes as non-root, unsupported xattrs, ...).
    pub warnings: Vec<String>,
    /// sha256 of the uncompressed tar stream (the OCI DiffID).
    pub diff_id: Digest,
    /// The device placeholders written (see [`crate::device`]), in tar order, at most
    /// [`crate::device::MAX_REPORTED_PLACEHOLDERS`]; a later entry of the same layer may have
    /// replaced one.
    pub placeholders: Vec<crate::device::Placeholder>,
    /// Regular files whose inode was moved from [`ApplyOptions::donor`].
    pub adopted: u64,
}

/// Applies the layer tar read from `layer` (plain, gzip, zstd, bzip2 or xz: autodetected) onto
/// the directory `root`.
pub fn apply_layer<R: Read>(
    root: &Path,
    layer: R,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let root_fd = root::Root::open(root).map_err(|source| ApplyError::OpenRoot {
        root: root.to_path_buf(),
        source,
    })?;
    let parents = opts
        .parents
        .iter()
        .map(|p| {
            root::Root::open(p).map_err(|source| ApplyError::OpenRoot {
                root: p.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The magic bytes are read here, on the caller's thread (the reader need not be `Send`).
    let (format, reader) = decompress::decompress(layer).map_err(ApplyError::Read)?;
    let hash_while_reading = format == StreamFormat::Tar;
    let (tx, rx) = mpsc::sync_channel(pipe::IN_FLIGHT);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            // The donor only saves work: one that cannot be opened is not used.
            let donor = opts
                .donor
                .as_deref()
                .and_then(|d| donor::Donor::open(d).ok());
            let mut unpacker = unpack::Unpacker::new(root_fd, parents, donor, opts);
            let hasher = (!hash_while_reading).then(Sha256Hasher::new);
            let mut tar = tar::TarReader::new(pipe::ChannelReader::new(rx, recycle_tx, hasher));
            unpacker.run(&mut tar).map(|()| {
                let hasher = tar.into_inner().into_hasher();
                (
                    unpacker.entries,
                    unpacker.warnings,
                    unpacker.placeholders,
                    unpacker.adopted,
                    hasher,
                )
            })
        });
        // Reading and decompression run here; the tar is applied on the worker.
        let hasher = hash_while_reading.then(Sha256Hasher::new);
        let produced = pipe::produce(reader, tx, recycle_rx, hasher);
        let applied = match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match (produced, applied) {
            // A read error explains whatever the worker saw (a truncated stream).
            (Err(e), _) => Err(ApplyError::Read(e)),
            (Ok(_), Err(e)) => Err(e),
            (Ok(read_side), Ok((entries, warnings, placeholders, adopted, apply_side))) => {
                let hasher = read_side
                    .or(apply_side)
                    .expect("exactly one side of the pipeline hashes the stream");
                Ok(ApplyReport {
                    entries,
                    bytes: hasher.len(),
                    warnings,
                    diff_id: hasher.finish(),
                    placeholders,
                    adopted,
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn one_file_tar(format: ::tar::HeaderMode) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        b.mode(format);
        let mut h = ::tar::Header::new_old();
        h.set_path("inside").unwrap();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"in\n"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn archive_format_is_decided_by_content_not_name() {
        // moby's IsArchivePath, as ADD uses it: decompress, then read one tar header.
        let v7 = one_file_tar(::tar::HeaderMode::Deterministic);
        assert_eq!(archive_format(&v7[..]), Some(StreamFormat::Tar), "a v7 tar");
        let mut trailing = v7.clone();
        trailing.extend_from_slice(b"junk\n");
        assert_eq!(archive_format(&trailing[..]), Some(StreamFormat::Tar));
        assert_eq!(archive_format(&gzip(&v7)[..]), Some(StreamFormat::Gzip));
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&v7).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(archive_format(&xz[..]), Some(StreamFormat::Xz));
        // Not archives: text, a compressed text, an empty tar (two zero blocks), nothing.
        assert_eq!(archive_format(&b"not an archive\n"[..]), None);
        assert_eq!(archive_format(&gzip(b"plain text\n")[..]), None);
        assert_eq!(archive_format(&[0u8; 1024][..]), None);
        assert_eq!(archive_format(&b""[..]), None);
        // A header whose checksum is wrong is not a tar header.
        let mut bad = v7;
        bad[148] ^= 1;
        assert_eq!(archive_format(&bad[..]), None);
    }
}
