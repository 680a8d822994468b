//! CI pipeline runs for the build-cache export/import tests: each run is a fresh runner (a new,
//! empty store) building the development and production targets of testdata/cache/python-style
//! against one shared registry, reached through a counting proxy so that a test sees exactly
//! which blobs its own runs downloaded, whatever else the parallel suite does to the registry.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::build::{build_cmd, busybox_base_with, metadata};
use crate::fault_proxy::{self, Fault, FaultProxy, Request};
use crate::progress::{op_steps, Step};
use crate::{registry_http, run, Run};

/// The pipeline's image tag (a branch name: every run pushes to it, so digests compare).
pub const TAG: &str = "main";

/// The fixture's application file the tests edit to change the code and nothing else.
pub const APP_FILE: &str = "lib/greeting.py";

/// One project's pipeline: its sources, a repository namespace of its own in the registry, and
/// the counting proxy every run goes through.
pub struct Pipeline {
    /// Scratch directory (stores, metadata files, local caches).
    pub dir: PathBuf,
    /// The registry itself (`127.0.0.1:PORT`), for reads that must not be counted.
    pub registry: String,
    /// The proxy in front of it; image and cache references use `proxy.addr` as their host.
    pub proxy: FaultProxy,
    /// The namespace (`e2e-cache/<test>`) that keeps this test's repositories apart.
    pub namespace: String,
    /// The build context: a copy of testdata/cache/python-style.
    pub src: PathBuf,
    /// The busybox base image, pushed before the first run.
    pub base: String,
    runs: std::cell::Cell<usize>,
}

/// What one run did.
pub struct PipelineRun {
    pub run: Run,
    /// The build steps that do work, as the plain progress reported them.
    pub steps: Vec<Step>,
    /// `--metadata-file` of the run.
    pub meta: Value,
    /// Every request the run sent to the registry.
    pub requests: Vec<Request>,
}

impl Pipeline {
    /// Copies the fixture, starts the counting proxy and pushes the base image through it.
    /// `None` when a tool is missing and tools are optional.
    pub fn new(dir: &Path, registry: &str, name: &str) -> Option<Pipeline> {
        let proxy = fault_proxy::start(registry, Fault::None);
        let namespace = format!("e2e-cache/{name}");
        let base = format!("{}/{namespace}/busybox:1", proxy.addr);
        if !busybox_base_with(dir, &dir.join("base-store"), &base, &["--push"]) {
            return None;
        }
        let src = dir.join("src");
        run(Command::new("cp")
            .arg("-R")
            .arg(crate::repo_root().join("testdata/cache/python-style"))
            .arg(&src))
        .success();
        Some(Pipeline {
            dir: dir.to_path_buf(),
            registry: registry.to_string(),
            proxy,
            namespace,
            src,
            base,
            runs: std::cell::Cell::new(0),
        })
    }

