//! Parsing rbuild's `--progress plain` output into steps, so tests can assert which steps
//! were CACHED and why the others missed.

/// One step as the plain progress printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The header after `#N `, e.g. `[production 1/1] COPY www/ /srv/www/`.
    pub name: String,
    pub cached: bool,
    /// The text after `cache miss: `, when the step was rebuilt and rbuild said why.
    pub miss: Option<String>,
    pub done: bool,
}

/// The steps of a plain progress log (stderr), in order of first appearance.
pub fn steps(log: &str) -> Vec<Step> {
    let mut out: Vec<(String, Step)> = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((id, text)) = rest.split_once(' ') else {
            continue;
        };
        if !id.bytes().all(|b| b.is_ascii_digit()) || id.is_empty() {
            continue;
        }
        if let Some(step) = out.iter_mut().find(|(i, _)| i == id).map(|(_, s)| s) {
            if text == "CACHED" {
                step.cached = true;
            } else if let Some(why) = text.strip_prefix("cache miss: ") {
                step.miss = Some(why.to_string());
            } else if text.starts_with("DONE") {
                step.done = true;
            }
        } else {
            out.push((
                id.to_string(),
                Step {
                    name: text.to_string(),
                    cached: false,
                    miss: None,
                    done: false,
                },
            ));
        }
    }
    out.into_iter().map(|(_, s)| s).collect()
}

/// The steps that do work (not `FROM`, which resolves and is reported DONE either way).
pub fn op_steps(log: &str) -> Vec<Step> {
    steps(log)
        .into_iter()
        .filter(|s| {
            !s.name
                .split_once("] ")
                .is_some_and(|(_, t)| t.starts_with("FROM "))
        })
        .collect()
}
