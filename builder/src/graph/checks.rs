//! Values the build would reject once their variables are expanded (`COPY --chmod=$M`,
//! `RUN --mount=...,uid=$UID`), checked by the plan when every variable they use is known
//! there, so that `rbuild check` rejects what the build would. A value that uses a variable
//! the plan cannot know (the base image's ENV) is left to the step.

use std::cell::Cell;
use std::collections::BTreeMap;

use super::{expand_or_skip, PlanError};
use crate::dockerfile::chmod::Chmod;
use crate::dockerfile::expand::VarLookup;
use crate::dockerfile::Instruction;

/// A scope that remembers whether a variable was missing from it.
struct Known<'a> {
    vars: &'a BTreeMap<String, String>,
    missed: Cell<bool>,
}

impl VarLookup for Known<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let v = self.vars.get(name).map(String::as_str);
        if v.is_none() {
            self.missed.set(true);
        }
        v
    }
}

/// Checks the typed flag values of `ins` that hold variables.
pub(super) fn typed_values(
    ins: &Instruction,
    vars: &BTreeMap<String, String>,
    escape: char,
    line: usize,
) -> Result<(), PlanError> {
    match ins {
        Instruction::Copy(c) | Instruction::Add(c) => {
            let Some(raw) = c.chmod.as_deref().filter(|c| c.contains('$')) else {
                return Ok(());
            };
            let known = Known {
                vars,
                missed: Cell::new(false),
            };
            let what = || "COPY --chmod".to_string();
            let value = expand_or_skip(raw, &known, escape, line, what)?;
            match value {
                Some(v) if !known.missed.get() => Chmod::parse(&v)
                    .map(drop)
                    .map_err(|source| PlanError::BadChmod { line, source }),
                _ => Ok(()),
            }
        }
        Instruction::Run(r) if r.deferred_mounts.iter().any(Option::is_some) => {
            let known = Known {
                vars,
                missed: Cell::new(false),
            };
            match ins.expand(&known, escape) {
                Err(source) if !known.missed.get() || source.kind.is_limit() => {
                    Err(PlanError::Expand {
                        line,
                        what: "RUN --mount".into(),
                        source,
                    })
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}
