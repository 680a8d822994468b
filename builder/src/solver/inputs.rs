//! What the engine takes from outside that is more than a value: where `--secret`s come from
//! and which ssh agents `--ssh` forwards. The engine owns these types; the CLI parses its flags
//! into them (`cli::secret`, `cli::ssh`), so the engine never imports the CLI.

use std::fmt;
use std::path::PathBuf;

/// Where a secret's bytes come from (a path or a variable name: never the bytes themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// A validated `--secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.source {
            SecretSource::File(_) => "file",
            SecretSource::Env(_) => "env",
        };
        write!(f, "SecretSpec {{ id: {:?}, source: {kind} }}", self.id)
    }
}

/// The id a `RUN --mount=type=ssh` without `id=` asks for, and `--ssh default`.
pub const DEFAULT_ID: &str = "default";

/// A validated `--ssh`: an agent id and the absolute path of its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub id: String,
    pub socket: PathBuf,
}
