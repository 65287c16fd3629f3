//! The upstream's own URLs in response headers (`Location`, `Content-Location`, `Link`)
//! rewritten to where the agent reaches the same resource through sluice, as a reverse proxy
//! rewrites a redirect: a client that follows one keeps going through the gateway (and its
//! policy, masking and recording) instead of to the upstream, which it has no credential for.

use hyper::HeaderMap;
use hyper::header::{self, HeaderValue};

/// The upstream's base URL and the path the agent reaches it under.
pub struct Relocation<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The upstream's host and port, as configured.
    pub authority: &'a str,
    /// The base URL's path, without a trailing `/` (empty for the root).
    pub base_path: &'a str,
    /// The path prefix the request came in under (empty where it was routed by host name).
    pub agent_prefix: &'a str,
}

impl Relocation<'_> {
    /// Rewrites, in `headers`, each URL under the upstream's base URL to the path the agent
    /// reaches it at (path-absolute: a client resolves it against the URL it called sluice at).
    /// A URL elsewhere (another host, a path outside the base) is left as it is.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok())
                && let Some(moved) = self.url(value.trim())
                && let Ok(moved) = HeaderValue::from_str(&moved)
            {
                headers.insert(name, moved);
            }
        }
        if headers.contains_key(header::LINK) {
            let links: Vec<HeaderValue> = headers
                .get_all(header::LINK)
                .iter()
                .map(|v| {
                    let moved = v.to_str().ok().and_then(|v| self.links(v));
                    moved.and_then(|v| HeaderValue::from_str(&v).ok()).unwrap_or_else(|| v.clone())
                })
                .collect();
            headers.remove(header::LINK);
            for link in links {
                headers.append(header::LINK, link);
            }
        }
    }

    /// `url` as the agent reaches it, where it is under the upstream's base URL.
    fn url(&self, url: &str) -> Option<String> {
        let path_and_rest = if url.starts_with('/') && !url.starts_with("//") {
            url
        } else {
            let (scheme, rest) = match url.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, url.strip_prefix("//")?),
            };
            if scheme.is_some_and(|s| !s.eq_ignore_ascii_case(self.scheme)) {
                return None;
            }
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if !same_authority(&rest[..end], self.authority, self.scheme) {
                return None;
            }
            &rest[end..]
        };
        let end = path_and_rest.find(['?', '#']).unwrap_or(path_and_rest.len());
        let (path, rest) = path_and_rest.split_at(end);
        let below = path.strip_prefix(self.base_path).filter(|p| p.is_empty() || p.starts_with('/'))?;
        // A dot segment would climb out of the prefix once the client resolves it.
        let dot = |segment: &str| matches!(segment.to_ascii_lowercase().replace("%2e", ".").as_str(), "." | "..");
        if below.split('/').any(dot) {
            return None;
        }
        let mut moved = format!("{}{below}", self.agent_prefix);
        if moved.is_empty() {
            moved.push('/');
        }
        moved.push_str(rest);
        Some(moved)
    }

    /// A `Link` field's value with each `<URL>` under the upstream's base rewritten; `None` when
    /// none is.
    fn links(&self, value: &str) -> Option<String> {
        let mut out = String::with_capacity(value.len());
        let (mut at, mut changed) = (0, false);
        while let Some(open) = value[at..].find('<').map(|i| at + i) {
            let Some(close) = value[open..].find('>').map(|i| open + i) else { break };
            out.push_str(&value[at..=open]);
            match self.url(value[open + 1..close].trim()) {
                Some(moved) => {
                    out.push_str(&moved);
                    changed = true;
                }
                None => out.push_str(&value[open + 1..close]),
            }
            at = close;
        }
        out.push_str(&value[at..]);
        changed.then_some(out)
    }
}

/// Whether two authorities name the same server: without case, and with a scheme's default
/// port written or not.
fn same_authority(a: &str, b: &str, scheme: &str) -> bool {
    let default_port = if scheme.eq_ignore_ascii_case("https") { ":443" } else { ":80" };
    let plain = |s: &str| {
        let s = s.to_ascii_lowercase();
        match s.strip_suffix(default_port) {
            Some(host) => host.to_string(),
            None => s,
        }
    };
    !a.is_empty() && !a.contains('@') && plain(a) == plain(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BY_PREFIX: Relocation<'static> =
        Relocation { scheme: "http", authority: "10.0.0.5:8080", base_path: "/api", agent_prefix: "/billing" };

    fn moved(r: &Relocation, url: &str) -> Option<String> {
        r.url(url)
    }

    #[test]
    fn a_url_under_the_upstreams_base_becomes_the_agents_path() {
        let r = &BY_PREFIX;
        assert_eq!(
            moved(r, "http://10.0.0.5:8080/api/v1/customers?page=2").as_deref(),
            Some("/billing/v1/customers?page=2")
        );
        assert_eq!(moved(r, "HTTP://10.0.0.5:8080/api").as_deref(), Some("/billing"));
        assert_eq!(moved(r, "//10.0.0.5:8080/api/x#top").as_deref(), Some("/billing/x#top"));
        assert_eq!(moved(r, "/api/v1/customers/7").as_deref(), Some("/billing/v1/customers/7"));
        assert_eq!(moved(r, "/api?x=1").as_deref(), Some("/billing?x=1"));
        let by_host = Relocation { agent_prefix: "", ..BY_PREFIX };
        assert_eq!(moved(&by_host, "/api").as_deref(), Some("/"));
        assert_eq!(moved(&by_host, "/api/v1").as_deref(), Some("/v1"));
        let default_port = Relocation { authority: "billing.internal", base_path: "", ..BY_PREFIX };
        assert_eq!(moved(&default_port, "http://Billing.Internal:80/v1").as_deref(), Some("/billing/v1"));
    }

    #[test]
    fn urls_elsewhere_are_left_as_they_are() {
        let r = &BY_PREFIX;
        for url in [
            "https://10.0.0.5:8080/api/x",
            "http://10.0.0.5:9090/api/x",
            "http://other/api/x",
            "http://user@10.0.0.5:8080/api/x",
            "/apiary",
            "/login",
            "relative/path",
            "?page=2",
            "mailto:ann@example.com",
            "http://10.0.0.5:8080/api/../../admin",
            "/api/x/%2E%2e/y",
            "/api/./x",
        ] {
            assert_eq!(moved(r, url), None, "{url}");
        }
    }

    #[test]
    fn headers_are_rewritten_in_place() {
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, HeaderValue::from_static("http://10.0.0.5:8080/api/v1/customers/7"));
        headers.insert(header::CONTENT_LOCATION, HeaderValue::from_static("/elsewhere"));
        headers.append(
            header::LINK,
            HeaderValue::from_static(
                r#"<http://10.0.0.5:8080/api/v1/customers?page=2>; rel="next", <https://docs.example.com/>; rel="help""#,
            ),
        );
        headers.append(header::LINK, HeaderValue::from_static(r#"</api/v1/customers?page=9>; rel="last""#));
        BY_PREFIX.apply(&mut headers);
        assert_eq!(headers[header::LOCATION], "/billing/v1/customers/7");
        assert_eq!(headers[header::CONTENT_LOCATION], "/elsewhere");
        let links: Vec<_> = headers.get_all(header::LINK).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(
            links,
            [
                r#"</billing/v1/customers?page=2>; rel="next", <https://docs.example.com/>; rel="help""#,
                r#"</billing/v1/customers?page=9>; rel="last""#
            ]
        );
    }
}
