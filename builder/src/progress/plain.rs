//! `--progress plain`: BuildKit's numbered text lines.
//!
//! The look follows BuildKit's `progressui` plain printer: a step's lines all start with its
//! `#N`; its header `#N [stage i/n] INSTR` is printed when it starts and again, after a blank
//! line, whenever output switches to it from another step (the step left behind, if still
//! running, gets a `#N ...` line). Log lines carry the seconds since the step started
//! (`#N 0.512 text`); a step ends with `#N CACHED`, `#N DONE 0.3s` or `#N ERROR: msg`. Byte
//! progress is rate-limited like BuildKit's (a line per 5% or 5 s, and one when complete).
//!
//! Long steps always show movement: a background ticker prints `#N ... still running (30s)`
//! every 30 s for a step that printed nothing meanwhile. The ticker thread holds only the shared
//! state, never the renderer, so dropping the renderer stops it.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::event::{BuildSummary, Event, ProgressKind};
use super::{summary, units, ProgressSink};

/// A step silent this long gets a heartbeat line.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How often the ticker looks for silent steps.
const TICK: Duration = Duration::from_secs(1);
/// Byte progress is reprinted after this fraction of the total…
const MIN_PROGRESS_DELTA: f64 = 0.05;
/// …or after this long, whichever comes first.
const MIN_TIME_DELTA: Duration = Duration::from_secs(5);

pub struct PlainRenderer {
    state: Arc<Mutex<PlainState>>,
    ticker: Option<(Sender<()>, JoinHandle<()>)>,
}

impl PlainRenderer {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self::with_timing(out, HEARTBEAT, TICK)
    }

    /// A renderer whose heartbeat comes after `heartbeat` of silence, checked every `tick`.
    fn with_timing(out: Box<dyn Write + Send>, heartbeat: Duration, tick: Duration) -> Self {
        let mut state = PlainState::new(out);
        state.heartbeat = heartbeat;
        let state = Arc::new(Mutex::new(state));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let ticking = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("rbuild-progress-ticker".into())
            .spawn(move || loop {
                match stopped.recv_timeout(tick) {
                    Err(RecvTimeoutError::Timeout) => lock(&ticking).tick(Instant::now()),
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            });
        // Without a thread we lose only the heartbeat lines, not the build.
        let ticker = spawned.ok().map(|handle| (stop, handle));
        PlainRenderer { state, ticker }
    }
}

impl Drop for PlainRenderer {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl ProgressSink for PlainRenderer {
    fn emit(&self, event: Event) {
        lock(&self.state).handle(event, Instant::now());
    }
}

fn lock(state: &Mutex<PlainState>) -> std::sync::MutexGuard<'_, PlainState> {
    // A panic elsewhere while holding the lock leaves the state usable for printing.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

struct StepState {
    name: String,
    started: Instant,
    /// When this step last printed anything (for the heartbeat).
    last_output: Instant,
    finished: bool,
    /// Per kind: when progress was first seen, and the last printed (current, time).
    progress: HashMap<ProgressKind, ProgressState>,
}

struct ProgressState {
    first_seen: Instant,
    last_printed: Option<(u64, Instant)>,
    completed: bool,
}

struct PlainState {
    out: Box<dyn Write + Send>,
    steps: BTreeMap<u32, StepState>,
    /// The step whose header was printed last and is still the one being written about.
    current: Option<u32>,
    /// Whether anything has been printed (blocks after the first are separated by a blank line).
    printed_any: bool,
    /// Silence after which a running step gets a heartbeat line.
    heartbeat: Duration,
}

impl PlainState {
    fn new(out: Box<dyn Write + Send>) -> Self {
        PlainState {
            out,
            steps: BTreeMap::new(),
            current: None,
            printed_any: false,
            heartbeat: HEARTBEAT,
        }
    }

    fn line(&mut self, text: &str) {
        // Best effort: a closed stderr must not abort the build.
        let _ = writeln!(self.out, "{text}");
    }

    fn step(&mut self, id: u32, now: Instant) -> &mut StepState {
        // Events for a step that never started (an engine bug) still print, under a bare `#N`.
        self.steps.entry(id).or_insert_with(|| StepState {
            name: String::new(),
            started: now,
            last_output: now,
            finished: false,
            progress: HashMap::new(),
        })
    }

