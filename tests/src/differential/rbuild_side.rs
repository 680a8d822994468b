//! The builder under test: `rbuild build` into an OCI layout directory, flattened the same way as
//! BuildKit's image.

use std::path::Path;

use super::base::Base;
use super::case::Case;
use super::outcome::{self, Outcome};
use super::unpack;

/// rbuild's result for a case, with its exit code and error output (for refused cases).
pub struct RbuildResult {
    pub outcome: Outcome,
    pub code: i32,
    pub stderr: String,
}

/// Builds `case` from the prepared context `ctx` with the store `store`; work files under `work`.
pub fn build(
    case: &Case,
    ctx: &Path,
    base: &Base,
    store: &Path,
    work: &Path,
) -> Result<RbuildResult, String> {
    let layout = work.join("rbuild-oci");
    let mut cmd = crate::rbuild(store);
    cmd.arg("build")
        .arg(ctx)
        .arg("-f")
        .arg(case.dockerfile())
        .args(["--progress", "plain", "--tag"])
        .arg(format!("rbuild-differential/{}:1", case.name))
        .arg("-o")
        .arg(format!("type=oci,dest={},tar=false", layout.display()));
    for a in case.build_args(&base.reference) {
        cmd.arg("--build-arg").arg(a);
    }
    if let Some(t) = &case.spec.target {
        cmd.arg("--target").arg(t);
    }
    let out = cmd.output().map_err(|e| format!("rbuild build: {e}"))?;
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if code != 0 {
        return Ok(RbuildResult {
            outcome: Outcome::Failed {
                error: outcome::tail(&stderr, 3),
            },
            code,
            stderr,
        });
    }
    let tag = unpack::first_ref_name(&layout)?;
    let rootfs = work.join("rbuild-rootfs");
    unpack::unpack(&layout, &tag, &rootfs)?;
    let config = unpack::config(&layout, &tag)?;
    Ok(RbuildResult {
        outcome: outcome::built(&base.entries, &rootfs, &config)?,
        code,
        stderr,
    })
}
