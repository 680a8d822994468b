//! `--progress tty`: live steps on a terminal (indicatif).
//!
//! Each running step is a spinner line (`#N name  3.2s`) that ticks on its own, so a long step
//! always shows movement; below it, a bar per byte-count (hashing, compressing, transfers) and
//! the step's last [`LOG_LINES`] output lines, dimmed. When a step finishes, its lines vanish
//! and one plain line (`#N name  DONE 0.3s`) is printed above the live area; a failed step also
//! prints its last [`ERROR_LOG_LINES`] output lines, as BuildKit does.
//!
//! indicatif draws through a small [`TermLike`] over the writer we are given (ANSI cursor
//! movement), so the renderer works with any writer: on something that is not a terminal it
//! writes escape sequences but never panics.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use indicatif::{ProgressFinish, TermLike};

use super::event::{Event, ProgressKind};
use super::{summary, units, ProgressSink};

/// Output lines shown under a running step.
const LOG_LINES: usize = 6;
/// Output lines repeated after a failed step.
const ERROR_LOG_LINES: usize = 10;
/// Spinner frame interval.
const TICK: Duration = Duration::from_millis(100);
/// Redraws per second at most (log-heavy steps would otherwise redraw per line).
const REFRESH_HZ: u8 = 15;

type SharedOut = Arc<Mutex<Box<dyn Write + Send>>>;

pub struct TtyRenderer {
    multi: MultiProgress,
    state: Mutex<TtyState>,
}

#[derive(Default)]
struct TtyState {
    steps: HashMap<u32, TtyStep>,
}

struct TtyStep {
    name: String,
    spinner: ProgressBar,
    bytes: Vec<(ProgressKind, ProgressBar)>,
    log_bars: Vec<ProgressBar>,
    recent: VecDeque<String>,
}

