//! Cache keys: a sha256 over a canonical, versioned serialisation of everything a step's result
//! depends on, and nothing else.
//!
//! As in BuildKit, only filesystem operations (FROM, COPY, ADD, RUN, WORKDIR) form the key
//! chain; metadata instructions (ENV, LABEL, CMD, …) change the image config, which is rebuilt
//! on every run, and reach a later step's key only through what that step sees (its
//! environment, user, working directory, shell). So changing a LABEL does not rebuild a COPY.
//!
//! The hashed inputs ([`KeyInputs`]) are kept in the build record so that a later miss can be
//! explained field by field. Never put a path of the checkout, a time, or a secret's value in
//! them: the same sources at another path or on another machine must give the same keys.

use std::collections::BTreeMap;

use rbuild_layers::{Digest, Sha256Hasher};
use serde::{Deserialize, Serialize};

/// Bump when the meaning of any field changes, so old cache records can never match.
pub const KEY_VERSION: u32 = 1;

/// The input that marks a *definition key*: a second key of a step that reads another state
/// (`COPY --from`), computed from that state's key instead of from what is read in it (see
/// `copy::digest`). Content keys never carry it, so the two kinds never collide.
pub const DEFINITION: (&str, &str) = ("keyed-by", "definition");

/// Everything a step's key is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyInputs {
    pub version: u32,
    /// The key of the state this step runs on (`None` for FROM and `COPY --link`).
    pub parent: Option<Digest>,
    /// `from`, `copy`, `add`, `run`, `workdir`, `link-merge`.
    pub op: String,
    /// The instruction in canonical form after expansion.
    pub instruction: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Build args visible to the step (ARGs in scope; proxy args only when declared).
    pub args: BTreeMap<String, String>,
    /// The environment the step sees (RUN only: `KEY=VALUE` in image order).
    pub env: Vec<String>,
    /// Other named inputs: `base` (manifest digest), `files` (selection digest), `from:<stage>`
    /// (stage key), `user`, `workdir`, `shell`, `network`, `chown`, `mounts`, ...
    pub inputs: BTreeMap<String, String>,
}

impl KeyInputs {
    pub fn new(op: &str, parent: Option<Digest>, instruction: String, platform: String) -> Self {
        KeyInputs {
            version: KEY_VERSION,
            parent,
            op: op.to_string(),
            instruction,
            platform,
            ..Default::default()
        }
    }

    pub fn input(mut self, name: &str, value: impl Into<String>) -> Self {
        self.inputs.insert(name.to_string(), value.into());
        self
    }

    /// Whether these are a definition key's inputs (see [`DEFINITION`]).
    pub fn is_definition(&self) -> bool {
        self.inputs.get(DEFINITION.0).map(String::as_str) == Some(DEFINITION.1)
    }

    /// The key: sha256 of a domain tag and the canonical JSON (struct fields in declaration
    /// order, maps sorted).
    pub fn key(&self) -> Digest {
        let mut h = Sha256Hasher::new();
        h.update(b"rbuild-cache-key\0");
        // Serialising plain strings, maps and numbers cannot fail.
        let json = serde_json::to_vec(self).expect("KeyInputs serialise to JSON");
        h.update(&json);
        h.finish()
    }
}

/// The identity of a filesystem state after a layer: `sha256("rbuild-state-v1\0" parent "\0"
/// diff_id)`. Chaining on content rather than on the producing step's key is BuildKit's rule
/// that lookups continue after a miss: a step that reruns (after `--no-cache`, a changed
/// instruction spelling, or inputs that changed without changing the result) and writes the
/// same layer leaves every later key unchanged. A step that changes nothing keeps its parent's
/// identity.
pub fn content_key(parent: &Digest, diff_id: &Digest) -> Digest {
    let mut h = Sha256Hasher::new();
    h.update(b"rbuild-state-v1\0");
    h.update(parent.to_string().as_bytes());
    h.update(b"\0");
    h.update(diff_id.to_string().as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base() -> KeyInputs {
        KeyInputs::new(
            "copy",
            Some(Digest::sha256_of(b"parent")),
            "COPY . /app/".into(),
            "linux/amd64".into(),
        )
        .input("files", Digest::sha256_of(b"files").to_string())
    }

    #[test]
    fn key_is_stable_for_equal_inputs() {
        assert_eq!(base().key(), base().key());
    }

    proptest! {
        // SECURITY.md "incomplete cache keys": changing any field must change the key.
        #[test]
        fn changing_any_field_changes_the_key(field in 0usize..8, s in "[a-z0-9=/]{1,12}") {
            let a = base();
            let mut b = a.clone();
            match field {
                0 => b.version += 1,
                1 => b.parent = Some(Digest::sha256_of(s.as_bytes())),
                2 => b.op = format!("x{s}"),
                3 => b.instruction.push_str(&s),
                4 => b.platform.push_str(&s),
                5 => { b.args.insert(format!("A{s}"), s.clone()); }
                6 => b.env.push(format!("E={s}")),
                _ => { b.inputs.insert(format!("i{s}"), s.clone()); }
            }
            prop_assert_ne!(a.key(), b.key());
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = base();
        a.args.insert("A".into(), "B=C".into());
        let mut b = base();
        b.args.insert("A=B".into(), "C".into());
        assert_ne!(a.key(), b.key());
    }
}
