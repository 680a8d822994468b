//! Thin, typed wrappers over the Linux syscalls the sandbox needs (mount, pivot_root, unshare,
//! sethostname, set*id, …). `libc` gives us the raw calls; these turn C strings and errno into
//! Rust values so the helper reads as a sequence of named operations. No allocation-free
//! guarantees are needed: they run in the single-threaded helper, never between `fork` and
//! `exec` of a multi-threaded process.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A refused syscall: what was attempted and the errno.
#[derive(Debug)]
pub struct SysError {
    pub op: String,
    pub source: io::Error,
}

pub type SysResult<T> = Result<T, SysError>;

/// Wraps an `std::io::Error` from operation `op`.
pub fn io_fail(op: String) -> impl FnOnce(io::Error) -> SysError {
    move |source| SysError { op, source }
}

fn check(op: impl FnOnce() -> String, rc: libc::c_int) -> SysResult<libc::c_int> {
    if rc < 0 {
        Err(SysError {
            op: op(),
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(rc)
    }
}

pub fn cstring(s: &[u8], what: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| SysError {
        op: format!("{what}: contains a NUL byte"),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })
}

fn cpath(p: &Path) -> SysResult<CString> {
    cstring(p.as_os_str().as_bytes(), &p.display().to_string())
}

/// `mount(2)`.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    let src = cstring(source.as_bytes(), "mount source")?;
    let tgt = cpath(target)?;
    let fs = fstype
        .map(|f| cstring(f.as_bytes(), "fstype"))
        .transpose()?;
    let dat = data
        .map(|d| cstring(d.as_bytes(), "mount data"))
        .transpose()?;
    // SAFETY: all pointers are valid NUL-terminated strings (or null) for the call's duration.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            dat.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>()),
        )
    };
    check(
        || {
            format!(
                "mount {} ({}) on {}",
                source,
                fstype.unwrap_or("bind"),
                target.display()
            )
        },
        rc,
    )
    .map(|_| ())
}

/// The overlay mount option a process of this user namespace needs: inside one (rootless),
/// `userxattr` — overlayfs then keeps opaque directories and its other attributes in `user.`
/// xattrs, the only ones it may write there (Linux ≥ 5.11) — else none.
pub fn overlay_xattr_option() -> &'static str {
    if super::userns::in_user_namespace() {
        ",userxattr"
    } else {
        ""
    }
}

/// The options of a RUN step's overlay besides its directories: no redirects and no metacopy
/// (an upper directory then holds whole files and directories, as a layer needs). In a user
/// namespace `userxattr`, with which the kernel turns both off itself — and refuses them
/// named (`redirect_dir=off` is `EINVAL` there).
pub fn overlay_step_options() -> &'static str {
    if super::userns::in_user_namespace() {
        "userxattr"
    } else {
        "redirect_dir=off,metacopy=off"
    }
}

/// The xattr namespace overlay mounts of this process use (see [`overlay_xattr_option`]).
pub fn overlay_xattrs() -> rbuild_layers::whiteout::overlay::OverlayXattrs {
    use rbuild_layers::whiteout::overlay::OverlayXattrs;
    if super::userns::in_user_namespace() {
        OverlayXattrs::User
    } else {
        OverlayXattrs::Trusted
    }
}

