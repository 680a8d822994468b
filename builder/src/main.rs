fn main() {
    // The RUN sandbox helper (`rbuild __sandbox`, re-executed by the engine): dispatched before
    // clap and before any thread exists, because it forks (see `rbuild::executor::helper`).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(rbuild::executor::HELPER_ARG))
    {
        std::process::exit(rbuild::executor::helper::main());
    }
    // Before any thread exists: move into a private mount namespace so that every mount rbuild
    // makes (read-only views of stages for COPY --from) disappears with the process, even if it
    // is killed. Harmless without privileges: mount-needing steps then report what was refused.
    rbuild::sandbox_init::private_mount_namespace();
    std::process::exit(rbuild::cli::main());
}
