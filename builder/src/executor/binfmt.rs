//! RUN steps of a foreign platform: they run through the kernel's binfmt_misc, with a QEMU
//! user-mode emulator registered as the handler of that architecture's ELF executables
//! (Debian's `qemu-user-static` registers them), as BuildKit and buildah run them. rbuild never
//! runs a foreign binary any other way: without a handler, the step is refused with what to do.
//!
//! * [`emulation`] decides, before a foreign step runs, whether the host can run it: it reads
//!   the registered handlers (`/proc/sys/fs/binfmt_misc/*`) and matches each one's magic and
//!   mask against an ELF header of the platform's architecture, as the kernel would. The handler
//!   must have the `F` (fix-binary) flag: without it the kernel looks the interpreter up inside
//!   the step's root filesystem, where it is not.
//! * [`install`] is `rbuild binfmt --install`: it registers the handlers the installed QEMU
//!   package describes (`/usr/lib/binfmt.d/qemu-*.conf`, systemd's format, the register line
//!   itself), with `F` added, mounting binfmt_misc first when it is not.
//!
//! Written by hand: binfmt_misc's files are a handful of `key value` lines, and no crate reads
//! them.

use std::path::{Path, PathBuf};

use rbuild_layers::Platform;

/// Where binfmt_misc is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Where systemd-style packages (Debian's `qemu-user-static`) describe their handlers.
pub const BINFMT_D: &str = "/usr/lib/binfmt.d";

/// How RUN steps of a platform run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The host's CPU runs them.
    Native,
    /// Through the binfmt_misc handler `handler`, whose interpreter is `interpreter`.
    Emulated {
        handler: String,
        interpreter: String,
    },
}

/// Why RUN steps of a platform cannot run here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmulationError {
    #[error("RUN steps for {platform} cannot run on this {host} machine: rbuild knows no ELF machine for the architecture {arch:?}, so no emulator can run them; build that platform on a machine of it")]
    UnknownArch {
        platform: String,
        host: String,
        arch: String,
    },
    #[error("RUN steps for {platform} need QEMU user emulation, and binfmt_misc is not mounted at {BINFMT_DIR} on this {host} machine: as root, install Debian's qemu-user-static and run `rbuild binfmt --install` (it mounts binfmt_misc and registers the emulators); rbuild never runs a foreign binary any other way")]
    NotMounted { platform: String, host: String },
    #[error("RUN steps for {platform} need QEMU user emulation, and binfmt_misc is disabled on this {host} machine ({BINFMT_DIR}/status says so): as root, `echo 1 > {BINFMT_DIR}/status`")]
    Disabled { platform: String, host: String },
    #[error("RUN steps for {platform} need QEMU user emulation, and no binfmt_misc handler for {arch} executables is registered on this {host} machine: as root, install Debian's qemu-user-static and run `rbuild binfmt --install {arch}`; rbuild never runs a foreign binary any other way")]
    NoHandler {
        platform: String,
        host: String,
        arch: String,
    },
    #[error("RUN steps for {platform}: the binfmt_misc handler {handler:?} (interpreter {interpreter}) is registered without the F (fix-binary) flag, so the kernel would look for its interpreter inside the step's root filesystem: register it again with F, as root: `echo -1 > {BINFMT_DIR}/{handler}; rbuild binfmt --install {arch}`")]
    NotFixBinary {
        platform: String,
        handler: String,
        interpreter: String,
        arch: String,
    },
}

/// The ELF identity of an architecture: class (64-bit), byte order (little endian) and
/// `e_machine`, from the ELF specification's machine numbers.
#[derive(Debug, Clone, Copy)]
struct ElfIdent {
    is64: bool,
    little: bool,
    machine: u16,
}

/// OCI architecture → ELF identity, and the name QEMU and Debian give it.
fn elf_ident(arch: &str) -> Option<(ElfIdent, &'static str)> {
    let id = |is64, little, machine| ElfIdent {
        is64,
        little,
        machine,
    };
    Some(match arch {
        "amd64" => (id(true, true, 62), "x86_64"),
        "386" => (id(false, true, 3), "i386"),
        "arm64" => (id(true, true, 183), "aarch64"),
        "arm" => (id(false, true, 40), "arm"),
        "ppc64le" => (id(true, true, 21), "ppc64le"),
        "s390x" => (id(true, false, 22), "s390x"),
        "riscv64" => (id(true, true, 243), "riscv64"),
        "mips64le" => (id(true, true, 8), "mips64el"),
        "loong64" => (id(true, true, 258), "loongarch64"),
        _ => return None,
    })
}

