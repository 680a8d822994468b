//! End-to-end tests: the real `rbuild` binary against real tools and servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod build_cache;
mod build_concurrency;
mod build_copy;
mod build_crash;
mod build_devprod;
mod build_errors;
mod build_git;
mod build_instructions;
mod build_multistage;
mod build_outputs;
mod cache_import;
mod cache_pipeline;
mod cli;
mod fixtures;
mod push_ahead;
mod registry_auth;
mod registry_faults;
mod registry_roundtrip;
mod registry_token;
mod run_debian;
mod run_interrupt;
mod run_mounts;
mod run_network;
mod run_sandbox;
mod store_commands;
