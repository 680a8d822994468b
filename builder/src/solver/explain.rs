//! Cache misses explained in plain words.
//!
//! When a step misses and the previous build of the same Dockerfile and target ran a step at
//! the same place (same stage name, same position), the two steps' key inputs are compared
//! field by field and the first difference that explains the miss is named: the instruction,
//! the base image digest, a build arg, an environment variable, the copied files (by name, from
//! the stored selections), a stage read with `--from`, or an earlier step of the chain.

use std::collections::BTreeMap;

use rbuild_layers::store::Store;
use rbuild_layers::Digest;

use super::key::KeyInputs;
use super::record::{load_selection, StepRecord};

const MAX_NAMED_FILES: usize = 3;

/// Why `cur` missed, compared with `prev`; `earlier_miss` names the first step of the same
/// chain that missed in this build, if any.
pub fn explain(
    store: &Store,
    prev: &StepRecord,
    cur: &KeyInputs,
    earlier_miss: Option<&str>,
) -> String {
    let old = &prev.inputs;
    if old.version != cur.version {
        return "the cache format changed (new rbuild version)".into();
    }
    if old.instruction != cur.instruction {
        return format!("the instruction changed (was `{}`)", old.instruction);
    }
    if old.platform != cur.platform {
        return format!("platform changed from {} to {}", old.platform, cur.platform);
    }
    if let (Some(a), Some(b)) = (old.inputs.get("base"), cur.inputs.get("base")) {
        if a != b {
            return format!("base image digest changed ({} → {})", short(a), short(b));
        }
    }
    if let Some(r) = map_change("build-arg", &old.args, &cur.args) {
        return r;
    }
    if old.env != cur.env {
        let to_map = |v: &[String]| -> BTreeMap<String, String> {
            v.iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e.clone(), String::new()),
                })
                .collect()
        };
        if let Some(r) = map_change("environment variable", &to_map(&old.env), &to_map(&cur.env)) {
            return r;
        }
    }
    if let (Some(a), Some(b)) = (old.inputs.get("files"), cur.inputs.get("files")) {
        if a != b {
            return files_changed(store, a, b);
        }
    }
    for (k, v) in &cur.inputs {
        if k == "files" || k == "base" {
            continue;
        }
        match old.inputs.get(k) {
            Some(o) if o == v => {}
            Some(_) => {
                return match k.strip_prefix("from:") {
                    Some(stage) => format!("stage {stage} changed"),
                    None => format!("{k} changed"),
                }
            }
            None => return format!("{k} is new"),
        }
    }
    if let Some(k) = old.inputs.keys().find(|k| !cur.inputs.contains_key(*k)) {
        return format!("{k} was removed");
    }
    if old.parent != cur.parent {
        return match earlier_miss {
            Some(step) => format!("an earlier step changed (`{step}`)"),
            None => "an earlier step changed".into(),
        };
    }
    "the result is no longer in the local store (pruned, or built elsewhere)".into()
}

/// Which of the current step's inputs compare with `prev`'s: a step that has a definition key
/// (`COPY --from`) may have been recorded by it (taken by that key from an imported cache, so
/// its content inputs were never computed here); the definition's inputs then compare, and a
/// changed source stage is named as such.
pub fn comparable<'i>(
    prev: &StepRecord,
    content: &'i KeyInputs,
    definition: Option<&'i KeyInputs>,
) -> &'i KeyInputs {
    match definition {
        Some(d) if prev.inputs.is_definition() => d,
        _ => content,
    }
}

