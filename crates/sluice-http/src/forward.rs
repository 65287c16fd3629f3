//! What goes upstream and what comes back: the upstream URL built from the path and query policy
//! saw (never the client's raw bytes), headers cleaned of the client's credentials and of
//! hop-by-hop fields, the held credential added; and a response's body decoded so it can be
//! masked.

use crate::target::{HttpTarget, Presentation};
use base64::Engine;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use sluice_core::Secret;
use sluice_core::http::HttpAction;
use std::io::Read;

/// Characters escaped in a path segment: everything but unreserved characters and sub-delims
/// that mean nothing to a router (`!$'()*+,:@=&`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');
/// Characters escaped in a query name or value.
const QUERY: &AsciiSet = &SEGMENT.add(b'&').add(b'=').add(b'+').add(b'\'');

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1), and `proxy-*`.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "http2-settings"
    )
}

/// The upstream URL for `action` (whose path is relative to the target); `trailing_slash`: the
/// client's path ended with '/' (which normalising drops and some servers route on).
pub fn upstream_uri(target: &HttpTarget, action: &HttpAction, trailing_slash: bool) -> Result<hyper::Uri, String> {
    let mut path_and_query = target.base_path.clone();
    for segment in action.path.split('/').filter(|s| !s.is_empty()) {
        path_and_query.push('/');
        path_and_query.extend(utf8_percent_encode(segment, SEGMENT));
    }
    if path_and_query.is_empty() || trailing_slash && action.path.len() > 1 {
        path_and_query.push('/');
    }
    for (i, (name, value)) in action.query.iter().enumerate() {
        path_and_query.push(if i == 0 { '?' } else { '&' });
        path_and_query.extend(utf8_percent_encode(name, QUERY));
        path_and_query.push('=');
        path_and_query.extend(utf8_percent_encode(value, QUERY));
    }
    hyper::Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("the upstream URL cannot be built: {e}"))
}

/// The client's headers as they go upstream: without hop-by-hop fields (and those the
/// `Connection` field names), its credentials, `Host` (the client library sets the upstream's), a
/// body length (recomputed) and `Accept-Encoding` (sluice asks for what it can decode).
pub fn request_headers(from: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        let dropped = is_hop_by_hop(name)
            || named.iter().any(|n| n == name.as_str())
            || matches!(*name, header::AUTHORIZATION | header::HOST | header::CONTENT_LENGTH | header::ACCEPT_ENCODING)
            || name.as_str().starts_with("x-sluice-");
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"));
    out
}

/// Adds the held credential as the target presents it.
pub async fn present(target: &HttpTarget, credential: Option<&Secret>, headers: &mut HeaderMap) -> Result<(), String> {
    let Some(secret) = credential else {
        return match target.presentation {
            Presentation::None => Ok(()),
            _ => Err("the connection holds no credential".into()),
        };
    };
    let (name, text) = match &target.presentation {
        Presentation::None => return Ok(()),
        Presentation::Bearer => (header::AUTHORIZATION, format!("Bearer {}", secret.expose())),
        Presentation::Basic { username } => {
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", secret.expose()));
            (header::AUTHORIZATION, format!("Basic {pair}"))
        }
        Presentation::Header { name } => (name.clone(), secret.expose().to_string()),
        Presentation::OAuth2(cache) => {
            (header::AUTHORIZATION, format!("Bearer {}", cache.token(secret).await?.expose()))
        }
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| "the held credential is not a valid header value")?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

/// The response's headers as they go to the client: without hop-by-hop fields; the body's
/// length and encoding are set again by the caller once the body is final.
pub fn response_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if !is_hop_by_hop(name) && !matches!(*name, header::CONTENT_LENGTH | header::CONTENT_ENCODING) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The body decoded from its `Content-Encoding` (at most `limit` bytes of it), or why it cannot
/// be.
pub fn decode(encoding: Option<&str>, body: &[u8], limit: usize) -> Result<Vec<u8>, Decode> {
    let mut out = Vec::new();
    let read = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "identity") => return Ok(body.to_vec()),
        Some("gzip" | "x-gzip") => flate2::read::GzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out),
        Some("deflate") => {
            // "deflate" is zlib-wrapped by the standard, raw in some servers: try both.
            match flate2::read::ZlibDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out) {
                Ok(n) => Ok(n),
                Err(_) => {
                    out.clear();
                    flate2::read::DeflateDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out)
                }
            }
        }
        Some(other) => return Err(Decode::Unsupported(other.to_string())),
    };
    match read {
        Ok(_) if out.len() > limit => Err(Decode::TooLarge),
        Ok(_) => Ok(out),
        Err(e) => Err(Decode::Corrupt(e.to_string())),
    }
}

#[derive(Debug)]
pub enum Decode {
    Unsupported(String),
    TooLarge,
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_credentials_and_connection_fields_never_go_upstream() {
        let mut from = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer sluice-token"),
            ("proxy-authorization", "Basic x"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("host", "sluice:6434"),
            ("x-sluice-review", "1"),
            ("accept-encoding", "br"),
            ("x-request-id", "abc"),
        ] {
            from.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let out = request_headers(&from);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-request-id", "accept-encoding"]);
        assert_eq!(out["accept-encoding"], "gzip, deflate");
    }

    #[test]
    fn compressed_bodies_are_decoded_within_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'a'; 1000]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode(Some("gzip"), &gz, 1000).unwrap().len(), 1000);
        assert!(matches!(decode(Some("gzip"), &gz, 999), Err(Decode::TooLarge)));
        assert!(matches!(decode(Some("br"), &gz, 1000), Err(Decode::Unsupported(_))));
        assert!(matches!(decode(Some("gzip"), b"not gzip", 1000), Err(Decode::Corrupt(_))));
    }
}
