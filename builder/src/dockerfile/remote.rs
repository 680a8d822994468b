//! What a `COPY`/`ADD` source word names: a path in the build context, an HTTP(S) URL, or a
//! git repository — decided by BuildKit's rules (`dockerfile2llb.dispatchCopy`,
//! `gitutil.ParseGitRef`), so the same word means the same thing in both builders:
//!
//! * a git repository is checked first: a word with a scheme `git://`, `ssh://`, or
//!   `http(s)://` whose path ends in `.git`, or an scp-like `user@host:path`; an optional
//!   fragment `#ref[:subdir]` (or `##ref=…,subdir=…`) picks the ref and subdirectory. Words
//!   starting `./`, `../` or `github.com/` are local (BuildKit: "indistinguishable from local");
//! * then an HTTP source: the word starts with `http://` or `https://` (case-sensitive, as in
//!   BuildKit: `HTTP://x` is a local path);
//! * anything else is a local path.
//!
//! Also here: credentials in such URLs are masked ([`redact`]) wherever a URL is shown, and the
//! `--checksum` value is validated.

use std::fmt;

/// A source word that is not a local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSource {
    Http(String),
    Git(GitSource),
}

/// `ADD <git URL>[#ref[:subdir]]`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The repository URL as `git` takes it (no fragment), credentials included.
    pub remote: String,
    /// Branch, tag or commit; empty for the remote's HEAD.
    pub reference: String,
    /// A subdirectory of the checkout whose contents are added; empty for all.
    pub subdir: String,
}

/// Why a source word that looks remote cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteSourceError {
    #[error("invalid git URL fragment {fragment:?}: {reason}")]
    Fragment { fragment: String, reason: String },
    #[error("invalid --checksum {0:?}: write `--checksum=sha256:<64 hex digits>`")]
    ChecksumFormat(String),
    #[error(
        "--checksum={0}: only sha256 checksums are supported by rbuild; give the file's sha256"
    )]
    ChecksumAlgorithm(String),
}

/// Classifies a source word (after expansion). `Ok(None)` is a local path.
pub fn classify(word: &str) -> Result<Option<RemoteSource>, RemoteSourceError> {
    if let Some(git) = git_source(word)? {
        return Ok(Some(RemoteSource::Git(git)));
    }
    if word.starts_with("http://") || word.starts_with("https://") {
        return Ok(Some(RemoteSource::Http(word.to_string())));
    }
    Ok(None)
}

/// Whether `word` names an HTTP(S) download (not a git repository).
pub fn is_http(word: &str) -> bool {
    matches!(classify(word), Ok(Some(RemoteSource::Http(_))))
}

fn git_source(word: &str) -> Result<Option<GitSource>, RemoteSourceError> {
    if word.starts_with("./") || word.starts_with("../") || word.starts_with("github.com/") {
        return Ok(None);
    }
    let (url, fragment) = match word.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (word, None),
    };
    if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        match scheme.to_ascii_lowercase().as_str() {
            "git" | "ssh" => {}
            "http" | "https" => {
                // Only the path counts: a query string does not make a repository.
                let after_host = rest.find('/').map_or("", |i| &rest[i..]);
                let path = after_host.split('?').next().unwrap_or_default();
                if !path.ends_with(".git") {
                    return Ok(None);
                }
            }
            _ => return Ok(None),
        }
    } else if !is_scp_like(url) {
        return Ok(None);
    }
    let (reference, subdir) = match fragment {
        None | Some("") => (String::new(), String::new()),
        Some(f) => parse_fragment(f)?,
    };
    Ok(Some(GitSource {
        remote: url.to_string(),
        reference,
        subdir,
    }))
}