/// QEMU's name for an OCI architecture (`arm64` → `aarch64`), as in `qemu-aarch64`.
pub fn qemu_name(arch: &str) -> Option<&'static str> {
    elf_ident(arch).map(|(_, n)| n)
}

/// The first 64 bytes of an executable (`ET_EXEC`) of `id`, as the kernel matches them.
fn elf_header(id: ElfIdent) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = if id.is64 { 2 } else { 1 };
    h[5] = if id.little { 1 } else { 2 };
    h[6] = 1; // EI_VERSION
    let put16 = |h: &mut [u8; 64], at: usize, v: u16| {
        let b = if id.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        h[at..at + 2].copy_from_slice(&b);
    };
    put16(&mut h, 16, 2); // e_type = ET_EXEC
    put16(&mut h, 18, id.machine);
    h[if id.little { 20 } else { 23 }] = 1; // e_version
    h
}

/// Whether the host's CPU runs `p`'s executables: the same architecture, or 32-bit x86 on an
/// x86-64 host (its kernel runs them).
pub fn is_native(p: &Platform, host: &Platform) -> bool {
    p.os == host.os
        && (p.architecture == host.architecture
            || (host.architecture == "amd64" && p.architecture == "386"))
}

/// One registered binfmt_misc handler (a file of [`BINFMT_DIR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    /// Parses a handler file: `enabled`, `interpreter X`, `flags: PF`, `offset N`, `magic HEX`,
    /// `mask HEX` (`extension .X` handlers match names, not contents: `None`).
    fn parse(name: &str, text: &str) -> Option<Handler> {
        let mut h = Handler {
            name: name.to_string(),
            enabled: false,
            interpreter: String::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "enabled" => h.enabled = true,
                "disabled" => h.enabled = false,
                "interpreter" => h.interpreter = v.to_string(),
                "flags:" => h.flags = v.trim().to_string(),
                "offset" => h.offset = v.trim().parse().ok()?,
                "magic" => h.magic = hex(v.trim())?,
                "mask" => h.mask = hex(v.trim())?,
                "extension" => return None,
                _ => {}
            }
        }
        (!h.magic.is_empty()).then_some(h)
    }

    /// Whether the kernel would hand a file starting with `head` to this handler.
    fn matches(&self, head: &[u8]) -> bool {
        let Some(bytes) = head.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        bytes
            .iter()
            .zip(&self.magic)
            .enumerate()
            .all(|(i, (b, m))| {
                let mask = self.mask.get(i).copied().unwrap_or(0xff);
                b & mask == m & mask
            })
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The registered handlers, when binfmt_misc is mounted at `dir`.
pub fn handlers(dir: &Path) -> Option<Vec<Handler>> {
    let entries = std::fs::read_dir(dir).ok()?;
    if !dir.join("register").exists() {
        return None;
    }
    let mut out: Vec<Handler> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            Handler::parse(&name, &text)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Some(out)
}

/// How RUN steps of `platform` run on this `host`: natively, or through a registered emulator
/// (looked up in binfmt_misc at `dir`), or not at all.
pub fn emulation(platform: &Platform, host: &Platform) -> Result<Emulation, EmulationError> {
    emulation_in(Path::new(BINFMT_DIR), platform, host)
}

fn emulation_in(
    dir: &Path,
    platform: &Platform,
    host: &Platform,
) -> Result<Emulation, EmulationError> {
    if is_native(platform, host) {
        return Ok(Emulation::Native);
    }
    let shown = rbuild_layers::platform::platform_string(platform);
    let host_shown = rbuild_layers::platform::platform_string(host);
    let arch = platform.architecture.clone();
    let Some((ident, _)) = elf_ident(&arch) else {
        return Err(EmulationError::UnknownArch {
            platform: shown,
            host: host_shown,
            arch,
        });
    };
    let Some(handlers) = handlers(dir) else {
        return Err(EmulationError::NotMounted {
            platform: shown,
            host: host_shown,
        });
    };
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    if status.trim() == "disabled" {
        return Err(EmulationError::Disabled {
            platform: shown,
            host: host_shown,
        });
    }
    let head = elf_header(ident);
    let Some(h) = handlers.iter().find(|h| h.enabled && h.matches(&head)) else {
        return Err(EmulationError::NoHandler {
            platform: shown,
            host: host_shown,
            arch,
        });
    };
    if !h.flags.contains('F') {
        return Err(EmulationError::NotFixBinary {
            platform: shown,
            handler: h.name.clone(),
            interpreter: h.interpreter.clone(),
            arch,
        });
    }
    Ok(Emulation::Emulated {
        handler: h.name.clone(),
        interpreter: h.interpreter.clone(),
    })
}

/// Why `rbuild binfmt --install` failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("registering emulators needs root (binfmt_misc is the whole machine's)")]
    NotRoot,
    #[error("mounting binfmt_misc at {BINFMT_DIR}")]
    Mount(#[source] std::io::Error),
    #[error("no QEMU emulator is described in {BINFMT_D}: install Debian's qemu-user-static (apt-get install qemu-user-static) first")]
    NoQemu,
    #[error("unknown architecture {0:?} (known: amd64, 386, arm64, arm, ppc64le, s390x, riscv64, mips64le, loong64)")]
    UnknownArch(String),
    #[error(
        "{BINFMT_D} has no qemu-{qemu}.conf for {arch}: is it in your qemu-user-static version?"
    )]
    Missing { arch: String, qemu: String },
    #[error("reading {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{}: not a binfmt_misc register line (:name:type:offset:magic:mask:interpreter:flags)", .0.display())]
    BadLine(PathBuf),
    #[error("registering {name} in {BINFMT_DIR}/register")]
    Register {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// What `install` did for one handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    Registered(String),
    /// Registered already, with the F flag.
    AlreadyThere(String),
}

