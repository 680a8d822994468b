//! Which names each target's image gets.
//!
//! The rule (also in the README):
//! * `--tag NAME[:TAG]` applies to every target. With several targets, the target's name is
//!   appended to the tag (`app:1.0` → `app:1.0-production`; `app` → `app:production`), so the
//!   images do not overwrite each other.
//! * `--tag TARGET=NAME[:TAG]` applies to that target only, unchanged.
//! * A `--tag` that is only a tag — a full git commit id (40 or 64 hex digits, what
//!   `$(git rev-parse HEAD)` prints) or `:TAG` — names the default repository: the base name of
//!   the git work tree (or of the context directory), lower-cased.
//! * Without any `--tag`, in a git work tree the default tag is the commit (`<sha>`, or
//!   `<sha>-dirty` when tracked files differ from HEAD) on the default repository; outside git,
//!   images are kept by digest only.

use rbuild_registry::{Reference, ReferenceError};

/// A `--tag` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpec {
    /// `TARGET=` prefix: the tag applies to that target only.
    pub target: Option<String>,
    pub name: TagName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagName {
    Full(Reference),
    /// A tag for the default repository.
    TagOnly(String),
}

fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TagSpec {
    pub fn parse(s: &str) -> Result<TagSpec, ReferenceError> {
        let (target, rest) = match s.split_once('=') {
            Some((t, r)) if !t.is_empty() && !t.contains(['/', ':']) => {
                (Some(t.to_ascii_lowercase()), r)
            }
            _ => (None, s),
        };
        let name = if let Some(tag) = rest.strip_prefix(':') {
            // Validate the tag through the reference grammar.
            Reference::parse_tag(tag)?;
            TagName::TagOnly(tag.to_string())
        } else if is_commit_id(rest) {
            TagName::TagOnly(rest.to_ascii_lowercase())
        } else {
            TagName::Full(rest.parse()?)
        };
        Ok(TagSpec { target, name })
    }
}

/// Sanitises a directory name into a repository name component.
pub fn default_repository(dir_name: &str) -> String {
    let mut out = String::new();
    for c in dir_name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with(['-', '.', '_']) {
            out.push('-');
        }
    }
    let out = out.trim_end_matches(['-', '.', '_']).to_string();
    if out.is_empty() {
        "rbuild-image".into()
    } else {
        out
    }
}

fn with_suffix(r: &Reference, suffix: &str) -> Result<Reference, ReferenceError> {
    match r.tag() {
        Some(t) => r.with_tag(&format!("{t}-{suffix}")),
        None => r.with_tag(suffix),
    }
}

/// The names of `target`'s image.
pub fn names_for_target(
    target: &str,
    multiple_targets: bool,
    specs: &[TagSpec],
    default_repo: &str,
    default_tag: Option<&str>,
) -> Result<Vec<Reference>, ReferenceError> {
    let repo: Reference = default_repo.parse()?;
    let mut out = Vec::new();
    for s in specs {
        if s.target.as_deref().is_some_and(|t| t != target) {
            continue;
        }
        let base = match &s.name {
            TagName::Full(r) => r.clone(),
            TagName::TagOnly(t) => repo.with_tag(t)?,
        };
        let named = if multiple_targets && s.target.is_none() {
            with_suffix(&base, target)?
        } else {
            base
        };
        if !out.contains(&named) {
            out.push(named);
        }
    }
    if specs.is_empty() {
        if let Some(t) = default_tag {
            let base = repo.with_tag(t)?;
            out.push(if multiple_targets {
                with_suffix(&base, target)?
            } else {
                base
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(target: &str, multi: bool, specs: &[&str], default_tag: Option<&str>) -> Vec<String> {
        let specs: Vec<TagSpec> = specs.iter().map(|s| TagSpec::parse(s).unwrap()).collect();
        names_for_target(target, multi, &specs, "myapp", default_tag)
            .unwrap()
            .iter()
            .map(Reference::familiar)
            .collect()
    }

    #[test]
    fn a_commit_id_tags_the_default_repository() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            names("production", false, &[sha], None),
            vec![format!("myapp:{sha}")]
        );
        assert_eq!(names("production", false, &[":v1"], None), vec!["myapp:v1"]);
    }

    #[test]
    fn several_targets_get_suffixed_tags_unless_targeted() {
        assert_eq!(
            names("development", true, &["app:1.0"], None),
            vec!["app:1.0-development"]
        );
        assert_eq!(
            names("production", true, &["app"], None),
            vec!["app:production"]
        );
        assert_eq!(
            names(
                "production",
                true,
                &["production=app:1.0", "development=app:dev"],
                None
            ),
            vec!["app:1.0"]
        );
        assert!(names("production", true, &["development=app:dev"], None).is_empty());
    }

    #[test]
    fn default_tag_is_the_commit() {
        assert_eq!(
            names("production", false, &[], Some("abc-dirty")),
            vec!["myapp:abc-dirty"]
        );
        assert_eq!(
            names("production", true, &[], Some("abc")),
            vec!["myapp:abc-production"]
        );
        assert!(names("production", false, &[], None).is_empty());
    }

    #[test]
    fn repository_names_are_sanitised() {
        assert_eq!(default_repository("My_Project (2)"), "my-project-2");
        assert_eq!(default_repository("___"), "rbuild-image");
    }

    #[test]
    fn bad_tags_are_errors() {
        assert!(TagSpec::parse(":-bad").is_err());
        assert!(TagSpec::parse("UPPER").is_err());
    }
}