/// The flags of the mount `target` is on that a remount must repeat: in a user namespace the
/// kernel locks `nosuid`, `nodev`, `noexec` and the atime flags of mounts it inherited, and
/// refuses a bind remount that would drop them (runc does the same).
pub fn locked_flags(target: &Path) -> SysResult<libc::c_ulong> {
    let c = cpath(target)?;
    // SAFETY: `st` is written by statvfs before it is read.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    check(|| format!("statvfs {}", target.display()), rc)?;
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

/// Makes the bind mount at `target` read-only (with `extra` flags), keeping its locked flags.
pub fn remount_bind_readonly(target: &Path, extra: libc::c_ulong) -> SysResult<()> {
    let locked = locked_flags(target)?;
    mount(
        "none",
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | extra | locked,
        None,
    )
}

/// `umount2(2)`.
pub fn umount2(target: &Path, flags: libc::c_int) -> SysResult<()> {
    let t = cpath(target)?;
    // SAFETY: valid C string.
    let rc = unsafe { libc::umount2(t.as_ptr(), flags) };
    check(|| format!("umount {}", target.display()), rc).map(|_| ())
}

/// `unshare(2)`.
pub fn unshare(flags: libc::c_int, what: &str) -> SysResult<()> {
    // SAFETY: plain syscall.
    let rc = unsafe { libc::unshare(flags) };
    check(|| format!("unshare({what})"), rc).map(|_| ())
}

/// The sandbox's namespaces: unshares mount, PID, UTS and IPC namespaces (and a network
/// namespace when `own_network`), then makes every mount private, so that nothing mounted
/// afterwards reaches the parent's namespace.
pub fn enter_sandbox_namespaces(own_network: bool) -> SysResult<()> {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    let mut what = "mount, PID, UTS and IPC namespaces".to_string();
    if own_network {
        flags |= libc::CLONE_NEWNET;
        what.push_str(" and a network namespace");
    }
    unshare(flags, &what)?;
    mount(
        "none",
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
}

/// `pivot_root(".", put_old)` from the new root's directory; the old root stays reachable at
/// `put_old` (so its objects can still be bound) until [`umount2`] detaches it.
pub fn pivot_to_cwd(put_old: &Path) -> SysResult<()> {
    let dot = c".";
    let old = cpath(put_old)?;
    // SAFETY: valid C strings; the syscall has no libc wrapper.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), old.as_ptr()) };
    check(|| "pivot_root into the overlay".into(), rc as libc::c_int)?;
    chdir(Path::new("/"))
}

pub fn chdir(p: &Path) -> SysResult<()> {
    let c = cpath(p)?;
    // SAFETY: valid C string.
    let rc = unsafe { libc::chdir(c.as_ptr()) };
    check(|| format!("chdir {}", p.display()), rc).map(|_| ())
}

pub fn sethostname(name: &str) -> SysResult<()> {
    // SAFETY: pointer and length describe `name`'s bytes.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check(|| format!("sethostname {name}"), rc).map(|_| ())
}

/// Drops to `uid`/`gid` with exactly `groups` as supplementary groups (order matters: groups
/// and gid need privilege that setuid gives up).
pub fn set_identity(uid: u32, gid: u32, groups: &[u32]) -> SysResult<()> {
    // SAFETY: the pointer/length pair describes `groups`.
    let rc = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
    // A user namespace with a single-id map has setgroups denied: the groups stay what they
    // are (only gid 0 exists there anyway; docs/isolation.md).
    let denied = std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !(rc < 0 && denied && groups.iter().all(|g| *g == gid)) {
        check(|| format!("setgroups {groups:?}"), rc)?;
    }
    // SAFETY: plain syscalls.
    check(|| format!("setgid {gid}"), unsafe { libc::setgid(gid) })?;
    check(|| format!("setuid {uid}"), unsafe { libc::setuid(uid) })?;
    Ok(())
}

/// Opens `p` with `O_PATH` so it can be bound after `pivot_root` through `/proc/self/fd/N`.
pub fn open_path(p: &Path) -> SysResult<libc::c_int> {
    let c = cpath(p)?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    check(|| format!("open {}", p.display()), fd)
}

/// Marks every fd from `first` up close-on-exec, so the command starts with only 0, 1, 2.
pub fn cloexec_from(first: u32) -> SysResult<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_int = 4;
    // SAFETY: plain syscall.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    check(|| "close_range".into(), rc as libc::c_int).map(|_| ())
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> SysResult<()> {
    // SAFETY: a socket fd is created and closed here; `ifreq` is zero-initialised and only the
    // name and flags are set, as SIOCSIFFLAGS expects.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(|| "socket for loopback set-up".into(), sock)?;
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as i16;
        let rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        libc::close(sock);
        check(|| "bring loopback up (SIOCSIFFLAGS lo)".into(), rc).map(|_| ())
    }
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub fn parent_death_signal(sig: libc::c_int) -> SysResult<()> {
    // SAFETY: plain syscall.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    check(|| "prctl(PR_SET_PDEATHSIG)".into(), rc).map(|_| ())
}
