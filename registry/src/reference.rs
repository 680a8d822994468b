//! Image references (`[registry[:port]/]repository[:tag][@digest]`) with Docker's rules.
//!
//! Grammar and normalisation follow `github.com/distribution/reference` (`reference.go`,
//! `normalize.go`): the first path component is a registry host only if it contains `.` or `:`,
//! is `localhost`, or has upper-case letters; otherwise the reference is on Docker Hub
//! (`docker.io`), where a single-component name gets the `library/` prefix. Repository components
//! are lower-case alphanumerics joined by `.`, `_`, `__` or runs of `-`; a tag is
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the whole name is at most 255 characters.

use std::fmt;
use std::str::FromStr;

use rbuild_layers::Digest;

/// The registry host used for names without one.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The old name of Docker Hub, normalised to [`DEFAULT_REGISTRY`] as Docker does.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid { input: String, reason: &'static str },
    #[error("invalid image reference {input:?}: bad digest: {source}")]
    Digest {
        input: String,
        #[source]
        source: rbuild_layers::DigestError,
    },
}

impl Reference {
    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The tag, or `latest` when neither a tag nor a digest was given (Docker's default).
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// Checks that `tag` is a valid tag on its own.
    pub fn parse_tag(tag: &str) -> Result<(), ReferenceError> {
        validate_tag(tag, tag)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag, tag)?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository`, as Docker prints a fully qualified name.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The shortest form Docker would print (`busybox:1.36` rather than
    /// `docker.io/library/busybox:1.36`).
    pub fn familiar(&self) -> String {
        // `docker.io/a.b/c` must keep its host: `a.b/c` alone names the registry `a.b`.
        let first = self.repository.split('/').next().unwrap_or_default();
        let hub_short = self.registry == DEFAULT_REGISTRY && !looks_like_registry(first);
        let mut out = if hub_short {
            self.repository
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(&d.to_string());
        }
        out
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn invalid(input: &str, reason: &'static str) -> ReferenceError {
    ReferenceError::Invalid {
        input: input.to_string(),
        reason,
    }
}

fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LEN {
        return Err(invalid(
            input,
            "a tag must be 1-128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'",
        ));
    }
    Ok(())
}

fn valid_path_component(c: &str) -> bool {
    // alpha-numeric (separator alpha-numeric)*, separator := [_.] | __ | -+
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // [IPv6]:port
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return false,
        };
        return port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Whether the first component of a name is read as a registry host rather than a Docker Hub
/// namespace (`distribution/reference`'s `splitDockerDomain`).
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(invalid(input, "the reference is empty"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest {
                        input: input.to_string(),
                        source,
                    })?;
                (r, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&rest[..split], Some(&rest[split + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(input, t)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_registry(first) => {
                if !valid_domain(first) {
                    return Err(invalid(
                        input,
                        "the registry host is not a valid host[:port]",
                    ));
                }
                // Docker Hub under its explicit name normalises as a bare name does:
                // `docker.io/busybox` is `docker.io/library/busybox` (`splitDockerDomain`).
                let registry = match first {
                    LEGACY_DEFAULT_REGISTRY => DEFAULT_REGISTRY,
                    other => other,
                };
                let repository = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
                    format!("library/{remainder}")
                } else {
                    remainder.to_string()
                };
                (registry.to_string(), repository)
            }
            _ => {
                let repo = if name.contains('/') {
                    name.to_string()
                } else {
                    format!("library/{name}")
                };
                (DEFAULT_REGISTRY.to_string(), repo)
            }
        };
        // Docker limits the normalised name (`docker.io/library/x`), not the text as written,
        // so that every reference it accepts can be printed in full and read back.
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(
                input,
                "the full repository name (registry/repository) is longer than 255 characters",
            ));
        }
        if !repository.split('/').all(valid_path_component) {
            return Err(invalid(
                input,
                "repository names must be lower-case letters and digits, separated by '/', '.', '_', '__' or '-'",
            ));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bare_names_are_docker_hub_library_images() {
        let r = parse("busybox");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag_or_latest(), Some("latest"));
        assert_eq!(r.familiar(), "busybox");
    }

    /// Found by the `image_reference` fuzz target: `docker.io/librlatest` parsed to repository
    /// `librlatest`, so its familiar form `librlatest` named another image
    /// (`docker.io/library/librlatest`). Docker adds `library/` whenever the host is Docker Hub.
    #[test]
    fn explicit_docker_hub_single_component_gets_library_prefix() {
        for s in [
            "docker.io/busybox:1.36",
            "index.docker.io/busybox:1.36",
            "busybox:1.36",
        ] {
            let r = parse(s);
            assert_eq!(r.registry(), "docker.io", "{s}");
            assert_eq!(r.repository(), "library/busybox", "{s}");
            assert_eq!(parse(&r.familiar()), r, "{s}");
        }
        assert_eq!(parse("docker.io/user/app").repository(), "user/app");
    }

    /// Found by the `image_reference` fuzz target: the familiar form of `docker.io/t.io/t` was
    /// `t.io/t`, which names the repository `t` on the registry `t.io`.
    #[test]
    fn familiar_form_keeps_docker_io_when_the_namespace_looks_like_a_host() {
        for s in ["docker.io/t.io/t", "docker.io/localhost/x:1"] {
            let r = parse(s);
            assert_eq!(r.familiar(), s);
            assert_eq!(parse(&r.familiar()), r);
        }
        assert_eq!(parse("docker.io/user/app").familiar(), "user/app");
    }

    /// Found by the `image_reference` fuzz target: a 255-character bare name was accepted but
    /// its full form `docker.io/library/<name>` (too long) did not parse back. Docker checks the
    /// normalised name.
    #[test]
    fn name_length_limit_applies_to_the_normalised_name() {
        let bare = "a".repeat(255 - "docker.io/library/".len());
        assert_eq!(parse(&parse(&bare).to_string()), parse(&bare));
        let too_long = format!("{bare}b");
        assert!(too_long.parse::<Reference>().is_err());
        assert!(format!("127.0.0.1:5000/{}", "x".repeat(240))
            .parse::<Reference>()
            .is_ok());
        assert!(format!("127.0.0.1:5000/{}", "x".repeat(241))
            .parse::<Reference>()
            .is_err());
    }

    #[test]
    fn host_port_and_localhost_are_registries() {
        let r = parse("127.0.0.1:5000/team/app:v1");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(parse("localhost/app").registry(), "localhost");
        assert_eq!(parse("[::1]:5000/app").registry(), "[::1]:5000");
        // A first component without '.', ':' or upper case is a Docker Hub user.
        let hub = parse("someuser/app");
        assert_eq!(hub.registry(), "docker.io");
        assert_eq!(hub.repository(), "someuser/app");
    }

    #[test]
    fn digest_and_tag_together() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = parse(&format!("reg.example:443/a/b:1.0@{d}"));
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest().map(ToString::to_string).as_deref(), Some(d));
        assert_eq!(r.to_string(), format!("reg.example:443/a/b:1.0@{d}"));
    }

    #[test]
    fn rejects_invalid_references() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a/b:",
            "a/b:-tag",
            "a:b:c",
            "a/b@sha256:1234",
            "-a",
            "a-",
            "a..b",
            "a/b/",
            &format!("a:{}", "t".repeat(129)),
            &"a".repeat(256),
        ] {
            assert!(
                bad.parse::<Reference>().is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn separators_follow_the_grammar() {
        for ok in ["a_b", "a__b", "a.b", "a-b", "a---b", "a1/b2/c3"] {
            parse(ok);
        }
        for bad in ["a___b", "a._b", "a.-b"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = s.parse::<Reference>();
        }
    }
}
