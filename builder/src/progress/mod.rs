//! Build progress: the events a build emits and the renderers that show them.
//!
//! The build engine reports through a [`Progress`] handle (cheap to clone, usable from any
//! thread); `--progress` picks the renderer that receives the events:
//! - [`Mode::Plain`]: BuildKit's `--progress=plain` numbered lines (`plain`);
//! - [`Mode::Tty`]: live spinners and byte-count bars (`tty`, indicatif);
//! - [`Mode::Json`]: one JSON object per line, schema in `docs/progress-json.md` (`json`);
//! - [`Mode::RawJson`]: BuildKit's `SolveStatus` objects, one per line (`rawjson`, as buildx);
//! - [`Mode::Quiet`]: only the image digests (`quiet`);
//! - [`Mode::None`]: nothing (`none`, as buildx).
//!
//! Secret values registered with [`Progress::with_masks`] are replaced by `****` in every
//! event before any renderer sees it (`mask`).

mod event;
mod json;
mod mask;
mod plain;
mod quiet;
mod rawjson;
mod summary;
mod tty;
mod units;

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub use event::{BuildSummary, Event, LogStream, ProgressKind, TargetSummary};
pub use mask::{Masker, MASK};
pub use units::rfc3339;

/// Receives progress events; implementations must tolerate calls from many threads at once.
pub trait ProgressSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// How progress is shown (the CLI resolves `--progress auto` to `Tty` or `Plain` itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    Json,
    RawJson,
    Quiet,
    /// Nothing (`none`).
    None,
}

/// A renderer for `mode` writing to `out`.
pub fn renderer(mode: Mode, out: Box<dyn Write + Send>) -> Progress {
    let sink: Arc<dyn ProgressSink> = match mode {
        Mode::Plain => Arc::new(plain::PlainRenderer::new(out)),
        Mode::Tty => Arc::new(tty::TtyRenderer::new(out)),
        Mode::Json => Arc::new(json::JsonRenderer::new(out)),
        Mode::RawJson => Arc::new(rawjson::RawJsonRenderer::new(out)),
        Mode::Quiet => Arc::new(quiet::QuietRenderer::new(out)),
        Mode::None => Arc::new(Discard),
    };
    Progress::new(sink)
}

/// A sink that drops every event (for library callers and tests that do not show progress).
struct Discard;

impl ProgressSink for Discard {
    fn emit(&self, _event: Event) {}
}

/// The engine's handle for reporting progress. Clones share the sink, the step-id counter and
/// the secret masks.
#[derive(Clone)]
pub struct Progress {
    sink: Arc<dyn ProgressSink>,
    next_id: Arc<AtomicU32>,
    masker: Arc<Masker>,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the masks: they are the secrets.
        f.debug_struct("Progress")
            .field("next_id", &self.next_id.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// A handle over any sink; step ids start at 1, like BuildKit's `#1`.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Self {
        Progress {
            sink,
            next_id: Arc::new(AtomicU32::new(1)),
            masker: Arc::new(Masker::default()),
        }
    }

    /// A handle whose events go nowhere.
    pub fn discard() -> Self {
        Progress::new(Arc::new(Discard))
    }

    /// This handle with `secrets` masked (replacing masks set before).
    /// Clones made afterwards share the masks; the id counter stays shared with `self`.
    pub fn with_masks(self, secrets: Vec<Vec<u8>>) -> Self {
        Progress {
            masker: Arc::new(Masker::new(&secrets)),
            ..self
        }
    }

    /// Sends `event` (masked) to the sink.
    pub fn emit(&self, event: Event) {
        self.sink.emit(self.mask(event));
    }

    /// Starts a step named like BuildKit's vertices (`[stage i/n] INSTRUCTION args`).
    pub fn step(&self, name: impl Into<String>) -> StepHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.emit(Event::StepStarted {
            id,
            name: name.into(),
        });
        StepHandle {
            progress: self.clone(),
            id,
            started: Instant::now(),
        }
    }

    /// Reports a warning not tied to a step.
    pub fn warn(&self, message: impl Into<String>) {
        self.emit(Event::Warning {
            message: message.into(),
        });
    }

    /// Reports the end-of-build summary.
    pub fn summary(&self, summary: BuildSummary) {
        self.emit(Event::Summary(summary));
    }

    fn mask(&self, event: Event) -> Event {
        let m = &self.masker;
        if m.is_empty() {
            return event;
        }
        match event {
            Event::StepStarted { id, name } => Event::StepStarted {
                id,
                name: m.mask(&name),
            },
            Event::StepLog { id, stream, line } => Event::StepLog {
                id,
                stream,
                line: m.mask(&line),
            },
            Event::StepFailed { id, elapsed, error } => Event::StepFailed {
                id,
                elapsed,
                error: m.mask(&error),
            },
            Event::CacheMiss { id, reason } => Event::CacheMiss {
                id,
                reason: m.mask(&reason),
            },
            Event::Warning { message } => Event::Warning {
                message: m.mask(&message),
            },
            other @ (Event::StepCached { .. }
            | Event::StepProgress { .. }
            | Event::StepDone { .. }
            | Event::Summary(_)) => other,
        }
    }
}

