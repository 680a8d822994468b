//! Writing a layer: entries → tar stream → diffID hasher → compressor → blob hasher → store.
//!
//! The whole layer is streamed once: each file is read from disk exactly once, the uncompressed
//! sha256 (diffID) is computed on the tar bytes as they are produced, and the compressed sha256
//! by the store's [`crate::BlobWriter`] as they are written (for an uncompressed layer the two
//! are the same bytes, hashed once). Reading and hashing run on the
//! calling thread; compressing and storing run on a second thread fed through a small pool of
//! reused chunks (see `stream`), so reading files overlaps with compression. Memory stays
//! bounded by that pool and the compressor's in-flight blocks.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use super::entry::{sort_entries, validate_sorted, EntryKind, LayerEntry};
use super::header::{self, HeaderFields};
use super::index::PathIndex;
use super::stream::{CopyError, TarStream};
use super::LayerError;
use crate::compression::{compressor_with_threads, default_threads};
use crate::store::GrowingBlob;
use crate::{Compression, Digest, MediaType, Store};

/// How to write a layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Compression level; `None` = gzip 6 / zstd 3.
    pub level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are clamped to it.
    pub source_date_epoch: Option<i64>,
    /// Compression threads; `None` = every core. The output does not depend on it.
    pub threads: Option<usize>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes into the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the blob as stored (goes into the manifest).
    pub digest: Digest,
    /// Size of the blob as stored.
    pub size: u64,
    pub media_type: MediaType,
    pub uncompressed_size: u64,
}

/// Writes `entries` as one layer blob into `store`. Entries are sorted into the canonical order
/// first (see [`super::sort_entries`]) and validated; the same entries and file contents always
/// give the same diffID and digest, whatever the thread count.
pub fn write_layer(
    store: &Store,
    entries: Vec<LayerEntry>,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    write_layer_with(store, entries, opts, WriteHooks::default())
}

/// What a caller sees of a layer while it is written.
#[derive(Default)]
pub struct WriteHooks<'a> {
    /// Called with the number of uncompressed bytes written so far, every few MiB (for
    /// progress bars).
    pub progress: Option<&'a dyn Fn(u64)>,
    /// Called once, before the first byte is written, with a reader of the compressed blob as
    /// it grows (see [`GrowingBlob`]): e.g. to upload the layer while it is compressed.
    pub follow: Option<&'a mut dyn FnMut(GrowingBlob)>,
}

/// [`write_layer`] with [`WriteHooks`].
pub fn write_layer_with(
    store: &Store,
    mut entries: Vec<LayerEntry>,
    opts: &LayerOptions,
    hooks: WriteHooks<'_>,
) -> Result<LayerInfo, LayerError> {
    sort_entries(&mut entries);
    validate_sorted(&entries)?;
    let mut blob = store.begin_blob()?;
    if let Some(follow) = hooks.follow {
        follow(blob.follow()?);
    }
    let progress = hooks.progress.unwrap_or(&|_| {});
    let threads = opts.threads.unwrap_or_else(default_threads);
    let comp = compressor_with_threads(opts.compression, opts.level, threads, blob)?;
    // Uncompressed, the blob *is* the tar: its digest is the diffID, and hashing the same bytes
    // a second time would cost a whole sha256 pass.
    let hash_tar = !matches!(opts.compression, Compression::None);
    let mut out = TarStream::new(comp, hash_tar, progress).map_err(LayerError::Write)?;
    for e in &entries {
        write_entry(&mut out, e, opts.source_date_epoch)?;
    }
    // End of archive: two zero blocks.
    out.write_all(&[0u8; 2 * header::BLOCK])
        .map_err(LayerError::Write)?;
    let (hasher, uncompressed_size, blob) = out.finish().map_err(LayerError::Write)?;
    let (digest, size) = blob.commit(None, None)?;
    let diff_id = match hasher {
        Some(h) => h.finish(),
        None => digest.clone(),
    };
    // The path index lets later steps answer lookups without unpacking this layer. Best
    // effort: without it they unpack the layer, as they always could.
    if let Some(index) = PathIndex::from_entries(&entries) {
        let _ = index.save(store, &diff_id);
    }
    Ok(LayerInfo {
        diff_id,
        digest,
        size,
        media_type: opts.compression.oci_layer_media_type(),
        uncompressed_size,
    })
}

