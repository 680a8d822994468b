//! `--sbom`, `--provenance` and `--attest type=…` into an [`AttestRequest`], with buildx's
//! spellings (`util/buildflags/attests.go`): `--sbom=true|false|KEY=VALUE,…` is
//! `--attest type=sbom,…` (a boolean means `disabled=!b`), likewise `--provenance`; a later
//! spelling of a type replaces an earlier one. buildx's default (`build/opt.go`): provenance
//! `mode=min` unless the build names provenance or `BUILDX_NO_DEFAULT_ATTESTATIONS` is true.
//! Attestations go with the images a build pushes (`--push`, `type=registry`/`image`); a
//! `--load` (`type=docker`) image carries none, as the Docker Engine's image store keeps none.

use crate::attest::provenance::Mode;
use crate::attest::AttestRequest;

use super::csv::split_fields;
use super::options::UsageError;

/// One type's settings after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Setting {
    Off,
    Sbom,
    Provenance(Mode),
}

/// Resolves the flags; `no_default` is `BUILDX_NO_DEFAULT_ATTESTATIONS`'s value.
pub fn attest_request(
    attest: &[String],
    sbom: Option<&str>,
    provenance: Option<&str>,
    no_default: Option<&str>,
) -> Result<AttestRequest, UsageError> {
    let mut specs: Vec<String> = attest.to_vec();
    specs.extend(sbom.and_then(|v| canonical("sbom", v)));
    specs.extend(provenance.and_then(|v| canonical("provenance", v)));
    let mut sbom_set = None;
    let mut prov_set = None;
    for s in &specs {
        let (ty, setting) = parse(s)?;
        match ty.as_str() {
            "sbom" => sbom_set = Some(setting),
            _ => prov_set = Some(setting),
        }
    }
    let no_default = match no_default {
        None | Some("") => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            UsageError::Value(format!(
                "invalid BUILDX_NO_DEFAULT_ATTESTATIONS {v:?}: expected true or false"
            ))
        })?,
    };
    let provenance = match prov_set {
        Some(Setting::Provenance(m)) => Some(m),
        Some(_) => None,
        None if no_default => None,
        None => Some(Mode::Min),
    };
    Ok(AttestRequest {
        sbom: sbom_set == Some(Setting::Sbom),
        provenance,
        provenance_default: prov_set.is_none() && provenance.is_some(),
    })
}

/// buildx's `CanonicalizeAttest`.
fn canonical(ty: &str, v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    Some(match parse_bool(v) {
        Some(b) => format!("type={ty},disabled={}", !b),
        None => format!("type={ty},{v}"),
    })
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn parse(spec: &str) -> Result<(String, Setting), UsageError> {
    let bad = |why: String| UsageError::Value(format!("invalid --attest {spec:?}: {why}"));
    let fields = split_fields(spec).map_err(|e| bad(e.to_string()))?;
    let mut ty = None;
    let mut disabled = false;
    let mut mode = Mode::Max;
    let mut mode_given = false;
    for f in &fields {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| bad(format!("{f:?} is not KEY=VALUE")))?;
        match k {
            "type" => ty = Some(v.to_string()),
            "disabled" => disabled = parse_bool(v).ok_or_else(|| bad(format!("disabled={v}")))?,
            "mode" => {
                mode_given = true;
                mode = match v {
                    "min" => Mode::Min,
                    "max" | "full" => Mode::Max,
                    _ => return Err(bad(format!("mode={v}: expected min or max"))),
                }
            }
            // Accepted as buildx does, with nothing to change here: rbuild writes SLSA v1,
            // into image outputs only, and its own scanner is the generator.
            "version" if v == "v1" => {}
            "inline-only" | "builder-id" | "reproducible" | "generator" | "scan-context"
            | "scan-stage" => {}
            _ => {
                return Err(bad(format!(
                    "unknown key {k:?} (type, disabled, mode, version=v1, builder-id)"
                )))
            }
        }
    }
    let ty = ty.ok_or_else(|| bad("attestation type not specified".into()))?;
    let setting = match (ty.as_str(), disabled) {
        (_, true) => Setting::Off,
        ("sbom", false) if !mode_given => Setting::Sbom,
        ("sbom", false) => return Err(bad("mode= is a provenance setting".into())),
        ("provenance", false) => Setting::Provenance(mode),
        (other, _) => {
            return Err(bad(format!(
                "unknown attestation type {other:?} (sbom or provenance)"
            )))
        }
    };
    Ok((ty, setting))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(attest: &[&str], sbom: Option<&str>, prov: Option<&str>) -> AttestRequest {
        let a: Vec<String> = attest.iter().map(|s| s.to_string()).collect();
        attest_request(&a, sbom, prov, None).unwrap()
    }

    #[test]
    fn buildx_spellings_and_defaults() {
        let min = Some(Mode::Min);
        let max = Some(Mode::Max);
        let cases = [
            (req(&[], None, None), false, min),
            (req(&[], Some("true"), None), true, min),
            (req(&[], Some("false"), Some("false")), false, None),
            (req(&[], None, Some("true")), false, max),
            (req(&[], None, Some("mode=max")), false, max),
            (req(&[], None, Some("mode=min")), false, min),
            (
                req(&["type=sbom", "type=provenance,mode=max"], None, None),
                true,
                max,
            ),
            (
                req(&["type=provenance,disabled=true"], None, None),
                false,
                None,
            ),
            // The flag spelled later replaces --attest's.
            (req(&["type=sbom"], Some("false"), None), false, min),
        ];
        for (i, (got, sbom, prov)) in cases.into_iter().enumerate() {
            assert_eq!((got.sbom, got.provenance), (sbom, prov), "case {i}");
            // Where no spelling names the provenance, it is buildx's default (inline-only).
            assert_eq!(got.provenance_default, [0, 1, 8].contains(&i), "case {i}");
        }
        let none = attest_request(&[], None, None, Some("1")).unwrap();
        assert!(!none.any());
    }

    #[test]
    fn errors_name_what_is_allowed() {
        let errs: Vec<String> = [
            "mode=max",
            "type=vex",
            "type=provenance,mode=huge",
            "type=provenance,colour=red",
        ]
        .iter()
        .map(|s| {
            attest_request(&[s.to_string()], None, None, None)
                .unwrap_err()
                .to_string()
        })
        .collect();
        insta::assert_snapshot!(errs.join("\n"));
    }
}
