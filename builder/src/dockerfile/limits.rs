//! The size bounds on variable expansion, and the errors that report them.
//!
//! A Dockerfile is hostile input: forty `ARG An=${An-1}${An-1}` lines in under a kilobyte would
//! otherwise expand to 2^40 bytes. The project rule is that no input under 1 MB may drive memory
//! past 1 GiB, so every expansion is bounded *while the string is built* (never measured after):
//!
//! | What | Bound |
//! |---|---|
//! | one expanded word (an ARG default, an ENV value, a COPY source, a heredoc body, …), at every `${…}` nesting level | [`MAX_WORD_BYTES`] = 1 MiB |
//! | everything the expansions of one instruction produce, nested levels and discarded `${v:-…}` alternatives included | [`MAX_INSTRUCTION_BYTES`] = 8 MiB |
//! | names plus values of all ARGs and ENVs in one scope (global ARGs, or one stage, the base image's ENV and the stage's LABELs included) | [`MAX_SCOPE_BYTES`] = 4 MiB |
//! | `${…}` nesting depth (the scanner recurses per level) | [`MAX_NESTING`] = 64 |
//! | work of one pattern operation (`${v#p}`, `${v%%p}`, `${v/p/r}`, …): pattern tokens × value characters examined | [`MAX_PATTERN_STEPS`] = 2^26 |
//!
//! Each is far above what a real Dockerfile needs (build args are versions, paths and URLs);
//! large data belongs in a file of the build context (`COPY` it) or in a `--secret`.
//! The scope bound also bounds what every `RUN` repeats: BuildKit (and rbuild) record the
//! build args in scope in each RUN's history entry and cache key.

/// The largest one expanded word may be, in bytes.
pub const MAX_WORD_BYTES: usize = 1 << 20;
/// The most bytes the expansions of one instruction may produce in total.
pub const MAX_INSTRUCTION_BYTES: usize = 8 << 20;
/// The largest the ARG and ENV names and values in one scope may be in total, in bytes.
pub const MAX_SCOPE_BYTES: usize = 4 << 20;
/// How deep `${…}` may nest.
pub const MAX_NESTING: usize = 64;
/// The most matcher steps (pattern tokens × characters) one pattern operation may take.
pub const MAX_PATTERN_STEPS: u64 = 1 << 26;

/// What to do when a bound is hit, shared by every limit message.
pub const LIMIT_HINT: &str = "keep large data in a file of the build context and COPY it (or pass it with --secret); see \"Limits\" in the README";

/// `n` bytes as the README states the limits (`1 MiB`, `4 MiB`).
pub fn mib(n: usize) -> String {
    if n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// The ARG and ENV values in one scope outgrew [`MAX_SCOPE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{instruction} {name}: the ARG, ENV and LABEL values in scope would total {total} bytes, over the {limit} limit for one scope: {LIMIT_HINT}", limit = mib(MAX_SCOPE_BYTES))]
pub struct ScopeTooLarge {
    /// `ARG` or `ENV`.
    pub instruction: &'static str,
    /// The variable whose value went over.
    pub name: String,
    pub total: usize,
}

/// Bytes a variable takes in a scope: its name and its value.
pub fn entry_bytes(name: &str, value: &str) -> usize {
    name.len() + value.len()
}

/// Running total of a scope's ARG/ENV bytes, kept as variables are set so that checking costs
/// nothing per instruction.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopeSize(usize);

impl ScopeSize {
    /// The size of an existing scope.
    pub fn of<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> ScopeSize {
        ScopeSize(entries.into_iter().map(|(k, v)| entry_bytes(k, v)).sum())
    }

    /// An error naming `instruction` and `name` if the scope is already too large.
    pub fn check(self, instruction: &'static str, name: &str) -> Result<(), ScopeTooLarge> {
        if self.0 > MAX_SCOPE_BYTES {
            return Err(ScopeTooLarge {
                instruction,
                name: name.to_owned(),
                total: self.0,
            });
        }
        Ok(())
    }

    /// Accounts for `name` changing from `old` to `new`; an error if the scope gets too large.
    pub fn set(
        &mut self,
        instruction: &'static str,
        name: &str,
        old: Option<&str>,
        new: &str,
    ) -> Result<(), ScopeTooLarge> {
        let removed = old.map_or(0, |o| entry_bytes(name, o));
        let total = self.0.saturating_sub(removed) + entry_bytes(name, new);
        if total > MAX_SCOPE_BYTES {
            return Err(ScopeTooLarge {
                instruction,
                name: name.to_owned(),
                total,
            });
        }
        self.0 = total;
        Ok(())
    }
}
