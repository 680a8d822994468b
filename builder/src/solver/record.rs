//! What the engine keeps in the store between builds.
//!
//! * `cache/step/<key>.json` — a [`StepResult`]: the layer a filesystem step produced (or none,
//!   for a step that changed nothing). Its `blobs` field keeps the layer alive in `prune`. A
//!   layer written in a stage no output contains is its plain tar, marked `deferred` (see
//!   [`super::lazy_blobs`]).
//! * `cache/definition/<key>.json` — a [`DefinitionRecord`]: for a step with a definition key
//!   (`COPY --from`, see `copy::digest`), the step's own key and, when this machine computed
//!   them, its key inputs. It names no blob: the step's record does.
//! * `cache/selection/<digest>.json` — the per-file digests of a COPY selection, written once per
//!   distinct selection, so that a later miss can name the files that changed.
//! * `cache/build/<id>.json` — a [`BuildRecord`]: the steps of the last build of one
//!   Dockerfile and target, with their key inputs and miss reasons (`rbuild explain`).
//!
//! A record is only trusted when every blob it names is present and verifies by name; a record
//! that cannot be parsed is ignored (and rebuilt), never an error.

use std::collections::BTreeMap;
use std::path::Path;

use rbuild_layers::store::Store;
use rbuild_layers::Digest;
use serde::{Deserialize, Serialize};

use super::key::KeyInputs;
use super::stage::LayerRef;

const STEP: &str = "step";
const DEFINITION: &str = "definition";
const SELECTION: &str = "selection";
const BUILD: &str = "build";

/// The cached result of a filesystem step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    /// `None` when the step changed nothing (an empty layer, dropped as BuildKit does).
    pub layer: Option<LayerRef>,
    /// Blobs this record keeps alive (read by the store's prune).
    pub blobs: Vec<Digest>,
    /// When the layer was made (Unix seconds), for a build whose epoch is the clock: its history
    /// entry keeps that time on a cache hit, as BuildKit keeps a layer's creation time, so a
    /// rebuild from the cache gives the same image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

impl StepResult {
    pub fn new(layer: Option<LayerRef>) -> Self {
        let blobs = layer.iter().map(|l| l.descriptor.digest.clone()).collect();
        StepResult {
            layer,
            blobs,
            created: None,
        }
    }
}

/// Looks up a step's cached result; `None` on a miss, on an unreadable record, or when the layer
/// it names is no longer in the store.
pub fn lookup(store: &Store, key: &Digest) -> Option<StepResult> {
    let bytes = store.get_record(STEP, key).ok()??;
    let r: StepResult = serde_json::from_slice(&bytes).ok()?;
    match &r.layer {
        Some(l) if !store.has_blob(&l.descriptor.digest) => None,
        _ => Some(r),
    }
}

/// Saves a step's result.
pub fn save(
    store: &Store,
    key: &Digest,
    r: &StepResult,
) -> Result<(), rbuild_layers::store::StoreError> {
    let json = serde_json::to_vec(r).expect("StepResult serialises");
    store.put_record(STEP, key, &json)
}

/// Where a definition key leads: the step's own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefinitionRecord {
    pub key: Digest,
    /// The inputs of `key`, when this machine computed them (not when the step came from an
    /// imported cache by its definition key): they explain a later miss by file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<KeyInputs>,
}

/// Looks up the step recorded under definition key `definition`: its record and its result,
/// `None` when either is missing (see [`lookup`]).
pub fn lookup_definition(
    store: &Store,
    definition: &Digest,
) -> Option<(DefinitionRecord, StepResult)> {
    let bytes = store.get_record(DEFINITION, definition).ok()??;
    let d: DefinitionRecord = serde_json::from_slice(&bytes).ok()?;
    let r = lookup(store, &d.key)?;
    Some((d, r))
}

/// Saves where definition key `definition` leads. Best effort: without it the step is found
/// by its own key, after reading its sources.
pub fn save_definition(store: &Store, definition: &Digest, d: &DefinitionRecord) {
    let json = serde_json::to_vec(d).expect("DefinitionRecord serialises");
    let _ = store.put_record(DEFINITION, definition, &json);
}

/// Per-file digests of a COPY selection (destination-relative path → content digest).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Selection {
    pub files: BTreeMap<String, Digest>,
}

/// Saves the per-file digests of a selection unless the store has them already (`make` runs
/// only then). Best effort: only explanations read these.
pub fn save_selection(store: &Store, digest: &Digest, make: impl FnOnce() -> Selection) {
    if !store.has_record(SELECTION, digest) {
        let json = serde_json::to_vec(&make()).expect("Selection serialises");
        let _ = store.put_record(SELECTION, digest, &json);
    }
}

pub fn load_selection(store: &Store, digest: &Digest) -> Option<Selection> {
    let bytes = store.get_record(SELECTION, digest).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// One step of a build, as remembered for explanations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub stage: usize,
    /// The stage's name (or `stage-N`): steps are matched across builds by name and position.
    pub stage_name: String,
    /// Position of the step within its stage (0 = FROM).
    pub index: usize,
    /// The step as shown in progress (`COPY requirements.txt .`).
    pub name: String,
    pub key: Digest,
    pub inputs: KeyInputs,
    pub cached: bool,
    pub miss_reason: Option<String>,
}

/// The last build of one Dockerfile and target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    pub version: u32,
    pub dockerfile: String,
    pub target: String,
    pub steps: Vec<StepRecord>,
}

/// The record id of a Dockerfile (by canonical path) and target.
pub fn build_id(dockerfile: &Path, target: &str) -> Digest {
    let canon = std::fs::canonicalize(dockerfile).unwrap_or_else(|_| dockerfile.to_path_buf());
    let mut s = canon.to_string_lossy().into_owned().into_bytes();
    s.push(0);
    s.extend_from_slice(target.as_bytes());
    Digest::sha256_of(&s)
}

pub fn load_build(store: &Store, dockerfile: &Path, target: &str) -> Option<BuildRecord> {
    let bytes = store
        .get_record(BUILD, &build_id(dockerfile, target))
        .ok()??;
    serde_json::from_slice(&bytes).ok()
}

pub fn save_build(
    store: &Store,
    r: &BuildRecord,
    dockerfile: &Path,
) -> Result<(), rbuild_layers::store::StoreError> {
    let json = serde_json::to_vec(r).expect("BuildRecord serialises");
    store.put_record(BUILD, &build_id(dockerfile, &r.target), &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_layers::{Descriptor, MediaType};

    #[test]
    fn a_definition_record_leads_to_the_step_while_its_layer_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = b"layer bytes";
        let digest = Digest::sha256_of(blob);
        let (key, def) = (Digest::sha256_of(b"key"), Digest::sha256_of(b"def"));
        let r = StepResult::new(Some(LayerRef::new(
            Descriptor::new(MediaType::OciLayerGzip, digest.clone(), blob.len() as u64),
            Digest::sha256_of(b"diff"),
        )));
        save(&store, &key, &r).unwrap();
        let d = DefinitionRecord {
            key: key.clone(),
            inputs: None,
        };
        save_definition(&store, &def, &d);
        assert!(
            lookup_definition(&store, &def).is_none(),
            "the step's layer is not in the store"
        );
        store.put_bytes(MediaType::OciLayerGzip, blob).unwrap();
        let (found, result) = lookup_definition(&store, &def).unwrap();
        assert_eq!(found.key, key);
        assert_eq!(result.layer, r.layer);
        assert!(lookup_definition(&store, &Digest::sha256_of(b"other")).is_none());
    }
}
