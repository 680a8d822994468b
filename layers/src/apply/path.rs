//! Normalising untrusted tar entry names into root-relative paths.
//!
//! Policy (documented decision): leading `/` and `./` are stripped and `.` components dropped, so
//! an absolute name `/etc/passwd` means `<root>/etc/passwd`, as in containerd and BuildKit. A `..`
//! that stays inside the root (`a/../b`) is cleaned lexically to `b`. A `..` that would climb
//! **above** the root (`../x`, `/../x`, `a/../../x`) is **rejected**, not clamped: no legitimate
//! writer emits such a name, moby's archive tests (`TestUntarParentTraversalContained`) require
//! rejection, and clamping would silently write a file the layer author did not name. This is
//! only the lexical half of containment; symlinks are contained by the kernel (`RESOLVE_IN_ROOT`).

/// Longest entry name or link target accepted (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// Why an entry name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    Nul,
    TooLong,
    EscapesRoot,
}

impl NameProblem {
    pub fn reason(self) -> &'static str {
        match self {
            NameProblem::Empty => "empty name",
            NameProblem::Nul => "name contains a NUL byte",
            NameProblem::TooLong => "name longer than PATH_MAX",
            NameProblem::EscapesRoot => "`..` climbs above the root",
        }
    }
}

/// Cleans `name` into normal components joined by `/`; the empty result means the root itself.
pub fn clean(name: &[u8]) -> Result<Vec<u8>, NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > PATH_MAX {
        return Err(NameProblem::TooLong);
    }
    if name.contains(&0) {
        return Err(NameProblem::Nul);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(NameProblem::EscapesRoot);
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join(&b'/'))
}

/// Splits a cleaned, non-empty path into (parent, base name); the parent of `a` is `""`.
pub fn split_parent(clean: &[u8]) -> (&[u8], &[u8]) {
    match clean.iter().rposition(|&b| b == b'/') {
        Some(i) => (&clean[..i], &clean[i + 1..]),
        None => (&clean[..0], clean),
    }
}

/// Joins a cleaned parent and one base name.
pub fn join(parent: &[u8], base: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + base.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(base);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_leading_slash_and_dot() {
        assert_eq!(clean(b"/etc/passwd").as_deref(), Ok(&b"etc/passwd"[..]));
        assert_eq!(clean(b"./a//b/./c/").as_deref(), Ok(&b"a/b/c"[..]));
        assert_eq!(clean(b"/.").as_deref(), Ok(&b""[..]));
        assert_eq!(clean(b"a/../b").as_deref(), Ok(&b"b"[..]));
    }

    #[test]
    fn rejects_names_climbing_above_the_root() {
        for bad in [&b".."[..], b"../x", b"/../victim", b"a/../../x", b"./../x"] {
            assert_eq!(clean(bad), Err(NameProblem::EscapesRoot), "{bad:?}");
        }
        assert_eq!(clean(b""), Err(NameProblem::Empty));
        assert_eq!(clean(b"a\0b"), Err(NameProblem::Nul));
        assert_eq!(clean(&[b'a'; PATH_MAX + 1]), Err(NameProblem::TooLong));
    }

    #[test]
    fn splits_parent_and_base() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"", b"c"), b"c");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
    }

    proptest::proptest! {
        #[test]
        fn cleaned_names_never_contain_dot_components(name in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b'/', b'.', b'b']), 0..40)) {
            if let Ok(c) = clean(&name) {
                for comp in c.split(|&b| b == b'/') {
                    proptest::prop_assert!(comp != b".." && comp != b"." && (c.is_empty() || !comp.is_empty()));
                }
            }
        }
    }
}
