//! Support for rbuild's end-to-end tests: locating the built binary, running it with its own
//! store, making base images with independent tools, and checking that required tools exist.
//!
//! The README test command (`bash tests/run.sh`) sets `RBUILD_REQUIRE_TOOLS=1`, so that a missing
//! tool fails the suite there; a bare `cargo test` on a machine without them prints why a test
//! skipped instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod build;
pub mod container;
pub mod crun;
pub mod differential;
pub mod fault_proxy;
pub mod image;
pub mod multiarch;
pub mod oci;
pub mod pipeline;
pub mod progress;
pub mod registry_http;
pub mod registry_server;
pub mod tls;
pub mod token_server;

/// The `rbuild` binary built by `cargo build` (or `$RBUILD_BIN`).
pub fn rbuild_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RBUILD_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/rbuild
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("rbuild");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p rbuild` first (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// Whether the README test command asked for every tool to be present.
pub fn tools_required() -> bool {
    std::env::var("RBUILD_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Returns whether `tool` is on PATH; when it is not, fails under `RBUILD_REQUIRE_TOOLS=1` and
/// otherwise prints why the calling test is skipped.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !tools_required(),
            "{tool} is required by this test (RBUILD_REQUIRE_TOOLS=1); install it or run bash tests/run.sh"
        );
        eprintln!("SKIPPED: {tool} is not installed (bash tests/run.sh installs it)");
    }
    found
}

/// A scratch directory for one test, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    match std::env::var_os("RBUILD_TEST_SCRATCH") {
        Some(dir) => tempfile::Builder::new()
            .prefix("t-")
            .tempdir_in(dir)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// A command for the rbuild binary with a private store under `store`.
pub fn rbuild(store: &Path) -> Command {
    let mut c = Command::new(rbuild_bin());
    c.env("RBUILD_STORE", store)
        .env_remove("SOURCE_DATE_EPOCH")
        // The machine's /etc/containers/registries.conf never changes what a test builds
        // (mirror tests point this at their own file).
        .env("RBUILD_REGISTRIES_CONF", "/dev/null")
        // buildx's default attestation (provenance mode=min on push) makes every pushed image
        // an index; the tests that compare pushed digests predate it. The attestation tests
        // (e2e `build_attestations`) remove this to test the default.
        .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
        .env("NO_COLOR", "1");
    c
}

/// Output of a finished command, with both streams as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the command exited 0.
    pub fn success(self) -> Run {
        assert_eq!(
            self.code, 0,
            "command failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Run {
    Run::from_output(cmd.output().expect("spawn command"))
}

/// The repository root (for `testdata/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The test registry started by tests/run.sh (`127.0.0.1:PORT`), if any.
pub fn test_registry() -> Option<String> {
    static REG: OnceLock<Option<String>> = OnceLock::new();
    REG.get_or_init(|| std::env::var("RBUILD_TEST_REGISTRY").ok())
        .clone()
}
