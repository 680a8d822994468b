//! `--secret id=…,src=FILE|env=VAR` specifications: parsing the flag into the engine's
//! [`SecretSpec`] (the type belongs to the engine, `solver::inputs`; the flag to the CLI).
//!
//! A spec names where a secret comes from, never its value: the value is read only when a
//! `RUN --mount=type=secret` needs it, into a tmpfs. `Debug` shows the id and the kind of source
//! but not the file path or variable name's contents.

use std::path::PathBuf;

use super::csv::{key_values, CsvError};
pub use crate::solver::inputs::{SecretSource, SecretSpec};

/// Why a `--secret` value is not valid.
#[derive(Debug, thiserror::Error)]
pub enum SecretSpecError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("--secret needs id=NAME (e.g. --secret id=npmrc,src=$HOME/.npmrc)")]
    MissingId,
    #[error("--secret id={id}: unknown key {key:?} (allowed: id, src, source, env, type)")]
    UnknownKey { id: String, key: String },
    #[error("--secret id={id}: type={kind:?} is not valid: use type=file or type=env")]
    BadType { id: String, kind: String },
    #[error("--secret id={id}: give src=FILE or env=VARIABLE (no environment variable named {id:?} is set either)")]
    NoSource { id: String },
    #[error("--secret id={0}: an id must be letters, digits, '.', '_' or '-'")]
    BadId(String),
}

impl SecretSpec {
    /// Parses a spec; `lookup_env` answers whether an environment variable is set (for the
    /// buildx rule that `--secret id=X` alone reads the variable `X`).
    pub fn parse(input: &str, env_is_set: impl Fn(&str) -> bool) -> Result<Self, SecretSpecError> {
        let pairs = key_values(input)?;
        let mut id = None;
        let mut src = None;
        let mut env = None;
        let mut kind = None;
        for (k, v) in &pairs {
            match k.as_str() {
                "id" => id = Some(v.clone()),
                "src" | "source" => src = Some(v.clone()),
                "env" => env = Some(v.clone()),
                "type" => kind = Some(v.clone()),
                _ => {
                    return Err(SecretSpecError::UnknownKey {
                        id: id.clone().unwrap_or_default(),
                        key: k.clone(),
                    })
                }
            }
        }
        let id = id.ok_or(SecretSpecError::MissingId)?;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(SecretSpecError::BadId(id));
        }
        let source = match kind.as_deref() {
            Some("env") => SecretSource::Env(env.or(src).unwrap_or_else(|| id.clone())),
            Some("file") => SecretSource::File(PathBuf::from(
                src.ok_or_else(|| SecretSpecError::NoSource { id: id.clone() })?,
            )),
            Some(other) => {
                return Err(SecretSpecError::BadType {
                    id,
                    kind: other.to_string(),
                })
            }
            None => match (src, env) {
                (Some(path), _) => SecretSource::File(PathBuf::from(path)),
                (None, Some(var)) => SecretSource::Env(var),
                (None, None) if env_is_set(&id) => SecretSource::Env(id.clone()),
                (None, None) => return Err(SecretSpecError::NoSource { id }),
            },
        };
        Ok(SecretSpec { id, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_env_sources() {
        let s = SecretSpec::parse("id=npmrc,src=/home/u/.npmrc", |_| false).unwrap();
        assert_eq!(s.source, SecretSource::File("/home/u/.npmrc".into()));
        let s = SecretSpec::parse("id=token,env=GH_TOKEN", |_| false).unwrap();
        assert_eq!(s.source, SecretSource::Env("GH_TOKEN".into()));
        let s = SecretSpec::parse("id=TOKEN", |v| v == "TOKEN").unwrap();
        assert_eq!(s.source, SecretSource::Env("TOKEN".into()));
        assert!(SecretSpec::parse("id=TOKEN", |_| false).is_err());
        assert!(SecretSpec::parse("src=/x", |_| false).is_err());
        assert!(SecretSpec::parse("id=../x,src=/x", |_| false).is_err());
    }

    #[test]
    fn debug_hides_where_the_secret_lives() {
        let s = SecretSpec::parse("id=a,src=/very/private/path", |_| false).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("private"), "{shown}");
    }
}
