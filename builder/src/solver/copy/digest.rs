//! What a COPY/ADD's cache key is made of, all known before any layer work: the content
//! digest of every file, the selection digest over the items' canonical records (type,
//! destination, mode, content or link target, owner, hard-link group), the per-file digests
//! kept to explain a later miss, and the step's [`KeyInputs`]. Changing a record changes every
//! COPY key: the records are versioned (`rbuild-copy-selection-v1`).
//!
//! A `COPY --from` has a second key, its *definition key* ([`definition_inputs`]), known
//! before the source is even fetched — BuildKit's two-level cache key (an op's definition
//! digest first, its content-based "slow" key second). The source stage's key is already a
//! content identity (its base chained with every layer's diffID, see `key::content_key`), so
//! that key, the instruction with every flag, the destination's parent state, the working
//! directory and the mode normalisation determine the selection, and with it the content key
//! and the result. A fully cached build looks the definition key up first and, on a hit, never
//! fetches, unpacks or hashes the source stage (a builder stage's toolchain layers); on a miss
//! the content key is computed as before, and the result is recorded under both (in the store,
//! and as the entry's `definitionKeys` in an exported cache map). The content key does not name
//! the source stage: like BuildKit's content-based key it depends on the selected files only,
//! so a builder stage that runs again and makes the same files still hits (a rebuilt
//! dependency that compiles to the same binary leaves the final stage cached). It is the
//! step's identity (what explains a miss by file name); the selection records cover
//! everything of a source file that reaches the layer (COPY writes the build's epoch as mtime
//! and no xattrs).

use std::collections::BTreeSet;
use std::path::Path;

use rbuild_layers::{Digest, Sha256Hasher};

use super::dest::display_rel;
use super::item::{Item, ItemKind};
use super::{absolute_dest, CopyEnv, PreparedCopy, Source};
use crate::dockerfile::CopyInstruction;
use crate::solver::key::KeyInputs;
use crate::solver::record::Selection;
use crate::solver::BuildError;

/// Fills in the content digest of every file and archive: the build context's in one
/// parallel, stat-cached pass (reporting to `hashing`), the rest (a stage's files, heredocs)
/// by reading them.
pub(super) fn content_digests(
    source: &Source<'_>,
    items: &mut [Item],
    hashing: &(dyn Fn(u64, u64) + Sync),
) -> Result<(), BuildError> {
    if let Source::Context(ctx) = source {
        let wanted: Vec<(usize, &str)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| item.ctx_rel.as_deref().map(|r| (i, r)))
            .collect();
        let rels: Vec<&str> = wanted.iter().map(|(_, r)| *r).collect();
        let digests = ctx
            .file_digests_with_progress(&rels, hashing)
            .map_err(|e| BuildError::Context(std::sync::Arc::new(e)))?;
        let indices: Vec<usize> = wanted.iter().map(|(i, _)| *i).collect();
        for (i, d) in indices.into_iter().zip(digests) {
            items[i].digest = Some(d);
        }
    }
    for item in items.iter_mut() {
        if item.digest.is_none() {
            if let ItemKind::File(p) | ItemKind::Archive(p) = &item.kind {
                item.digest = Some(hash_file(p)?);
            }
        }
    }
    Ok(())
}

fn hash_file(p: &Path) -> Result<Digest, BuildError> {
    let mut f = std::fs::File::open(p).map_err(BuildError::io("reading", p))?;
    let mut h = Sha256Hasher::new();
    std::io::copy(&mut f, &mut h).map_err(BuildError::io("reading", p))?;
    Ok(h.finish())
}