impl TtyRenderer {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        let (height, width) = console::Term::stderr().size_checked().unwrap_or((24, 80));
        let term = WriterTerm {
            out: Arc::new(Mutex::new(out)),
            width,
            height,
        };
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(term), REFRESH_HZ);
        TtyRenderer {
            multi: MultiProgress::with_draw_target(target),
            state: Mutex::new(TtyState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TtyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn println(&self, line: &str) {
        // Best effort: a closed terminal must not abort the build.
        let _ = self.multi.println(sanitize(line));
    }

    fn start(&self, state: &mut TtyState, id: u32, name: String) {
        let spinner = self.multi.add(
            ProgressBar::new_spinner()
                .with_style(spinner_style())
                .with_prefix(format!("#{id}"))
                .with_message(sanitize(&name))
                .with_finish(ProgressFinish::AndClear),
        );
        spinner.enable_steady_tick(TICK);
        if let Some(old) = state.steps.insert(
            id,
            TtyStep {
                name,
                spinner,
                bytes: Vec::new(),
                log_bars: Vec::new(),
                recent: VecDeque::new(),
            },
        ) {
            self.clear(old);
        }
    }

    /// The step `id`, started under a bare name if the engine never announced it.
    fn step<'a>(&self, state: &'a mut TtyState, id: u32) -> &'a mut TtyStep {
        if !state.steps.contains_key(&id) {
            self.start(state, id, String::new());
        }
        state
            .steps
            .get_mut(&id)
            .expect("inserted just above when missing")
    }

    fn clear(&self, step: TtyStep) {
        step.spinner.disable_steady_tick();
        for bar in std::iter::once(&step.spinner)
            .chain(step.bytes.iter().map(|(_, b)| b))
            .chain(&step.log_bars)
        {
            bar.finish_and_clear();
            self.multi.remove(bar);
        }
    }

    /// Removes the live lines of `id`, prints `#N name  <outcome>` above the live area and
    /// returns the step's recent output lines.
    fn finish(&self, state: &mut TtyState, id: u32, outcome: &str) -> VecDeque<String> {
        let Some(mut step) = state.steps.remove(&id) else {
            self.println(&format!("#{id} {outcome}"));
            return VecDeque::new();
        };
        let line = if step.name.is_empty() {
            format!("#{id} {outcome}")
        } else {
            format!("#{id} {}  {outcome}", step.name)
        };
        let recent = std::mem::take(&mut step.recent);
        self.clear(step);
        self.println(&line);
        recent
    }

    fn log(&self, state: &mut TtyState, id: u32, line: &str) {
        let step = self.step(state, id);
        let line = sanitize(line);
        step.recent.push_back(line);
        while step.recent.len() > ERROR_LOG_LINES {
            step.recent.pop_front();
        }
        let shown: Vec<&String> = step
            .recent
            .iter()
            .skip(step.recent.len().saturating_sub(LOG_LINES))
            .collect();
        while step.log_bars.len() < shown.len() {
            let after = step
                .log_bars
                .last()
                .or_else(|| step.bytes.last().map(|(_, b)| b))
                .unwrap_or(&step.spinner);
            let bar = self.multi.insert_after(
                after,
                ProgressBar::new_spinner()
                    .with_style(log_style())
                    .with_finish(ProgressFinish::AndClear),
            );
            step.log_bars.push(bar);
        }
        for (bar, text) in step.log_bars.iter().zip(shown) {
            bar.set_message(text.clone());
        }
    }

    fn bytes(
        &self,
        state: &mut TtyState,
        id: u32,
        what: ProgressKind,
        cur: u64,
        total: Option<u64>,
    ) {
        let step = self.step(state, id);
        let existing = step
            .bytes
            .iter()
            .find(|(k, _)| *k == what)
            .map(|(_, b)| b.clone());
        let bar = match existing {
            Some(bar) => bar,
            None => {
                let after = step.bytes.last().map(|(_, b)| b).unwrap_or(&step.spinner);
                let bar = self.multi.insert_after(
                    after,
                    ProgressBar::new(total.unwrap_or(0))
                        .with_style(bytes_style(total.is_some()))
                        .with_prefix(what.label())
                        .with_finish(ProgressFinish::AndClear),
                );
                step.bytes.push((what, bar.clone()));
                bar
            }
        };
        if let Some(t) = total {
            if bar.length() != Some(t) {
                bar.set_length(t);
            }
        }
        bar.set_position(cur);
    }
}

impl Drop for TtyRenderer {
    fn drop(&mut self) {
        let steps: Vec<TtyStep> = self.lock().steps.drain().map(|(_, s)| s).collect();
        for step in steps {
            self.clear(step);
        }
        let _ = self.multi.clear();
    }
}

impl ProgressSink for TtyRenderer {
    fn emit(&self, event: Event) {
        let mut state = self.lock();
        match event {
            Event::StepStarted { id, name } => self.start(&mut state, id, name),
            Event::StepCached { id } => {
                self.finish(&mut state, id, "CACHED");
            }
            Event::StepDone { id, elapsed } => {
                self.finish(&mut state, id, &format!("DONE {}", units::secs(elapsed)));
            }
            Event::StepFailed { id, error, .. } => {
                let first = error.lines().next().unwrap_or("").to_owned();
                let recent = self.finish(&mut state, id, &format!("ERROR: {first}"));
                for line in error.lines().skip(1) {
                    self.println(&format!("#{id} {line}"));
                }
                for line in &recent {
                    self.println(&format!("#{id} > {line}"));
                }
            }
            Event::StepLog { id, line, .. } => self.log(&mut state, id, &line),
            Event::StepProgress {
                id,
                what,
                current,
                total,
            } => self.bytes(&mut state, id, what, current, total),
            Event::CacheMiss { id, reason } => self.println(&format!("#{id} cache miss: {reason}")),
            Event::Warning { message } => self.println(&format!("WARNING: {message}")),
            Event::Summary(s) => {
                for line in summary::lines(&s) {
                    self.println(&line);
                }
            }
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg} {secs:>7}")
        .expect("static template is valid")
        .with_key("secs", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", units::secs(s.elapsed()));
        })
}

