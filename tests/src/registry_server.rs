//! A private CNCF distribution registry (`docker-registry`) for a test that must stop and
//! restart it; plain HTTP on 127.0.0.1, storage under the test's scratch directory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry, stopped when dropped.
pub struct RegistryServer {
    child: Option<Child>,
    pub addr: String,
    pub data: PathBuf,
    config: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RegistryServer {
    /// Starts a registry with its files under `dir`; `None` when docker-registry is missing
    /// and tools are optional.
    pub fn start(dir: &Path) -> Option<RegistryServer> {
        Self::start_with(dir, "")
    }

    /// Like [`RegistryServer::start`], with `extra` appended to the configuration (YAML).
    pub fn start_with(dir: &Path, extra: &str) -> Option<RegistryServer> {
        if !crate::have_tool("docker-registry") {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let data = dir.join("data");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{extra}",
                data.display()
            ),
        )
        .unwrap();
        let mut s = RegistryServer {
            child: None,
            addr,
            data,
            config,
        };
        s.restart();
        Some(s)
    }

    /// Kills the registry (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same storage and port, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&self.addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}
