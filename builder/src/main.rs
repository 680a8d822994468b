fn main() {
    // rbuild re-executed by itself into a user namespace (a non-root user's build, see
    // `rbuild::executor::userns`): unshare it first, while no thread exists.
    if let Some(v) = std::env::var_os(rbuild::executor::userns::CHILD_ENV) {
        std::env::remove_var(rbuild::executor::userns::CHILD_ENV);
        if let Err(code) = rbuild::executor::userns::enter_as_child(&v) {
            std::process::exit(code);
        }
    }
    // The RUN sandbox helper (`rbuild __sandbox`, re-executed by the engine): dispatched before
    // clap and before any thread exists, because it forks (see `rbuild::executor::helper`).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(rbuild::executor::HELPER_ARG))
    {
        std::process::exit(rbuild::executor::helper::main());
    }
    // The isolation probe (`rbuild __isolation-probe DIR`): forks and unshares, likewise.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(rbuild::executor::probe::PROBE_ARG))
    {
        std::process::exit(rbuild::executor::probe::main());
    }
    // Before any thread exists: move into a private mount namespace so that every mount rbuild
    // makes (read-only views of stages for COPY --from) disappears with the process, even if it
    // is killed. Harmless without privileges: mount-needing steps then report what was refused.
    // Not for `rbuild binfmt`: the binfmt_misc it mounts (`--install`) is for every later
    // process, the builds that look for their emulators there included.
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new("binfmt")) {
        rbuild::sandbox_init::private_mount_namespace();
    }
    exit_on_panic();
    std::process::exit(rbuild::commands::main());
}

/// A panic on any thread is a bug in rbuild, and the build cannot go on: the other threads may
/// be waiting for the one that panicked, which would hang the build forever. Print the panic as
/// usual, say what it means, and end the process with Rust's panic status (101). What the build
/// left half-written is reclaimed by the next run, as after a kill (`layers::store::temps`).
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("rbuild: internal error (a bug in rbuild, please report it); the build stopped");
        std::process::exit(101);
    }));
}
