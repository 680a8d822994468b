//! `RUN --mount=<csv>` specifications, validated at parse time against BuildKit's option set
//! (`instructions/commands_runmount.go`) but with a per-type allowlist, so a typo is reported
//! before any build work starts.
//!
//! String values (`id`, `target`, `source`, `from`, `env`) stay unexpanded; numeric and enum
//! values (`mode`, `uid`, `gid`, `size`, `sharing`, `type`, `ro`/`rw`/`required`) must be
//! literal so they can be typed now. Cache ids and bind sources are later joined onto host
//! paths, so `..` components and absolute cache ids are rejected (buildah CVE-2024-9675); the
//! same check runs again after expansion ([`MountSpec::check_paths`]).

use serde::Serialize;

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

impl CacheSharing {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSharing::Shared => "shared",
            CacheSharing::Private => "private",
            CacheSharing::Locked => "locked",
        }
    }
}

/// One `--mount` of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MountSpec {
    /// Read-only (unless `rw`) bind of the context or of a stage/image (`from`).
    Bind {
        source: Option<String>,
        target: String,
        from: Option<String>,
        rw: bool,
    },
    /// Persistent cache directory shared between builds.
    Cache {
        id: Option<String>,
        target: String,
        sharing: CacheSharing,
        from: Option<String>,
        source: Option<String>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        readonly: bool,
    },
    /// A build secret as a file (`target`, default `/run/secrets/<id>`) or variable (`env`).
    Secret {
        id: Option<String>,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// The client's ssh agent, forwarded as a socket (`target`, default
    /// `/run/buildkit/ssh_agent.<N>`); `id` defaults to `default`.
    Ssh {
        id: Option<String>,
        target: Option<String>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// An empty tmpfs.
    Tmpfs { target: String, size: Option<u64> },
}

/// Why a `--mount` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("malformed CSV: {0}")]
    Csv(&'static str),
    #[error("invalid field '{field}' must be a key=value pair")]
    NotKeyValue { field: String },
    #[error("unsupported mount type `{value}`")]
    UnknownType { value: String },
    #[error("unexpected key '{key}' for mount type '{mount_type}'")]
    UnexpectedKey {
        key: String,
        mount_type: &'static str,
        allowed: &'static [&'static str],
    },
    #[error("invalid value `{value}` for mount option `{key}`")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("mount option `{key}` must be literal, rbuild does not expand variables in it")]
    VariableNotAllowed { key: String },
    #[error("{mount_type} mount requires a target")]
    MissingTarget { mount_type: &'static str },
    #[error("invalid secret mount: one of id, source, target required")]
    SecretNeedsId,
    #[error("secret mount: both source and id can't be set")]
    SecretSourceAndId,
    #[error("unsafe mount option {key}={value}: {reason}")]
    UnsafePath {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl MountError {
    pub fn help(&self) -> Option<String> {
        match self {
            MountError::UnknownType { .. } => {
                Some("supported mount types: bind, cache, secret, ssh, tmpfs".to_owned())
            }
            MountError::UnexpectedKey { key, allowed, .. } => {
                let list = allowed.join(", ");
                Some(match super::diagnostic::suggest(key, allowed) {
                    Some(s) => format!("did you mean `{s}`? allowed options: {list}"),
                    None => format!("allowed options: {list}"),
                })
            }
            MountError::BadValue { expected, .. } => Some(format!("expected {expected}")),
            MountError::NotKeyValue { .. } => Some(
                "only readonly/ro, readwrite/rw and required may be given without a value"
                    .to_owned(),
            ),
            MountError::VariableNotAllowed { .. } => Some("write the value literally".to_owned()),
            MountError::MissingTarget { .. } => Some("add `target=<path>`".to_owned()),
            MountError::UnsafePath { .. } => {
                Some("use a relative path without `..` components".to_owned())
            }
            MountError::SecretNeedsId | MountError::SecretSourceAndId => {
                Some("write `--mount=type=secret,id=<id>[,target=<path>]`".to_owned())
            }
            MountError::Csv(_) => None,
        }
    }
}

const BIND_KEYS: &[&str] = &[
    "type",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "from",
    "readonly",
    "ro",
    "readwrite",
    "rw",
];
const CACHE_KEYS: &[&str] = &[
    "type",
    "id",
    "target",
    "dst",
    "destination",
    "sharing",
    "from",
    "source",
    "src",
    "mode",
    "uid",
    "gid",
    "readonly",
    "ro",
    "readwrite",
    "rw",
];
const SECRET_KEYS: &[&str] = &[
    "type",
    "id",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "env",
    "required",
    "mode",
    "uid",
    "gid",
    "readonly",
    "ro",
    "readwrite",
    "rw",
];
const SSH_KEYS: &[&str] = &[
    "type",
    "id",
    "target",
    "dst",
    "destination",
    "required",
    "mode",
    "uid",
    "gid",
    "readonly",
    "ro",
    "readwrite",
    "rw",
];
const TMPFS_KEYS: &[&str] = &[
    "type",
    "target",
    "dst",
    "destination",
    "size",
    "readonly",
    "ro",
    "readwrite",
    "rw",
];

/// Splits a CSV record as Go's `encoding/csv` does for one line (quoted fields, `""` escape).
fn csv_fields(value: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(MountError::Csv("extraneous or missing \" in quoted-field"))
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(MountError::Csv("extraneous or missing \" in quoted-field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(MountError::Csv("bare \" in non-quoted-field")),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, MountError> {
    // Go's strconv.ParseBool.
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(MountError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: "a boolean (true or false)",
        }),
    }
}

fn parse_u32(
    key: &str,
    value: &str,
    radix: u32,
    expected: &'static str,
) -> Result<u32, MountError> {
    u32::from_str_radix(value, radix).map_err(|_| MountError::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
    })
}

/// Docker's `units.RAMInBytes`: a number with an optional binary suffix (`64m`, `1GiB`).
fn parse_size(value: &str) -> Result<u64, MountError> {
    let bad = || MountError::BadValue {
        key: "size".to_owned(),
        value: value.to_owned(),
        expected: "a size such as `64m` or `1g`",
    };
    let num_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let number: f64 = value[..num_end].parse().map_err(|_| bad())?;
    let suffix = value[num_end..]
        .trim_start_matches(' ')
        .to_ascii_lowercase();
    let suffix = suffix.strip_suffix('b').unwrap_or(&suffix);
    let suffix = suffix.strip_suffix('i').unwrap_or(suffix);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

fn has_dotdot(path: &str) -> bool {
    path.split(['/', '\\']).any(|c| c == "..")
}

/// Options whose value is parsed into a type (a number, a boolean, a keyword): one written
/// with a variable can only be read once the variable is known.
const TYPED_KEYS: &[&str] = &[
    "type",
    "sharing",
    "mode",
    "uid",
    "gid",
    "size",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
];

/// Every option of every mount type, for a mount whose `type` is a variable.
const ALL_KEYS: &[&str] = &[
    "type",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "from",
    "id",
    "env",
    "sharing",
    "mode",
    "uid",
    "gid",
    "size",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
];

fn is_deferred(key: &str, value: &str) -> bool {
    value.contains('$') && TYPED_KEYS.contains(&key.to_ascii_lowercase().as_str())
}

/// Parses one `--mount` value (quotes already removed by flag extraction) as written: typed
/// options with variables (`uid=$UID`, `mode=$M`) are left at their defaults here and read
/// when the instruction is expanded ([`parse_mount_expanded`]), as BuildKit does.
pub(crate) fn parse_mount(value: &str) -> Result<MountSpec, MountError> {
    parse_fields(csv_fields(value)?, true)
}

/// Parses one `--mount` value with every option's value expanded by `expand` (BuildKit
/// expands all of them; `from` cannot hold a variable, which [`parse_mount`] refused).
pub(crate) fn parse_mount_expanded<E: From<MountError>>(
    value: &str,
    mut expand: impl FnMut(&str) -> Result<String, E>,
) -> Result<MountSpec, E> {
    let mut fields = Vec::new();
    for field in csv_fields(value)? {
        fields.push(match field.split_once('=') {
            Some((k, v)) if !k.eq_ignore_ascii_case("from") => format!("{k}={}", expand(v)?),
            _ => field,
        });
    }
    Ok(parse_fields(fields, false)?)
}

/// Whether a `--mount` value has options that [`parse_mount`] could not read yet.
pub(crate) fn has_deferred_options(value: &str) -> bool {
    csv_fields(value).is_ok_and(|fields| {
        fields
            .iter()
            .any(|f| f.split_once('=').is_some_and(|(k, v)| is_deferred(k, v)))
    })
}

fn parse_fields(fields: Vec<String>, defer: bool) -> Result<MountSpec, MountError> {
    let mut mount_type = "bind";
    let mut type_deferred = false;
    for field in &fields {
        if let Some((k, v)) = field.split_once('=') {
            if k.eq_ignore_ascii_case("type") {
                if defer && v.contains('$') {
                    type_deferred = true;
                    continue;
                }
                mount_type = match v.to_ascii_lowercase().as_str() {
                    "bind" => "bind",
                    "cache" => "cache",
                    "secret" => "secret",
                    "tmpfs" => "tmpfs",
                    "ssh" => "ssh",
                    _ => {
                        return Err(MountError::UnknownType {
                            value: v.to_owned(),
                        })
                    }
                };
            }
        }
    }
    let allowed = match mount_type {
        _ if type_deferred => ALL_KEYS,
        "cache" => CACHE_KEYS,
        "secret" => SECRET_KEYS,
        "ssh" => SSH_KEYS,
        "tmpfs" => TMPFS_KEYS,
        _ => BIND_KEYS,
    };

    let mut source = None;
    let mut target = None;
    let mut from = None;
    let mut id = None;
    let mut env = None;
    let mut sharing = CacheSharing::Shared;
    let mut mode = None;
    let mut uid = None;
    let mut gid = None;
    let mut size = None;
    let mut readonly = None;
    let mut required = false;

    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        if !allowed.contains(&key.as_str()) {
            return Err(MountError::UnexpectedKey {
                key,
                mount_type,
                allowed,
            });
        }
        if value.is_some_and(|v| defer && is_deferred(&key, v)) {
            continue;
        }
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => readonly = Some(true),
                "readwrite" | "rw" => readonly = Some(false),
                "required" => required = true,
                _ => {
                    return Err(MountError::NotKeyValue {
                        field: field.clone(),
                    })
                }
            }
            continue;
        };
        match key.as_str() {
            "type" => {}
            "source" | "src" => source = Some(value.to_owned()),
            "target" | "dst" | "destination" => target = Some(value.to_owned()),
            "from" => {
                // BuildKit: "'from' doesn't support variable expansion, define alias stage
                // instead" (a trailing `$` is literal).
                if value.find('$').is_some_and(|i| i + 1 != value.len()) {
                    return Err(MountError::VariableNotAllowed { key });
                }
                from = Some(value.to_owned());
            }
            "id" => id = Some(value.to_owned()),
            "env" => env = Some(value.to_owned()),
            "sharing" => {
                sharing = match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(MountError::BadValue {
                            key,
                            value: value.to_owned(),
                            expected: "one of shared, private, locked",
                        })
                    }
                };
            }
            "mode" => mode = Some(parse_u32("mode", value, 8, "an octal mode such as 0755")?),
            "uid" => uid = Some(parse_u32("uid", value, 10, "a numeric user id")?),
            "gid" => gid = Some(parse_u32("gid", value, 10, "a numeric group id")?),
            "size" => size = Some(parse_size(value)?),
            "readonly" | "ro" => readonly = Some(parse_bool(&key, value)?),
            "readwrite" | "rw" => readonly = Some(!parse_bool(&key, value)?),
            "required" => required = parse_bool(&key, value)?,
            _ => {
                return Err(MountError::UnexpectedKey {
                    key,
                    mount_type,
                    allowed,
                })
            }
        }
    }

    let need_target = |target: Option<String>| {
        target
            .filter(|t| !t.is_empty())
            .ok_or(MountError::MissingTarget { mount_type })
    };
    let spec = match mount_type {
        "cache" => MountSpec::Cache {
            id,
            target: need_target(target)?,
            sharing,
            from,
            source,
            mode,
            uid,
            gid,
            readonly: readonly.unwrap_or(false),
        },
        "secret" => {
            if source.is_some() && id.is_some() {
                return Err(MountError::SecretSourceAndId);
            }
            // BuildKit treats `source` of a secret mount as its id.
            let id = id.or(source);
            if id.is_none() && target.is_none() && env.is_none() {
                return Err(MountError::SecretNeedsId);
            }
            MountSpec::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            }
        }
        "ssh" => MountSpec::Ssh {
            id,
            target,
            required,
            mode,
            uid,
            gid,
        },
        "tmpfs" => MountSpec::Tmpfs {
            target: need_target(target)?,
            size,
        },
        _ => MountSpec::Bind {
            source,
            target: need_target(target)?,
            from,
            rw: readonly == Some(false),
        },
    };
    spec.check_paths()?;
    Ok(spec)
}