/// `user@host:path` (BuildKit's `^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)$`).
fn is_scp_like(url: &str) -> bool {
    let Some((user, rest)) = url.split_once('@') else {
        return false;
    };
    let Some((host, _path)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `ref[:subdir]`, or the CSV form `#ref=…,subdir=…,commit=…` (the URL had `##`).
fn parse_fragment(fragment: &str) -> Result<(String, String), RemoteSourceError> {
    let Some(csv) = fragment.strip_prefix('#') else {
        let (r, s) = fragment.split_once(':').unwrap_or((fragment, ""));
        return Ok((r.to_string(), s.to_string()));
    };
    let bad = |reason: String| RemoteSourceError::Fragment {
        fragment: fragment.to_string(),
        reason,
    };
    let (mut reference, mut subdir, mut commit) = (String::new(), String::new(), String::new());
    for field in csv.split(',').filter(|f| !f.is_empty()) {
        if field.contains('"') {
            return Err(bad("quoted fields are not supported".into()));
        }
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| bad(format!("field {field:?} must be a key=value pair")))?;
        match k.to_ascii_lowercase().as_str() {
            "ref" => reference = v.to_string(),
            "subdir" => subdir = v.to_string(),
            "commit" => commit = v.to_string(),
            other => {
                return Err(bad(format!(
                    "unexpected key {other:?} (supported keys: ref, commit, subdir)"
                )))
            }
        }
    }
    if !commit.is_empty() {
        if !reference.is_empty() && reference != commit {
            return Err(bad(
                "ref= and commit= together are not supported by rbuild; give one".into(),
            ));
        }
        reference = commit;
    }
    Ok((reference, subdir))
}

/// A validated `--checksum`: `sha256:<64 lowercase hex>`.
pub fn parse_checksum(value: &str) -> Result<rbuild_layers::Digest, RemoteSourceError> {
    match value.split_once(':') {
        Some((alg, _)) if alg == "sha384" || alg == "sha512" => {
            Err(RemoteSourceError::ChecksumAlgorithm(value.to_string()))
        }
        _ => value
            .parse::<rbuild_layers::Digest>()
            .map_err(|_| RemoteSourceError::ChecksumFormat(value.to_string())),
    }
}

/// A URL (or any text holding URLs) with the user-info of every `scheme://user:pass@` masked
/// as `***@`, and an scp-like `user@host:` left as it is (a user name, no secret).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let head = i + 3;
        out.push_str(&rest[..head]);
        rest = &rest[head..];
        let end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// A URL to show: displays with credentials masked.
#[derive(Clone, PartialEq, Eq)]
pub struct ShownUrl(pub String);

impl fmt::Display for ShownUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for ShownUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(word: &str) -> GitSource {
        match classify(word) {
            Ok(Some(RemoteSource::Git(g))) => g,
            other => panic!("{word}: {other:?}"),
        }
    }

    #[test]
    fn git_urls_follow_buildkit_detection() {
        assert_eq!(git("git://h/r.git").remote, "git://h/r.git");
        assert_eq!(git("git://h/r").remote, "git://h/r");
        assert_eq!(git("ssh://git@h/r").remote, "ssh://git@h/r");
        assert_eq!(git("https://h/r.git#main").reference, "main");
        assert_eq!(
            git("git@github.com:o/r.git").remote,
            "git@github.com:o/r.git"
        );
        let g = git("https://h/r.git#v1:sub/dir");
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("v1", "sub/dir"));
        let g = git("https://h/r.git##ref=v2,subdir=d");
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("v2", "d"));
    }

    #[test]
    fn http_urls_not_ending_in_dot_git_are_downloads() {
        for w in [
            "https://h/x.tar.gz",
            "http://h/r.git.txt",
            "http://h/r?x=.git",
        ] {
            assert_eq!(classify(w), Ok(Some(RemoteSource::Http(w.into()))), "{w}");
        }
    }

    #[test]
    fn local_looking_words_stay_local() {
        for w in [
            "file.txt",
            "./git@h:x",
            "github.com/o/r",
            "HTTP://h/x",
            "ftp://h/x",
            "dir/",
            "a:b",
        ] {
            assert_eq!(classify(w), Ok(None), "{w}");
        }
    }

    #[test]
    fn credentials_are_masked_in_shown_urls() {
        assert_eq!(
            redact("ADD https://user:s3cret@h/x /y"),
            "ADD https://***@h/x /y"
        );
        assert_eq!(redact("git://tok@h/r.git#a@b"), "git://***@h/r.git#a@b");
        assert_eq!(redact("https://h/x?u=a@b"), "https://h/x?u=a@b");
        assert_eq!(
            ShownUrl("https://a:b@h/".into()).to_string(),
            "https://***@h/"
        );
    }

    #[test]
    fn checksums_must_be_sha256_digests() {
        let hex = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        assert!(parse_checksum(&format!("sha256:{hex}")).is_ok());
        assert!(matches!(
            parse_checksum("sha256:abc"),
            Err(RemoteSourceError::ChecksumFormat(_))
        ));
        assert!(matches!(
            parse_checksum("sha512:abc"),
            Err(RemoteSourceError::ChecksumAlgorithm(_))
        ));
    }
}
