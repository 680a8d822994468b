//! `--progress json`: one event object per line, flushed after each line.
//!
//! The schema is `docs/progress-json.md`; the shape comes from `event.rs`'s serde attributes.
//! Lines are written whole under a lock, so events from concurrent threads never interleave.

use std::io::Write;
use std::sync::Mutex;

use super::event::Event;
use super::ProgressSink;

pub struct JsonRenderer {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonRenderer {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonRenderer {
            out: Mutex::new(out),
        }
    }
}

impl ProgressSink for JsonRenderer {
    fn emit(&self, event: Event) {
        let mut line = match serde_json::to_vec(&event) {
            Ok(line) => line,
            // Serialising these plain structs cannot fail; if it ever did, dropping one
            // progress line is better than failing the build.
            Err(_) => return,
        };
        line.push(b'\n');
        // A poisoned lock only means another thread panicked mid-write; keep reporting.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // Progress output is best effort: a closed pipe must not abort the build.
        let _ = out.write_all(&line);
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use crate::progress::test_support::SharedBuf;
    use crate::progress::{renderer, LogStream, Mode, ProgressKind};

    #[test]
    fn one_object_per_line_in_order() {
        let buf = SharedBuf::default();
        let p = renderer(Mode::Json, Box::new(buf.clone()));
        let s = p.step("[production 2/3] COPY . .");
        s.log(LogStream::Stdout, "hello \"world\"");
        s.progress(ProgressKind::Hashing, 5, Some(10));
        s.cached();
        p.warn("careful");
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                r#"{"type":"step_started","id":1,"name":"[production 2/3] COPY . ."}"#,
                r#"{"type":"step_log","id":1,"stream":"stdout","line":"hello \"world\""}"#,
                r#"{"type":"step_progress","id":1,"what":"hashing","current":5,"total":10}"#,
                r#"{"type":"step_cached","id":1}"#,
                r#"{"type":"warning","message":"careful"}"#,
            ]
        );
    }

    #[test]
    fn done_elapsed_is_a_number_of_seconds() {
        let buf = SharedBuf::default();
        let p = renderer(Mode::Json, Box::new(buf.clone()));
        p.step("x").done();
        let text = buf.text();
        let last = text.lines().last().expect("two lines");
        let v: serde_json::Value = serde_json::from_str(last).expect("valid json");
        assert_eq!(v["type"], "step_done");
        assert!(v["elapsed"]
            .as_f64()
            .is_some_and(|s| (0.0..5.0).contains(&s)));
    }

    #[test]
    fn concurrent_events_stay_whole_lines() {
        let buf = SharedBuf::default();
        let p = renderer(Mode::Json, Box::new(buf.clone()));
        std::thread::scope(|scope| {
            for t in 0..4 {
                let p = p.clone();
                scope.spawn(move || {
                    for i in 0..50 {
                        let s = p.step(format!("t{t}"));
                        s.log(LogStream::Stderr, format!("line {i} {}", "x".repeat(200)));
                        s.done();
                    }
                });
            }
        });
        let text = buf.text();
        assert_eq!(text.lines().count(), 600);
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("each line is one object");
        }
    }
}
