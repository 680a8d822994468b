//! The progress events a build emits, and their stable JSON shape.
//!
//! Every renderer consumes the same [`Event`]s; `--progress json` serialises them one per line.
//! The JSON shape is a public interface documented in `docs/progress-json.md`: an object with a
//! `"type"` tag in snake_case, the variant's fields beside it, durations as fractional seconds
//! (`f64`) and optional values as `null` (never omitted), so consumers can rely on every key.

use std::time::Duration;

use serde::{Serialize, Serializer};

/// One thing that happened during a build. Step ids are BuildKit's `#N` numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A step began, e.g. `name = "[production 2/3] COPY . ."`.
    StepStarted { id: u32, name: String },
    /// The step's result came from the cache; it will not report `StepDone`.
    StepCached { id: u32 },
    /// One line of a `RUN` command's output (without its line terminator).
    StepLog {
        id: u32,
        stream: LogStream,
        line: String,
    },
    /// Byte-count progress of some part of a step (`total` is `null` when unknown).
    StepProgress {
        id: u32,
        what: ProgressKind,
        current: u64,
        total: Option<u64>,
    },
    /// The step finished successfully after `elapsed`.
    StepDone {
        id: u32,
        #[serde(serialize_with = "seconds")]
        elapsed: Duration,
    },
    /// The step failed after `elapsed`.
    StepFailed {
        id: u32,
        #[serde(serialize_with = "seconds")]
        elapsed: Duration,
        error: String,
    },
    /// Why the step missed the cache, e.g. `"requirements.txt changed"`.
    CacheMiss { id: u32, reason: String },
    /// A warning not tied to one step.
    Warning { message: String },
    /// The end-of-build summary.
    Summary(BuildSummary),
}

impl Event {
    /// The step this event belongs to, if any.
    pub fn step_id(&self) -> Option<u32> {
        match self {
            Event::StepStarted { id, .. }
            | Event::StepCached { id }
            | Event::StepLog { id, .. }
            | Event::StepProgress { id, .. }
            | Event::StepDone { id, .. }
            | Event::StepFailed { id, .. }
            | Event::CacheMiss { id, .. } => Some(*id),
            Event::Warning { .. } | Event::Summary(_) => None,
        }
    }
}

/// Which output stream of a `RUN` command a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// What a [`Event::StepProgress`] counts (always bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressKind {
    Hashing,
    Compressing,
    Pulling,
    Pushing,
    Extracting,
}

impl ProgressKind {
    /// The lower-case word renderers print before the byte counts.
    pub fn label(self) -> &'static str {
        match self {
            ProgressKind::Hashing => "hashing",
            ProgressKind::Compressing => "compressing",
            ProgressKind::Pulling => "pulling",
            ProgressKind::Pushing => "pushing",
            ProgressKind::Extracting => "extracting",
        }
    }
}

/// What a finished build produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildSummary {
    pub targets: Vec<TargetSummary>,
    #[serde(serialize_with = "seconds")]
    pub wall_time: Duration,
    /// Steps whose results came from an imported (`--cache-from`) cache.
    pub imported_cache_steps: usize,
    /// Bytes fetched from imported caches.
    pub imported_cache_bytes: u64,
}

/// One built target (stage) in a [`BuildSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSummary {
    /// The stage name (or index, for unnamed stages).
    pub target: String,
    /// The image digest, `sha256:<hex>`.
    pub digest: String,
    pub tags: Vec<String>,
    /// Total compressed size of the image's layers, in bytes.
    pub size: u64,
    pub layers: usize,
    pub steps_cached: usize,
    pub steps_total: usize,
}

