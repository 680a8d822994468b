//! Bearer tokens from a token service (distribution `docs/spec/auth/token.md` for GET with Basic
//! credentials or anonymously, `oauth.md` for the POST refresh-token grant used with an
//! `identitytoken`). Tokens are cached per scope until shortly before they expire.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Credential, Secret};

/// The spec's default lifetime when the response has no `expires_in`.
const DEFAULT_EXPIRES_IN: u64 = 60;
/// The longest a token is kept, whatever `expires_in` says: `Instant + u64::MAX` seconds
/// panics, and a registry that revokes a token early answers 401, which fetches a new one.
const MAX_EXPIRES_IN: u64 = 24 * 60 * 60;

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub valid_until: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Why a token request failed (turned into a `RegistryError` by the caller, who knows the
/// registry and the request).
#[derive(Debug)]
pub enum TokenError {
    Status(u16),
    Transport(Box<crate::client::http::HttpError>),
    Invalid(String),
}

/// Redirects of a token request followed at most.
const MAX_REDIRECTS: usize = 5;

/// Asks `realm` for a token for `scopes` (space-separated, as distribution joins them).
/// A redirect is followed (the form is not resent: `GET` only) and the Basic credentials go
/// only to the realm's own origin.
pub fn fetch(
    client: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scopes: &str,
    credential: Option<&Credential>,
) -> Result<Token, TokenError> {
    use crate::client::http::{self, SendBody};
    let mut url = url::Url::parse(realm)
        .map_err(|e| TokenError::Invalid(format!("invalid realm URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TokenError::Invalid(
            "the realm is not an http(s) URL".into(),
        ));
    }
    let scope_list: Vec<&str> = scopes.split(' ').filter(|s| !s.is_empty()).collect();
    let (method, body, mut headers) = match credential {
        Some(Credential::IdentityToken(refresh)) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", refresh.expose())
                .append_pair("client_id", "rbuild");
            if let Some(s) = service {
                form.append_pair("service", s);
            }
            let joined = scope_list.join(" ");
            if !joined.is_empty() {
                form.append_pair("scope", &joined);
            }
            (
                "POST",
                Some(form.finish().into_bytes()),
                vec![(
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_string(),
                )],
            )
        }
        other => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in &scope_list {
                    q.append_pair("scope", s);
                }
            }
            let mut headers = vec![];
            if let Some(Credential::Basic { username, password }) = other {
                headers.push(("Authorization", super::basic_header(username, password)));
            }
            ("GET", None, headers)
        }
    };
    let origin = url.origin();
    let mut redirects = 0;
    let resp = loop {
        let body = body.clone().map_or(SendBody::Empty, SendBody::Bytes);
        let resp = http::send(client, method, url.as_str(), &headers, body)
            .map_err(|e| TokenError::Transport(Box::new(e)))?;
        let status = resp.status();
        if (300..400).contains(&status) && method == "GET" && redirects < MAX_REDIRECTS {
            if let Some(next) = resp.header("location").and_then(|l| url.join(l).ok()) {
                redirects += 1;
                url = next;
                if url.origin() != origin {
                    headers.retain(|(k, _)| *k != "Authorization");
                }
                continue;
            }
        }
        if !(200..300).contains(&status) {
            return Err(TokenError::Status(status));
        }
        break resp;
    };
    let body = rbuild_layers::image::manifest::read_capped(resp.into_reader(), 1 << 20, "token")
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| TokenError::Invalid(format!("invalid token response JSON: {e}")))?;
    let value = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::Invalid("the response has no token".into()))?;
    Ok(Token {
        value: Secret::new(value),
        valid_until: valid_until(Instant::now(), parsed.expires_in),
    })
}

/// When to stop using a token issued at `now` that lives `expires_in` seconds: a little early,
/// so it does not expire between check and use, and never later than [`MAX_EXPIRES_IN`].
fn valid_until(now: Instant, expires_in: Option<u64>) -> Instant {
    let secs = expires_in
        .unwrap_or(DEFAULT_EXPIRES_IN)
        .clamp(10, MAX_EXPIRES_IN);
    // Cannot overflow after the clamp on any platform Rust supports; if it did, the token
    // is simply not reused.
    now.checked_add(Duration::from_secs(secs - 5))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetime_is_clamped_and_renewed_early() {
        let now = Instant::now();
        let day = Duration::from_secs(MAX_EXPIRES_IN - 5);
        assert_eq!(valid_until(now, Some(u64::MAX)), now + day);
        assert_eq!(valid_until(now, Some(300)), now + Duration::from_secs(295));
        assert_eq!(valid_until(now, Some(0)), now + Duration::from_secs(5));
        assert_eq!(valid_until(now, None), now + Duration::from_secs(55));
    }
}
