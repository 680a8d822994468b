//! One corpus case: `testdata/differential/<name>/` with a `Dockerfile`, a `context/`, an
//! optional `case.toml` and the cached `buildkit.json`. Loading, the content key that says
//! whether the cached reference is current, and preparing a build context from it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The harness's format version: part of every key, so that a change in what a reference holds
/// (listing fields, config normalisation) makes every reference stale.
pub const FORMAT: u32 = 1;

/// What a case expects of rbuild.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The same image as BuildKit (or a failure where BuildKit fails too).
    #[default]
    Identical,
    /// rbuild refuses with exit 2 (where identical is impossible; `reason` says why).
    Refused,
}

/// `case.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub build_args: Vec<String>,
    /// Shell commands run (as root, by `sh -e`) in the copy of `context/` before building.
    #[serde(default)]
    pub setup: Option<String>,
    #[serde(default)]
    pub expect: Expect,
    /// Why a refused case cannot be identical.
    #[serde(default)]
    pub reason: Option<String>,
    /// For a refused case: text rbuild's error must contain.
    #[serde(default)]
    pub error: Option<String>,
    /// Files where current BuildKit deliberately differs from the Docker 20.10 reference and
    /// rbuild follows current BuildKit (each with the BuildKit change that says so).
    #[serde(default)]
    pub newer_buildkit: Vec<NewerBuildkit>,
}

/// A file that current BuildKit makes differently from the Docker 20.10 reference: the
/// reference's entry at `path` takes `text` as its content and/or `mode` as its permission bits
/// (octal, as listed) before the comparison; every other field of it and every other path are
/// still compared.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewerBuildkit {
    pub path: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    /// The BuildKit change (version, commit or CVE) that made the difference.
    pub why: String,
}

/// A loaded case.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub spec: Spec,
    /// For a case with a `served/` directory: its URL on the run's file server
    /// ([`super::served`]), passed to both builders as `--build-arg HTTP=…`.
    pub http: Option<String>,
}

impl Case {
    pub fn dockerfile(&self) -> PathBuf {
        self.dir.join("Dockerfile")
    }

    pub fn reference_path(&self) -> PathBuf {
        self.dir.join("buildkit.json")
    }

    /// The case's files for `ADD <URL>`, served over HTTP during the run.
    pub fn served_dir(&self) -> PathBuf {
        self.dir.join("served")
    }

    /// The build arguments both builders get, `BASE` first, then `HTTP` for a served case.
    pub fn build_args(&self, base: &str) -> Vec<String> {
        let mut args = vec![format!("BASE={base}")];
        if let Some(url) = &self.http {
            args.push(format!("HTTP={url}"));
        }
        args.extend(self.spec.build_args.iter().cloned());
        args
    }

    /// Copies `context/` to `dest` and runs the case's setup there.
    pub fn prepare_context(&self, dest: &Path) -> Result<(), String> {
        let src = self.dir.join("context");
        if src.is_dir() {
            let out = Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(dest)
                .output()
                .map_err(|e| format!("cp: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "copying {}: {}",
                    src.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        } else {
            std::fs::create_dir_all(dest).map_err(|e| format!("mkdir {}: {e}", dest.display()))?;
        }
        // A checkout gives the context files the time of the checkout; a setup that archives
        // them (`tar -cf … | zstd`, copied as it is) would then make bytes that differ from the
        // ones the stored BuildKit reference was built from. One fixed time makes setups repeat.
        let out = Command::new("find")
            .arg(dest)
            .args(["-exec", "touch", "-h", "-d", "@946684800", "{}", "+"])
            .output()
            .map_err(|e| format!("find: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "fixing the times of {}: {}",
                dest.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if let Some(setup) = &self.spec.setup {
            let out = Command::new("sh")
                .args(["-ec", setup])
                .current_dir(dest)
                .output()
                .map_err(|e| format!("sh: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "case.toml setup failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    }

    /// sha256 over the harness format, the base image's key and every file of the case except
    /// `buildkit.json` (path, whether executable, content; symlinks by target).
    pub fn key(&self, base_key: &str) -> Result<String, String> {
        let mut h = Sha256::new();
        h.update(format!(
            "rbuild-differential format {FORMAT}\nbase {base_key}\n"
        ));
        let mut files = Vec::new();
        collect(&self.dir, "", &mut files)?;
        files.sort();
        for rel in files {
            if rel == "buildkit.json" {
                continue;
            }
            let p = self.dir.join(&rel);
            let md =
                std::fs::symlink_metadata(&p).map_err(|e| format!("lstat {}: {e}", p.display()))?;
            if md.file_type().is_symlink() {
                let t =
                    std::fs::read_link(&p).map_err(|e| format!("readlink {}: {e}", p.display()))?;
                h.update(format!("symlink {rel} -> {}\n", t.display()));
            } else if md.is_dir() {
                h.update(format!("dir {rel}\n"));
            } else {
                let exec = md.permissions().mode() & 0o111 != 0;
                let content =
                    std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
                h.update(format!("file {rel} exec={exec} len={}\n", content.len()));
                h.update(&content);
            }
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }
}

fn collect(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), String> {
    for d in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let d = d.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let name = d.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = d.file_type().map_err(|e| format!("lstat {child}: {e}"))?;
        if ft.is_dir() {
            out.push(child.clone());
            collect(&d.path(), &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

/// Every case under `root`, sorted by name; `only` keeps the names containing it.
pub fn load_all(root: &Path, only: Option<&str>) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for d in std::fs::read_dir(root).map_err(|e| format!("reading {}: {e}", root.display()))? {
        let d = d.map_err(|e| format!("reading {}: {e}", root.display()))?;
        if !d.path().join("Dockerfile").is_file() {
            continue;
        }
        let name = d.file_name().to_string_lossy().into_owned();
        if only.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let toml_path = d.path().join("case.toml");
        let spec = if toml_path.is_file() {
            let text = std::fs::read_to_string(&toml_path)
                .map_err(|e| format!("reading {}: {e}", toml_path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", toml_path.display()))?
        } else {
            Spec::default()
        };
        cases.push(Case {
            name,
            dir: d.path(),
            spec,
            http: None,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}