/// Serialises a duration as fractional seconds, the unit `docs/progress-json.md` promises.
fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to_json(e: &Event) -> serde_json::Value {
        serde_json::to_value(e).expect("events serialise")
    }

    #[test]
    fn step_events_have_a_type_tag_and_flat_fields() {
        assert_eq!(
            to_json(&Event::StepStarted {
                id: 4,
                name: "[production 2/3] COPY . .".into()
            }),
            json!({"type": "step_started", "id": 4, "name": "[production 2/3] COPY . ."})
        );
        assert_eq!(
            to_json(&Event::StepCached { id: 2 }),
            json!({"type": "step_cached", "id": 2})
        );
        assert_eq!(
            to_json(&Event::StepLog {
                id: 3,
                stream: LogStream::Stderr,
                line: "warn".into()
            }),
            json!({"type": "step_log", "id": 3, "stream": "stderr", "line": "warn"})
        );
        assert_eq!(
            to_json(&Event::CacheMiss {
                id: 3,
                reason: "a changed".into()
            }),
            json!({"type": "cache_miss", "id": 3, "reason": "a changed"})
        );
        assert_eq!(
            to_json(&Event::Warning {
                message: "m".into()
            }),
            json!({"type": "warning", "message": "m"})
        );
    }

    #[test]
    fn durations_are_fractional_seconds() {
        assert_eq!(
            to_json(&Event::StepDone {
                id: 1,
                elapsed: Duration::from_millis(1500)
            }),
            json!({"type": "step_done", "id": 1, "elapsed": 1.5})
        );
        assert_eq!(
            to_json(&Event::StepFailed {
                id: 1,
                elapsed: Duration::from_millis(250),
                error: "exit code 2".into()
            }),
            json!({"type": "step_failed", "id": 1, "elapsed": 0.25, "error": "exit code 2"})
        );
    }

    #[test]
    fn unknown_total_is_null_not_omitted() {
        assert_eq!(
            to_json(&Event::StepProgress {
                id: 5,
                what: ProgressKind::Compressing,
                current: 10,
                total: None
            }),
            json!({"type": "step_progress", "id": 5, "what": "compressing", "current": 10, "total": null})
        );
    }

    #[test]
    fn summary_fields_sit_beside_the_tag() {
        let e = Event::Summary(BuildSummary {
            targets: vec![TargetSummary {
                target: "production".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                tags: vec!["app:1".into()],
                size: 1234,
                layers: 3,
                steps_cached: 2,
                steps_total: 5,
            }],
            wall_time: Duration::from_millis(4200),
            imported_cache_steps: 1,
            imported_cache_bytes: 99,
        });
        assert_eq!(
            to_json(&e),
            json!({
                "type": "summary",
                "targets": [{
                    "target": "production",
                    "digest": format!("sha256:{}", "a".repeat(64)),
                    "tags": ["app:1"],
                    "size": 1234,
                    "layers": 3,
                    "steps_cached": 2,
                    "steps_total": 5
                }],
                "wall_time": 4.2,
                "imported_cache_steps": 1,
                "imported_cache_bytes": 99
            })
        );
    }

    /// One instance of every event type, as the engine would emit it.
    fn one_of_each() -> Vec<Event> {
        vec![
            Event::StepStarted {
                id: 1,
                name: "n".into(),
            },
            Event::StepCached { id: 1 },
            Event::StepLog {
                id: 1,
                stream: LogStream::Stdout,
                line: "l".into(),
            },
            Event::StepProgress {
                id: 1,
                what: ProgressKind::Pushing,
                current: 1,
                total: Some(2),
            },
            Event::StepDone {
                id: 1,
                elapsed: Duration::from_secs(1),
            },
            Event::StepFailed {
                id: 1,
                elapsed: Duration::from_secs(1),
                error: "e".into(),
            },
            Event::CacheMiss {
                id: 1,
                reason: "r".into(),
            },
            Event::Warning {
                message: "m".into(),
            },
            Event::Summary(BuildSummary {
                targets: vec![TargetSummary {
                    target: "t".into(),
                    digest: "sha256:00".into(),
                    tags: vec![],
                    size: 0,
                    layers: 0,
                    steps_cached: 0,
                    steps_total: 0,
                }],
                wall_time: Duration::ZERO,
                imported_cache_steps: 0,
                imported_cache_bytes: 0,
            }),
        ]
    }

    /// Key names of an object, and of the first element of each array of objects, recursively.
    fn shape(v: &serde_json::Value) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(obj) = v.as_object() {
            for (k, child) in obj {
                keys.push(k.clone());
                if let Some(first) = child.as_array().and_then(|a| a.first()) {
                    keys.extend(shape(first).into_iter().map(|c| format!("{k}.{c}")));
                }
            }
        }
        keys.sort();
        keys
    }

    /// `docs/progress-json.md` is the consumers' contract: every event type has an example
    /// there, and each example has exactly the keys the serialiser produces.
    #[test]
    fn documented_examples_match_the_serialised_shape() {
        let doc = include_str!("../../../docs/progress-json.md");
        let examples: Vec<serde_json::Value> = doc
            .split("```json\n")
            .skip(1)
            .map(|block| {
                let body = block.split("```").next().expect("split yields one piece");
                serde_json::from_str(body.trim()).expect("doc example is valid JSON")
            })
            .collect();
        let events = one_of_each();
        assert_eq!(examples.len(), events.len());
        for event in events {
            let ours = to_json(&event);
            let documented = examples
                .iter()
                .find(|e| e["type"] == ours["type"])
                .unwrap_or_else(|| panic!("no example for {}", ours["type"]));
            assert_eq!(shape(documented), shape(&ours), "{}", ours["type"]);
        }
    }

    #[test]
    fn step_id_is_reported_for_step_events_only() {
        assert_eq!(Event::StepCached { id: 7 }.step_id(), Some(7));
        assert_eq!(
            Event::Warning {
                message: String::new()
            }
            .step_id(),
            None
        );
    }
}
