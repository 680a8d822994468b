//! in-toto statements (ITE-6) wrapping a predicate, as BuildKit's exporter makes them
//! (`exporter/attestation/make.go`): the statement type BuildKit writes today
//! (`https://in-toto.io/Statement/v1`; BuildKit ≤ 0.12 wrote `v0.1`, which readers accept
//! alike), and one subject per image name, `pkg:docker/NAME@TAG?platform=OS%2FARCH`, each with
//! the image manifest's digest. An image built without a name gets the subject `_` (BuildKit
//! would write none, which the in-toto spec does not allow).

use std::collections::BTreeMap;

use rbuild_layers::{Digest, Platform};
use serde::Serialize;

use super::provenance::docker_purl;

/// The statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The media type of a statement blob (an attestation manifest's layer).
pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// A statement, in the field order of in-toto-golang's (BuildKit's) `Statement`.
#[derive(Debug, Serialize)]
pub struct Statement<'a, P: Serialize> {
    #[serde(rename = "_type")]
    pub statement_type: &'static str,
    #[serde(rename = "predicateType")]
    pub predicate_type: &'a str,
    pub subject: &'a [Subject],
    pub predicate: &'a P,
}

/// The subjects for an image manifest of `digest` built for `platform` under `names`.
pub fn subjects(names: &[String], platform: &Platform, digest: &Digest) -> Vec<Subject> {
    let digest_set = BTreeMap::from([(
        digest.algorithm().as_str().to_string(),
        digest.hex().to_string(),
    )]);
    let mut out: Vec<Subject> = names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| Subject {
            name: docker_purl(n, Some(platform)),
            digest: digest_set.clone(),
        })
        .collect();
    if out.is_empty() {
        out.push(Subject {
            name: "_".into(),
            digest: digest_set,
        });
    }
    out
}

/// The statement's bytes (compact JSON, as Go's `json.Marshal` writes it).
pub fn statement_bytes<P: Serialize>(
    predicate_type: &str,
    subjects: &[Subject],
    predicate: &P,
) -> Vec<u8> {
    serde_json::to_vec(&Statement {
        statement_type: STATEMENT_TYPE,
        predicate_type,
        subject: subjects,
        predicate,
    })
    .expect("statements serialise: map keys are strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_each_image_with_its_platform() {
        let d = Digest::sha256_of(b"manifest");
        let p = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            variant: Some("v8".into()),
        };
        let s = subjects(
            &[
                "localhost:5000/app:v1".into(),
                "docker.io/library/alpine".into(),
            ],
            &p,
            &d,
        );
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pkg:docker/localhost:5000/app@v1?platform=linux%2Farm64%2Fv8",
                "pkg:docker/alpine@latest?platform=linux%2Farm64%2Fv8",
            ]
        );
        assert_eq!(s[0].digest["sha256"], d.hex());
        assert_eq!(subjects(&[], &p, &d)[0].name, "_");
        let bytes = statement_bytes("t", &s[..1], &serde_json::json!({"k": 1}));
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"t","subject":[{"name":"#),
            "{text}"
        );
    }
}
