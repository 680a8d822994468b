//! The differential corpus against Docker's BuildKit (issue 13): every case under
//! `testdata/differential/` is built by rbuild and compared with what BuildKit builds from the
//! same Dockerfile, context, target and build args — file systems flattened by `umoci` and
//! compared entry by entry, configs field by field. BuildKit's results are cached in each case's
//! `buildkit.json`, keyed by the case's content and the base image, so that a run needs Docker
//! only for new or changed cases. The format and the workflow are in docs/differential.md.
//!
//! Modules: [`case`] (the case directory and its key), [`base`] (the base image), [`buildkit`]
//! (the private dockerd), [`rbuild_side`], [`unpack`] and [`listing`] (flattening), [`config`]
//! (the compared config fields), [`outcome`] (the cached result and the readable diff) and
//! [`served`] (the HTTP server for `ADD <URL>` cases).

pub mod base;
pub mod buildkit;
pub mod case;
pub mod config;
pub mod listing;
pub mod outcome;
pub mod rbuild_side;
pub mod served;
pub mod unpack;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base::Base;
use buildkit::Dockerd;
use case::{Case, Expect};
use outcome::Reference;

/// How a run behaves (from the environment in the test; see docs/differential.md).
#[derive(Clone, Debug)]
pub struct Options {
    /// `testdata/differential`.
    pub cases_root: PathBuf,
    /// Only the cases whose name contains this.
    pub only: Option<String>,
    /// Rebuild every BuildKit reference even when its key is current.
    pub refresh: bool,
    /// A stale reference that cannot be rebuilt fails the case instead of skipping it.
    pub require: bool,
    /// Cases built at once.
    pub jobs: usize,
    /// `127.0.0.1:PORT` of a registry both builders can pull the base image from.
    pub registry: String,
    /// Where work files go (a run's own temporary directory).
    pub scratch: PathBuf,
    /// Differences shown per case.
    pub limit: usize,
}

/// What became of one case.
#[derive(Clone, Debug)]
pub enum Verdict {
    Identical,
    /// Refused by rbuild with exit 2 as `case.toml` documents.
    RefusedAsDocumented,
    Differs(Vec<String>),
    /// The reference is stale and BuildKit cannot run here.
    Skipped(String),
    /// The harness itself could not run the case.
    Broken(String),
}

/// One case's verdict and what it took.
#[derive(Clone, Debug)]
pub struct CaseReport {
    pub name: String,
    pub verdict: Verdict,
    pub seconds: f64,
    pub reference_rebuilt: bool,
}

/// The BuildKit daemon of a run, started on first need and shared by the workers.
struct ReferenceBuilder {
    daemon: Mutex<Option<Result<Arc<Dockerd>, String>>>,
    dir: PathBuf,
}

impl ReferenceBuilder {
    fn daemon(&self) -> Result<Arc<Dockerd>, String> {
        let mut slot = self
            .daemon
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(match buildkit::unavailable() {
                Some(why) => Err(why),
                None => Dockerd::start(&self.dir).map(Arc::new),
            });
        }
        slot.clone().unwrap_or_else(|| Err("no daemon".into()))
    }
}

/// Runs the corpus: the base image first, then every case, `jobs` at a time.
pub fn run(opts: &Options) -> Result<Vec<CaseReport>, String> {
    let base = Arc::new(base::make(&opts.scratch, &opts.registry)?);
    let mut cases = case::load_all(&opts.cases_root, opts.only.as_deref())?;
    // One file server for the run, started only when a case serves files (`served/`).
    let server = if cases.iter().any(|c| c.served_dir().is_dir()) {
        Some(served::Server::start(&opts.cases_root, &opts.scratch)?)
    } else {
        None
    };
    if let Some(server) = &server {
        for c in cases.iter_mut().filter(|c| c.served_dir().is_dir()) {
            c.http = Some(format!("{}/{}/served", server.url, c.name));
        }
    }
    let queue = Arc::new(Mutex::new(cases.into_iter().collect::<VecDeque<Case>>()));
    let reports = Arc::new(Mutex::new(Vec::new()));
    // A short path: dockerd's and containerd's sockets live under it (108-byte limit).
    let docker_dir = tempfile::Builder::new()
        .prefix("rbd-")
        .tempdir_in("/tmp")
        .map_err(|e| format!("temporary directory: {e}"))?;
    let reference = Arc::new(ReferenceBuilder {
        daemon: Mutex::new(None),
        dir: docker_dir.path().to_path_buf(),
    });
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            let (queue, reports, base, reference) = (
                queue.clone(),
                reports.clone(),
                base.clone(),
                reference.clone(),
            );
            s.spawn(move || loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop_front();
                let Some(case) = next else { break };
                let report = run_case(opts, &case, &base, &reference);
                eprintln!("differential: {} {}", case.name, short(&report.verdict));
                reports
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(report);
            });
        }
    });
    // Stop the daemon (its Drop) before its directory is removed.
    drop(reference);
    drop(server);
    drop(docker_dir);
    let mut reports = Arc::try_unwrap(reports)
        .map_err(|_| "reports still shared".to_string())?
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(reports)
}