impl MountSpec {
    /// Rejects values that would escape the directory they are later joined onto:
    /// `..` in cache ids and bind/cache sources, and absolute cache ids.
    pub fn check_paths(&self) -> Result<(), MountError> {
        let unsafe_path = |key, value: &str, reason| MountError::UnsafePath {
            key,
            value: value.to_owned(),
            reason,
        };
        match self {
            MountSpec::Cache { id, source, .. } => {
                if let Some(id) = id {
                    if id.starts_with('/') {
                        return Err(unsafe_path("id", id, "cache ids must not be absolute"));
                    }
                    if has_dotdot(id) {
                        return Err(unsafe_path("id", id, "cache ids must not contain `..`"));
                    }
                }
                if let Some(src) = source.as_deref().filter(|s| has_dotdot(s)) {
                    return Err(unsafe_path("source", src, "sources must not contain `..`"));
                }
            }
            MountSpec::Bind { source, .. } => {
                if let Some(src) = source.as_deref().filter(|s| has_dotdot(s)) {
                    return Err(unsafe_path("source", src, "sources must not contain `..`"));
                }
            }
            MountSpec::Secret { id, .. } => {
                if let Some(id) = id.as_deref().filter(|s| has_dotdot(s)) {
                    return Err(unsafe_path("id", id, "secret ids must not contain `..`"));
                }
            }
            MountSpec::Ssh { .. } | MountSpec::Tmpfs { .. } => {}
        }
        Ok(())
    }
}

