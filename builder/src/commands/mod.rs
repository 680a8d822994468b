//! One small module per subcommand; each turns validated options into library calls.

pub mod build;
pub mod check;
pub mod explain;
pub mod login;
pub mod plan;
pub mod store;
