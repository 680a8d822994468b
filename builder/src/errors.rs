//! How errors are shown: one line with the chain of causes. Used by every layer that turns an
//! error into text (progress lines, cache warnings, the CLI), so it lives below all of them
//! (the engine must not import the CLI for it).

/// Formats an error and its sources as `top: cause: cause`, skipping a cause whose text the
/// message already contains (some library errors quote their cause).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
