//! `--call METHOD` (and `--check`): evaluate the build instead of building it, as buildx's
//! `--call` does with BuildKit's frontend subrequests. `check` prints the build checks
//! (`frontend.lint`) and exits 1 when one fired; `targets` lists the stages with their
//! descriptions (`frontend.targets`); `outline` shows the build args, secrets and ssh agents
//! the target uses (`frontend.outline`, in [`super::outline`]). Options after a comma as buildx's `ParseCallFunc`:
//! `format=json` prints the subrequest's JSON result instead, `ignorestatus=true` exits 0.

use std::io::Write;

use base64::Engine as _;

use super::inputs::Inputs;
use crate::commands::Failure;
use crate::lint::report::check_output;
use crate::lint::Report;

/// The check method (buildx's `check`, an alias of BuildKit's `lint`).
pub const CHECK: &str = "check";
/// The targets method.
pub const TARGETS: &str = "targets";
/// The outline method.
pub const OUTLINE: &str = "outline";

/// A parsed `--call` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFunc {
    pub name: String,
    pub format: Option<String>,
    pub ignore_status: bool,
}

impl CallFunc {
    /// `--call` and `--check` as buildx parses them; `None` for `build` (the default).
    pub fn from_args(call: &str, check: bool) -> Result<Option<CallFunc>, Failure> {
        let value = if check { CHECK } else { call };
        let usage = |m: String| Failure::Usage(format!("error: --call {value:?}: {m}"));
        let mut f = CallFunc {
            name: String::new(),
            format: None,
            ignore_status: false,
        };
        for field in value.split(',').filter(|f| !f.is_empty()) {
            match field.split_once('=') {
                Some(("format", v)) => f.format = Some(v.to_owned()),
                Some(("ignorestatus", v)) => {
                    f.ignore_status = match v {
                        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                        _ => return Err(usage(format!("invalid ignorestatus print value: {v}"))),
                    }
                }
                Some(_) => return Err(usage(format!("invalid print field: {field}"))),
                None if !f.name.is_empty() => return Err(usage("invalid print value".into())),
                None => f.name = field.to_owned(),
            }
        }
        if f.name == "lint" {
            f.name = CHECK.to_owned();
        }
        match f.name.as_str() {
            "" | "build" => Ok(None),
            CHECK | TARGETS | OUTLINE => Ok(Some(f)),
            other => Err(usage(format!(
                "unknown method {other:?}: rbuild supports build, check, outline and targets"
            ))),
        }
    }
}

/// Runs the method, prints its result on stdout and returns the exit status.
pub(super) fn run(inputs: &Inputs, call: &CallFunc) -> Result<(), Failure> {
    let json = call.format.as_deref() == Some("json");
    let (text, status) = match call.name.as_str() {
        TARGETS => (
            if json {
                format!("{:#}\n", targets_json(inputs))
            } else {
                targets_text(inputs)
            },
            0,
        ),
        OUTLINE => {
            let o = super::outline::outline(inputs);
            let text = if json {
                format!("{:#}\n", super::outline::json(&o, &inputs.source))
            } else {
                super::outline::text(&o)
            };
            (text, 0)
        }
        _ => {
            let report = super::checks::for_call(inputs)?;
            let r = &report;
            let status = i32::from(!r.warnings.is_empty());
            let text = if json {
                format!(
                    "{:#}\n",
                    lint_results(r, &inputs.check_file, &inputs.source)
                )
            } else {
                check_output(r, &inputs.check_file, &inputs.source)
            };
            if let Some(path) = &inputs.opts.metadata_file {
                let md = serde_json::json!({
                    "result.json": lint_results(r, &inputs.check_file, &inputs.source),
                });
                let body = serde_json::to_vec_pretty(&md).map_err(|e| Failure::Build(e.into()))?;
                std::fs::write(path, body).map_err(|e| {
                    Failure::Build(anyhow::anyhow!(
                        "writing --metadata-file {}: {e}",
                        path.display()
                    ))
                })?;
            }
            (text, status)
        }
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if status != 0 && !call.ignore_status {
        return Err(Failure::Status(status));
    }
    Ok(())
}

/// BuildKit's `lint.LintResults` (`format=json`): warnings with rule, description, URL,
/// detail and location, and the Dockerfile as the one source.
fn lint_results(r: &Report, file: &str, source: &str) -> serde_json::Value {
    let warnings: Vec<serde_json::Value> = r
        .warnings
        .iter()
        .map(|w| {
            let mut v = serde_json::json!({
                "ruleName": w.rule.name,
                "description": w.rule.description,
                "detail": w.detail,
            });
            if let Some(url) = w.rule.url() {
                v["url"] = url.into();
            }
            v["location"] = match w.at {
                Some(at) => serde_json::json!({
                    "ranges": [{"start": {"line": at.start}, "end": {"line": at.end}}],
                }),
                None => serde_json::json!({"sourceIndex": -1}),
            };
            v
        })
        .collect();
    serde_json::json!({
        "warnings": warnings,
        "sources": [{
            "filename": file,
            "language": "Dockerfile",
            "data": base64(source),
        }],
    })
}

/// One stage for `targets`: its name (empty when unnamed), description, whether it is the
/// default (the last stage), base and platform as written.
struct Target<'a> {
    name: &'a str,
    description: &'a str,
    default: bool,
    base: &'a str,
    platform: Option<&'a str>,
    line: usize,
}

