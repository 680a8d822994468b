//! The store as a source and sink of image blobs for [`crate::image`] and [`crate::output`].

use std::io::{self, Read};
use std::path::PathBuf;

use super::Store;
use crate::image::{BlobSink, BlobSource};
use crate::{Descriptor, Digest, MediaType};

impl BlobSource for Store {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Store::open_blob(self, digest)
            .map(|r| Box::new(r) as Box<dyn Read + Send>)
            .map_err(io::Error::other)
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<u64> {
        Store::blob_size(self, digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {digest} is not in the store"),
            )
        })
    }

    fn blob_path(&self, digest: &Digest) -> Option<PathBuf> {
        let p = Store::blob_path(self, digest);
        p.exists().then_some(p)
    }
}

impl BlobSink for Store {
    fn put_bytes(&self, media_type: &MediaType, bytes: &[u8]) -> io::Result<Descriptor> {
        Store::put_bytes(self, media_type.clone(), bytes).map_err(io::Error::other)
    }
}
