//! The end-of-build summary table shared by the plain and tty renderers.
//!
//! One row per target: digest, tags, size, layers and steps cached/total, then the wall time
//! and what came from imported caches.

use super::event::BuildSummary;
use super::units;

/// The summary as lines of text (no trailing newlines), columns aligned.
pub fn lines(summary: &BuildSummary) -> Vec<String> {
    let header = ["TARGET", "DIGEST", "TAGS", "SIZE", "LAYERS", "CACHED"].map(String::from);
    let mut rows: Vec<[String; 6]> = vec![header];
    for t in &summary.targets {
        rows.push([
            t.target.clone(),
            t.digest.clone(),
            if t.tags.is_empty() {
                "-".to_owned()
            } else {
                t.tags.join(",")
            },
            units::bytes(t.size),
            t.layers.to_string(),
            format!("{}/{}", t.steps_cached, t.steps_total),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = Vec::with_capacity(rows.len() + 2);
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push(line);
    }
    let mut totals = format!("built in {}", units::secs(summary.wall_time));
    if summary.imported_cache_steps > 0 || summary.imported_cache_bytes > 0 {
        let plural = if summary.imported_cache_steps == 1 {
            ""
        } else {
            "s"
        };
        totals.push_str(&format!(
            "; imported cache: {} step{plural}, {}",
            summary.imported_cache_steps,
            units::bytes(summary.imported_cache_bytes)
        ));
    }
    out.push(totals);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::event::TargetSummary;
    use std::time::Duration;

    #[test]
    fn table_columns_align_and_totals_follow() {
        let s = BuildSummary {
            targets: vec![
                TargetSummary {
                    target: "production".into(),
                    digest: "sha256:aaaa".into(),
                    tags: vec!["app:1".into(), "app:latest".into()],
                    size: 12_300_000,
                    layers: 3,
                    steps_cached: 2,
                    steps_total: 5,
                },
                TargetSummary {
                    target: "test".into(),
                    digest: "sha256:bb".into(),
                    tags: vec![],
                    size: 512,
                    layers: 12,
                    steps_cached: 0,
                    steps_total: 1,
                },
            ],
            wall_time: Duration::from_millis(4200),
            imported_cache_steps: 1,
            imported_cache_bytes: 2000,
        };
        assert_eq!(
            lines(&s),
            vec![
                "TARGET      DIGEST       TAGS              SIZE     LAYERS  CACHED",
                "production  sha256:aaaa  app:1,app:latest  12.30MB  3       2/5",
                "test        sha256:bb    -                 512B     12      0/1",
                "built in 4.2s; imported cache: 1 step, 2.00kB",
            ]
        );
    }

    #[test]
    fn no_imported_cache_means_no_cache_note() {
        let s = BuildSummary {
            targets: vec![],
            wall_time: Duration::from_secs(1),
            imported_cache_steps: 0,
            imported_cache_bytes: 0,
        };
        assert_eq!(lines(&s).last().map(String::as_str), Some("built in 1.0s"));
    }
}
