//! The OCI image configuration (image-spec `config.md`) with Docker's extensions.
//!
//! Why not `oci-spec`: its 0.10 types keep labels, annotations, exposed ports and volumes in
//! `HashMap`s, so serialising the same config twice can produce different bytes and therefore a
//! different config digest. rbuild promises "same inputs, same bytes", so these types use
//! `BTreeMap` throughout and a fixed struct field order, and [`ImageConfig::to_canonical_json`]
//! is compact `serde_json` output of them.
//!
//! Fields that neither the OCI spec nor Docker's image format define (Docker-produced configs
//! carry `container`, `container_config`, `docker_version`, `config.Hostname`, `AttachStdin`…)
//! are kept in `extra` maps so a parsed config round-trips without being silently trimmed.
//! When a build starts `FROM` a base image, BuildKit decodes the base config into its typed
//! struct and so drops those legacy fields; [`ImageConfig::derive_child`] does the same.
//!
//! `null` and absent are treated alike when reading (Docker writes `"Cmd": null`, `"Env": null`
//! and `"Labels": null` in some versions); when writing, empty collections are omitted.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Digest;

/// Fields of a JSON object that the typed struct does not know, kept verbatim.
pub type ExtraFields = BTreeMap<String, serde_json::Value>;

/// The value type of `ExposedPorts` and `Volumes`: always the empty object `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// An OCI image configuration document (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time; `None` when unknown (rbuild sets it from `SOURCE_DATE_EPOCH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The execution parameters; `None` when the document has no `config` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Top-level fields outside the OCI spec (e.g. Docker's `container_config`), kept verbatim.
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// The `config` object: how to run a container from the image.
///
/// Field names are Go-style (`User`, `ExposedPorts`…) exactly as the spec and Docker write them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `"80/tcp" → {}`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    /// `KEY=value` entries, in definition order (order is significant to Docker).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `None` (unset, inherit) is distinct from `Some(vec![])` (explicitly empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, EmptyObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker/Windows only; written only when true, as BuildKit does.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub args_escaped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields outside OCI + Docker's OCI extensions (`Hostname`, `AttachStdin`…), verbatim.
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// Docker's `HEALTHCHECK` settings (moby `container.HealthConfig`); durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `[]` inherit, `["NONE"]` disable, `["CMD", …]` exec, `["CMD-SHELL", cmd]` shell.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

/// The `rootfs` object: the uncompressed digests of the layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `"layers"` in a valid config.
    #[serde(rename = "type")]
    pub fs_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            fs_type: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry; `empty_layer` entries have no matching `diff_ids` element.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub empty_layer: bool,
}

impl History {
    /// A history entry for a step that produced a layer.
    pub fn new(created_by: impl Into<String>) -> Self {
        History {
            created_by: Some(created_by.into()),
            ..History::default()
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Reads `null` as the type's default, so `"Env": null` and a missing `Env` mean the same.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfig {
    /// An empty config for a platform, with `rootfs.type = "layers"` and no layers.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        ImageConfig {
            os: os.into(),
            architecture: architecture.into(),
            ..ImageConfig::default()
        }
    }

