//! `RUN --mount=type=ssh`: the client's ssh agent, reachable from the sandbox through a socket
//! of rbuild's own, as BuildKit does.
//!
//! The agent's socket is never bound into the sandbox itself: its owner and mode belong to the
//! host user, while the step needs the mount's `uid`, `gid` and `mode` (default root, `0600`).
//! So rbuild listens on a fresh socket in the step's scratch directory, with those, which the
//! sandbox binds at the target; every connection the step makes is relayed, byte for byte, to a
//! new connection to the agent. Only agent protocol messages pass (signatures, never a key), and
//! rbuild neither reads nor logs them. The socket lives in a directory only root may enter, so
//! that no other user of the host can reach the agent through it (the mount's `uid` makes the
//! socket itself theirs). The listener lives as long as the step: dropping the [`AgentProxy`]
//! closes it and removes its socket.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where BuildKit puts the `n`th ssh mount of a RUN (0-based) that names no target.
pub(super) fn default_target(n: usize) -> String {
    format!("/run/buildkit/ssh_agent.{n}")
}

/// A listening socket that relays each connection to an ssh agent.
pub(super) struct AgentProxy {
    path: PathBuf,
    listener: OwnedFd,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens on `dir/ssh-agents/name` (owned `uid:gid`, mode `mode`; the directory is made
    /// mode 0700) and relays to `agent`.
    pub(super) fn start(
        agent: &Path,
        dir: &Path,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> std::io::Result<AgentProxy> {
        let dir = private_dir(dir)?;
        let path = dir.join(name);
        let listener = bind_in(&dir, name)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        let handle = OwnedFd::from(listener.try_clone()?);
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_path_buf();
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ssh-agent-proxy".into())
            .spawn(move || accept_loop(&listener, &agent, &stopped))?;
        Ok(AgentProxy {
            path,
            listener: handle,
            stop,
            thread: Some(thread),
        })
    }

    /// The host path of the listening socket (what the sandbox binds).
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: shutdown on a socket fd we own; on Linux it wakes a blocked accept().
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `parent/ssh-agents`, created mode 0700 (or already there from an earlier ssh mount of the
/// step).
fn private_dir(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = parent.join("ssh-agents");
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
        Err(e) => Err(e),
    }
}

/// Binds `dir/name` through `/proc/self/fd/<dir>`, so that a deep scratch directory does not hit
/// the 108-byte limit of a socket address.
fn bind_in(dir: &Path, name: &str) -> std::io::Result<UnixListener> {
    let d = std::fs::File::open(dir)?;
    UnixListener::bind(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()))
}

fn accept_loop(listener: &UnixListener, agent: &Path, stop: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((conn, _)) => {
                let agent = agent.to_path_buf();
                let _ = std::thread::Builder::new()
                    .name("ssh-agent-relay".into())
                    .spawn(move || relay(conn, &agent));
            }
            // A connection that went away before it was accepted; keep serving.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
            Err(_) => return,
        }
    }
}

/// Copies bytes both ways between the step's connection and a new one to the agent until
/// either side closes. An agent that cannot be reached closes the step's connection, which its
/// ssh client reports as an agent failure.
fn relay(conn: UnixStream, agent: &Path) {
    let Ok(upstream) = UnixStream::connect(agent) else {
        return;
    };
    let (Ok(conn2), Ok(upstream2)) = (conn.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .name("ssh-agent-relay".into())
        .spawn(move || pipe(upstream2, conn2));
    pipe(conn, upstream);
    if let Ok(t) = back {
        let _ = t.join();
    }
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    let _ = from.shutdown(std::net::Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A stand-in agent that answers each message with its bytes reversed.
    fn echo_agent(path: &Path) -> JoinHandle<()> {
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().take(2) {
                let mut c = c.unwrap();
                let mut buf = Vec::new();
                c.read_to_end(&mut buf).unwrap();
                buf.reverse();
                c.write_all(&buf).unwrap();
            }
        })
    }

    #[test]
    fn each_connection_is_relayed_to_the_agent_and_the_socket_has_the_mounts_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent.sock");
        let served = echo_agent(&agent);
        let deep = dir.path().join("x".repeat(100));
        std::fs::create_dir(&deep).unwrap();
        let proxy = AgentProxy::start(&agent, &deep, "ssh-0.sock", 0o640, 1000, 5).unwrap();
        let md = std::fs::metadata(proxy.path()).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o640);
        assert_eq!((md.uid(), md.gid()), (1000, 5));
        let private = proxy.path().parent().unwrap();
        assert_eq!(private, deep.join("ssh-agents"));
        let private_mode = std::fs::metadata(private).unwrap().permissions().mode();
        assert_eq!(private_mode & 0o777, 0o700, "no other host user reaches it");
        let deep_fd = std::fs::File::open(private).unwrap();
        for msg in ["hello", "again"] {
            let mut c =
                UnixStream::connect(format!("/proc/self/fd/{}/ssh-0.sock", deep_fd.as_raw_fd()))
                    .unwrap();
            c.write_all(msg.as_bytes()).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = String::new();
            c.read_to_string(&mut back).unwrap();
            assert_eq!(back, msg.chars().rev().collect::<String>());
        }
        served.join().unwrap();
        let path = proxy.path().to_path_buf();
        drop(proxy);
        assert!(!path.exists(), "the socket is removed with the proxy");
    }

    #[test]
    fn an_unreachable_agent_closes_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let proxy =
            AgentProxy::start(&dir.path().join("gone.sock"), dir.path(), "s", 0o600, 0, 0).unwrap();
        let mut c = UnixStream::connect(proxy.path()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(c.read_to_end(&mut buf).unwrap_or(0), 0);
    }
}
