//! `--call outline`: what the target uses that the caller can set, as BuildKit's
//! `frontend.outline` subrequest (`dockerfile2llb/outline.go`) and buildx's printing
//! (`outline.PrintOutline`): the build args of the stages the target needs (global ARGs its
//! FROM lines use, ARGs declared in those stages, and the ARGs their defaults use), each with
//! its value and its description comment; the secrets and ssh agents its RUN steps mount.

use std::collections::{BTreeMap, BTreeSet};

use super::inputs::Inputs;
use crate::dockerfile::{expand_word, Instruction, MountSpec, SourceFacts, VarLookup};

/// One build arg of the outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Arg {
    pub name: String,
    pub value: String,
    pub description: String,
    pub line: usize,
}

/// A secret or ssh id and whether the mount requires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Need {
    pub name: String,
    pub required: bool,
    pub line: usize,
}

/// The outline of the first target.
#[derive(Debug, Default)]
pub(super) struct Outline {
    pub name: String,
    pub description: String,
    pub args: Vec<Arg>,
    pub secrets: Vec<Need>,
    pub ssh: Vec<Need>,
}

/// A lookup that records the names it was asked for.
struct Uses<'a> {
    vars: &'a BTreeMap<String, String>,
    used: std::cell::RefCell<BTreeSet<String>>,
}

impl VarLookup for Uses<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.used.borrow_mut().insert(name.to_owned());
        self.vars.get(name).map(String::as_str)
    }
}

/// Expands `word` in `vars`: the value and the names it used.
fn expand(word: &str, vars: &BTreeMap<String, String>, escape: char) -> (String, BTreeSet<String>) {
    let u = Uses {
        vars,
        used: Default::default(),
    };
    let v = expand_word(word, &u, escape).unwrap_or_default();
    (v, u.used.into_inner())
}

/// BuildKit's `getDocComment`: the first comment line above that starts with `name ` (the
/// rest of it).
pub(super) fn doc_comment<'a>(facts: Option<&'a SourceFacts>, name: &str) -> &'a str {
    facts
        .and_then(|f| {
            f.comments
                .iter()
                .find_map(|c| c.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        })
        .unwrap_or("")
}

/// An ARG definition as the outline knows it, with the names its default used.
struct Info {
    arg: Arg,
    deps: BTreeSet<String>,
}

