//! `--progress quiet` (`-q`): nothing on the progress stream. The CLI prints each target's image
//! digest once, on standard output (on standard error when an output owns standard output), as
//! buildx prints the image ID; and errors on standard error. (This renderer used to print the
//! digests too, so `-q` printed them twice.)

use std::io::Write;

use super::event::Event;
use super::ProgressSink;

pub struct QuietRenderer;

impl QuietRenderer {
    /// Takes the progress stream like every renderer, and writes nothing to it.
    pub fn new(_out: Box<dyn Write + Send>) -> Self {
        QuietRenderer
    }
}

impl ProgressSink for QuietRenderer {
    fn emit(&self, _event: Event) {}
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
    fn prints_nothing_not_even_the_digests_which_the_cli_prints_once() {
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
        assert_eq!(buf.text(), "");
    }
}
