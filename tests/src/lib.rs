//! Support for rbuild's end-to-end tests: locating the built binary, fixtures, starting servers
//! and inspecting images with independent tools.
#![allow(clippy::unwrap_used)]
