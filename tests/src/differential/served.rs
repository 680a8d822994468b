//! The file server of a run, for cases that `ADD` an http URL: Python's `http.server` on
//! 127.0.0.1 serving `testdata/differential/`, so that a case's `served/` directory is at
//! `http://127.0.0.1:PORT/<case>/served/`. Both builders reach it (BuildKit builds with
//! `--network host`). It sends `Last-Modified`, from which both builders take the file's mtime
//! (mtimes are not compared), and no `Content-Disposition`.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The running server, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Server {
    /// Serves `root`; the server's request log goes to `scratch/http.log`.
    pub fn start(root: &Path, scratch: &Path) -> Result<Server, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let log = std::fs::File::create(scratch.join("http.log"))
            .map_err(|e| format!("creating http.log: {e}"))?;
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting python3 -m http.server: {e}"))?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the file server on port {port} did not start"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