pub(super) fn outline(inputs: &Inputs) -> Outline {
    let df = &inputs.df;
    let plan = inputs.plan();
    let escape = df.directives.escape;
    let Some(&target) = plan.targets.first() else {
        return Outline::default();
    };
    // Global ARGs (`buildMetaArgs`).
    let mut all: BTreeMap<String, Info> = BTreeMap::new();
    let mut scope = inputs.plans[0].platform_vars.clone();
    for a in &df.global_args {
        let facts = df.facts_at(a.line);
        for def in &a.node.args {
            let (value, deps) = match (inputs.build_args.get(&def.name), &def.default) {
                (Some(v), _) => (Some(v.clone()), BTreeSet::new()),
                (None, Some(d)) => {
                    let (v, mut deps) = expand(d, &scope, escape);
                    deps.remove(&def.name);
                    (Some(v), deps)
                }
                (None, None) => (None, BTreeSet::new()),
            };
            if let Some(v) = &value {
                scope.insert(def.name.clone(), v.clone());
            }
            all.insert(
                def.name.clone(),
                Info {
                    arg: Arg {
                        name: def.name.clone(),
                        value: value.unwrap_or_default(),
                        description: doc_comment(facts, &def.name).to_owned(),
                        line: a.line,
                    },
                    deps,
                },
            );
        }
    }
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut secrets: BTreeMap<String, Need> = BTreeMap::new();
    let mut ssh: BTreeMap<String, Need> = BTreeMap::new();
    for (i, stage) in df.stages.iter().enumerate() {
        if !needed_by(plan, target, i) {
            continue;
        }
        let from = &stage.from.node;
        used.extend(expand(&from.image, &plan.global_vars, escape).1);
        if let Some(p) = &from.platform {
            used.extend(expand(p, &plan.global_vars, escape).1);
        }
        let mut stage_vars: BTreeMap<String, String> = BTreeMap::new();
        for ins in &stage.instructions {
            match &ins.node {
                Instruction::Arg(a) => {
                    let facts = df.facts_at(ins.line);
                    for def in &a.args {
                        used.insert(def.name.clone());
                        let (value, deps) = match (inputs.build_args.get(&def.name), &def.default) {
                            (Some(v), _) => (v.clone(), BTreeSet::new()),
                            (None, Some(d)) => expand(d, &stage_vars, escape),
                            // Inherits the global ARG's value: the global definition is shown.
                            (None, None) => {
                                if let Some(v) = plan.global_vars.get(&def.name) {
                                    stage_vars.insert(def.name.clone(), v.clone());
                                }
                                continue;
                            }
                        };
                        stage_vars.insert(def.name.clone(), value.clone());
                        all.insert(
                            def.name.clone(),
                            Info {
                                arg: Arg {
                                    name: def.name.clone(),
                                    value,
                                    description: doc_comment(facts, &def.name).to_owned(),
                                    line: ins.line,
                                },
                                deps,
                            },
                        );
                    }
                }
                Instruction::Run(r) => {
                    for m in &r.mounts {
                        match m {
                            MountSpec::Secret {
                                id,
                                target,
                                required,
                                ..
                            } => {
                                let name = id.clone().or_else(|| {
                                    target
                                        .as_deref()
                                        .and_then(|t| t.rsplit('/').next())
                                        .map(str::to_owned)
                                });
                                if let Some(name) = name {
                                    let e = secrets.entry(name.clone()).or_insert(Need {
                                        name,
                                        required: false,
                                        line: ins.line,
                                    });
                                    e.required |= *required;
                                }
                            }
                            MountSpec::Ssh { id, required, .. } => {
                                let name = id.clone().unwrap_or_else(|| "default".into());
                                let e = ssh.entry(name.clone()).or_insert(Need {
                                    name,
                                    required: false,
                                    line: ins.line,
                                });
                                e.required |= *required;
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // `markAllUsed`: the ARGs a used ARG's default uses are used too.
    let mut todo: Vec<String> = used.iter().cloned().collect();
    while let Some(k) = todo.pop() {
        if let Some(info) = all.get(&k) {
            for d in &info.deps {
                if used.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
    }
    let mut args: Vec<Arg> = used
        .iter()
        .filter_map(|k| all.get(k).map(|i| i.arg.clone()))
        .collect();
    args.sort_by_key(|a| a.line);
    let mut secrets: Vec<Need> = secrets.into_values().collect();
    secrets.sort_by_key(|s| s.line);
    let mut ssh: Vec<Need> = ssh.into_values().collect();
    ssh.sort_by_key(|s| s.line);
    let stage = &df.stages[target];
    let name = stage.name.clone().unwrap_or_default();
    let description = if name.is_empty() {
        String::new()
    } else {
        doc_comment(df.facts_at(stage.from.line), &name).to_owned()
    };
    Outline {
        name,
        description,
        args,
        secrets,
        ssh,
    }
}

fn needed_by(plan: &crate::graph::BuildPlan, target: usize, i: usize) -> bool {
    let mut todo = vec![target];
    let mut seen = BTreeSet::new();
    while let Some(s) = todo.pop() {
        if s == i {
            return true;
        }
        if seen.insert(s) {
            todo.extend(plan.stages[s].depends_on());
        }
    }
    false
}

/// Go's `tabwriter` with `padding` (cells of a column padded to its widest plus `padding`;
/// the last cell of a line is not padded).
fn table(rows: &[Vec<String>], padding: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols.saturating_sub(1))
        .map(|c| {
            rows.iter()
                .filter(|r| r.len() > c + 1)
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
                + padding
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                out.push_str(&format!("{cell:<w$}", w = widths[c]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// `outline.PrintOutline`.
pub(super) fn text(o: &Outline) -> String {
    let mut out = String::new();
    if !o.name.is_empty() || !o.description.is_empty() {
        let name = if o.name.is_empty() {
            "(default)"
        } else {
            &o.name
        };
        let mut rows = vec![vec!["TARGET:".to_string(), name.to_string()]];
        if !o.description.is_empty() {
            rows.push(vec!["DESCRIPTION:".into(), o.description.clone()]);
        }
        out.push_str(&table(&rows, 1));
        out.push('\n');
    }
    if !o.args.is_empty() {
        let mut rows = vec![vec![
            "BUILD ARG".to_string(),
            "VALUE".into(),
            "DESCRIPTION".into(),
        ]];
        rows.extend(
            o.args
                .iter()
                .map(|a| vec![a.name.clone(), a.value.clone(), a.description.clone()]),
        );
        out.push_str(&table(&rows, 3));
        out.push('\n');
    }
    for (title, needs) in [("SECRET", &o.secrets), ("SSH", &o.ssh)] {
        if needs.is_empty() {
            continue;
        }
        let mut rows = vec![vec![title.to_string(), "REQUIRED".into()]];
        rows.extend(needs.iter().map(|n| {
            vec![
                n.name.clone(),
                if n.required { "true" } else { "" }.to_string(),
            ]
        }));
        out.push_str(&table(&rows, 3));
        out.push('\n');
    }
    out
}

/// BuildKit's `outline.Outline` JSON (`format=json`); `sources` holds the Dockerfile's text
/// (base64, Go's `[]byte`).
pub(super) fn json(o: &Outline, source: &str) -> serde_json::Value {
    let loc = |line: usize| serde_json::json!({"ranges": [{"start": {"line": line}, "end": {"line": line}}]});
    let mut v = serde_json::json!({});
    if !o.name.is_empty() {
        v["name"] = o.name.clone().into();
    }
    if !o.description.is_empty() {
        v["description"] = o.description.clone().into();
    }
    if !o.args.is_empty() {
        v["args"] = o
            .args
            .iter()
            .map(|a| {
                let mut x = serde_json::json!({"name": a.name, "location": loc(a.line)});
                if !a.value.is_empty() {
                    x["value"] = a.value.clone().into();
                }
                if !a.description.is_empty() {
                    x["description"] = a.description.clone().into();
                }
                x
            })
            .collect();
    }
    for (key, needs) in [("secrets", &o.secrets), ("ssh", &o.ssh)] {
        if !needs.is_empty() {
            v[key] = needs
                .iter()
                .map(|n| {
                    let mut x = serde_json::json!({"name": n.name, "location": loc(n.line)});
                    if n.required {
                        x["required"] = true.into();
                    }
                    x
                })
                .collect();
        }
    }
    v["sources"] = serde_json::json!([super::call::base64(source)]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_like_gos_tabwriter() {
        let rows = vec![
            vec![
                "BUILD ARG".to_string(),
                "VALUE".into(),
                "DESCRIPTION".into(),
            ],
            vec!["GO_VERSION".into(), "1.22".into(), "the Go release".into()],
        ];
        assert_eq!(
            table(&rows, 3),
            "BUILD ARG    VALUE   DESCRIPTION\nGO_VERSION   1.22    the Go release\n"
        );
    }
}