/// The stages, each described by BuildKit's `getDocComment` of its FROM.
fn targets(inputs: &Inputs) -> Vec<Target<'_>> {
    let df = &inputs.df;
    let last = df.stages.len().saturating_sub(1);
    df.stages
        .iter()
        .map(|s| {
            let name = s.name.as_deref().unwrap_or("");
            let description = if name.is_empty() {
                ""
            } else {
                super::outline::doc_comment(df.facts_at(s.from.line), name)
            };
            Target {
                name,
                description,
                default: s.index == last,
                base: &s.from.node.image,
                platform: s.from.node.platform.as_deref(),
                line: s.from.line,
            }
        })
        .collect()
}

/// `targets.PrintTargets`: a `TARGET DESCRIPTION` table (Go's tabwriter, padding 1).
fn targets_text(inputs: &Inputs) -> String {
    let rows: Vec<(String, &str)> = targets(inputs)
        .iter()
        .map(|t| {
            let name = match (t.name.is_empty(), t.default) {
                (true, true) => "(default)".to_owned(),
                (false, true) => format!("{} (default)", t.name),
                _ => t.name.to_owned(),
            };
            (name, t.description)
        })
        .collect();
    let width = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .chain(std::iter::once("TARGET".len()))
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = format!("{:<width$}DESCRIPTION\n", "TARGET");
    for (name, description) in rows {
        out.push_str(&format!("{name:<width$}{description}\n"));
    }
    out
}

/// Bytes as Go's encoding/json writes a `[]byte`.
pub(super) fn base64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// `targets.List` (`format=json`); `sources` holds the Dockerfile's text.
fn targets_json(inputs: &Inputs) -> serde_json::Value {
    let list: Vec<serde_json::Value> = targets(inputs)
        .iter()
        .map(|t| {
            let mut v = serde_json::json!({
                "name": t.name,
                "default": t.default,
                "base": t.base,
                "location": {
                    "ranges": [{"start": {"line": t.line}, "end": {"line": t.line}}],
                },
            });
            if !t.description.is_empty() {
                v["description"] = t.description.into();
            }
            if let Some(p) = t.platform {
                v["platform"] = p.into();
            }
            v
        })
        .collect();
    serde_json::json!({
        "targets": list,
        "sources": [base64(&inputs.source)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_call_values_as_buildx() {
        assert_eq!(CallFunc::from_args("build", false).unwrap(), None);
        let c = CallFunc::from_args("build", true).unwrap().unwrap();
        assert_eq!(c.name, CHECK);
        let c = CallFunc::from_args("lint,format=json,ignorestatus=1", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.name.as_str(), c.format.as_deref(), c.ignore_status),
            (CHECK, Some("json"), true)
        );
        assert!(CallFunc::from_args("check,targets", false).is_err());
        assert!(CallFunc::from_args("check,color=red", false).is_err());
        assert!(CallFunc::from_args("frobnicate", false).is_err());
    }
}