    /// Leaves the current step: a `#N ...` if it is still running.
    fn unfocus(&mut self) {
        if let Some(cur) = self.current.take() {
            if self.steps.get(&cur).is_some_and(|s| !s.finished) {
                self.line(&format!("#{cur} ..."));
            }
        }
    }

    /// Makes `id` the current step, printing its header if output switches to it.
    fn focus(&mut self, id: u32, now: Instant) {
        if self.current == Some(id) {
            return;
        }
        self.unfocus();
        if self.printed_any {
            self.line("");
        }
        self.printed_any = true;
        let step = self.step(id, now);
        let header = format!("#{id} {}", step.name);
        self.line(header.trim_end());
        self.current = Some(id);
    }

    /// Prints a line of step `id` (focusing it first).
    fn step_line(&mut self, id: u32, text: &str, now: Instant) {
        self.focus(id, now);
        // Multi-line text (an error with its cause chain) keeps the `#N` on every line.
        for part in text.split('\n') {
            self.line(&format!("#{id} {part}"));
        }
        self.step(id, now).last_output = now;
    }

    fn finish(&mut self, id: u32, text: &str, now: Instant) {
        self.step_line(id, text, now);
        self.step(id, now).finished = true;
        self.current = None;
    }

    fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::StepStarted { id, name } => {
                self.steps.insert(
                    id,
                    StepState {
                        name,
                        started: now,
                        last_output: now,
                        finished: false,
                        progress: HashMap::new(),
                    },
                );
                if self.current == Some(id) {
                    self.current = None;
                }
                self.focus(id, now);
            }
            Event::StepCached { id } => self.finish(id, "CACHED", now),
            Event::StepDone { id, elapsed } => {
                self.finish(id, &format!("DONE {}", units::secs(elapsed)), now)
            }
            Event::StepFailed { id, error, .. } => self.finish(id, &format!("ERROR: {error}"), now),
            Event::StepLog { id, line, .. } => {
                let offset = now.saturating_duration_since(self.step(id, now).started);
                self.step_line(id, &format!("{} {line}", units::log_offset(offset)), now);
            }
            Event::StepProgress {
                id,
                what,
                current,
                total,
            } => {
                if let Some(text) = self.step(id, now).progress_line(what, current, total, now) {
                    self.step_line(id, &text, now);
                }
            }
            Event::CacheMiss { id, reason } => {
                self.step_line(id, &format!("cache miss: {reason}"), now)
            }
            Event::Warning { message } => self.block(&[format!("WARNING: {message}")]),
            Event::Summary(s) => self.summary(&s),
        }
        let _ = self.out.flush();
    }

    /// Prints lines that belong to no step, as their own block.
    fn block(&mut self, lines: &[String]) {
        self.unfocus();
        if self.printed_any {
            self.line("");
        }
        self.printed_any = true;
        for l in lines {
            self.line(l);
        }
    }

    fn summary(&mut self, s: &BuildSummary) {
        self.block(&summary::lines(s));
    }

    /// Heartbeat: a line for each running step silent for `self.heartbeat`.
    fn tick(&mut self, now: Instant) {
        let heartbeat = self.heartbeat;
        let due: Vec<(u32, u64)> = self
            .steps
            .iter()
            .filter(|(_, s)| {
                !s.finished && now.saturating_duration_since(s.last_output) >= heartbeat
            })
            .map(|(id, s)| (*id, now.saturating_duration_since(s.started).as_secs()))
            .collect();
        for (id, running_for) in due {
            // Self-identifying by its `#N`, so it does not switch the current step's header.
            self.line(&format!("#{id} ... still running ({running_for}s)"));
            self.step(id, now).last_output = now;
        }
        let _ = self.out.flush();
    }
}

