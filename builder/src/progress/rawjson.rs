//! `--progress rawjson`: BuildKit's status stream, as `buildx build --progress rawjson` writes it
//! (`util/progress/progressui/display.go`, `rawJSONDisplay`: each `client.SolveStatus` encoded
//! as one JSON object per line). Field names and omissions follow `client/graph.go`: Go's
//! `omitempty`, times in RFC 3339 with nanoseconds, `[]byte` as standard base64.
//!
//! rbuild's events map onto it thus:
//! - a step is a vertex (`vertexes`): its `digest` is `sha256` of the step's number and name
//!   (stable within a build, as a vertex digest is; rbuild's events do not carry cache keys),
//!   `name` the step's name; `started` when it starts; `completed` when it ends, with
//!   `cached: true` for a cache hit and `error` for a failure;
//! - a byte count (`hashing`, `pulling`, …) is a vertex status (`statuses`), `id` and `name`
//!   the count's label, `completed` once `current` reaches `total`;
//! - a line of RUN output is a log (`logs`): `stream` 1 (stdout) or 2 (stderr), `data` the line
//!   and its newline;
//! - a warning is a `warnings` entry of level 1 with the message as `short`.
//!
//! Cache-miss reasons and the end-of-build summary have no place in BuildKit's stream and are
//! not written (`--progress json` has them).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::event::{Event, LogStream};
use super::units::rfc3339;
use super::ProgressSink;

/// What is remembered of a step to fill in later objects.
struct Step {
    digest: String,
    name: String,
    started: String,
    /// When each byte count was first seen, by label.
    statuses: HashMap<&'static str, String>,
}

/// The time source (fixed in tests).
type Clock = Box<dyn Fn() -> SystemTime + Send + Sync>;

pub struct RawJsonRenderer {
    state: Mutex<(Box<dyn Write + Send>, HashMap<u32, Step>)>,
    clock: Clock,
}

impl RawJsonRenderer {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self::with_clock(out, Box::new(SystemTime::now))
    }

    fn with_clock(out: Box<dyn Write + Send>, clock: Clock) -> Self {
        RawJsonRenderer {
            state: Mutex::new((out, HashMap::new())),
            clock,
        }
    }

    fn now(&self) -> String {
        let t = (self.clock)()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
        rfc3339(secs, t.subsec_nanos())
    }
}

/// `client.Vertex`.
#[derive(Serialize)]
struct Vertex<'a> {
    digest: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<&'a str>,
    #[serde(skip_serializing_if = "is_false")]
    cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// `client.VertexStatus`.
#[derive(Serialize)]
struct VertexStatus<'a> {
    id: &'a str,
    vertex: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    total: i64,
    current: i64,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<&'a str>,
}

/// `client.VertexLog`.
#[derive(Serialize)]
struct VertexLog<'a> {
    vertex: &'a str,
    stream: i32,
    data: String,
    timestamp: &'a str,
}

/// `client.VertexWarning` (rbuild's warnings name no vertex or source range).
#[derive(Serialize)]
struct VertexWarning {
    level: i32,
    short: String,
}

/// `client.SolveStatus`: one of these per line.
#[derive(Serialize, Default)]
struct SolveStatus<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vertexes: Vec<Vertex<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    statuses: Vec<VertexStatus<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logs: Vec<VertexLog<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<VertexWarning>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The vertex digest of step `id` named `name`.
fn vertex_digest(id: u32, name: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("rbuild-step\0{id}\0{name}").as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A finished vertex (done, cached or failed).
fn ended<'a>(s: &'a Step, now: &'a str, cached: bool, error: Option<&'a str>) -> SolveStatus<'a> {
    SolveStatus {
        vertexes: vec![Vertex {
            digest: &s.digest,
            name: &s.name,
            started: Some(&s.started),
            completed: Some(now),
            cached,
            error,
        }],
        ..SolveStatus::default()
    }
}

