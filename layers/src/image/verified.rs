//! Streaming a blob out of a [`BlobSource`] while checking it against its digest and size, so
//! that a writer (an output, an OCI layout) never passes on a corrupt or truncated blob.

use std::io::{self, Read};

use super::BlobSource;
use crate::{Digest, Sha256Hasher};

/// Why a blob could not be read from its source intact.
#[derive(Debug, thiserror::Error)]
pub enum BlobReadError {
    #[error("reading blob {digest} from the store: {source}")]
    Read {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} from the store is corrupt: its bytes hash to {actual} ({size} bytes, expected {expected_size})")]
    Corrupt {
        digest: Digest,
        actual: Digest,
        size: u64,
        expected_size: u64,
    },
}

/// A reader that hashes and counts what passes through, to verify a blob while streaming it.
pub(crate) struct Verifying<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> Verifying<R> {
    pub(crate) fn new(inner: R) -> Self {
        Verifying {
            inner,
            hasher: Sha256Hasher::new(),
        }
    }

    /// Checks that exactly `expected_size` bytes hashing to `digest` were read.
    pub(crate) fn finish(self, digest: &Digest, expected_size: u64) -> Result<(), BlobReadError> {
        let size = self.hasher.len();
        let actual = self.hasher.finish();
        if &actual != digest || size != expected_size {
            return Err(BlobReadError::Corrupt {
                digest: digest.clone(),
                actual,
                size,
                expected_size,
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A blob being streamed out of a source with verification.
pub(crate) type BlobReader<'s> = Verifying<io::Take<Box<dyn Read + Send + 's>>>;

/// The size `source` records for `digest`.
pub(crate) fn blob_size(source: &dyn BlobSource, digest: &Digest) -> Result<u64, BlobReadError> {
    source
        .blob_size(digest)
        .map_err(|source| BlobReadError::Read {
            digest: digest.clone(),
            source,
        })
}

/// Opens a blob for streaming: its size, and a verifying reader capped one byte past it
/// (so that a blob longer than its recorded size is detected, not silently truncated).
pub(crate) fn open_verified<'s>(
    source: &'s dyn BlobSource,
    digest: &Digest,
) -> Result<(u64, BlobReader<'s>), BlobReadError> {
    let size = blob_size(source, digest)?;
    let r = source
        .open_blob(digest)
        .map_err(|source| BlobReadError::Read {
            digest: digest.clone(),
            source,
        })?;
    Ok((size, Verifying::new(r.take(size.saturating_add(1)))))
}
