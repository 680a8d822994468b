//! Platform strings: `os/arch[/variant]` parsed and normalised as containerd's `platforms`
//! package does (`x86_64` is `amd64`, `aarch64` and `arm64/v8` are `arm64`, `armhf` is
//! `arm/v7`), formatted back, and the host's. The CLI, the build plan and the sandbox share them;
//! they live here, with [`Platform`], below all of them.

use crate::Platform;

/// Parses `os/arch[/variant]` and normalises architecture aliases as containerd does.
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = s.trim().split('/').collect();
    let (os, arch, variant) = match parts.as_slice() {
        [os, arch] => (*os, *arch, None),
        [os, arch, variant] => (*os, *arch, Some(*variant)),
        _ => {
            return Err(format!(
                "platform {s:?} must be os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
            ))
        }
    };
    if os.is_empty() || arch.is_empty() || variant == Some("") {
        return Err(format!("platform {s:?} has an empty part"));
    }
    let os = os.to_ascii_lowercase();
    let (arch, variant) = normalize_arch(&arch.to_ascii_lowercase(), variant);
    Ok(Platform {
        architecture: arch,
        os,
        os_version: None,
        variant,
    })
}

fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_ascii_lowercase);
    match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "v8")),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => ("arm".into(), Some(variant.unwrap_or_else(|| "v7".into()))),
        "i386" | "i686" | "386" => ("386".into(), variant),
        other => (other.to_string(), variant),
    }
}

/// The platform rbuild itself runs on.
pub fn host_platform() -> Platform {
    let (arch, variant) = normalize_arch(std::env::consts::ARCH, None);
    Platform {
        architecture: arch,
        os: "linux".into(),
        os_version: None,
        variant,
    }
}

/// Formats a platform as `os/arch[/variant]`.
pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_normalise_like_containerd() {
        let p = parse_platform("linux/x86_64").unwrap();
        assert_eq!(platform_string(&p), "linux/amd64");
        assert_eq!(
            platform_string(&parse_platform("linux/aarch64").unwrap()),
            "linux/arm64"
        );
        assert_eq!(
            platform_string(&parse_platform("linux/arm64/v8").unwrap()),
            "linux/arm64"
        );
        assert_eq!(
            platform_string(&parse_platform("linux/arm").unwrap()),
            "linux/arm/v7"
        );
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux/").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
    }
}