/// Writes `entries` as an uncompressed tar to `w` (not into the store): the same canonical order,
/// validation and headers as a layer, ended by the end-of-archive blocks. For a tar of a whole
/// filesystem (`--output type=tar`). Returns `w`, not flushed.
pub fn write_tar<W: Write>(
    mut entries: Vec<LayerEntry>,
    w: W,
    source_date_epoch: Option<i64>,
) -> Result<W, LayerError> {
    sort_entries(&mut entries);
    validate_sorted(&entries)?;
    let mut out = PlainTar(w);
    for e in &entries {
        write_entry(&mut out, e, source_date_epoch)?;
    }
    out.write_all(&[0u8; 2 * header::BLOCK])
        .map_err(LayerError::Write)?;
    Ok(out.0)
}

/// Where [`write_entry`] puts a tar: the layer stream (files read straight into its chunks) or
/// any writer ([`PlainTar`]).
trait TarSink: Write {
    /// Copies at most `len` bytes of `file`; returns how many there were.
    fn copy_file(&mut self, file: File, len: u64) -> Result<u64, CopyError>;
}

impl TarSink for TarStream<'_> {
    fn copy_file(&mut self, file: File, len: u64) -> Result<u64, CopyError> {
        self.copy_from(file, len)
    }
}

/// A tar written to any writer.
struct PlainTar<W>(W);

impl<W: Write> Write for PlainTar<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> TarSink for PlainTar<W> {
    fn copy_file(&mut self, mut file: File, len: u64) -> Result<u64, CopyError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        while done < len {
            let want = buf
                .len()
                .min(usize::try_from(len - done).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.0.write_all(&buf[..n]).map_err(CopyError::Write)?;
            done += n as u64;
        }
        Ok(done)
    }
}

fn write_entry<S: TarSink>(
    out: &mut S,
    e: &LayerEntry,
    sde: Option<i64>,
) -> Result<(), LayerError> {
    let name = e.tar_path();
    let mtime = match sde {
        Some(epoch) if e.mtime > epoch => epoch,
        _ => e.mtime,
    };
    let mut f = HeaderFields {
        name: &name,
        typeflag: header::TYPE_REG,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: 0,
        mtime,
        linkname: "",
        devmajor: 0,
        devminor: 0,
        xattrs: &e.xattrs,
    };
    match &e.kind {
        EntryKind::File { source } => {
            let file = File::open(source).map_err(LayerError::io("opening", source))?;
            let meta = file
                .metadata()
                .map_err(LayerError::io("reading metadata of", source))?;
            if !meta.is_file() {
                return Err(LayerError::NotRegular {
                    path: source.clone(),
                });
            }
            f.size = meta.size();
            header::write_header(out, &f).map_err(LayerError::Write)?;
            let copied = out.copy_file(file, f.size).map_err(|err| match err {
                CopyError::Read(e) => LayerError::io("reading", source)(e),
                CopyError::Write(e) => LayerError::Write(e),
            })?;
            if copied != f.size {
                return Err(LayerError::FileChanged {
                    path: source.clone(),
                    expected: f.size,
                    actual: copied,
                });
            }
            header::write_padding(out, f.size).map_err(LayerError::Write)?;
            return Ok(());
        }
        EntryKind::Dir => f.typeflag = header::TYPE_DIR,
        EntryKind::Symlink { target } => {
            f.typeflag = header::TYPE_SYMLINK;
            f.linkname = target;
        }
        EntryKind::Hardlink { target } => {
            f.typeflag = header::TYPE_LINK;
            f.linkname = target;
        }
        EntryKind::CharDev { major, minor } => {
            f.typeflag = header::TYPE_CHAR;
            (f.devmajor, f.devminor) = (*major, *minor);
        }
        EntryKind::BlockDev { major, minor } => {
            f.typeflag = header::TYPE_BLOCK;
            (f.devmajor, f.devminor) = (*major, *minor);
        }
        EntryKind::Fifo => f.typeflag = header::TYPE_FIFO,
        // Whiteouts are empty regular files (image-spec layer.md).
        EntryKind::Whiteout | EntryKind::OpaqueWhiteout => {}
    }
    header::write_header(out, &f).map_err(LayerError::Write)
}
