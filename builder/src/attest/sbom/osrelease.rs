//! `os-release` (systemd's `os-release(5)`): the distribution a Debian or Alpine purl names.

/// The two fields a purl needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `alpine`).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`, `3.19.0`).
    pub version_id: Option<String>,
}

impl OsRelease {
    pub fn parse(text: &str) -> OsRelease {
        let mut out = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = unquote(v.trim());
            match k {
                "ID" => out.id = Some(v),
                "VERSION_ID" => out.version_id = Some(v),
                _ => {}
            }
        }
        out
    }

    /// The purl `distro` qualifier: `debian-12`, or empty when the release is unknown.
    pub fn distro(&self) -> String {
        match (&self.id, &self.version_id) {
            (Some(id), Some(v)) => format!("{id}-{v}"),
            (Some(id), None) => id.clone(),
            _ => String::new(),
        }
    }
}

fn unquote(v: &str) -> String {
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v);
    v.replace("\\\"", "\"").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_and_version() {
        let r =
            OsRelease::parse("PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(r.distro(), "debian-12");
        assert_eq!(OsRelease::parse("NAME=x").distro(), "");
    }
}
