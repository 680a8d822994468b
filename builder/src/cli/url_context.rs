//! An HTTP(S) URL of a tarball as the build context (`rbuild https://host/ctx.tar.gz`), as
//! buildx and BuildKit take one (`frontend/dockerui/context.go`, `DetectHTTPContext`): the URL is
//! downloaded, and when its first bytes are an archive (a tar, plain or gzip/bzip2/xz
//! compressed: the same test as for a context on standard input, see [`super::stdin`]) it is
//! unpacked and is the context, `-f` naming a file inside it. Otherwise the download is the
//! Dockerfile (BuildKit reads it under the name `context`) and the context holds only it.
//!
//! The download is `ADD <url>`'s (`solver::remote::http`): the registry crate's HTTP stack,
//! proxies from the environment, the size cap, credentials in the URL sent as a header to that
//! host only and never shown. The archive is untrusted and unpacked as a context on standard
//! input is (by the layer applier, inside a private scratch directory of the store, removed when
//! the build's options are dropped).

use std::io::Read;
use std::path::{Path, PathBuf};

use rbuild_layers::apply::{apply_layer, ApplyError, ApplyOptions};
use rbuild_layers::store::{ScratchDir, Store, StoreError};

use crate::dockerfile::remote::redact;
use crate::solver::remote::http::{fetch, HttpError};

/// Why a URL context could not be used. URLs are shown with credentials masked.
#[derive(Debug, thiserror::Error)]
pub enum UrlContextError {
    #[error("the context {url}: {source}")]
    Download {
        url: String,
        #[source]
        source: Box<HttpError>,
    },
    #[error("the context {url} is empty: give the URL of a tar archive of the build context (or of a Dockerfile)")]
    Empty { url: String },
    #[error("the context {url}: unpacking the archive")]
    Unpack {
        url: String,
        #[source]
        source: ApplyError,
    },
    #[error("the context {url} is not a tar archive, so it is the Dockerfile, and -f {file} names one too: give the URL of a tar archive of the context, or drop -f")]
    Ambiguous { url: String, file: PathBuf },
    #[error("-f {0:?}: with a tarball URL as the context, -f names a file inside the archive: give a relative path that stays inside it")]
    FileOutside(PathBuf),
    #[error("the context {url}: {what} {}", path.display())]
    Io {
        url: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the context {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
}

/// A downloaded context. Dropping it removes the files.
#[derive(Debug)]
pub struct UrlContext {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile, when the download is one or `-f` names a file in the archive.
    pub dockerfile: Option<PathBuf>,
    _scratch: ScratchDir,
}

/// Whether the context word is an HTTP(S) URL that is not a git repository (those are
/// checked out, see [`super::git_context`]).
pub fn is_url_context(word: &str) -> bool {
    crate::dockerfile::remote::is_http(word)
}

/// Downloads `url` into `store` and makes the context of it.
pub fn materialise(
    url: &str,
    file: Option<&Path>,
    store: &Store,
) -> Result<UrlContext, UrlContextError> {
    let shown = redact(url);
    let blob = fetch(store, url, None, &|_, _| {}).map_err(|source| UrlContextError::Download {
        url: shown.clone(),
        source: Box::new(source),
    })?;
    let store_err = |source| UrlContextError::Store {
        url: shown.clone(),
        source,
    };
    let scratch = store.scratch_dir("urlcontext").map_err(store_err)?;
    let context = scratch.path().join("context");
    let io = |what, path: &Path| {
        let url = shown.clone();
        let path = path.to_path_buf();
        move |source| UrlContextError::Io {
            url,
            what,
            path,
            source,
        }
    };
    std::fs::create_dir(&context).map_err(io("creating", &context))?;
    let mut head = Vec::with_capacity(super::stdin::PEEK);
    store
        .open_blob(&blob.digest)
        .map_err(store_err)?
        .take(super::stdin::PEEK as u64)
        .read_to_end(&mut head)
        .map_err(io("reading the download", &store.blob_path(&blob.digest)))?;
    if head.is_empty() {
        return Err(UrlContextError::Empty { url: shown });
    }
    if super::stdin::is_archive(&head) {
        let body = store.open_blob(&blob.digest).map_err(store_err)?;
        apply_layer(&context, body, &ApplyOptions::default()).map_err(|source| {
            UrlContextError::Unpack {
                url: shown.clone(),
                source,
            }
        })?;
        let dockerfile = file
            .map(|f| {
                super::stdin::inside(&context, f)
                    .map_err(|_| UrlContextError::FileOutside(f.to_path_buf()))
            })
            .transpose()?;
        return Ok(UrlContext {
            context,
            dockerfile,
            _scratch: scratch,
        });
    }
    if let Some(f) = file {
        return Err(UrlContextError::Ambiguous {
            url: shown,
            file: f.to_path_buf(),
        });
    }
    // BuildKit's HTTP source writes the file as `context`, and reads the Dockerfile from it.
    let dockerfile = context.join("context");
    let mut out = std::fs::File::create(&dockerfile).map_err(io("writing", &dockerfile))?;
    let mut body = store.open_blob(&blob.digest).map_err(store_err)?;
    std::io::copy(&mut body, &mut out).map_err(io("writing", &dockerfile))?;
    Ok(UrlContext {
        context,
        dockerfile: Some(dockerfile),
        _scratch: scratch,
    })
}