    /// The deterministic serialisation: compact JSON, fixed field order, sorted maps.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .expect("image config serialisation cannot fail: map keys are strings")
    }

    /// The `config` object, created empty if the document had none.
    pub fn config_mut(&mut self) -> &mut ContainerConfig {
        self.config.get_or_insert_with(ContainerConfig::default)
    }

    /// The value of environment variable `key` (`KEY=value` entry), if set.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.config
            .as_ref()?
            .env
            .iter()
            .find_map(|e| match e.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if e == key => Some(""),
                _ => None,
            })
    }

    /// Sets `key=value`, replacing an existing entry for `key` in place (keeping its position,
    /// as Docker's `ENV` does) or appending a new one.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let env = &mut self.config_mut().env;
        let existing = env
            .iter()
            .position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match existing {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
    }

    /// Records a layer: appends its uncompressed digest and a non-empty history entry.
    pub fn add_layer(&mut self, diff_id: Digest, mut history: History) {
        history.empty_layer = false;
        self.rootfs.diff_ids.push(diff_id);
        self.history.push(history);
    }

    /// Records a step that changed only the config (`ENV`, `CMD`…): `empty_layer: true`.
    pub fn add_empty_history(&mut self, created_by: impl Into<String>) {
        self.history.push(History {
            created_by: Some(created_by.into()),
            empty_layer: true,
            ..History::default()
        });
    }

    /// The config a build stage starts from when its base is `self`.
    ///
    /// Matches BuildKit, which decodes the base config into its typed (OCI + Docker extension)
    /// struct: legacy fields that only Docker's classic builder wrote (`container`,
    /// `container_config`, `docker_version`, `config.Hostname`, `AttachStdin`…) are dropped, as
    /// are the base's `created` and `author`; rootfs, history and run config are inherited.
    pub fn derive_child(&self) -> ImageConfig {
        let mut child = self.clone();
        child.extra.clear();
        child.created = None;
        child.author = None;
        if let Some(c) = child.config.as_mut() {
            c.extra.clear();
        }
        child
    }

    /// Whether the number of non-empty history entries matches the number of layers
    /// (image-spec: history entries with `empty_layer` have no layer). A config without
    /// history is consistent by definition.
    pub fn history_matches_layers(&self) -> bool {
        self.history.is_empty()
            || self.history.iter().filter(|h| !h.empty_layer).count() == self.rootfs.diff_ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// image-spec `config.md` "Example", re-typed.
    const SPEC_EXAMPLE: &str = r#"{
    "created": "2015-10-31T22:22:56.015925234Z",
    "author": "Alyssa P. Hacker <alyspdev@example.com>",
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "alice",
        "Memory": 2048,
        "MemorySwap": 4096,
        "CpuShares": 8,
        "ExposedPorts": {
            "8080/tcp": {}
        },
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "FOO=oci_is_a",
            "BAR=well_written_spec"
        ],
        "Entrypoint": [
            "/bin/my-app-binary"
        ],
        "Cmd": [
            "--foreground",
            "--config",
            "/etc/my-app.d/default.cfg"
        ],
        "Volumes": {
            "/var/job-result-data": {},
            "/var/log/my-app-logs": {}
        },
        "WorkingDir": "/home/alice"
    },
    "rootfs": {
      "diff_ids": [
        "sha256:c6f988f4874bb0add23a778f753c65efe992244e148a1d2ec2a8b664fb66bbd1",
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
      ],
      "type": "layers"
    },
    "history": [
      {
        "created": "2015-10-31T22:22:54.690851953Z",
        "created_by": "/bin/sh -c #(nop) ADD file:a3bc1e842b69636f9df5256c49c5374fb4eef1e281fe3f282c65fb853ee171c5 in /"
      },
      {
        "created": "2015-10-31T22:22:55.613815829Z",
        "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]",
        "empty_layer": true
      }
    ]
}"#;

    /// A config as Docker's classic builder (docker 20.10) wrote it, with legacy fields and nulls.
    const DOCKER_CONFIG: &str = r##"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"Image":"sha256:8c811b4aec35f259572d0f79207bc0678df4c736eeec50bc9fec37ed936a472a","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"Healthcheck":{"Test":["CMD-SHELL","wget -q -O- localhost || exit 1"],"Interval":30000000000,"Timeout":5000000000,"Retries":3}},"container":"ba0b6d1e9b4ca3e1a3e3c1ad0d9f1d1b0f2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f","container_config":{"Hostname":"ba0b6d1e9b4c","Cmd":["/bin/sh","-c","#(nop) ","CMD [\"/bin/sh\"]"],"Image":"sha256:8c811b4aec35f259572d0f79207bc0678df4c736eeec50bc9fec37ed936a472a"},"created":"2023-08-07T19:20:20.894140623Z","docker_version":"20.10.23","history":[{"created":"2023-08-07T19:20:20.71894984Z","created_by":"/bin/sh -c #(nop) ADD file:32ff5e7a78b890996ee4681cc0a26185d3e9acdb4eb1e2aaccb2411f922fed6b in / "},{"created":"2023-08-07T19:20:20.894140623Z","created_by":"/bin/sh -c #(nop)  CMD [\"/bin/sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:4693057ce2364720d39e57e85a5b8e0bd9ac3573716237736d6470ec5b7b7230"]}}"##;

    fn value(s: &[u8]) -> serde_json::Value {
        serde_json::from_slice(s).expect("test JSON is valid")
    }

    #[test]
    fn spec_example_parses_field_by_field() {
        let c: ImageConfig = serde_json::from_str(SPEC_EXAMPLE).unwrap();
        assert_eq!(c.created.as_deref(), Some("2015-10-31T22:22:56.015925234Z"));
        assert_eq!(
            c.author.as_deref(),
            Some("Alyssa P. Hacker <alyspdev@example.com>")
        );
        assert_eq!((c.architecture.as_str(), c.os.as_str()), ("amd64", "linux"));
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.user.as_deref(), Some("alice"));
        assert_eq!(cc.exposed_ports.keys().collect::<Vec<_>>(), ["8080/tcp"]);
        assert_eq!(cc.env.len(), 3);
        assert_eq!(
            cc.entrypoint.as_deref(),
            Some(&["/bin/my-app-binary".to_string()][..])
        );
        assert_eq!(cc.cmd.as_ref().unwrap()[2], "/etc/my-app.d/default.cfg");
        assert_eq!(cc.volumes.len(), 2);
        assert_eq!(cc.working_dir.as_deref(), Some("/home/alice"));
        // Memory/MemorySwap/CpuShares are not in the current spec's field list: kept as extras.
        assert_eq!(cc.extra["Memory"], serde_json::json!(2048));
        assert_eq!(c.rootfs.fs_type, "layers");
        assert_eq!(c.rootfs.diff_ids.len(), 2);
        assert_eq!(c.history.len(), 2);
        assert!(!c.history[0].empty_layer && c.history[1].empty_layer);
        assert!(
            !c.history_matches_layers(),
            "example has 2 layers, 1 non-empty history"
        );
        // Re-serialised, the document is the same JSON value.
        assert_eq!(
            value(&c.to_canonical_json()),
            value(SPEC_EXAMPLE.as_bytes())
        );
    }

    #[test]
    fn canonical_json_is_deterministic_and_sorted() {
        let mut c = ImageConfig::new("linux", "amd64");
        for k in ["zeta", "alpha", "mid"] {
            c.config_mut().labels.insert(k.into(), "v".into());
        }
        c.config_mut()
            .exposed_ports
            .insert("8080/tcp".into(), EmptyObject {});
        c.config_mut()
            .exposed_ports
            .insert("443/tcp".into(), EmptyObject {});
        let a = c.to_canonical_json();
        assert_eq!(a, c.clone().to_canonical_json());
        let s = String::from_utf8(a).unwrap();
        assert_eq!(
            s,
            r#"{"architecture":"amd64","os":"linux","config":{"ExposedPorts":{"443/tcp":{},"8080/tcp":{}},"Labels":{"alpha":"v","mid":"v","zeta":"v"}},"rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    #[test]
    fn docker_config_round_trips_with_extra_fields_and_nulls() {
        let c: ImageConfig = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert_eq!(cc.entrypoint, None, "null Entrypoint reads as unset");
        assert!(cc.labels.is_empty() && cc.volumes.is_empty());
        let hc = cc.healthcheck.as_ref().unwrap();
        assert_eq!(
            (hc.interval, hc.timeout, hc.retries),
            (30_000_000_000, 5_000_000_000, 3)
        );
        assert_eq!(cc.extra["Hostname"], serde_json::json!(""));
        assert_eq!(cc.extra["AttachStdin"], serde_json::json!(false));
        assert_eq!(c.extra["docker_version"], serde_json::json!("20.10.23"));
        assert!(c.extra.contains_key("container_config"));

        let out = value(&c.to_canonical_json());
        let mut expected = value(DOCKER_CONFIG.as_bytes());
        // The only change: explicit nulls become absent.
        for k in ["Volumes", "Entrypoint", "OnBuild", "Labels"] {
            expected["config"].as_object_mut().unwrap().remove(k);
        }
        assert_eq!(out, expected);
        // And a second round trip is byte-identical.
        let again: ImageConfig = serde_json::from_slice(&c.to_canonical_json()).unwrap();
        assert_eq!(again.to_canonical_json(), c.to_canonical_json());
    }

    /// Found by the `manifest_parse` fuzz target: a number in an unknown config field
    /// (`184467440737.95514`) came back one ulp off after a round trip, so a re-serialised base
    /// config was not the document read. Needs serde_json's `float_roundtrip`.
    #[test]
    fn config_extra_floats_round_trip_exactly() {
        let doc = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"big":184467440737.95514,"small":2.2250738585072014e-308}"#;
        let c: ImageConfig = serde_json::from_slice(doc).unwrap();
        let again: ImageConfig = serde_json::from_slice(&c.to_canonical_json()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn derive_child_drops_legacy_docker_fields_like_buildkit() {
        let c: ImageConfig = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let child = c.derive_child();
        assert!(child.extra.is_empty() && child.config.as_ref().unwrap().extra.is_empty());
        assert_eq!(child.created, None);
        assert_eq!(child.rootfs, c.rootfs);
        assert_eq!(child.history, c.history);
        assert_eq!(
            child.config.as_ref().unwrap().healthcheck,
            c.config.as_ref().unwrap().healthcheck
        );
    }

    #[test]
    fn env_set_replaces_in_place_like_docker() {
        let mut c = ImageConfig::new("linux", "amd64");
        c.env_set("PATH", "/bin");
        c.env_set("A", "1");
        c.env_set("PATH", "/usr/bin:/bin");
        assert_eq!(
            c.config.as_ref().unwrap().env,
            ["PATH=/usr/bin:/bin", "A=1"]
        );
        assert_eq!(c.env_get("PATH"), Some("/usr/bin:/bin"));
        assert_eq!(c.env_get("PAT"), None);
        c.env_set("B", "x=y");
        assert_eq!(c.env_get("B"), Some("x=y"));
    }

    #[test]
    fn history_helpers_keep_layers_and_history_consistent() {
        let mut c = ImageConfig::new("linux", "arm64");
        c.add_empty_history("ENV A=1");
        c.add_layer(Digest::sha256_of(b"layer"), History::new("RUN true"));
        assert!(c.history_matches_layers());
        let v = value(&c.to_canonical_json());
        assert_eq!(v["history"][0]["empty_layer"], serde_json::json!(true));
        assert!(v["history"][1].get("empty_layer").is_none());
        assert_eq!(
            v["rootfs"]["diff_ids"][0],
            serde_json::json!(Digest::sha256_of(b"layer").to_string())
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_labels_and_env_round_trip_byte_identically(
            labels in proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..6),
            env in proptest::collection::vec(("[A-Z_]{1,6}", ".{0,8}"), 0..6),
        ) {
            let mut c = ImageConfig::new("linux", "amd64");
            c.config_mut().labels = labels;
            for (k, v) in &env {
                c.env_set(k, v);
                proptest::prop_assert_eq!(c.env_get(k), Some(v.as_str()));
            }
            let bytes = c.to_canonical_json();
            let back: ImageConfig = serde_json::from_slice(&bytes).unwrap();
            proptest::prop_assert_eq!(back.to_canonical_json(), bytes);
        }
    }

    #[test]
    fn os_version_features_and_variant_use_spec_names() {
        let mut c = ImageConfig::new("windows", "arm64");
        c.os_version = Some("10.0.17763.1040".into());
        c.os_features = vec!["win32k".into()];
        c.variant = Some("v8".into());
        let v = value(&c.to_canonical_json());
        assert_eq!(v["os.version"], "10.0.17763.1040");
        assert_eq!(v["os.features"][0], "win32k");
        assert_eq!(v["variant"], "v8");
    }
}