/// The selection digest: every item's record in order, then the directories that directory
/// sources are copied into.
pub(super) fn selection_digest(
    items: &[Item],
    dir_targets: &BTreeSet<String>,
    normalize_modes: bool,
) -> Digest {
    let mut h = Sha256Hasher::new();
    h.update(b"rbuild-copy-selection-v1\0");
    for item in items {
        item_record(item, normalize_modes, &mut h);
    }
    for d in dir_targets {
        h.update(b"t\0");
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    h.finish()
}

/// Feeds one item's canonical record (type, destination, mode, content or link target) into
/// `h`: the selection digest is over these, in order.
fn item_record(item: &Item, normalize_modes: bool, h: &mut Sha256Hasher) {
    let mode = item.layer_mode(normalize_modes);
    let (tag, extra): (&[u8], &str) = match &item.kind {
        ItemKind::File(_) => (b"f", item.digest.as_ref().map_or("", Digest::hex)),
        ItemKind::Archive(_) => (b"a", item.digest.as_ref().map_or("", Digest::hex)),
        ItemKind::Dir => (b"d", ""),
        ItemKind::Symlink(t) => (b"l", t),
    };
    h.update(tag);
    h.update(b"\0");
    h.update(item.dest.as_bytes());
    h.update(format!("\0{mode:o}\0").as_bytes());
    h.update(extra.as_bytes());
    if let Some((uid, gid)) = item.owner {
        h.update(format!("\0o{uid}:{gid}").as_bytes());
    }
    if let Some(g) = item.link_group {
        h.update(format!("\0g{g}").as_bytes());
    }
    h.update(b"\n");
}

impl PreparedCopy {
    /// Per-file digests of the selection, for explaining a later miss by file name; built only
    /// when the selection is new to the store.
    pub fn selection(&self) -> Selection {
        let mut selection = Selection::default();
        for item in &self.items {
            let mut h = Sha256Hasher::new();
            item_record(item, self.normalize_modes, &mut h);
            selection
                .files
                .insert(display_rel(&item.dest, &self.dest_abs), h.finish());
        }
        selection
    }
}

/// The key of a COPY/ADD.
pub fn key_inputs(
    prepared: &PreparedCopy,
    instruction: &str,
    op: &str,
    parent: Option<Digest>,
    platform: &str,
    c: &CopyInstruction,
) -> KeyInputs {
    KeyInputs::new(
        op,
        if c.link { None } else { parent },
        instruction.to_string(),
        platform.to_string(),
    )
    .input("files", prepared.selection_digest.to_string())
    .input(
        crate::solver::parents::KEY_INPUT.0,
        crate::solver::parents::KEY_INPUT.1,
    )
    .input("dest", format!("/{}", prepared.dest_abs))
}

/// The definition key of a `COPY --from` (see the module docs): every input of
/// [`key_inputs`] except the selection digest, and what that digest is a function of instead —
/// the source's key (`from` is its name and key), the whole instruction (its JSON: sources,
/// heredoc bodies, `--exclude`, `--parents`, `--link`, …), the working directory and the mode
/// normalisation. The caller adds `--chown`, `--chmod` and the epoch as it does to the content
/// key. Marked with [`crate::solver::key::DEFINITION`], so it never equals a content key.
#[allow(clippy::too_many_arguments)]
pub fn definition_inputs(
    instruction: &str,
    op: &str,
    parent: Option<Digest>,
    platform: &str,
    c: &CopyInstruction,
    env: &CopyEnv<'_>,
    from: (&str, &Digest),
) -> KeyInputs {
    let mut h = Sha256Hasher::new();
    h.update(b"rbuild-copy-definition-v1\0");
    // Strings, booleans and lists of them: serialising cannot fail.
    h.update(&serde_json::to_vec(c).expect("CopyInstruction serialises to JSON"));
    let (mark, value) = crate::solver::key::DEFINITION;
    KeyInputs::new(
        op,
        if c.link { None } else { parent },
        instruction.to_string(),
        platform.to_string(),
    )
    .input(mark, value)
    .input("copy", h.finish().to_string())
    .input(
        crate::solver::parents::KEY_INPUT.0,
        crate::solver::parents::KEY_INPUT.1,
    )
    .input("workdir", env.workdir)
    .input("dest", format!("/{}", absolute_dest(&c.dest, env.workdir)))
    .input("normalize-modes", env.normalize_modes.to_string())
    .input(&format!("from:{}", from.0), from.1.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(workdir: &str, normalize_modes: bool) -> CopyEnv<'_> {
        CopyEnv {
            workdir,
            epoch: 0,
            normalize_modes,
            is_add: false,
            layer_options: Default::default(),
        }
    }

    fn definition(line: &str, workdir: &str, normalize: bool, source: &[u8]) -> KeyInputs {
        let (c, _) = super::super::testutil::instruction(line);
        definition_inputs(
            line,
            "copy",
            Some(Digest::sha256_of(b"parent")),
            "linux/amd64",
            &c,
            &env(workdir, normalize),
            ("builder", &Digest::sha256_of(source)),
        )
    }

    const LINE: &str = "COPY --from=builder /out/app /usr/local/bin/";

    #[test]
    fn the_definition_key_is_pinned_and_marked() {
        // Cache entries exported under this key are looked up by other rbuild versions: a
        // change in what it covers must be deliberate (and bump KEY_VERSION if its meaning
        // changes).
        let k = definition(LINE, "/", false, b"builder");
        assert!(k.is_definition());
        assert_eq!(
            k.key().to_string(),
            "sha256:1cf7b8e68653e9809e522b7b5e839a214f97eba54c6aa731c86265b64e12ecf2"
        );
    }

    #[test]
    fn the_definition_key_changes_with_everything_the_selection_depends_on() {
        let base = definition(LINE, "/", false, b"builder").key();
        let variants = [
            definition(LINE, "/", false, b"another builder state"),
            definition(LINE, "/app", false, b"builder"),
            definition(LINE, "/", true, b"builder"),
            definition(
                "COPY --from=builder /out/app /usr/bin/",
                "/",
                false,
                b"builder",
            ),
            definition(
                "COPY --from=builder /out/ap? /usr/local/bin/",
                "/",
                false,
                b"builder",
            ),
            definition(
                "COPY --from=builder --exclude=*.md /out/app /usr/local/bin/",
                "/",
                false,
                b"builder",
            ),
            definition(
                "COPY --from=builder --parents /out/app /usr/local/bin/",
                "/",
                false,
                b"builder",
            ),
            definition(
                "COPY --from=builder --link /out/app /usr/local/bin/",
                "/",
                false,
                b"builder",
            ),
        ];
        for v in &variants {
            assert_ne!(v.key(), base, "{v:?}");
        }
        let mut other_parent = definition(LINE, "/", false, b"builder");
        other_parent.parent = Some(Digest::sha256_of(b"another parent"));
        assert_ne!(other_parent.key(), base);
    }

    #[test]
    fn a_heredoc_body_is_in_the_definition_key() {
        // The canonical instruction shows only `<<EOF`; the body must still count.
        let a = "COPY --from=builder <<EOF /x\none\nEOF";
        let b = "COPY --from=builder <<EOF /x\ntwo\nEOF";
        assert_ne!(
            definition(a, "/", false, b"s").key(),
            definition(b, "/", false, b"s").key()
        );
    }

    #[test]
    fn a_linked_copy_ignores_the_parent_in_its_definition_key_too() {
        let line = "COPY --link --from=builder /out/app /app";
        let a = definition(line, "/", false, b"builder");
        let (c, _) = super::super::testutil::instruction(line);
        let b = definition_inputs(
            line,
            "copy",
            Some(Digest::sha256_of(b"another parent")),
            "linux/amd64",
            &c,
            &env("/", false),
            ("builder", &Digest::sha256_of(b"builder")),
        );
        assert_eq!(a.parent, None);
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn the_selection_digest_is_pinned() {
        // Every COPY key holds this digest: a change to the records (their bytes, order or
        // version) makes every cached COPY a miss, so it must be deliberate.
        let mut file = Item::new("d/f".into(), ItemKind::File("/nowhere".into()), 0o100664);
        file.digest = Some(Sha256Hasher::new().finish());
        file.owner = Some((1000, 1001));
        file.link_group = Some(0);
        let link = Item::new("d/l".into(), ItemKind::Symlink("f".into()), 0o120777);
        let dir = Item::new("d/s".into(), ItemKind::Dir, 0o40775);
        let targets = BTreeSet::from(["d".to_string()]);
        let items = [file, link, dir];
        assert_eq!(
            selection_digest(&items, &targets, true).to_string(),
            "sha256:d2f58fdab7f94bb5475ebbebccb93e368db5b129a90b60321204901b37f34105"
        );
        assert_eq!(
            selection_digest(&items, &targets, false).to_string(),
            "sha256:ad023e74ab42c6ce5749558a6fc77fd4e0958d8a1a58e5848ee4c09c23a64b7f"
        );
    }
}
