//! Showing check results as buildx does: `--call check` prints BuildKit's lint report
//! (`lint.LintResults.PrintTo` after buildx's `Check complete, …` line, each warning with the
//! source excerpt of `errdefs.Source.Print`), and a build's `--metadata-file` gets
//! `buildx.build.warnings`, an array of BuildKit `client.VertexWarning`s (byte fields in
//! base64, as Go's encoding/json writes `[]byte`).

use std::fmt::Write as _;

use base64::Engine as _;

use super::{Lines, Report, Warning};

/// The text `--call check` prints on stdout (buildx's `printResult` for `lint`).
pub fn check_output(report: &Report, file: &str, source: &str) -> String {
    let mut out = String::new();
    match report.warnings.len() {
        0 => out.push_str("Check complete, no warnings found.\n"),
        1 => out.push_str("Check complete, 1 warning has been found!\n"),
        n => {
            let _ = writeln!(out, "Check complete, {n} warnings have been found!");
        }
    }
    for w in &report.warnings {
        let _ = write!(out, "\nWARNING: {}", w.rule.name);
        if let Some(url) = w.rule.url() {
            let _ = write!(out, " - {url}");
        }
        let _ = writeln!(out, "\n{}", w.detail);
        if let Some(at) = w.at {
            out.push_str(&excerpt(file, source, at));
        }
    }
    out
}

/// BuildKit's `errdefs.Source.Print`: the lines of `at` marked `>>>`, with up to two lines of
/// context each side for a one-line range (one for a longer one), under `FILE:LINE`.
pub fn excerpt(file: &str, source: &str, at: Lines) -> String {
    let lines: Vec<&str> = source.split('\n').collect();
    let n = lines.len();
    let (mut start, mut end) = (at.start, at.end.max(at.start));
    if start > n || start < 1 {
        return String::new();
    }
    end = end.min(n);
    let pad = if end == start { 4 } else { 2 };
    let first = start;
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != n {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = format!("{file}:{first}\n--------------------\n");
    for i in start..=end {
        let marker = if (at.start..=at.end.max(at.start)).contains(&i) {
            ">>>"
        } else {
            "   "
        };
        let _ = writeln!(out, " {i:>3} | {marker} {}", lines[i - 1]);
    }
    out.push_str("--------------------\n");
    out
}

/// One warning as a BuildKit `client.VertexWarning` (level 1, `short` in
/// `LintFormatShort` form, the rule's description as the detail, the Dockerfile as the
/// source).
fn vertex_warning(w: &Warning, file: &str, source: &str) -> serde_json::Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut v = serde_json::json!({
        "level": 1,
        "short": b64(&w.short()),
        "detail": [b64(w.rule.description)],
        "sourceInfo": {
            "filename": file,
            "data": b64(source),
            "language": "Dockerfile",
        },
    });
    if let Some(url) = w.rule.url() {
        v["url"] = url.into();
    }
    if let Some(at) = w.at {
        v["range"] = serde_json::json!([{
            "start": { "line": at.start },
            "end": { "line": at.end },
        }]);
    }
    v
}

/// The value of `buildx.build.warnings`.
pub fn metadata_warnings(report: &Report, file: &str, source: &str) -> serde_json::Value {
    serde_json::Value::Array(
        report
            .warnings
            .iter()
            .map(|w| vertex_warning(w, file, source))
            .collect(),
    )
}

/// Whether buildx would put the warnings in the metadata file: `BUILDX_METADATA_WARNINGS`
/// set to a true value (Go's `strconv.ParseBool`; off by default, as in buildx).
pub fn metadata_warnings_enabled() -> bool {
    matches!(
        std::env::var("BUILDX_METADATA_WARNINGS").as_deref(),
        Ok("1" | "t" | "T" | "TRUE" | "true" | "True")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::testing::check_with;

    /// A Dockerfile with many rules firing, printed as `--call check` prints it.
    const MANY: &str = "\
# syntax=docker/dockerfile:1
ARG BASE_TAG
FROM alpine AS Builder
MAINTAINER someone@example.org
ENV API_TOKEN=abc
ENV legacy value
WORKDIR app
COPY . .
RUN npm ci
EXPOSE 8080:80/TCP
CMD npm start
CMD [\"npm\", \"start\"]
from builder AS final
COPY $APP_DIR /src
ARG APP_DIR=app
RUN apk add \\

    curl
ENTRYPOINT node server.js
";

    #[test]
    fn check_output_matches_buildx_format() {
        let report = check_with(MANY, &[("GITHUB_TOKEN", "x")], &[]);
        insta::assert_snapshot!(check_output(&report, "Dockerfile", MANY));
    }

    #[test]
    fn no_warnings() {
        let src = "FROM scratch\nCOPY a /a\n";
        let report = check_with(src, &[], &[]);
        assert_eq!(
            check_output(&report, "Dockerfile", src),
            "Check complete, no warnings found.\n"
        );
    }

    #[test]
    fn excerpt_pads_like_errdefs() {
        let src = "l1\nl2\nl3\nl4\nl5\nl6\nl7\n";
        insta::assert_snapshot!(excerpt("Dockerfile", src, Lines::one(4)), @r"
        Dockerfile:4
        --------------------
           2 |     l2
           3 |     l3
           4 | >>> l4
           5 |     l5
           6 |     l6
        --------------------
        ");
        insta::assert_snapshot!(excerpt("Dockerfile", src, Lines { start: 1, end: 2 }), @r"
        Dockerfile:1
        --------------------
           1 | >>> l1
           2 | >>> l2
           3 |     l3
        --------------------
        ");
    }

    #[test]
    fn metadata_warnings_are_vertex_warnings() {
        let src = "FROM scratch\nCMD run\n";
        let report = check_with(src, &[], &[]);
        let v = metadata_warnings(&report, "Dockerfile", src);
        let w = &v[0];
        let short = base64::engine::general_purpose::STANDARD
            .decode(w["short"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(short).unwrap(),
            "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)"
        );
        assert_eq!(w["level"], 1);
        assert_eq!(w["range"][0]["start"]["line"], 2);
        assert_eq!(
            w["url"],
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(w["sourceInfo"]["filename"], "Dockerfile");
    }
}
