//! Which sources a COPY/ADD copies: each source pattern matched in the build context (which
//! already applied `.dockerignore`) or in a stage's root (wildcards in every component), a
//! source symlink followed inside its root, and the `--exclude` patterns.

use std::path::Path;

use super::{CopyError, Source};
use crate::context::gopath;
use crate::context::patternmatcher::PatternMatcher;
use crate::context::{Context, ContextError, EntryKind};
use crate::solver::in_root;
use crate::solver::BuildError;

/// What a matched source, or an entry below a source directory, is.
#[derive(Debug, Clone)]
pub(super) enum SourceKind {
    File,
    Dir,
    Symlink(String),
}

/// One matched source: `name` as matched (its last component names the copy), `src` the entry
/// it resolves to (a symlink source is followed).
pub(super) struct Matched {
    pub(super) name: String,
    pub(super) src: String,
    pub(super) kind: SourceKind,
}

/// The sources of a COPY/ADD, in order.
pub(super) struct Selected {
    /// The matches that are copied (special files are left out).
    pub(super) sources: Vec<Matched>,
    /// How many matches there were, special files included: whether the destination must be
    /// a directory is decided on this count.
    pub(super) matched: usize,
}

/// The `--exclude` patterns as a matcher; `None` when there are none.
pub(super) fn exclude_matcher(patterns: &[String]) -> Result<Option<PatternMatcher>, CopyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    PatternMatcher::new(patterns)
        .map(Some)
        .map_err(CopyError::Exclude)
}

/// Whether `rel` (relative to its source) is excluded by `--exclude`.
pub(super) fn excluded(m: Option<&PatternMatcher>, rel: &str) -> bool {
    m.is_some_and(|m| m.matches_or_parent_matches(rel))
}

/// Every source pattern of the instruction, matched in order.
pub(super) fn select_all(source: &Source<'_>, patterns: &[String]) -> Result<Selected, BuildError> {
    let mut selected = Selected {
        sources: Vec::new(),
        matched: 0,
    };
    for pattern in patterns {
        let matches = select_sources(source, pattern)?;
        selected.matched += matches.len();
        selected.sources.extend(matches.into_iter().flatten());
    }
    Ok(selected)
}

/// The sources `pattern` matches, in order; `None` for a match that is not copied (a special
/// file). A source that is itself a symlink is followed inside its root, as BuildKit does
/// (`FollowSymlinks` on COPY/ADD): its target's content and mode are copied under the link's
/// name. Symlinks *inside* a copied directory stay symlinks.
fn select_sources(source: &Source<'_>, pattern: &str) -> Result<Vec<Option<Matched>>, BuildError> {
    match source {
        Source::Context(ctx) => select_in_context(ctx, pattern),
        Source::Dir(root) => select_in_stage(root, pattern),
    }
}

fn missing_target(pattern: &str, name: &str) -> CopyError {
    CopyError::LinkTargetMissing {
        source_path: pattern.to_string(),
        link: name.to_string(),
    }
}

fn select_in_context(ctx: &Context, pattern: &str) -> Result<Vec<Option<Matched>>, BuildError> {
    let rels = match ctx.select(pattern) {
        Ok(rels) => rels,
        // BuildKit's Dockerfile frontend copies with AllowEmptyWildcard: a wildcard that
        // matches nothing is skipped, even when no source matches at all.
        Err(ContextError::NoSourceFiles { .. }) => Vec::new(),
        Err(e) => return Err(CopyError::Select(e).into()),
    };
    let mut out = Vec::with_capacity(rels.len());
    for name in rels {
        let src = ctx
            .resolve_source(name)
            .ok_or_else(|| missing_target(pattern, name))?;
        let kind = if src == "." {
            Some(SourceKind::Dir)
        } else {
            match ctx.get(src).map(|e| &e.kind) {
                Some(EntryKind::Dir) => Some(SourceKind::Dir),
                Some(EntryKind::File) => Some(SourceKind::File),
                Some(EntryKind::Other) => None,
                Some(EntryKind::Symlink(_)) | None => {
                    return Err(BuildError::Internal(format!(
                        "source {name} resolved to {src}, which is not an entry"
                    )))
                }
            }
        };
        out.push(kind.map(|kind| Matched {
            name: name.to_string(),
            src: src.to_string(),
            kind,
        }));
    }
    Ok(out)
}

