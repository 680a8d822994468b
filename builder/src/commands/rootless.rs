//! Before any command touches the store: a non-root user's rbuild goes into its own user
//! namespace (`executor::userns`), where it can keep the owners of image files and run RUN
//! steps (`--isolation rootless`, or `auto`). Store commands go there too: the snapshots
//! they manage hold files of the namespace's ids, which the user alone cannot remove.

use std::io::Write;

use crate::cli::values::IsolationMode;
use crate::cli::{Cli, Command};
use crate::executor::userns;

/// Runs this command again in a user namespace when it needs one, and returns the exit code
/// to end with; `None` to go on in this process (uid 0, not needed, or — for `auto` — not
/// possible here: the first RUN then says why).
pub fn enter_if_needed(cli: &Cli) -> Option<i32> {
    // SAFETY: plain syscalls.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // uid 0: root, or already in a user namespace (rbuild's own child is uid 0 there). A
    // non-root user inside a container's user namespace gets one of its own, nested.
    if uid == 0 {
        return None;
    }
    let isolation = match &cli.command {
        Some(Command::Build(a)) => Some(a.isolation),
        None => Some(cli.build.isolation),
        Some(Command::Prune(_) | Command::Du(_) | Command::Fsck(_) | Command::Explain(_)) => None,
        Some(Command::Check(_) | Command::Login(_) | Command::Binfmt(_)) => return None,
    };
    let required = match isolation {
        Some(IsolationMode::Rootless) => true,
        Some(IsolationMode::Auto) | None => false,
        Some(IsolationMode::Namespaces | IsolationMode::Chroot | IsolationMode::InPlace) => {
            return None
        }
    };
    match userns::reexec(&userns::plan(uid), uid, gid) {
        Ok(code) => Some(code),
        Err(e) if required => {
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                crate::errors::error_chain(&e)
            );
            Some(super::EXIT_BUILD_FAILED)
        }
        // auto: a build without RUN still works here; a RUN says why it cannot.
        Err(_) => None,
    }
}
