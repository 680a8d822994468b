//! The differential corpus against Docker's BuildKit: every case in `testdata/differential/`
//! must build the same image with rbuild as with BuildKit (docs/differential.md).
//!
//! Environment: `RBUILD_TEST_REGISTRY` (set by tests/run.sh; otherwise a private registry is
//! started), `RBUILD_DIFFERENTIAL_CASES=SUBSTRING` (run only matching cases),
//! `RBUILD_DIFFERENTIAL_REFRESH=1` (rebuild every reference with BuildKit),
//! `RBUILD_DIFFERENTIAL_JOBS=N` (cases at once, default 2), `RBUILD_REQUIRE_DIFFERENTIAL=1`
//! (a case that cannot be checked fails instead of skipping; tests/run.sh sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rbuild_tests::differential::{self, Options, Verdict};
use rbuild_tests::registry_server::RegistryServer;
use rbuild_tests::{repo_root, scratch, test_registry};

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// Whether the corpus can run at all here; prints why not (or fails when it is required).
fn can_run(require: bool) -> bool {
    let mut missing = Vec::new();
    // SAFETY-free check for root: umoci applies owners and device nodes only as root.
    let uid = std::process::Command::new("id").arg("-u").output().ok();
    if uid.is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0") {
        missing.push("root (umoci raw unpack keeps owners and devices only as root)".to_string());
    }
    for tool in ["umoci", "skopeo", "busybox"] {
        let found = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool} >/dev/null"))
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(tool.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !require,
        "the differential corpus is required (RBUILD_REQUIRE_DIFFERENTIAL=1) but needs: {}",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED: the differential corpus needs {}",
        missing.join(", ")
    );
    false
}

#[test]
fn corpus_builds_what_buildkit_builds() {
    let require = env_flag("RBUILD_REQUIRE_DIFFERENTIAL");
    if !can_run(require) {
        return;
    }
    let dir = scratch();
    let own_registry;
    let registry = match test_registry() {
        Some(r) => r,
        None => {
            own_registry = RegistryServer::start(&dir.path().join("registry"));
            match &own_registry {
                Some(r) => r.addr.clone(),
                None => return,
            }
        }
    };
    let opts = Options {
        cases_root: repo_root().join("testdata/differential"),
        only: std::env::var("RBUILD_DIFFERENTIAL_CASES").ok(),
        refresh: env_flag("RBUILD_DIFFERENTIAL_REFRESH"),
        require,
        jobs: std::env::var("RBUILD_DIFFERENTIAL_JOBS")
            .ok()
            .and_then(|j| j.parse().ok())
            .unwrap_or(2),
        registry,
        scratch: dir.path().to_path_buf(),
        limit: 12,
    };
    let reports = differential::run(&opts).unwrap_or_else(|e| panic!("differential corpus: {e}"));
    eprintln!("{}", differential::render(&reports));
    let failing: Vec<&str> = reports
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Differs(_) | Verdict::Broken(_)))
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        failing.is_empty(),
        "{} of {} cases differ from BuildKit: {}",
        failing.len(),
        reports.len(),
        failing.join(", ")
    );
}