fn select_in_stage(root: &Path, pattern: &str) -> Result<Vec<Option<Matched>>, BuildError> {
    let mut out = Vec::new();
    for name in select_in_dir(root, pattern)? {
        let src =
            in_root::resolve(root, &name, true).ok_or_else(|| missing_target(pattern, &name))?;
        let full = if src == "." {
            root.to_path_buf()
        } else {
            root.join(&src)
        };
        let md = std::fs::symlink_metadata(&full).map_err(BuildError::io("reading", &full))?;
        let kind = if md.is_dir() {
            Some(SourceKind::Dir)
        } else if md.is_file() {
            Some(SourceKind::File)
        } else {
            None
        };
        out.push(kind.map(|kind| Matched { name, src, kind }));
    }
    Ok(out)
}

/// Resolves a `COPY --from` source inside a stage's root (absolute paths are inside the
/// stage; wildcards are allowed in every component).
fn select_in_dir(root: &Path, pattern: &str) -> Result<Vec<String>, BuildError> {
    let cleaned = gopath::clean(&format!("/{pattern}"));
    let rel = cleaned.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(vec![".".into()]);
    }
    let mut current: Vec<String> = vec![String::new()];
    for seg in rel.split('/') {
        let mut next = Vec::new();
        for cur in &current {
            match_segment(root, cur, seg, pattern, &mut next)?;
        }
        current = next;
    }
    // As in the build context, only a plain path that is missing is an error; a wildcard that
    // matches nothing is skipped (BuildKit's AllowEmptyWildcard).
    if current.is_empty() && !gopath::has_meta(rel) {
        return Err(CopyError::NotInStage(pattern.to_string()).into());
    }
    Ok(current)
}