fn short(v: &Verdict) -> &'static str {
    match v {
        Verdict::Identical => "identical",
        Verdict::RefusedAsDocumented => "refused as documented",
        Verdict::Differs(_) => "DIFFERS",
        Verdict::Skipped(_) => "skipped",
        Verdict::Broken(_) => "BROKEN",
    }
}

fn run_case(opts: &Options, case: &Case, base: &Base, reference: &ReferenceBuilder) -> CaseReport {
    let start = Instant::now();
    let work = opts.scratch.join(format!("case-{}", case.name));
    let mut rebuilt = false;
    let verdict = match judge(opts, case, base, reference, &work, &mut rebuilt) {
        Ok(v) => v,
        Err(e) => Verdict::Broken(e),
    };
    let _ = std::fs::remove_dir_all(&work);
    CaseReport {
        name: case.name.clone(),
        verdict,
        seconds: start.elapsed().as_secs_f64(),
        reference_rebuilt: rebuilt,
    }
}

fn judge(
    opts: &Options,
    case: &Case,
    base: &Base,
    reference: &ReferenceBuilder,
    work: &Path,
    rebuilt: &mut bool,
) -> Result<Verdict, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    let ctx = work.join("context");
    case.prepare_context(&ctx)?;
    // A store per case: no case's result may come from another case's cache.
    let ours = rbuild_side::build(case, &ctx, base, &work.join("store"), work)?;
    if case.spec.expect == Expect::Refused {
        return Ok(refused_verdict(case, &ours));
    }
    let key = case.key(&base.key)?;
    let cached = Reference::load(&case.reference_path()).filter(|r| r.key == key && !opts.refresh);
    let theirs = match cached {
        Some(r) => r.outcome,
        None => {
            let daemon = match reference.daemon() {
                Ok(d) => d,
                Err(why) => {
                    let msg =
                        format!("buildkit.json is missing or stale and BuildKit cannot run: {why}");
                    return Ok(if opts.require {
                        Verdict::Broken(msg)
                    } else {
                        Verdict::Skipped(msg)
                    });
                }
            };
            let outcome = daemon.build(case, &ctx, base, work)?;
            Reference {
                key,
                docker: daemon.version.clone(),
                outcome: outcome.clone(),
            }
            .store(&case.reference_path())?;
            *rebuilt = true;
            outcome
        }
    };
    let theirs = outcome::with_newer_buildkit(theirs, &case.spec.newer_buildkit)?;
    let diffs = outcome::differences(&theirs, &ours.outcome, opts.limit);
    Ok(if diffs.is_empty() {
        Verdict::Identical
    } else {
        Verdict::Differs(diffs)
    })
}

fn refused_verdict(case: &Case, ours: &rbuild_side::RbuildResult) -> Verdict {
    let mut problems = Vec::new();
    if ours.code != 2 {
        problems.push(format!(
            "expected rbuild to refuse with exit 2 ({}), got exit {}",
            case.spec.reason.as_deref().unwrap_or("no reason given"),
            ours.code
        ));
    }
    if let Some(want) = &case.spec.error {
        if !ours.stderr.contains(want.as_str()) {
            problems.push(format!(
                "expected rbuild's error to contain {want:?}; it said:\n      {}",
                outcome::tail(&ours.stderr, 3).replace('\n', "\n      ")
            ));
        }
    }
    if problems.is_empty() {
        Verdict::RefusedAsDocumented
    } else {
        Verdict::Differs(problems)
    }
}

/// The report printed at the end of a run.
pub fn render(reports: &[CaseReport]) -> String {
    let mut out = String::new();
    let mut counts = [0usize; 5];
    for r in reports {
        let i = match &r.verdict {
            Verdict::Identical => 0,
            Verdict::RefusedAsDocumented => 1,
            Verdict::Differs(_) => 2,
            Verdict::Skipped(_) => 3,
            Verdict::Broken(_) => 4,
        };
        counts[i] += 1;
        match &r.verdict {
            Verdict::Differs(d) => {
                out.push_str(&format!("\n--- {} differs from BuildKit:\n", r.name));
                for line in d {
                    out.push_str(&format!("  - {line}\n"));
                }
            }
            Verdict::Skipped(why) => out.push_str(&format!("\n--- {} skipped: {why}\n", r.name)),
            Verdict::Broken(why) => {
                out.push_str(&format!("\n--- {} could not run: {why}\n", r.name))
            }
            _ => {}
        }
    }
    out.push_str(&format!(
        "\ndifferential corpus: {} cases: {} identical, {} refused as documented, {} differ, {} skipped, {} broken\n",
        reports.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4]
    ));
    out
}