/// The register line of a `binfmt.d` file with the `F` flag added (systemd's format is the
/// kernel's: `:name:type:offset:magic:mask:interpreter:flags`).
fn fix_binary_line(path: &Path, text: &str) -> Result<(String, String), InstallError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .ok_or_else(|| InstallError::BadLine(path.to_path_buf()))?;
    let sep = line
        .chars()
        .next()
        .ok_or_else(|| InstallError::BadLine(path.to_path_buf()))?;
    let mut fields: Vec<String> = line.split(sep).skip(1).map(str::to_string).collect();
    if fields.len() != 7 || fields[0].is_empty() {
        return Err(InstallError::BadLine(path.to_path_buf()));
    }
    if !fields[6].contains('F') {
        fields[6].push('F');
    }
    let name = fields[0].clone();
    Ok((name, format!("{sep}{}", fields.join(&sep.to_string()))))
}

/// Registers the QEMU emulators for `arches` (OCI names; all that `binfmt.d` describes when
/// empty) with the `F` flag, mounting binfmt_misc when it is not mounted. A handler registered
/// with `F` already is left alone; one without `F` is registered again with it.
pub fn install(arches: &[String]) -> Result<Vec<Installed>, InstallError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(InstallError::NotRoot);
    }
    let dir = Path::new(BINFMT_DIR);
    if !dir.join("register").exists() {
        super::sys::mount("binfmt_misc", dir, Some("binfmt_misc"), 0, None)
            .map_err(|e| InstallError::Mount(e.source))?;
    }
    let files: Vec<PathBuf> = if arches.is_empty() {
        let mut all: Vec<PathBuf> = std::fs::read_dir(BINFMT_D)
            .map_err(|_| InstallError::NoQemu)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("qemu-") && n.ends_with(".conf"))
            })
            .collect();
        all.sort();
        if all.is_empty() {
            return Err(InstallError::NoQemu);
        }
        all
    } else {
        arches
            .iter()
            .map(|a| {
                let qemu = rbuild_layers::platform::parse_platform(&format!("linux/{a}"))
                    .ok()
                    .and_then(|p| qemu_name(&p.architecture))
                    .ok_or_else(|| InstallError::UnknownArch(a.clone()))?;
                let path = Path::new(BINFMT_D).join(format!("qemu-{qemu}.conf"));
                if !path.exists() {
                    return Err(InstallError::Missing {
                        arch: a.clone(),
                        qemu: qemu.to_string(),
                    });
                }
                Ok(path)
            })
            .collect::<Result<_, _>>()?
    };
    let registered = handlers(dir).unwrap_or_default();
    let mut done = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| InstallError::Read(path.clone(), e))?;
        let (name, line) = fix_binary_line(&path, &text)?;
        if let Some(h) = registered.iter().find(|h| h.name == name) {
            if h.flags.contains('F') && h.enabled {
                done.push(Installed::AlreadyThere(name));
                continue;
            }
            // Registered without F (or disabled): removed, then registered again below.
            std::fs::write(dir.join(&name), "-1").map_err(|source| InstallError::Register {
                name: name.clone(),
                source,
            })?;
        }
        std::fs::write(dir.join("register"), &line).map_err(|source| InstallError::Register {
            name: name.clone(),
            source,
        })?;
        done.push(Installed::Registered(name));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_layers::platform::parse_platform;

    fn p(s: &str) -> Platform {
        parse_platform(s).unwrap()
    }

    /// Debian 12's qemu-user-static handler for aarch64, as /proc shows it.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    /// And for arm (32-bit).
    const ARM: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c4601010100000000000000000002002800\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn binfmt(handlers: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("register"), "").unwrap();
        std::fs::write(d.path().join("status"), "enabled\n").unwrap();
        for (n, t) in handlers {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    #[test]
    fn the_host_platform_and_i386_on_amd64_are_native() {
        let host = p("linux/amd64");
        let none = Path::new("/nonexistent");
        assert_eq!(emulation_in(none, &host, &host).unwrap(), Emulation::Native);
        assert_eq!(
            emulation_in(none, &p("linux/386"), &host).unwrap(),
            Emulation::Native
        );
    }

    #[test]
    fn a_registered_handler_is_found_by_its_magic_as_the_kernel_matches_it() {
        let d = binfmt(&[("qemu-aarch64", AARCH64), ("qemu-arm", ARM)]);
        let host = p("linux/amd64");
        assert_eq!(
            emulation_in(d.path(), &p("linux/arm64"), &host).unwrap(),
            Emulation::Emulated {
                handler: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            }
        );
        let Emulation::Emulated { handler, .. } =
            emulation_in(d.path(), &p("linux/arm/v7"), &host).unwrap()
        else {
            panic!("arm is emulated")
        };
        assert_eq!(handler, "qemu-arm");
    }

    #[test]
    fn a_missing_disabled_or_unfixed_handler_is_a_clear_error() {
        let host = p("linux/amd64");
        let arm64 = p("linux/arm64");
        let d = binfmt(&[("qemu-arm", ARM)]);
        let e = emulation_in(d.path(), &arm64, &host).unwrap_err();
        assert!(matches!(e, EmulationError::NoHandler { .. }), "{e}");
        assert!(
            e.to_string().contains("rbuild binfmt --install arm64"),
            "{e}"
        );
        let d = binfmt(&[("qemu-aarch64", &AARCH64.replace("enabled", "disabled"))]);
        assert!(matches!(
            emulation_in(d.path(), &arm64, &host).unwrap_err(),
            EmulationError::NoHandler { .. }
        ));
        let d = binfmt(&[("qemu-aarch64", &AARCH64.replace("flags: PF", "flags: P"))]);
        let e = emulation_in(d.path(), &arm64, &host).unwrap_err();
        assert!(matches!(e, EmulationError::NotFixBinary { .. }), "{e}");
        let none = tempfile::tempdir().unwrap();
        assert!(matches!(
            emulation_in(none.path(), &arm64, &host).unwrap_err(),
            EmulationError::NotMounted { .. }
        ));
        assert!(matches!(
            emulation_in(d.path(), &p("linux/vax"), &host).unwrap_err(),
            EmulationError::UnknownArch { .. }
        ));
    }

    #[test]
    fn install_lines_get_the_fix_binary_flag() {
        let path = Path::new("qemu-aarch64.conf");
        let (name, line) = fix_binary_line(path, ":qemu-aarch64:M::\\x7f\\x45:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n").unwrap();
        assert_eq!(name, "qemu-aarch64");
        assert!(line.ends_with(":OPF"), "{line}");
        let (_, line) = fix_binary_line(path, "# c\n:qemu-arm:M::\\x7f:\\xff:/q:P\n").unwrap();
        assert_eq!(line, ":qemu-arm:M::\\x7f:\\xff:/q:PF");
        assert!(fix_binary_line(path, ":too:few\n").is_err());
    }
}
