//! Command-line interface: clap arguments turned into validated options before any work starts.

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    0
}