    /// `HOST/<namespace>/<repo>` through the proxy.
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{}/{repo}", self.proxy.addr, self.namespace)
    }

    /// The repository path in the registry (no host) of `repo`.
    pub fn path(&self, repo: &str) -> String {
        format!("{}/{repo}", self.namespace)
    }

    /// Runs `rbuild build` of both targets with a fresh store, the base image as `BASE`,
    /// `--tag <image repo>:main --push` and `args`; returns whatever happened (see
    /// [`PipelineRun::ok`]).
    pub fn run(&self, image_repo: &str, args: &[&str]) -> PipelineRun {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let store = self.dir.join(format!("store-{n}"));
        let meta = self.dir.join(format!("meta-{n}.json"));
        self.proxy.clear();
        let tag = format!("{}:{TAG}", self.repo(image_repo));
        let out = run(build_cmd(&store, &self.src)
            .args(["--target", "development", "--target", "production"])
            .args(["--build-arg", &format!("BASE={}", self.base)])
            .args(["--tag", &tag, "--push"])
            .args(["--metadata-file", meta.to_str().expect("utf-8 path")])
            .args(args));
        let requests = self.proxy.requests();
        // Build steps only (`[stage n/m] …`): pushes and cache exports are progress steps too.
        let steps = op_steps(&out.stderr)
            .into_iter()
            .filter(|s| s.name.starts_with('['))
            .collect();
        let meta = if meta.exists() {
            metadata(&meta)
        } else {
            Value::Null
        };
        PipelineRun {
            run: out,
            steps,
            meta,
            requests,
        }
    }

    /// Changes the application code (one file copied by production's `COPY . .` only).
    pub fn edit_app(&self) {
        let p = self.src.join(APP_FILE);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("\n\ndef farewell(name):\n    return f\"Goodbye, {name}!\\n\"\n");
        std::fs::write(&p, text).unwrap();
    }

    /// Puts the application file back as the fixture has it.
    pub fn restore_app(&self) {
        std::fs::copy(
            crate::repo_root()
                .join("testdata/cache/python-style")
                .join(APP_FILE),
            self.src.join(APP_FILE),
        )
        .unwrap();
    }

    /// The manifest `<namespace>/<repo>:<reference>`, read from the registry directly.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Value> {
        registry_http::manifest(&self.registry, &self.path(repo), reference)
    }

    /// The layer digests of the base image and of both targets of `<image_repo>:main`.
    pub fn image_layers(&self, image_repo: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let base = self
            .manifest("busybox", "1")
            .expect("the base image was pushed");
        out.extend(registry_http::layer_digests(&base));
        for target in ["development", "production"] {
            let m = self
                .manifest(image_repo, &format!("{TAG}-{target}"))
                .unwrap_or_else(|| panic!("{image_repo}:{TAG}-{target} was pushed"));
            out.extend(registry_http::layer_digests(&m));
        }
        out
    }
}

impl PipelineRun {
    /// Panics with both streams unless rbuild exited 0.
    pub fn ok(self) -> PipelineRun {
        assert_eq!(
            self.run.code, 0,
            "rbuild failed\n--- stdout\n{}\n--- stderr\n{}",
            self.run.stdout, self.run.stderr
        );
        self
    }

    /// `containerimage.digest` of `target`.
    pub fn digest(&self, target: &str) -> String {
        self.meta[target]["containerimage.digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest for {target} in {}", self.meta))
            .to_string()
    }

    /// (development, production) image digests.
    pub fn digests(&self) -> (String, String) {
        (self.digest("development"), self.digest("production"))
    }

    /// Successful `GET …/blobs/<digest>` of any digest in `layers`.
    pub fn layer_gets(&self, layers: &BTreeSet<String>) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.status == 200)
            .filter(|r| r.blob_get().is_some_and(|(_, d)| layers.contains(d)))
            .collect()
    }

    /// Every blob GET, for failure messages.
    pub fn blob_gets(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| r.blob_get().is_some())
            .map(|r| {
                format!(
                    "{} {} -> {} ({} B)",
                    r.method, r.path, r.status, r.body_bytes
                )
            })
            .collect()
    }

    /// Bytes of every response body the registry sent this run.
    pub fn bytes_received(&self) -> u64 {
        self.requests.iter().map(|r| r.body_bytes).sum()
    }

    /// The `WARNING: ` lines rbuild printed on stderr (BuildKit's spelling).
    pub fn warnings(&self) -> Vec<&str> {
        self.run
            .stderr
            .lines()
            .filter(|l| l.starts_with("WARNING: "))
            .collect()
    }

    /// Panics unless some warning mentions the cache and `what` (a ref or a directory).
    pub fn assert_cache_warning(&self, what: &str) {
        assert!(
            self.warnings()
                .iter()
                .any(|w| w.contains("cache") && w.contains(what)),
            "expected a `WARNING: ` line about the cache {what}; stderr:\n{}",
            self.run.stderr
        );
    }

    /// The steps' names and whether each was cached, for failure messages.
    pub fn step_table(&self) -> Vec<(String, bool)> {
        self.steps
            .iter()
            .map(|s| (s.name.clone(), s.cached))
            .collect()
    }

    /// Whether `name_part` names a step and that step was CACHED.
    pub fn cached(&self, name_part: &str) -> bool {
        let s = self
            .steps
            .iter()
            .find(|s| s.name.contains(name_part))
            .unwrap_or_else(|| panic!("no step {name_part:?} in {:?}", self.step_table()));
        s.cached
    }
}