/// Pushes onto `next` what the path segment `seg` (a name or a wildcard) matches in the
/// directory `cur` of the stage (`""` for its root), in sorted order.
fn match_segment(
    root: &Path,
    cur: &str,
    seg: &str,
    pattern: &str,
    next: &mut Vec<String>,
) -> Result<(), BuildError> {
    // The directory so far, resolved inside the stage: a symlink on the way is never
    // followed by the kernel (it could point at the host's files).
    let cur = if cur.is_empty() {
        String::new()
    } else {
        match in_root::resolve(root, cur, true) {
            Some(r) if r == "." => String::new(),
            Some(r) => r,
            None => return Ok(()),
        }
    };
    let below = |name: &str| -> String {
        if cur.is_empty() {
            name.to_string()
        } else {
            format!("{cur}/{name}")
        }
    };
    if !gopath::has_meta(seg) {
        let cand = below(seg);
        // lstat: the last component is not followed here.
        if std::fs::symlink_metadata(root.join(&cand)).is_ok() {
            next.push(cand);
        }
        return Ok(());
    }
    let dir = if cur.is_empty() {
        root.to_path_buf()
    } else {
        root.join(&cur)
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let hit =
            gopath::matches(seg, &n).map_err(|_| CopyError::BadPattern(pattern.to_string()))?;
        if hit {
            next.push(below(&n));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::select_in_dir;
    use crate::context::{Context, IgnoreRules};
    use crate::solver::copy::testutil::{context, copy_entries, copy_entries_from, paths};
    use crate::solver::copy::Source;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copy_with_one_unmatched_wildcard_copies_the_others() {
        // BuildKit (docker 20.10): `COPY a.txt *.nomatch /d/` copies a.txt into /d/.
        let ctx = context(&[("a.txt", "A")]);
        let out = copy_entries(ctx.path(), "COPY a.txt *.nomatch /d/").unwrap();
        assert_eq!(paths(&out), ["d", "d/a.txt"]);
        // One match left: a destination without a slash is that file (BuildKit: /d is a file).
        let out = copy_entries(ctx.path(), "COPY a.txt *.nomatch /d").unwrap();
        assert_eq!(paths(&out), ["d"]);
        assert_eq!(out[0].1, 'f');
    }

    #[test]
    fn copy_whose_wildcards_all_match_nothing_copies_nothing() {
        // BuildKit (AllowEmptyWildcard): no error, and /d/ is not even created.
        let ctx = context(&[("a.txt", "A")]);
        let out = copy_entries(ctx.path(), "COPY *.nomatch *.none /d/").unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn copy_of_a_missing_plain_source_is_still_an_error() {
        // BuildKit: `"/missing" not found: not found`, even beside a source that matches.
        let ctx = context(&[("a.txt", "A")]);
        let err = copy_entries(ctx.path(), "COPY a.txt missing /d/").unwrap_err();
        assert!(format!("{:?}", err).contains("SourceNotFound"), "{err:?}");
    }

    /// A tree with `real.txt` (0600), links to it (relative and absolute), a link to a
    /// directory, a directory holding a link, and links out of the tree.
    fn tree_with_links() -> tempfile::TempDir {
        use std::os::unix::fs::symlink;
        let t = context(&[("real.txt", "real\n"), ("sub/f", "f\n"), ("dir/x", "x\n")]);
        let p = t.path();
        std::fs::set_permissions(p.join("real.txt"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        symlink("real.txt", p.join("link")).unwrap();
        symlink("/real.txt", p.join("abslink")).unwrap();
        symlink("sub", p.join("dlink")).unwrap();
        symlink("../real.txt", p.join("dir/inner")).unwrap();
        symlink("../../../../../../etc/hostname", p.join("outlink")).unwrap();
        symlink("/etc/hostname", p.join("outabs")).unwrap();
        symlink("/etc", p.join("hostetc")).unwrap();
        t
    }

    fn symlink_cases(source: &Source<'_>) {
        // BuildKit (docker 20.10): the link is followed, its target's content and mode are
        // copied under the link's own name; an absolute target resolves inside the root.
        for line in ["COPY link /d/", "COPY lin* /d/", "ADD link /d/"] {
            let out = copy_entries_from(source, line).unwrap();
            assert_eq!(out[1], ("d/link".to_string(), 'f', 0o600, 0), "{line}");
        }
        let out = copy_entries_from(source, "COPY link /d2").unwrap();
        assert_eq!(out, [("d2".to_string(), 'f', 0o600, 0)]);
        let out = copy_entries_from(source, "COPY abslink /d/").unwrap();
        assert_eq!(out[1], ("d/abslink".to_string(), 'f', 0o600, 0));
        // A link to a directory copies the directory's contents.
        let out = copy_entries_from(source, "COPY dlink /d/").unwrap();
        assert_eq!(paths(&out), ["d", "d/f"]);
        // Links inside a copied directory stay links.
        let out = copy_entries_from(source, "COPY dir /d/").unwrap();
        assert!(
            out.contains(&("d/inner".to_string(), 'l', 0o777, 0)),
            "{out:?}"
        );
        // Out of the root: resolved inside it, where there is no etc/hostname (BuildKit:
        // `"/etc/hostname" not found`).
        for line in ["COPY outlink /d/", "COPY outabs /d/"] {
            let err = copy_entries_from(source, line).unwrap_err();
            assert!(
                format!("{err:?}").contains("LinkTargetMissing"),
                "{line}: {err:?}"
            );
        }
        // A symlinked parent is resolved inside the root too: never the host's /etc/passwd.
        for line in ["COPY hostetc/passwd /d", "COPY hostetc/pass* /d"] {
            let out = copy_entries_from(source, line);
            assert!(
                out.as_ref().is_ok_and(Vec::is_empty) || out.is_err(),
                "{line}: {out:?}"
            );
        }
    }

    #[test]
    fn copy_of_a_symlink_source_copies_its_target_under_the_link_name() {
        let t = tree_with_links();
        let context = Context::scan(t.path(), &IgnoreRules::empty(), None).unwrap();
        symlink_cases(&Source::Context(&context));
    }

    #[test]
    fn copy_from_a_stage_follows_a_symlink_source_inside_the_stage() {
        let t = tree_with_links();
        symlink_cases(&Source::Dir(t.path()));
    }

    #[test]
    fn copy_from_a_stage_skips_a_wildcard_that_matches_nothing() {
        let root = context(&[("src/a.txt", "A")]);
        assert_eq!(
            select_in_dir(root.path(), "/src/*.nomatch").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            select_in_dir(root.path(), "/src/a*").unwrap(),
            ["src/a.txt"]
        );
        assert!(select_in_dir(root.path(), "/src/missing").is_err());
    }
}
