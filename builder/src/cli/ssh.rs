//! `--ssh default|ID[=SOCKET]` specifications (buildx's `--ssh`), for `RUN --mount=type=ssh`.
//!
//! rbuild forwards ssh *agent sockets* only. BuildKit also accepts private key files and loads
//! them into an agent of its own; rbuild refuses them with an error that says how to load the
//! key into `ssh-agent` instead, so that it never reads a key (nothing of a key can then reach a
//! layer, a log or the cache). The socket is checked here, at the edge: an `ID` without a path
//! means `$SSH_AUTH_SOCK` (as in buildx), and the path is made absolute.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

pub use crate::solver::inputs::{SshSpec, DEFAULT_ID};

/// Why an `--ssh` value is not valid.
#[derive(Debug, thiserror::Error)]
pub enum SshSpecError {
    #[error("--ssh {id}: no agent socket given and SSH_AUTH_SOCK is not set: start an agent (`eval $(ssh-agent)`, then `ssh-add KEYFILE`) or pass --ssh {id}=SOCKET")]
    NoAgent { id: String },
    #[error("--ssh {id}={}: cannot use the agent socket", path.display())]
    Stat {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--ssh {id}={}: rbuild forwards ssh agent sockets only and never reads private key files: load the key into an agent (`eval $(ssh-agent)`, then `ssh-add {}`) and pass --ssh {id} (or --ssh {id}=$SSH_AUTH_SOCK)", path.display(), path.display())]
    KeyFile { id: String, path: PathBuf },
    #[error("--ssh {id}={}: not a socket (expected the Unix socket of an ssh agent, such as $SSH_AUTH_SOCK)", path.display())]
    NotSocket { id: String, path: PathBuf },
    #[error("--ssh {id}: only one agent socket may be given for an id")]
    SeveralPaths { id: String },
    #[error("--ssh id {0:?} is given twice")]
    Duplicate(String),
}

impl SshSpec {
    /// Parses one `--ssh` value; `auth_sock` is `$SSH_AUTH_SOCK` (empty counts as unset) and
    /// `cwd` what a relative socket path is relative to.
    pub fn parse(
        input: &str,
        auth_sock: Option<&str>,
        cwd: &Path,
    ) -> Result<SshSpec, SshSpecError> {
        let (id, paths) = match input.split_once('=') {
            Some((id, paths)) => (id, paths.split(',').filter(|p| !p.is_empty()).collect()),
            None => (input, Vec::new()),
        };
        let id = if id.is_empty() { DEFAULT_ID } else { id }.to_owned();
        let path = match paths.as_slice() {
            [] => match auth_sock.filter(|s| !s.is_empty()) {
                Some(s) => s,
                None => return Err(SshSpecError::NoAgent { id }),
            },
            [one] => *one,
            _ => {
                // Several paths are key files in buildx (at most one may be a socket).
                if let Some(key) = paths.iter().find(|p| !is_socket(&cwd.join(p))) {
                    return Err(SshSpecError::KeyFile {
                        id,
                        path: PathBuf::from(key),
                    });
                }
                return Err(SshSpecError::SeveralPaths { id });
            }
        };
        let socket = cwd.join(path);
        let md = std::fs::metadata(&socket).map_err(|source| SshSpecError::Stat {
            id: id.clone(),
            path: socket.clone(),
            source,
        })?;
        if md.file_type().is_socket() {
            Ok(SshSpec { id, socket })
        } else if md.is_file() {
            Err(SshSpecError::KeyFile { id, path: socket })
        } else {
            Err(SshSpecError::NotSocket { id, path: socket })
        }
    }

    /// Parses every `--ssh` value, refusing an id given twice (as BuildKit's ssh provider).
    pub fn parse_all(
        inputs: &[String],
        auth_sock: Option<&str>,
        cwd: &Path,
    ) -> Result<Vec<SshSpec>, SshSpecError> {
        let mut specs: Vec<SshSpec> = Vec::new();
        for input in inputs {
            let spec = SshSpec::parse(input, auth_sock, cwd)?;
            if specs.iter().any(|s| s.id == spec.id) {
                return Err(SshSpecError::Duplicate(spec.id));
            }
            specs.push(spec);
        }
        Ok(specs)
    }
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        _listener: std::os::unix::net::UnixListener,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock")).unwrap();
        std::fs::write(
            dir.path().join("id_ed25519"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        Fixture {
            dir,
            _listener: listener,
        }
    }

    #[test]
    fn default_and_a_bare_id_use_ssh_auth_sock() {
        let f = fixture();
        let sock = f.dir.path().join("agent.sock");
        let sock_s = sock.to_str().unwrap();
        for (input, id) in [("default", "default"), ("gh", "gh"), ("=", "default")] {
            let s = SshSpec::parse(input, Some(sock_s), Path::new("/")).unwrap();
            assert_eq!(
                s,
                SshSpec {
                    id: id.into(),
                    socket: sock.clone()
                }
            );
        }
        let e = SshSpec::parse("default", Some(""), Path::new("/")).unwrap_err();
        assert!(matches!(e, SshSpecError::NoAgent { .. }), "{e}");
        assert!(e.to_string().contains("SSH_AUTH_SOCK is not set"), "{e}");
    }

    #[test]
    fn a_relative_socket_path_is_made_absolute() {
        let f = fixture();
        let s = SshSpec::parse("gh=agent.sock", None, f.dir.path()).unwrap();
        assert_eq!(s.socket, f.dir.path().join("agent.sock"));
        assert!(s.socket.is_absolute());
    }

    #[test]
    fn a_private_key_file_is_refused_with_how_to_load_it_into_an_agent() {
        let f = fixture();
        for input in ["default=id_ed25519", "default=id_ed25519,agent.sock"] {
            let e = SshSpec::parse(input, None, f.dir.path()).unwrap_err();
            assert!(matches!(e, SshSpecError::KeyFile { .. }), "{input}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("never reads private key files"), "{msg}");
            assert!(msg.contains("ssh-add"), "{msg}");
        }
    }

    #[test]
    fn missing_paths_directories_and_duplicate_ids_are_refused() {
        let f = fixture();
        let d = f.dir.path();
        assert!(matches!(
            SshSpec::parse("x=nope.sock", None, d),
            Err(SshSpecError::Stat { .. })
        ));
        assert!(matches!(
            SshSpec::parse("x=.", None, d),
            Err(SshSpecError::NotSocket { .. })
        ));
        let sock = d.join("agent.sock");
        let both = ["default".to_owned(), format!("default={}", sock.display())];
        assert!(matches!(
            SshSpec::parse_all(&both, sock.to_str(), d),
            Err(SshSpecError::Duplicate(id)) if id == "default"
        ));
    }
}
