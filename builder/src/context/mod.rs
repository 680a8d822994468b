//! The build context: `.dockerignore` rules, scanning and content hashing.
