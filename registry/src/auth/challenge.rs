//! Parsing `WWW-Authenticate` (RFC 7235 auth-params; distribution's token-auth spec uses
//! `Bearer realm="…",service="…",scope="…"`).

use std::collections::BTreeMap;

/// An authentication challenge from a 401 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses the first challenge we support; `None` for a scheme we do not know.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `k=v` or `k="quoted, \"value\""` pairs separated by commas.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_comma_in_scope() {
        let c = parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn basic_and_unknown_schemes() {
        assert_eq!(
            parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse("Negotiate abc"), None);
        assert_eq!(
            parse("Bearer service=\"x\""),
            None,
            "a bearer challenge needs a realm"
        );
    }

    proptest::proptest! {
        /// The header comes from the registry: any text must parse or be refused, never panic.
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        /// A quoted realm with escaped quotes and backslashes comes back as it was.
        #[test]
        fn quoted_values_round_trip(realm in "[!-~][ -~]{0,38}[!-~]") {
            let quoted = realm.replace('\\', "\\\\").replace('"', "\\\"");
            let parsed = parse(&format!("Bearer realm=\"{quoted}\",service=\"s\""));
            proptest::prop_assert_eq!(
                parsed,
                Some(Challenge::Bearer { realm: realm.clone(), service: Some("s".into()), scope: None })
            );
        }
    }
}