impl StepState {
    /// The progress line to print now, if BuildKit's rate limit allows one.
    fn progress_line(
        &mut self,
        what: ProgressKind,
        current: u64,
        total: Option<u64>,
        now: Instant,
    ) -> Option<String> {
        let p = self.progress.entry(what).or_insert(ProgressState {
            first_seen: now,
            last_printed: None,
            completed: false,
        });
        let complete = total.is_some_and(|t| current >= t);
        if p.completed && complete {
            return None;
        }
        if let (Some((last, at)), false) = (p.last_printed, complete) {
            let delta = match total {
                Some(t) if t > 0 => current.saturating_sub(last) as f64 / t as f64,
                _ => 0.0,
            };
            if delta < MIN_PROGRESS_DELTA && now.saturating_duration_since(at) < MIN_TIME_DELTA {
                return None;
            }
        }
        p.last_printed = Some((current, now));
        p.completed = complete;
        let mut text = what.label().to_owned();
        match total {
            Some(t) => text.push_str(&format!(" {} / {}", units::bytes(current), units::bytes(t))),
            None if current > 0 => text.push_str(&format!(" {}", units::bytes(current))),
            None => {}
        }
        let took = now.saturating_duration_since(p.first_seen);
        if took > Duration::from_millis(10) {
            text.push_str(&format!(" {}", units::secs(took)));
        }
        if complete {
            text.push_str(" done");
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::event::{LogStream, TargetSummary};
    use crate::progress::test_support::SharedBuf;
    use crate::progress::{renderer, Mode};

    fn state() -> (SharedBuf, PlainState) {
        let buf = SharedBuf::default();
        (buf.clone(), PlainState::new(Box::new(buf)))
    }

    fn started(id: u32, name: &str) -> Event {
        Event::StepStarted {
            id,
            name: name.into(),
        }
    }

    fn log(id: u32, line: &str) -> Event {
        Event::StepLog {
            id,
            stream: LogStream::Stdout,
            line: line.into(),
        }
    }

    #[test]
    fn buildkit_plain_layout() {
        let (buf, mut st) = state();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        st.handle(
            started(1, "[internal] load build definition from Dockerfile"),
            ms(0),
        );
        st.handle(
            Event::StepDone {
                id: 1,
                elapsed: Duration::from_millis(20),
            },
            ms(20),
        );
        st.handle(started(2, "[base 1/2] FROM busybox"), ms(30));
        st.handle(Event::StepCached { id: 2 }, ms(31));
        st.handle(started(3, "[production 2/3] RUN make"), ms(40));
        st.handle(
            Event::CacheMiss {
                id: 3,
                reason: "Makefile changed".into(),
            },
            ms(40),
        );
        st.handle(log(3, "cc -o app main.c"), ms(552));
        st.handle(started(4, "[production 3/3] COPY . ."), ms(600));
        st.handle(log(3, "done linking"), ms(12_386));
        st.handle(
            Event::StepFailed {
                id: 4,
                elapsed: Duration::from_millis(700),
                error: "no such file: a\nsecond line".into(),
            },
            ms(13_000),
        );
        st.handle(
            Event::StepDone {
                id: 3,
                elapsed: Duration::from_millis(13_260),
            },
            ms(13_300),
        );
        st.handle(
            Event::Warning {
                message: "FromAsCasing".into(),
            },
            ms(13_400),
        );
        assert_eq!(
            buf.text(),
            "\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s

#2 [base 1/2] FROM busybox
#2 CACHED

#3 [production 2/3] RUN make
#3 cache miss: Makefile changed
#3 0.512 cc -o app main.c
#3 ...

#4 [production 3/3] COPY . .
#4 ...

#3 [production 2/3] RUN make
#3 12.35 done linking
#3 ...

#4 [production 3/3] COPY . .
#4 ERROR: no such file: a
#4 second line

#3 [production 2/3] RUN make
#3 DONE 13.3s

WARNING: FromAsCasing
"
        );
    }

    #[test]
    fn heartbeat_every_30s_only_for_silent_running_steps() {
        let (buf, mut st) = state();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        st.handle(started(1, "RUN sleep 100"), s(0));
        st.handle(started(2, "RUN chatty"), s(0));
        st.handle(started(3, "RUN quick"), s(0));
        st.handle(Event::StepCached { id: 3 }, s(1));
        st.handle(log(2, "tick"), s(25));
        st.tick(s(29));
        st.tick(s(30));
        st.tick(s(31));
        st.tick(s(55));
        st.tick(s(60));
        let text = buf.text();
        let beats: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("still running"))
            .collect();
        assert_eq!(
            beats,
            vec![
                "#1 ... still running (30s)",
                "#2 ... still running (55s)",
                "#1 ... still running (60s)",
            ]
        );
    }

    #[test]
    fn byte_progress_is_rate_limited_and_marks_completion() {
        let (buf, mut st) = state();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        st.handle(started(1, "exporting layers"), ms(0));
        let prog = |current| Event::StepProgress {
            id: 1,
            what: ProgressKind::Compressing,
            current,
            total: Some(1_000_000),
        };
        st.handle(prog(0), ms(0));
        st.handle(prog(10_000), ms(100)); // 1%, 0.1 s: suppressed
        st.handle(prog(100_000), ms(200)); // 10%: printed
        st.handle(prog(110_000), ms(5_300)); // 5 s later: printed
        st.handle(prog(1_000_000), ms(6_000)); // complete: printed
        st.handle(prog(1_000_000), ms(6_100)); // duplicate completion: suppressed
        let text = buf.text();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            vec![
                "#1 compressing 0B / 1.00MB",
                "#1 compressing 100.00kB / 1.00MB 0.2s",
                "#1 compressing 110.00kB / 1.00MB 5.3s",
                "#1 compressing 1.00MB / 1.00MB 6.0s done",
            ]
        );
    }

