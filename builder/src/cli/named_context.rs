//! Fetching the git and HTTP `--build-context`s before the build (see `graph::named` for what
//! each value is), so that the engine sees only directories:
//!
//! - a git URL is checked out as a git URL context is ([`super::git_context::materialise`]:
//!   the commit `#ref` names, its `subdir`, without `.git`);
//! - another `http(s)://` URL is downloaded as `ADD <url>` downloads (`solver::remote::http`) and
//!   becomes a directory holding one file, `context`: BuildKit's `llb.HTTP(url,
//!   llb.Filename("context"))` for a named context, which it never unpacks — mode 0600 and the
//!   server's `Last-Modified` as mtime (the epoch without one), as its HTTP source writes it.
//!
//! The files live in scratch directories of the store, removed when the build's options are
//! dropped.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use rbuild_layers::store::{ScratchDir, Store, StoreError};

use crate::dockerfile::remote::redact;
use crate::graph::named::{Named, NamedContexts};
use crate::solver::remote::http::{fetch, HttpError};

/// Why a git or HTTP named context could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchContextError {
    #[error("--build-context {name}: {source}")]
    Git {
        name: String,
        #[source]
        source: super::git_context::GitContextError,
    },
    #[error("--build-context {name}={url}: {source}")]
    Http {
        name: String,
        url: String,
        #[source]
        source: Box<HttpError>,
    },
    #[error("--build-context {name}: {what} {}", path.display())]
    Io {
        name: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--build-context {name}: {source}")]
    Store {
        name: String,
        #[source]
        source: StoreError,
    },
}

/// What a fetched named context keeps alive.
#[derive(Debug)]
pub enum Fetched {
    Git(super::git_context::GitContext),
    Http(ScratchDir),
}

/// Fetches every git and HTTP context of `named` and points them at their directories.
pub fn fetch_all(
    named: &mut NamedContexts,
    store_root: &std::path::Path,
) -> Result<Vec<Arc<Fetched>>, FetchContextError> {
    let remote = named.remote();
    if remote.is_empty() {
        return Ok(Vec::new());
    }
    let mut held = Vec::new();
    for (key, value) in remote {
        let name = named.name_of(&key).unwrap_or(&key).to_string();
        let (dir, kept) = match value {
            Named::Git(url) => {
                let g = super::git_context::materialise(&url, || {
                    Store::scratch_dir_at(store_root, "namedgit")
                })
                .map_err(|source| FetchContextError::Git {
                    name: name.clone(),
                    source,
                })?;
                (g.dir.clone(), Fetched::Git(g))
            }
            Named::Http(url) => {
                let store = Store::open(store_root).map_err(|source| FetchContextError::Store {
                    name: name.clone(),
                    source,
                })?;
                let scratch = download(&store, &name, &url)?;
                (scratch.path().join("context"), Fetched::Http(scratch))
            }
            Named::Image(_) | Named::Dir { .. } => continue,
        };
        named.set_dir(&key, dir);
        held.push(Arc::new(kept));
    }
    Ok(held)
}

/// `url` downloaded as `<scratch>/context/context`.
fn download(store: &Store, name: &str, url: &str) -> Result<ScratchDir, FetchContextError> {
    let blob = fetch(store, url, None, &|_, _| {}).map_err(|source| FetchContextError::Http {
        name: name.to_string(),
        url: redact(url),
        source: Box::new(source),
    })?;
    let store_err = |source| FetchContextError::Store {
        name: name.to_string(),
        source,
    };
    let io = |what, path: &std::path::Path| {
        let name = name.to_string();
        let path = path.to_path_buf();
        move |source| FetchContextError::Io {
            name,
            what,
            path,
            source,
        }
    };
    let scratch = store.scratch_dir("namedhttp").map_err(store_err)?;
    let dir = scratch.path().join("context");
    std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
    let file = dir.join("context");
    let mut out = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(io("writing", &file))?
    };
    let mut body = store.open_blob(&blob.digest).map_err(store_err)?;
    std::io::copy(&mut body, &mut out).map_err(io("writing", &file))?;
    out.flush().map_err(io("writing", &file))?;
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(blob.mtime().max(0) as u64);
    out.set_modified(mtime)
        .map_err(io("setting the mtime of", &file))?;
    Ok(scratch)
}
