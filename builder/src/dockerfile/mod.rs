//! The Dockerfile frontend: bytes → typed instructions with source spans.
pub mod expand;