/// One running step. Finish it with [`StepHandle::done`], [`StepHandle::failed`] or
/// [`StepHandle::cached`]; dropping it unfinished emits nothing (the build is being torn down
/// and the error is reported elsewhere).
#[derive(Debug)]
pub struct StepHandle {
    progress: Progress,
    id: u32,
    started: Instant,
}

impl StepHandle {
    /// The step's `#N` number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The step's result came from the cache.
    pub fn cached(self) {
        self.progress.emit(Event::StepCached { id: self.id });
    }

    /// One line of command output.
    pub fn log(&self, stream: LogStream, line: impl Into<String>) {
        self.progress.emit(Event::StepLog {
            id: self.id,
            stream,
            line: line.into(),
        });
    }

    /// Byte-count progress of `what`.
    pub fn progress(&self, what: ProgressKind, current: u64, total: Option<u64>) {
        self.progress.emit(Event::StepProgress {
            id: self.id,
            what,
            current,
            total,
        });
    }

    /// Explains why this step missed the cache (`"requirements.txt changed"`).
    pub fn cache_miss(&self, reason: impl Into<String>) {
        self.progress.emit(Event::CacheMiss {
            id: self.id,
            reason: reason.into(),
        });
    }

    /// The step succeeded.
    pub fn done(self) {
        self.progress.emit(Event::StepDone {
            id: self.id,
            elapsed: self.started.elapsed(),
        });
    }

    /// The step failed with `error`.
    pub fn failed(self, error: impl fmt::Display) {
        self.progress.emit(Event::StepFailed {
            id: self.id,
            elapsed: self.started.elapsed(),
            error: error.to_string(),
        });
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A writer tests can read back after handing a `Box<dyn Write>` to a renderer.
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

    impl SharedBuf {
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("utf-8 output")
        }
    }

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);

    impl ProgressSink for Recorder {
        fn emit(&self, event: Event) {
            self.0.lock().expect("not poisoned").push(event);
        }
    }

    fn recorded() -> (Arc<Recorder>, Progress) {
        let rec = Arc::new(Recorder::default());
        let p = Progress::new(rec.clone());
        (rec, p)
    }

    #[test]
    fn step_ids_count_from_one_and_are_shared_by_clones() {
        let (rec, p) = recorded();
        let a = p.step("a");
        let b = p.clone().step("b");
        assert_eq!((a.id(), b.id()), (1, 2));
        let events = rec.0.lock().expect("not poisoned").clone();
        assert_eq!(
            events,
            vec![
                Event::StepStarted {
                    id: 1,
                    name: "a".into()
                },
                Event::StepStarted {
                    id: 2,
                    name: "b".into()
                },
            ]
        );
    }

    #[test]
    fn done_reports_elapsed_since_start() {
        let (rec, p) = recorded();
        let s = p.step("sleep");
        std::thread::sleep(Duration::from_millis(20));
        s.done();
        let events = rec.0.lock().expect("not poisoned").clone();
        match &events[1] {
            Event::StepDone { id: 1, elapsed } => assert!(*elapsed >= Duration::from_millis(20)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dropping_an_unfinished_step_emits_nothing() {
        let (rec, p) = recorded();
        drop(p.step("x"));
        assert_eq!(rec.0.lock().expect("not poisoned").len(), 1);
    }

    #[test]
    fn masks_apply_to_logs_errors_reasons_warnings_and_names() {
        let (rec, p) = recorded();
        let p = p.with_masks(vec![b"tok123".to_vec()]);
        let s = p.step("RUN echo tok123");
        s.log(LogStream::Stdout, "tok123");
        s.cache_miss("tok123 changed");
        p.warn("saw tok123");
        s.failed("exit: tok123");
        let events = rec.0.lock().expect("not poisoned").clone();
        let text = format!("{events:?}");
        assert!(!text.contains("tok123"), "{text}");
        assert_eq!(text.matches(MASK).count(), 5, "{text}");
    }

    #[test]
    fn debug_never_shows_masks() {
        let p = Progress::discard().with_masks(vec![b"hidden-value".to_vec()]);
        assert!(!format!("{p:?}").contains("hidden"));
    }

    #[test]
    fn concurrent_steps_from_four_threads_all_arrive() {
        let (rec, p) = recorded();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let p = p.clone();
                scope.spawn(move || {
                    for i in 0..25 {
                        let s = p.step(format!("t{t} s{i}"));
                        s.log(LogStream::Stdout, "x");
                        s.done();
                    }
                });
            }
        });
        let events = rec.0.lock().expect("not poisoned").clone();
        assert_eq!(events.len(), 300);
        let mut ids: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                Event::StepStarted { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    }
}