fn push(parts: &mut Vec<String>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        parts.push(format!("{key}={v}"));
    }
}

impl std::fmt::Display for MountSpec {
    /// The canonical `--mount` value (without `--mount=`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut p: Vec<String> = Vec::new();
        let octal = |m: &Option<u32>| m.map(|m| format!("{m:o}"));
        let num = |n: &Option<u32>| n.map(|n| n.to_string());
        match self {
            MountSpec::Bind {
                source,
                target,
                from,
                rw,
            } => {
                p.push("type=bind".to_owned());
                push(&mut p, "source", source.clone());
                push(&mut p, "target", Some(target.clone()));
                push(&mut p, "from", from.clone());
                if *rw {
                    p.push("rw".to_owned());
                }
            }
            MountSpec::Cache {
                id,
                target,
                sharing,
                from,
                source,
                mode,
                uid,
                gid,
                readonly,
            } => {
                p.push("type=cache".to_owned());
                push(&mut p, "id", id.clone());
                push(&mut p, "target", Some(target.clone()));
                if *sharing != CacheSharing::Shared {
                    push(&mut p, "sharing", Some(sharing.as_str().to_owned()));
                }
                push(&mut p, "from", from.clone());
                push(&mut p, "source", source.clone());
                push(&mut p, "mode", octal(mode));
                push(&mut p, "uid", num(uid));
                push(&mut p, "gid", num(gid));
                if *readonly {
                    p.push("ro".to_owned());
                }
            }
            MountSpec::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                p.push("type=secret".to_owned());
                push(&mut p, "id", id.clone());
                push(&mut p, "target", target.clone());
                push(&mut p, "env", env.clone());
                if *required {
                    p.push("required".to_owned());
                }
                push(&mut p, "mode", octal(mode));
                push(&mut p, "uid", num(uid));
                push(&mut p, "gid", num(gid));
            }
            MountSpec::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                p.push("type=ssh".to_owned());
                push(&mut p, "id", id.clone());
                push(&mut p, "target", target.clone());
                if *required {
                    p.push("required".to_owned());
                }
                push(&mut p, "mode", octal(mode));
                push(&mut p, "uid", num(uid));
                push(&mut p, "gid", num(gid));
            }
            MountSpec::Tmpfs { target, size } => {
                p.push("type=tmpfs".to_owned());
                push(&mut p, "target", Some(target.clone()));
                push(&mut p, "size", size.map(|s| s.to_string()));
            }
        }
        f.write_str(&p.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount_with_all_options() {
        let m = parse_mount(
            "type=cache,id=pip,target=/root/.cache,sharing=locked,mode=0700,uid=1,gid=2",
        )
        .expect("valid");
        assert_eq!(
            m,
            MountSpec::Cache {
                id: Some("pip".into()),
                target: "/root/.cache".into(),
                sharing: CacheSharing::Locked,
                from: None,
                source: None,
                mode: Some(0o700),
                uid: Some(1),
                gid: Some(2),
                readonly: false,
            }
        );
        assert_eq!(
            m.to_string(),
            "type=cache,id=pip,target=/root/.cache,sharing=locked,mode=700,uid=1,gid=2"
        );
    }

    #[test]
    fn bind_is_default_type_and_readonly_by_default() {
        let m = parse_mount("target=/src,from=build,source=/out").expect("valid");
        assert!(matches!(m, MountSpec::Bind { rw: false, .. }));
        assert_eq!(
            m.to_string(),
            "type=bind,source=/out,target=/src,from=build"
        );
    }

    #[test]
    fn rejects_traversal_and_absolute_cache_ids() {
        assert!(matches!(
            parse_mount("type=cache,id=../x,target=/c"),
            Err(MountError::UnsafePath { key: "id", .. })
        ));
        assert!(matches!(
            parse_mount("type=cache,id=/etc,target=/c"),
            Err(MountError::UnsafePath { key: "id", .. })
        ));
        assert!(matches!(
            parse_mount("type=bind,source=a/../../etc,target=/c"),
            Err(MountError::UnsafePath { key: "source", .. })
        ));
    }

    #[test]
    fn rejects_unknown_keys_per_type() {
        assert!(matches!(
            parse_mount("type=tmpfs,target=/t,id=x"),
            Err(MountError::UnexpectedKey { .. })
        ));
        assert!(parse_mount("type=secret").is_err());
        assert_eq!(parse_size("64m").expect("valid"), 64 << 20);
        assert_eq!(parse_size("1GiB").expect("valid"), 1 << 30);
    }

    #[test]
    fn ssh_mount_defaults_and_options() {
        assert_eq!(
            parse_mount("type=ssh").expect("valid"),
            MountSpec::Ssh {
                id: None,
                target: None,
                required: false,
                mode: None,
                uid: None,
                gid: None,
            }
        );
        let m =
            parse_mount("type=ssh,id=gh,dst=/root/agent.sock,required,mode=0640,uid=1000,gid=5")
                .expect("valid");
        assert_eq!(
            m,
            MountSpec::Ssh {
                id: Some("gh".into()),
                target: Some("/root/agent.sock".into()),
                required: true,
                mode: Some(0o640),
                uid: Some(1000),
                gid: Some(5),
            }
        );
        assert_eq!(
            m.to_string(),
            "type=ssh,id=gh,target=/root/agent.sock,required,mode=640,uid=1000,gid=5"
        );
        assert!(matches!(
            parse_mount("type=ssh,required=false").expect("valid"),
            MountSpec::Ssh {
                required: false,
                ..
            }
        ));
    }

    #[test]
    fn ssh_mount_rejects_keys_of_other_types() {
        for bad in [
            "type=ssh,src=/x",
            "type=ssh,from=build",
            "type=ssh,env=SOCK",
        ] {
            assert!(
                matches!(parse_mount(bad), Err(MountError::UnexpectedKey { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            csv_fields(r#"a,"b,c","d""e""#).expect("valid"),
            vec!["a", "b,c", "d\"e"]
        );
        assert!(csv_fields("a\"b").is_err());
    }

    #[test]
    fn typed_options_with_variables_are_read_when_expanded() {
        let raw = "type=cache,target=$T,id=$ID,uid=$UID,gid=${UID},mode=$M,sharing=$S";
        assert!(has_deferred_options(raw));
        assert!(!has_deferred_options("type=cache,target=$T,id=$ID"));
        parse_mount(raw).expect("deferred, not refused");
        let vars: std::collections::BTreeMap<&str, &str> = [
            ("T", "/cache"),
            ("ID", "myid"),
            ("UID", "1000"),
            ("M", "0750"),
            ("S", "locked"),
        ]
        .into();
        let expand = |v: &str| -> Result<String, MountError> {
            let mut out = v.to_string();
            for (k, val) in &vars {
                out = out
                    .replace(&format!("${{{k}}}"), val)
                    .replace(&format!("${k}"), val);
            }
            Ok(out)
        };
        let m = parse_mount_expanded(raw, expand).expect("valid once expanded");
        assert_eq!(
            m,
            MountSpec::Cache {
                id: Some("myid".into()),
                target: "/cache".into(),
                sharing: CacheSharing::Locked,
                from: None,
                source: None,
                mode: Some(0o750),
                uid: Some(1000),
                gid: Some(1000),
                readonly: false,
            }
        );
        let bad = parse_mount_expanded("type=cache,target=/c,mode=$M", |v| {
            Ok::<_, MountError>(v.replace("$M", "zz"))
        });
        assert!(matches!(bad, Err(MountError::BadValue { .. })), "{bad:?}");
    }

    #[test]
    fn from_with_a_variable_is_still_refused() {
        assert!(matches!(
            parse_mount("type=bind,target=/t,from=$STAGE"),
            Err(MountError::VariableNotAllowed { .. })
        ));
    }
}
