//! Which proxy a request goes through, from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (upper or
//! lower case, upper first), decided as Go's `http.ProxyFromEnvironment` does — the rule
//! Docker, containerd and BuildKit follow:
//! - `HTTPS_PROXY` for https URLs, `HTTP_PROXY` for http ones; a value without a scheme is an
//!   `http://` proxy;
//! - never for `localhost` and loopback addresses (127.0.0.0/8, `::1`), whatever the variables
//!   say: a machine whose environment sets `HTTPS_PROXY` still reaches its local registries;
//! - never for hosts `NO_PROXY` matches: `*`, a name and its subdomains (`example.com`,
//!   `.example.com`, `*.example.com`), optionally with `:PORT`; an IP address; a network
//!   (`10.0.0.0/8`, `fd00::/8`).
//!
//! The same rule serves registry and token traffic (the registry client's connections) and
//! `ADD <url>` downloads. Proxy URLs may carry `user:password@`: they become the proxy's
//! `Proxy-Authorization` and are never printed — [`ProxyEnv`]'s `Debug` shows only which
//! variables are set, and the transport's error messages never name the proxy URL.

use std::collections::BTreeMap;

/// The variables that decide proxying.
const VARS: &[&str] = &["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"];

/// A snapshot of the proxy variables (taken from the process environment by
/// [`ProxyEnv::from_process`], or given by a test).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may hold proxy credentials: names only.
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl ProxyEnv {
    /// The process's proxy variables, upper and lower case.
    pub fn from_process() -> ProxyEnv {
        let mut vars = BTreeMap::new();
        for name in VARS {
            for k in [name.to_string(), name.to_ascii_lowercase()] {
                if let Ok(v) = std::env::var(&k) {
                    vars.insert(k, v);
                }
            }
        }
        ProxyEnv { vars }
    }

    /// Variables given as `(name, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ProxyEnv {
        ProxyEnv {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether any proxy is configured.
    pub fn is_empty(&self) -> bool {
        self.get("HTTPS_PROXY").is_none() && self.get("HTTP_PROXY").is_none()
    }

    /// `name`, else its lower-case form; empty counts as unset.
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .or_else(|| self.vars.get(&name.to_ascii_lowercase()))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The proxy URL for a request to `url`, or `None` to connect directly.
    pub fn proxy_for(&self, url: &url::Url) -> Option<String> {
        proxy_for(url, &|k| self.get(k).map(str::to_string))
    }
}

/// The proxy for `url` given the variables `env` returns (see the module doc).
pub fn proxy_for(url: &url::Url, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| {
        env(k)
            .or_else(|| env(&k.to_ascii_lowercase()))
            .filter(|v| !v.is_empty())
    };
    let proxy = match url.scheme() {
        "https" => get("HTTPS_PROXY"),
        "http" => get("HTTP_PROXY"),
        _ => None,
    }?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return None;
    }
    let port = url.port_or_known_default();
    let no_proxy = get("NO_PROXY").unwrap_or_default();
    let ip = host.parse::<std::net::IpAddr>().ok();
    for entry in no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return None;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            if ip.is_some_and(|ip| in_cidr(ip, net, bits)) {
                return None;
            }
            continue;
        }
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (n, p.parse::<u16>().ok()),
            _ => (entry, None),
        };
        if entry_port.is_some() && entry_port != port {
            continue;
        }
        let name = name
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.eq_ignore_ascii_case(name)
            || host
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", name.to_ascii_lowercase()))
        {
            return None;
        }
    }
    Some(if proxy.contains("://") {
        proxy
    } else {
        format!("http://{proxy}")
    })
}

/// Whether `ip` is in the network `net/bits` (a `NO_PROXY` entry such as `10.0.0.0/8`).
fn in_cidr(ip: std::net::IpAddr, net: &str, bits: &str) -> bool {
    use std::net::IpAddr;
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str, vars: &[(&str, &str)]) -> Option<String> {
        let url = url::Url::parse(url).expect("test URL");
        ProxyEnv::from_pairs(vars.iter().copied()).proxy_for(&url)
    }

    #[test]
    fn proxy_follows_scheme_and_no_proxy() {
        let env = [
            ("HTTPS_PROXY", "http://p:3128"),
            ("http_proxy", "p2:8080"),
            ("NO_PROXY", "internal.example, .corp,*.lan,h:8443"),
        ];
        assert_eq!(
            proxy("https://a.example/x", &env).as_deref(),
            Some("http://p:3128")
        );
        assert_eq!(
            proxy("http://a.example/x", &env).as_deref(),
            Some("http://p2:8080")
        );
        assert_eq!(proxy("https://internal.example/x", &env), None);
        assert_eq!(proxy("https://x.internal.example/x", &env), None);
        assert_eq!(proxy("https://a.corp/x", &env), None);
        assert_eq!(proxy("https://a.lan/x", &env), None);
        assert_eq!(proxy("https://h:8443/x", &env), None);
        assert_eq!(proxy("https://h/x", &env).as_deref(), Some("http://p:3128"));
        assert_eq!(
            proxy("https://a/x", &[("NO_PROXY", "*"), ("HTTPS_PROXY", "p")]),
            None
        );
    }

    #[test]
    fn no_proxy_takes_networks_as_go_does() {
        let env = [
            ("HTTPS_PROXY", "p:1"),
            ("NO_PROXY", "10.0.0.0/8,192.168.1.7,fd00::/8,bad/99"),
        ];
        assert_eq!(proxy("https://10.1.2.3:5000/", &env), None);
        assert_eq!(proxy("https://192.168.1.7/", &env), None);
        assert_eq!(proxy("https://[fd12::1]/", &env), None);
        assert!(proxy("https://11.0.0.1/", &env).is_some());
        assert!(proxy("https://192.168.1.8/", &env).is_some());
        assert!(proxy("https://[fe80::1]/", &env).is_some());
        assert!(proxy("https://ten.example/", &env).is_some());
    }

    #[test]
    fn loopback_is_never_proxied_as_go_decides() {
        // Test registries on 127.0.0.1 keep working on a machine that sets HTTPS_PROXY.
        let env = [("HTTPS_PROXY", "p:1"), ("HTTP_PROXY", "p:1")];
        assert_eq!(proxy("http://127.0.0.1:9/x", &env), None);
        assert_eq!(proxy("https://127.5.0.1:5000/v2/", &env), None);
        assert_eq!(proxy("http://localhost/x", &env), None);
        assert_eq!(proxy("https://LOCALHOST:5000/x", &env), None);
        assert_eq!(proxy("https://[::1]:5000/v2/", &env), None);
        assert_eq!(
            proxy("https://10.0.0.1:5000/v2/", &env).as_deref(),
            Some("http://p:1")
        );
    }

    #[test]
    fn upper_case_wins_and_empty_is_unset() {
        let env = [
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
        ];
        assert_eq!(
            proxy("https://r.example/", &env).as_deref(),
            Some("http://upper:1")
        );
        let env = [("HTTPS_PROXY", ""), ("https_proxy", "http://lower:1")];
        assert_eq!(
            proxy("https://r.example/", &env).as_deref(),
            Some("http://lower:1")
        );
        assert_eq!(
            proxy("https://r.example/", &[("NO_PROXY", "x")]),
            None,
            "no proxy variable, no proxy"
        );
    }

    #[test]
    fn debug_never_shows_proxy_credentials() {
        let env = ProxyEnv::from_pairs([("HTTPS_PROXY", "http://user:s3cret@p:3128")]);
        let shown = format!("{env:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("HTTPS_PROXY"),
            "{shown}"
        );
    }
}
