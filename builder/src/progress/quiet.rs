//! `--progress quiet`: only each target's image digest, one per line, from the summary.
//!
//! Everything else is dropped; the CLI still prints errors to stderr.

use std::io::Write;
use std::sync::Mutex;

use super::event::Event;
use super::ProgressSink;

pub struct QuietRenderer {
    out: Mutex<Box<dyn Write + Send>>,
}

impl QuietRenderer {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        QuietRenderer {
            out: Mutex::new(out),
        }
    }
}

impl ProgressSink for QuietRenderer {
    fn emit(&self, event: Event) {
        let Event::Summary(summary) = event else {
            return;
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        for target in &summary.targets {
            // Best effort, like every renderer: output failures must not abort the build.
            let _ = writeln!(out, "{}", target.digest);
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use crate::progress::test_support::SharedBuf;
    use crate::progress::{renderer, BuildSummary, LogStream, Mode, TargetSummary};
    use std::time::Duration;

    fn target(name: &str, digest: &str) -> TargetSummary {
        TargetSummary {
            target: name.into(),
            digest: digest.into(),
            tags: vec!["t:1".into()],
            size: 1,
            layers: 1,
            steps_cached: 0,
            steps_total: 1,
        }
    }

    #[test]
    fn prints_only_the_digests() {
        let buf = SharedBuf::default();
        let p = renderer(Mode::Quiet, Box::new(buf.clone()));
        let s = p.step("RUN make");
        s.log(LogStream::Stdout, "compiling");
        s.failed("boom");
        p.warn("w");
        p.summary(BuildSummary {
            targets: vec![target("a", "sha256:11"), target("b", "sha256:22")],
            wall_time: Duration::from_secs(1),
            imported_cache_steps: 0,
            imported_cache_bytes: 0,
        });
        assert_eq!(buf.text(), "sha256:11\nsha256:22\n");
    }
}