fn short(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

fn map_change(
    what: &str,
    old: &BTreeMap<String, String>,
    cur: &BTreeMap<String, String>,
) -> Option<String> {
    for (k, v) in cur {
        match old.get(k) {
            None => return Some(format!("{what} {k} was added")),
            Some(o) if o != v => return Some(format!("{what} {k} changed")),
            _ => {}
        }
    }
    old.keys()
        .find(|k| !cur.contains_key(*k))
        .map(|k| format!("{what} {k} was removed"))
}

fn files_changed(store: &Store, old: &str, cur: &str) -> String {
    let (Ok(old_d), Ok(cur_d)) = (old.parse::<Digest>(), cur.parse::<Digest>()) else {
        return "the copied files changed".into();
    };
    let (Some(a), Some(b)) = (load_selection(store, &old_d), load_selection(store, &cur_d)) else {
        return "the copied files changed".into();
    };
    let mut changed = Vec::new();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (path, d) in &b.files {
        match a.files.get(path) {
            None => added.push(path.as_str()),
            Some(o) if o != d => changed.push(path.as_str()),
            _ => {}
        }
    }
    for path in a.files.keys() {
        if !b.files.contains_key(path) {
            removed.push(path.as_str());
        }
    }
    let mut parts = Vec::new();
    for (list, verb) in [
        (&changed, "changed"),
        (&added, "added"),
        (&removed, "removed"),
    ] {
        if list.is_empty() {
            continue;
        }
        let named: Vec<&str> = list.iter().take(MAX_NAMED_FILES).copied().collect();
        let more = list.len().saturating_sub(MAX_NAMED_FILES);
        let mut s = named.join(", ");
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        parts.push(format!("{s} {verb}"));
    }
    if parts.is_empty() {
        // Same paths and contents: metadata (mode, owner, link target) changed.
        "file metadata changed (mode, owner or link target)".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::record::{save_selection, Selection};

    fn rec(inputs: KeyInputs) -> StepRecord {
        StepRecord {
            stage: 0,
            stage_name: "base".into(),
            index: 2,
            name: "COPY requirements.txt .".into(),
            key: inputs.key(),
            inputs,
            cached: false,
            miss_reason: None,
        }
    }

    fn inputs() -> KeyInputs {
        KeyInputs::new(
            "copy",
            None,
            "COPY requirements.txt .".into(),
            "linux/amd64".into(),
        )
    }

    #[test]
    fn names_the_changed_input() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let prev = rec(inputs());
        let mut cur = inputs();
        cur.args.insert("PIP_INDEX_URL".into(), "x".into());
        assert_eq!(
            explain(&store, &prev, &cur, None),
            "build-arg PIP_INDEX_URL was added"
        );

        let mut cur = inputs();
        cur.instruction = "COPY req.txt .".into();
        assert!(explain(&store, &prev, &cur, None).starts_with("the instruction changed"));

        let mut cur = inputs();
        cur.parent = Some(Digest::sha256_of(b"p"));
        assert_eq!(
            explain(&store, &prev, &cur, Some("COPY a b")),
            "an earlier step changed (`COPY a b`)"
        );
    }

    #[test]
    fn a_step_recorded_by_its_definition_key_is_explained_by_its_source_stage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (mark, value) = crate::solver::key::DEFINITION;
        let def = |stage: &[u8]| {
            KeyInputs::new(
                "copy",
                None,
                "COPY --from=builder /app /app".into(),
                "linux/amd64".into(),
            )
            .input(mark, value)
            .input("from:builder", Digest::sha256_of(stage).to_string())
        };
        let content = KeyInputs::new(
            "copy",
            None,
            "COPY --from=builder /app /app".into(),
            "linux/amd64".into(),
        )
        .input("files", "sha256:1")
        .input("from:builder", Digest::sha256_of(b"new").to_string());
        let prev = rec(def(b"old"));
        let cur_def = def(b"new");
        let against = comparable(&prev, &content, Some(&cur_def));
        assert_eq!(
            explain(&store, &prev, against, None),
            "stage builder changed"
        );
        // A previous step recorded by its content key compares with the content inputs.
        let prev = rec(content.clone());
        assert!(std::ptr::eq(
            comparable(&prev, &content, Some(&cur_def)),
            &content
        ));
    }

    #[test]
    fn names_changed_files_from_stored_selections() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = Selection::default();
        a.files
            .insert("requirements.txt".into(), Digest::sha256_of(b"1"));
        a.files.insert("gone.txt".into(), Digest::sha256_of(b"2"));
        let mut b = Selection::default();
        b.files
            .insert("requirements.txt".into(), Digest::sha256_of(b"3"));
        let (da, db) = (Digest::sha256_of(b"sel-a"), Digest::sha256_of(b"sel-b"));
        save_selection(&store, &da, || a.clone());
        save_selection(&store, &db, || b.clone());
        let prev = rec(inputs().input("files", da.to_string()));
        let cur = inputs().input("files", db.to_string());
        assert_eq!(
            explain(&store, &prev, &cur, None),
            "requirements.txt changed; gone.txt removed"
        );
    }
}