fn log_style() -> ProgressStyle {
    ProgressStyle::with_template("    {wide_msg:.dim}").expect("static template is valid")
}

fn bytes_style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "    {prefix:<11} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec}"
    } else {
        "    {prefix:<11} {bytes} {bytes_per_sec}"
    };
    ProgressStyle::with_template(template)
        .expect("static template is valid")
        .progress_chars("=> ")
}

/// Command output can carry tabs, carriage returns and escape sequences that would wreck the
/// live area; show tabs as spaces and drop other control characters.
fn sanitize(line: &str) -> String {
    line.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// A terminal made of a writer and ANSI cursor sequences.
struct WriterTerm {
    out: SharedOut,
    width: u16,
    height: u16,
}

impl std::fmt::Debug for WriterTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterTerm")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl WriterTerm {
    fn write(&self, s: &str) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(s.as_bytes())
    }

    /// `ESC [ n X`; a count of 0 would move by one, so it writes nothing instead.
    fn cursor(&self, n: usize, code: char) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}{code}"))
    }
}

impl TermLike for WriterTerm {
    fn width(&self) -> u16 {
        self.width
    }
    fn height(&self) -> u16 {
        self.height
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.write(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.write("\r\x1b[2K")
    }
    fn flush(&self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::event::LogStream;
    use crate::progress::test_support::SharedBuf;
    use crate::progress::{renderer, Mode};

    /// The output with each ANSI sequence (cursor movement, line clearing) turned into a line
    /// break, so lines printed above the live area can be found whole.
    fn plain_text(raw: &str) -> String {
        let mut out = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    out.push('\n');
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            } else if c != '\r' {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn finished_steps_are_printed_as_plain_lines() {
        let buf = SharedBuf::default();
        {
            let p = renderer(Mode::Tty, Box::new(buf.clone()));
            let a = p.step("[base 1/2] FROM busybox");
            let b = p.step("[production 2/3] RUN make");
            b.cache_miss("Makefile changed");
            b.log(LogStream::Stdout, "compiling\tmain.c\x1b[31m");
            b.progress(ProgressKind::Hashing, 10, Some(100));
            b.progress(ProgressKind::Hashing, 100, Some(100));
            a.cached();
            b.failed("exit code 2\nwhile running make");
            p.warn("careful");
        }
        let text = plain_text(&buf.text());
        for expected in [
            "#1 [base 1/2] FROM busybox  CACHED",
            "#2 cache miss: Makefile changed",
            "#2 [production 2/3] RUN make  ERROR: exit code 2",
            "#2 while running make",
            "#2 > compiling main.c[31m",
            "WARNING: careful",
        ] {
            // indicatif pads each line to the terminal width instead of ending it, so look
            // for the text rather than whole lines.
            assert!(text.contains(expected), "missing {expected:?} in {text:?}");
        }
    }

    #[test]
    fn sanitize_drops_control_characters() {
        assert_eq!(sanitize("a\tb\rc\x1b[0m"), "a bc[0m");
    }

    #[test]
    fn concurrent_steps_do_not_panic_or_deadlock() {
        let buf = SharedBuf::default();
        {
            let p = renderer(Mode::Tty, Box::new(buf.clone()));
            std::thread::scope(|scope| {
                for t in 0..4 {
                    let p = p.clone();
                    scope.spawn(move || {
                        for i in 0..10 {
                            let s = p.step(format!("[t{t} {i}/10] RUN x"));
                            for l in 0..8 {
                                s.log(LogStream::Stdout, format!("line {l}"));
                            }
                            s.progress(ProgressKind::Pushing, 5, None);
                            s.done();
                        }
                    });
                }
            });
        }
        let text = plain_text(&buf.text());
        assert_eq!(text.matches("  DONE ").count(), 40);
    }
}
