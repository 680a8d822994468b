//! `rbuild binfmt`: how RUN steps of each platform run on this machine, and `--install`, which
//! registers the QEMU emulators a multi-platform build needs (see `executor::binfmt`).

use std::io::Write;

use super::Failure;
use crate::cli::args::BinfmtArgs;
use crate::errors::error_chain;
use crate::executor::binfmt::{emulation, install, Emulation, Installed};
use crate::graph::platform::{host_platform, parse_platform, platform_string};

/// The architectures `rbuild binfmt` reports on when none is named.
const KNOWN: [&str; 9] = [
    "amd64", "386", "arm64", "arm", "ppc64le", "s390x", "riscv64", "mips64le", "loong64",
];

pub fn run(a: &BinfmtArgs) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    if a.install {
        let done = install(&a.arches).map_err(|e| {
            Failure::Build(anyhow::anyhow!(
                "rbuild binfmt --install: {}",
                error_chain(&e)
            ))
        })?;
        for d in done {
            let _ = match d {
                Installed::Registered(n) => writeln!(out, "registered {n}"),
                Installed::AlreadyThere(n) => writeln!(out, "{n}: already registered"),
            };
        }
    }
    let arches: Vec<String> = if a.arches.is_empty() {
        KNOWN.iter().map(|s| s.to_string()).collect()
    } else {
        a.arches.clone()
    };
    let host = host_platform();
    let mut missing = false;
    for arch in &arches {
        let platform = parse_platform(&format!("linux/{arch}"))
            .map_err(|e| Failure::Usage(format!("error: {arch}: {e}")))?;
        let shown = platform_string(&platform);
        let _ = match emulation(&platform, &host) {
            Ok(Emulation::Native) => writeln!(out, "{shown}: native"),
            Ok(Emulation::Emulated {
                handler,
                interpreter,
            }) => writeln!(out, "{shown}: emulated by {handler} ({interpreter})"),
            Err(e) => {
                missing = true;
                writeln!(out, "{shown}: cannot run RUN steps: {e}")
            }
        };
    }
    // Named architectures are a question: "can these run here?" — no is a failure.
    if missing && !a.arches.is_empty() {
        return Err(Failure::Build(anyhow::anyhow!(
            "some of the named platforms cannot run RUN steps here"
        )));
    }
    Ok(())
}