impl ProgressSink for RawJsonRenderer {
    fn emit(&self, event: Event) {
        let now = self.now();
        // A poisoned lock only means another thread panicked mid-write; keep reporting.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (out, steps) = &mut *guard;
        if let Event::StepStarted { id, name } = &event {
            steps.insert(
                *id,
                Step {
                    digest: vertex_digest(*id, name),
                    name: name.clone(),
                    started: now.clone(),
                    statuses: HashMap::new(),
                },
            );
        }
        if let Event::StepProgress { id, what, .. } = &event {
            if let Some(s) = steps.get_mut(id) {
                s.statuses
                    .entry(what.label())
                    .or_insert_with(|| now.clone());
            }
        }
        let step = event.step_id().and_then(|id| steps.get(&id));
        let status = match (&event, step) {
            (Event::StepStarted { .. }, Some(s)) => SolveStatus {
                vertexes: vec![Vertex {
                    digest: &s.digest,
                    name: &s.name,
                    started: Some(&s.started),
                    completed: None,
                    cached: false,
                    error: None,
                }],
                ..SolveStatus::default()
            },
            (Event::StepCached { .. }, Some(s)) => ended(s, &now, true, None),
            (Event::StepDone { .. }, Some(s)) => ended(s, &now, false, None),
            (Event::StepFailed { error, .. }, Some(s)) => ended(s, &now, false, Some(error)),
            (Event::StepLog { stream, line, .. }, Some(s)) => SolveStatus {
                logs: vec![VertexLog {
                    vertex: &s.digest,
                    stream: match stream {
                        LogStream::Stdout => 1,
                        LogStream::Stderr => 2,
                    },
                    data: b64(format!("{line}\n").as_bytes()),
                    timestamp: &now,
                }],
                ..SolveStatus::default()
            },
            (
                Event::StepProgress {
                    what,
                    current,
                    total,
                    ..
                },
                Some(s),
            ) => {
                let label = what.label();
                let done = total.is_some_and(|t| *current >= t);
                SolveStatus {
                    statuses: vec![VertexStatus {
                        id: label,
                        vertex: &s.digest,
                        name: label,
                        total: total.map_or(0, count),
                        current: count(*current),
                        timestamp: &now,
                        started: s.statuses.get(label).map(String::as_str),
                        completed: done.then_some(now.as_str()),
                    }],
                    ..SolveStatus::default()
                }
            }
            (Event::Warning { message }, _) => SolveStatus {
                warnings: vec![VertexWarning {
                    level: 1,
                    short: b64(message.as_bytes()),
                }],
                ..SolveStatus::default()
            },
            // No BuildKit field (see the module doc), or a step never started.
            _ => return,
        };
        let Ok(mut line) = serde_json::to_vec(&status) else {
            return;
        };
        line.push(b'\n');
        // Progress output is best effort: a closed pipe must not abort the build.
        let _ = out.write_all(&line);
        let _ = out.flush();
        let finished = matches!(
            event,
            Event::StepCached { .. } | Event::StepDone { .. } | Event::StepFailed { .. }
        );
        if let (true, Some(id)) = (finished, event.step_id()) {
            steps.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::progress::test_support::SharedBuf;
    use crate::progress::{Progress, ProgressKind};

    fn renderer(buf: &SharedBuf) -> Progress {
        let t0 = UNIX_EPOCH + Duration::new(1_700_000_000, 5_000_000);
        let clock: Clock = Box::new(move || t0);
        Progress::new(std::sync::Arc::new(RawJsonRenderer::with_clock(
            Box::new(buf.clone()),
            clock,
        )))
    }

    fn lines(buf: &SharedBuf) -> Vec<serde_json::Value> {
        buf.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn a_step_is_a_vertex_with_its_logs_and_statuses() {
        let buf = SharedBuf::default();
        let p = renderer(&buf);
        let s = p.step("[2/2] RUN echo hi");
        s.log(LogStream::Stdout, "hi");
        s.log(LogStream::Stderr, "warn");
        s.progress(ProgressKind::Compressing, 5, Some(10));
        s.progress(ProgressKind::Compressing, 10, Some(10));
        s.cache_miss("not in the cache");
        s.done();
        let got = lines(&buf);
        let digest = vertex_digest(1, "[2/2] RUN echo hi");
        let t = "2023-11-14T22:13:20.005Z";
        assert_eq!(
            got,
            vec![
                serde_json::json!({"vertexes": [{"digest": digest, "name": "[2/2] RUN echo hi", "started": t}]}),
                serde_json::json!({"logs": [{"vertex": digest, "stream": 1, "data": "aGkK", "timestamp": t}]}),
                serde_json::json!({"logs": [{"vertex": digest, "stream": 2, "data": "d2Fybgo=", "timestamp": t}]}),
                serde_json::json!({"statuses": [{"id": "compressing", "vertex": digest, "name": "compressing", "total": 10, "current": 5, "timestamp": t, "started": t}]}),
                serde_json::json!({"statuses": [{"id": "compressing", "vertex": digest, "name": "compressing", "total": 10, "current": 10, "timestamp": t, "started": t, "completed": t}]}),
                serde_json::json!({"vertexes": [{"digest": digest, "name": "[2/2] RUN echo hi", "started": t, "completed": t}]}),
            ]
        );
    }

    #[test]
    fn cached_failed_and_warnings() {
        let buf = SharedBuf::default();
        let p = renderer(&buf);
        p.step("a").cached();
        p.step("b").failed("exit 1");
        p.warn("careful");
        let got = lines(&buf);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[1]["vertexes"][0]["cached"], true);
        assert!(got[1]["vertexes"][0]["completed"].is_string());
        assert_eq!(got[3]["vertexes"][0]["error"], "exit 1");
        assert!(got[3]["vertexes"][0].get("cached").is_none(), "omitempty");
        assert_eq!(
            got[4],
            serde_json::json!({"warnings": [{"level": 1, "short": "Y2FyZWZ1bA=="}]})
        );
        assert_ne!(
            got[0]["vertexes"][0]["digest"],
            got[2]["vertexes"][0]["digest"]
        );
    }
}
