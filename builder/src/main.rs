fn main() {
    // Before any thread exists: move into a private mount namespace so that every mount rbuild
    // makes (read-only views of stages for COPY --from) disappears with the process, even if it
    // is killed. Harmless without privileges: mount-needing steps then report what was refused.
    rbuild::sandbox_init::private_mount_namespace();
    std::process::exit(rbuild::cli::main());
}
