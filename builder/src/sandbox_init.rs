//! Process-wide set-up that must happen before any thread starts.

/// Enters a new mount namespace whose mounts do not propagate to the host (`unshare(CLONE_NEWNS)`
/// then `mount --make-rprivate /`). Must run while the process is single-threaded: the kernel
/// refuses `CLONE_NEWNS` for a thread that shares its filesystem attributes. Returns whether it
/// worked; failure (no `CAP_SYS_ADMIN`) is not an error here.
pub fn private_mount_namespace() -> bool {
    // SAFETY: plain syscalls with constant arguments; no memory is shared with the kernel.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return false;
        }
        let root = c"/";
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
    }
}
