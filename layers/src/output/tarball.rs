//! Deterministic tar archives of an output's files (OCI layout tar, docker-archive).
//!
//! Entries are written in sorted path order with fixed metadata (uid/gid 0, no user names,
//! mtime 0, mode 0644/0755), so the same images always give the same archive bytes. Blob
//! contents are streamed from the store and verified against their digest on the way.

use std::collections::BTreeMap;
use std::io::Write;

use super::atomic::{DIR_MODE, FILE_MODE};
use super::OutputError;
use crate::image::verified::open_verified;
use crate::image::BlobSource;
use crate::Digest;

/// What an archive entry holds.
pub(crate) enum Entry {
    Dir,
    Bytes(Vec<u8>),
    Blob(Digest),
}

/// The archive's entries by path (directories end in `/`); a `BTreeMap` keeps them sorted.
#[derive(Default)]
pub(crate) struct Entries(pub(crate) BTreeMap<String, Entry>);

impl Entries {
    pub(crate) fn bytes(&mut self, path: &str, bytes: Vec<u8>) {
        self.0.insert(path.to_string(), Entry::Bytes(bytes));
    }

    /// Adds a blob at `blobs/<alg>/<hex>` and its parent directories.
    pub(crate) fn blob(&mut self, digest: &Digest) -> String {
        let alg = digest.algorithm().as_str();
        self.0.insert("blobs/".into(), Entry::Dir);
        self.0.insert(format!("blobs/{alg}/"), Entry::Dir);
        let path = format!("blobs/{alg}/{}", digest.hex());
        self.0.insert(path.clone(), Entry::Blob(digest.clone()));
        path
    }

    /// Writes the archive to `w` and returns `w` (after the end-of-archive marker).
    pub(crate) fn write<W: Write>(self, w: W, source: &dyn BlobSource) -> Result<W, OutputError> {
        let stream = |op| move |source| OutputError::Stream { op, source };
        let mut b = tar::Builder::new(w);
        for (path, entry) in self.0 {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match entry {
                Entry::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(DIR_MODE);
                    h.set_size(0);
                    b.append_data(&mut h, &path, std::io::empty())
                        .map_err(stream("adding a directory entry"))?;
                }
                Entry::Bytes(bytes) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(FILE_MODE);
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, &path, &bytes[..])
                        .map_err(stream("adding a file entry"))?;
                }
                Entry::Blob(digest) => {
                    let (size, mut r) = open_verified(source, &digest)?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(FILE_MODE);
                    h.set_size(size);
                    b.append_data(&mut h, &path, &mut r)
                        .map_err(stream("adding a blob entry"))?;
                    r.finish(&digest, size)?;
                }
            }
        }
        b.into_inner().map_err(stream("finishing the archive"))
    }
}