    #[test]
    fn summary_is_its_own_block() {
        let (buf, mut st) = state();
        let now = Instant::now();
        st.handle(started(1, "RUN x"), now);
        st.handle(
            Event::Summary(BuildSummary {
                targets: vec![TargetSummary {
                    target: "app".into(),
                    digest: "sha256:ab".into(),
                    tags: vec!["app:1".into()],
                    size: 10,
                    layers: 1,
                    steps_cached: 1,
                    steps_total: 1,
                }],
                wall_time: Duration::from_secs(2),
                imported_cache_steps: 0,
                imported_cache_bytes: 0,
            }),
            now,
        );
        assert_eq!(
            buf.text(),
            "\
#1 RUN x
#1 ...

TARGET  DIGEST     TAGS   SIZE  LAYERS  CACHED
app     sha256:ab  app:1  10B   1       1/1
built in 2.0s
"
        );
    }

    /// The ticker thread really prints heartbeats, and stops when the renderer is dropped.
    #[test]
    fn ticker_thread_prints_heartbeats_until_dropped() {
        let buf = SharedBuf::default();
        let sink = PlainRenderer::with_timing(
            Box::new(buf.clone()),
            Duration::from_millis(40),
            Duration::from_millis(10),
        );
        sink.emit(started(1, "RUN sleep 1"));
        std::thread::sleep(Duration::from_millis(200));
        drop(sink);
        let beats = buf.text().matches("#1 ... still running (0s)").count();
        assert!(beats >= 2, "{}", buf.text());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(buf.text().matches("still running").count(), beats);
    }

    /// Real threads through the public renderer: every line stays whole and numbered.
    #[test]
    fn concurrent_steps_from_four_threads() {
        let buf = SharedBuf::default();
        {
            let p = renderer(Mode::Plain, Box::new(buf.clone()));
            std::thread::scope(|scope| {
                for t in 0..4 {
                    let p = p.clone();
                    scope.spawn(move || {
                        for i in 0..20 {
                            let s = p.step(format!("[t{t} {i}/20] RUN x"));
                            s.log(LogStream::Stdout, format!("out {t} {i}"));
                            s.done();
                        }
                    });
                }
            });
        }
        let text = buf.text();
        assert_eq!(text.lines().filter(|l| l.contains(" DONE ")).count(), 80);
        assert_eq!(text.lines().filter(|l| l.contains(" out ")).count(), 80);
        for line in text.lines().filter(|l| !l.is_empty()) {
            assert!(line.starts_with('#'), "{line:?}");
        }
    }

    #[test]
    fn masks_reach_plain_output() {
        let buf = SharedBuf::default();
        let p = renderer(Mode::Plain, Box::new(buf.clone())).with_masks(vec![b"pa55word".to_vec()]);
        let s = p.step("RUN --mount=type=secret,id=pw cat /run/secrets/pw");
        s.log(LogStream::Stdout, "pa55word");
        s.failed("exit status 1: pa55word");
        let text = buf.text();
        assert!(!text.contains("pa55word"), "{text}");
        assert!(text.contains("ERROR: exit status 1: ****"), "{text}");
    }
}
