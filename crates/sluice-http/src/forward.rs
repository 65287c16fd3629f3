//! What goes upstream and what comes back: the upstream URL built from the path and query policy
//! saw (never the client's raw bytes), headers cleaned of the client's credentials and of
//! hop-by-hop fields, the held credential added (and remembered, to be scrubbed from what comes
//! back); a response's headers without hop-by-hop fields.

use crate::target::{HttpTarget, Presentation};
use base64::Engine;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use sluice_core::Secret;
use sluice_core::http::HttpAction;
use std::sync::Arc;

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

/// Fields through which frameworks let a request say it is another method or path than the one
/// on its request line: policy decides the request line, so a request carrying one is refused.
static OVERRIDES: [HeaderName; 6] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-original-method"),
];

/// Fields through which an upstream lets a request act as another principal than its
/// credential's (Kubernetes' `Impersonate-*`, GitLab's `Sudo`, Elasticsearch's run-as, the
/// user an authenticating proxy in front of an app vouches for), or on a second resource
/// (WebDAV's `Destination` for COPY and MOVE, which no path rule decides). sluice's connection
/// acts as its held credential on the path policy decided, so a request carrying one is refused.
static ACTING_AS: [HeaderName; 16] = [
    HeaderName::from_static("impersonate-user"),
    HeaderName::from_static("impersonate-group"),
    HeaderName::from_static("impersonate-uid"),
    HeaderName::from_static("sudo"),
    HeaderName::from_static("es-security-runas-user"),
    HeaderName::from_static("x-forwarded-user"),
    HeaderName::from_static("x-forwarded-email"),
    HeaderName::from_static("x-forwarded-preferred-username"),
    HeaderName::from_static("x-forwarded-groups"),
    HeaderName::from_static("x-remote-user"),
    HeaderName::from_static("x-remote-group"),
    HeaderName::from_static("x-auth-request-user"),
    HeaderName::from_static("x-auth-request-email"),
    HeaderName::from_static("x-webauth-user"),
    HeaderName::from_static("remote-user"),
    HeaderName::from_static("destination"),
];

/// The first field of `headers` that would have the upstream act as another principal, or on
/// another resource, than policy decided (`ACTING_AS`, and the prefixes of Kubernetes'
/// impersonated and front-proxy extras).
pub fn acting_as_field(headers: &HeaderMap) -> Option<&str> {
    if let Some(name) = ACTING_AS.iter().find(|name| headers.contains_key(*name)) {
        return Some(name.as_str());
    }
    headers
        .keys()
        .map(HeaderName::as_str)
        .find(|name| name.starts_with("impersonate-extra-") || name.starts_with("x-remote-extra-"))
}

/// Fields in which proxies say where a request came from; the client's own say what it
/// likes, so they do not go upstream, where an app may trust them (an allow-list by address, the
/// links it writes).
fn is_forwarding(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-forwarded-server"
            | "x-original-forwarded-for"
            | "x-real-ip"
            | "x-client-ip"
            | "x-cluster-client-ip"
            | "true-client-ip"
            | "cf-connecting-ip"
            | "fastly-client-ip"
    )
}

/// Words in a response header's name that say its value is a credential: a token, a session,
/// a key (Spring Session's `X-Auth-Token`, Keystone's `X-Subject-Token`, devise_token_auth's
/// `access-token`, `X-Api-Key`, `X-CSRF-Token`). Its value is a credential the upstream gives
/// for the held one, which the caller must not hold, whatever it looks like.
const CREDENTIAL_WORDS: [&str; 11] =
    ["token", "secret", "passw", "session", "apikey", "api-key", "api_key", "credential", "auth", "jwt", "cookie"];

/// Whether a response header's name (lower case, as every `HeaderName` is) says its value is a
/// credential (`CREDENTIAL_WORDS`).
pub fn names_credential(name: &HeaderName) -> bool {
    // Asked of every response header: each word is tried only where its first letter stands,
    // one pass over the name (`contains` for each word would search it eleven times).
    let name = name.as_str().as_bytes();
    (0..name.len()).any(|at| {
        matches!(name[at], b't' | b's' | b'p' | b'a' | b'c' | b'j')
            && CREDENTIAL_WORDS.iter().any(|word| name[at..].starts_with(word.as_bytes()))
    })
}

/// The first field of `headers` that would override the method or path, if any.
pub fn overriding_field(headers: &HeaderMap) -> Option<&'static str> {
    // Looked up as names: a name given as text would be parsed again on every call.
    OVERRIDES.iter().find(|name| headers.contains_key(*name)).map(HeaderName::as_str)
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
/// `Connection` field names), the forwarding fields a client may forge (`is_forwarding`), its
/// credentials, `Host` (the client library sets the upstream's), a
/// body length (recomputed), `Accept-Encoding` (sluice asks for what it can decode) and
/// `Cookie` (the upstream knows the caller by the held credential alone), and
/// `Range`/`If-Range`: sluice masks whole bodies, and a part of one can hold a value without the
/// key that marks it sensitive, or half a card number.
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
            || matches!(
                *name,
                header::AUTHORIZATION
                    | header::COOKIE
                    | header::HOST
                    | header::CONTENT_LENGTH
                    | header::ACCEPT_ENCODING
                    | header::RANGE
                    | header::IF_RANGE
            )
            || is_forwarding(name)
            || name.as_str().starts_with("x-sluice-");
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(crate::decode::ACCEPTED));
    out
}

/// Adds the held credential as the target presents it, and says what of it went on the wire.
pub async fn present(
    target: &HttpTarget,
    credential: Option<&Secret>,
    headers: &mut HeaderMap,
) -> Result<Arc<OnWire>, String> {
    let Some(secret) = credential else {
        return match target.presentation {
            Presentation::None => Ok(nothing_on_wire()),
            _ => Err("the connection holds no credential".into()),
        };
    };
    let token = match &target.presentation {
        Presentation::None => return Ok(nothing_on_wire()),
        Presentation::OAuth2(cache) => Some(cache.token(secret).await?),
        _ => None,
    };
    let presented = target.on_wire.get(&target.presentation, secret, token.as_ref())?;
    headers.insert(presented.name.clone(), presented.value.clone());
    Ok(Arc::clone(&presented.on_wire))
}

/// What a target that presents no credential puts on the wire: one for all of them, so that what
/// is keyed by it (a connection's cleaned headers) is found again.
fn nothing_on_wire() -> Arc<OnWire> {
    static NOTHING: std::sync::LazyLock<Arc<OnWire>> = std::sync::LazyLock::new(Arc::default);
    Arc::clone(&NOTHING)
}

/// The held credential as a request carries it, and what of it goes on the wire.
struct Presented {
    secret: Secret,
    token: Option<Secret>,
    name: HeaderName,
    value: HeaderValue,
    on_wire: Arc<OnWire>,
}

impl Presented {
    fn new(presentation: &Presentation, secret: &Secret, token: Option<&Secret>) -> Result<Presented, String> {
        let mut sent = vec![secret.expose().to_string()];
        let (name, text) = match (presentation, token) {
            (Presentation::Basic { username }, _) => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", secret.expose()));
                sent.push(pair.clone());
                (header::AUTHORIZATION, format!("Basic {pair}"))
            }
            (Presentation::Header { name }, _) => (name.clone(), secret.expose().to_string()),
            (_, Some(token)) => {
                sent.push(token.expose().to_string());
                (header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            }
            _ => (header::AUTHORIZATION, format!("Bearer {}", secret.expose())),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| "the held credential is not a valid header value")?;
        value.set_sensitive(true);
        let on_wire = Arc::new(OnWire::new(sent, text)?);
        Ok(Presented { secret: secret.clone(), token: token.cloned(), name, value, on_wire })
    }
}

/// The last credential a target presented, with its header and finders: building those (the
/// spellings, their finders) costs more than the rest of a small request's checks, and the
/// credential changes only when an operator rotates it (or an OAuth 2 token is renewed).
#[derive(Default)]
pub struct OnWireCache(parking_lot::Mutex<Option<Arc<Presented>>>);

impl OnWireCache {
    fn get(
        &self,
        presentation: &Presentation,
        secret: &Secret,
        token: Option<&Secret>,
    ) -> Result<Arc<Presented>, String> {
        if let Some(cached) = &*self.0.lock()
            && cached.secret == *secret
            && cached.token.as_ref() == token
        {
            return Ok(Arc::clone(cached));
        }
        let presented = Arc::new(Presented::new(presentation, secret, token)?);
        *self.0.lock() = Some(Arc::clone(&presented));
        Ok(presented)
    }
}

/// What of the held credential went upstream (the secret, the header value that carried it, an
/// OAuth 2 access token): an upstream that repeats it in a response (an echo, a debug header, an
/// error quoting the request) must not hand it to the caller — whole, in the spellings encoders
/// write (`spellings`), cut short after its first `LEAD` bytes (a log line, an error that
/// truncates), or spelled in escapes (`%2b`, `&amp;`, `\u0026`, read as the detectors read them).
#[derive(Default)]
pub struct OnWire {
    /// Longest first, so that a header value is replaced whole before the secret inside it.
    finders: Vec<memchr::memmem::Finder<'static>>,
    /// The pieces that hold no other piece, and each long piece's first `LEAD` bytes, searched
    /// for at once: a body without any of them holds none of the rest either, so most bodies
    /// cost one pass (`None`: nothing to find).
    probes: Option<aho_corasick::AhoCorasick>,
    /// For each probe that is a beginning, the pieces it begins: a copy found runs as far as it
    /// goes on matching one of them.
    continues: Vec<Vec<Vec<u8>>>,
}

/// Shorter pieces are not looked for: they would be found everywhere.
const MIN_ON_WIRE: usize = 4;
/// A piece at least `2 * LEAD` long is also found cut short, from its first `LEAD` bytes on.
const LEAD: usize = 12;
/// What replaces the held credential wherever it comes back.
pub const SCRUBBED: &[u8] = b"[redacted:held-credential]";

/// What is escaped when a URL carries the credential: all but the unreserved characters, as
/// `encodeURIComponent` and `urllib.parse.quote(safe="")` escape.
const URL_COMPONENT: &AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The ways an upstream may write a piece back: as sent, with `/` escaped as JSON writers
/// (PHP's among them) escape it, percent-encoded in a URL (a `Location`, a link), in hex, and
/// the secret's whole groups of three bytes in base64, standard or URL-safe (an upstream that
/// encodes what it echoes). Other escapes are read where they stand (`OnWire::scrub`).
fn spellings(piece: &str) -> Vec<String> {
    let hex = hex::encode(piece);
    let mut spelled = vec![
        piece.to_string(),
        piece.replace('/', "\\/"),
        utf8_percent_encode(piece, URL_COMPONENT).to_string(),
        hex.to_ascii_uppercase(),
        hex,
    ];
    // Base64 writes three bytes as four characters, so the secret's characters depend on where
    // it falls among the encoded bytes (`token=<secret>` encoded whole): from each of its first
    // three bytes, its whole groups are one spelling, and one of them lines up wherever it falls.
    let bytes = piece.as_bytes();
    for skip in 0..3.min(bytes.len()) {
        let rest = &bytes[skip..];
        let whole = &rest[..rest.len() / 3 * 3];
        // A shifted spelling of a few bytes would be found in unrelated base64.
        if skip > 0 && whole.len() < 6 {
            break;
        }
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(whole);
        spelled.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(whole));
        // Standard base64 as a JSON writer escaping `/` writes it, and in a URL.
        if standard.contains('/') {
            spelled.push(standard.replace('/', "\\/"));
        }
        if standard.contains(['/', '+']) {
            spelled.push(utf8_percent_encode(&standard, URL_COMPONENT).to_string());
        }
        spelled.push(standard);
    }
    spelled
}

impl OnWire {
    /// `secrets` are looked for in every spelling; `header_value`, the field as sent, as it is.
    pub(crate) fn new(secrets: Vec<String>, header_value: String) -> Result<OnWire, String> {
        let mut pieces: Vec<Vec<u8>> = secrets
            .iter()
            .flat_map(|p| spellings(p))
            .chain([header_value])
            .map(String::into_bytes)
            .filter(|p| p.len() >= MIN_ON_WIRE)
            .collect();
        pieces.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        pieces.dedup();
        // Each beginning with every piece it begins (`/` and `\/` spellings share theirs).
        let mut leads: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
        for piece in pieces.iter().filter(|p| p.len() >= 2 * LEAD) {
            match leads.iter_mut().find(|(lead, _)| *lead == piece[..LEAD]) {
                Some((_, begun)) => begun.push(piece.clone()),
                None => leads.push((piece[..LEAD].to_vec(), vec![piece.clone()])),
            }
        }
        let holds = |outer: &[u8], inner: &[u8]| memchr::memmem::find(outer, inner).is_some();
        let mut probes: Vec<(&[u8], Vec<Vec<u8>>)> = (0..pieces.len())
            .filter(|&i| !pieces.iter().enumerate().any(|(j, other)| j != i && holds(&pieces[i], other)))
            .filter(|&i| !leads.iter().any(|(lead, _)| holds(&pieces[i], lead)))
            .map(|i| (pieces[i].as_slice(), Vec::new()))
            .collect();
        probes.extend(leads.iter().map(|(lead, begun)| (lead.as_slice(), begun.clone())));
        // Built from a few short pieces, it cannot fail; if it did, nothing would be scrubbed:
        // the credential is then refused (fail closed).
        let (probes, continues) = match probes.is_empty() {
            true => (None, Vec::new()),
            false => {
                let finder = aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(probes.iter().map(|(p, _)| p))
                    .map_err(|e| e.to_string())?;
                (Some(finder), probes.into_iter().map(|(_, s)| s).collect())
            }
        };
        // Built once per request: every header value and body piece is searched with them.
        let finders = pieces.iter().map(|p| memchr::memmem::Finder::new(p).into_owned()).collect();
        Ok(OnWire { finders, probes, continues })
    }

    /// `bytes` with every copy of the credential replaced; `None` when it holds none.
    pub fn scrub(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let probes = self.probes.as_ref()?;
        let seen = probes.is_match(bytes);
        let whole = if seen { self.scrub_whole(bytes) } else { None };
        let current = whole.as_deref().unwrap_or(bytes);
        // What is left: copies cut short, and copies spelled in escapes.
        let mut spans = Vec::new();
        if seen {
            self.copies(probes, current, &mut spans);
        }
        // A credential (ASCII) is spelled in escapes only with `%`, `\` or `&`: a body without
        // them is not read again.
        if memchr::memchr3(b'%', b'\\', b'&', current).is_some() {
            sluice_mask::escapes::readings(current, |reading| {
                let mut found = Vec::new();
                self.copies(probes, reading.text, &mut found);
                spans.extend(found.into_iter().map(|(from, to)| reading.source(from, to)));
            });
        }
        if spans.is_empty() {
            return whole;
        }
        spans.sort_unstable();
        let mut out = Vec::with_capacity(current.len());
        let mut at = 0;
        for (from, to) in spans {
            if to <= at {
                continue;
            }
            out.extend_from_slice(&current[at..from.max(at)]);
            if from >= at {
                out.extend_from_slice(SCRUBBED);
            }
            at = to;
        }
        out.extend_from_slice(&current[at..]);
        Some(out)
    }

    /// `bytes` with every copy of a whole piece replaced, the longest first.
    fn scrub_whole(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for finder in &self.finders {
            let current = out.as_deref().unwrap_or(bytes);
            if finder.find(current).is_none() {
                continue;
            }
            let mut next = Vec::with_capacity(current.len());
            let mut at = 0;
            for found in finder.find_iter(current) {
                next.extend_from_slice(&current[at..found]);
                next.extend_from_slice(SCRUBBED);
                at = found + finder.needle().len();
            }
            next.extend_from_slice(&current[at..]);
            out = Some(next);
        }
        out
    }

    /// Where `text` holds a probe; a piece's beginning as far as the piece goes on.
    fn copies(&self, probes: &aho_corasick::AhoCorasick, text: &[u8], out: &mut Vec<(usize, usize)>) {
        for m in probes.find_iter(text) {
            let rest = &text[m.start()..];
            let run = |piece: &Vec<u8>| rest.iter().zip(piece).take_while(|(a, b)| a == b).count();
            let end = m.start() + self.continues[m.pattern().as_usize()].iter().map(run).max().unwrap_or(m.len());
            out.push((m.start(), end));
        }
    }
}

/// Makes a response's headers those that go to the client: without hop-by-hop fields, without
/// `Set-Cookie` (a session the upstream opens for the held credential is a credential of its
/// own, which the caller must not hold) and without `X-Sluice-*` (which only sluice writes); the
/// body's length and encoding are set again by the caller once the body is final.
pub fn strip_response_headers(headers: &mut HeaderMap) {
    let dropped = |name: &HeaderName| {
        is_hop_by_hop(name)
            || matches!(*name, header::CONTENT_LENGTH | header::CONTENT_ENCODING | header::SET_COOKIE)
            || name.as_str().starts_with("x-sluice-")
    };
    // Removed in place (the map is not built again): `remove` takes every field of a name.
    let names: Vec<HeaderName> = headers.keys().filter(|n| dropped(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_act_as_another_are_found_and_forwarding_fields_dropped() {
        for name in ["impersonate-user", "impersonate-extra-scopes", "x-remote-extra-team", "sudo", "destination"] {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("root"));
            assert_eq!(acting_as_field(&headers), Some(name));
        }
        let mut headers = HeaderMap::new();
        for name in ["x-forwarded-for", "forwarded", "x-real-ip", "x-request-id", "accept"] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("1.2.3.4"));
        }
        assert_eq!(acting_as_field(&headers), None);
        let sent = request_headers(&headers);
        let mut kept: Vec<&str> = sent.keys().map(HeaderName::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["accept", "accept-encoding", "x-request-id"]);
    }

    #[test]
    fn a_header_named_for_a_credential_is_found_wherever_the_word_stands() {
        for name in [
            "x-auth-token",
            "x-subject-token",
            "access-token",
            "x-api-key",
            "apikey",
            "x-csrf-token",
            "www-authenticate",
            "set-cookie",
            "x-session",
            "x-jwt",
            "x-client-secret",
            "x-passwd",
            "x-credentials",
            "ajwt",
        ] {
            assert!(names_credential(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-type", "date", "etag", "x-request-id", "x-tok", "server", "x-ap-ikey", "cache-control"] {
            assert!(!names_credential(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn the_credential_is_found_in_base64_wherever_it_falls_among_the_encoded_bytes() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        // Its base64 holds `/` wherever it falls.
        let secret = "s3cret-token-value???>>>~~~";
        let wire = OnWire::new(vec![secret.into()], format!("Bearer {secret}")).unwrap();
        for prefix in ["", "a", "ab", "token=", "{\"key\": \""] {
            let standard = STANDARD.encode(format!("{prefix}{secret}"));
            // As a JSON writer escaping `/` writes it, and in a URL.
            let escaped = standard.replace('/', "\\/");
            let in_url = utf8_percent_encode(&standard, URL_COMPONENT).to_string();
            for encoded in [URL_SAFE.encode(format!("{prefix}{secret}")), escaped, in_url, standard] {
                let scrubbed = wire.scrub(encoded.as_bytes()).expect(&encoded);
                let scrubbed = String::from_utf8(scrubbed).unwrap();
                // What is left is the prefix's characters and at most a group at either end
                // (escaped or percent-encoded: up to three times as long).
                let left = scrubbed.replace("[redacted:held-credential]", "");
                assert!(
                    scrubbed.contains("[redacted:held-credential]") && left.len() <= (prefix.len() * 4 / 3 + 8) * 3,
                    "{prefix:?} {scrubbed}"
                );
            }
        }
    }

    #[test]
    fn the_credential_is_found_escaped_as_any_encoder_escapes_it_or_cut_short() {
        let secret = "s3cr3tKey+AbC/dEf=Gh&iJ0123";
        let wire = OnWire::new(vec![secret.into()], format!("Bearer {secret}")).unwrap();
        for spelled in [
            "s3cr3tKey%2BAbC/dEf%3DGh%26iJ0123",   // Python's quote(), which keeps '/'
            "s3cr3tKey%2bAbC%2fdEf%3dGh%26iJ0123", // lower-case escapes (.NET)
            "s3cr3tKey+AbC/dEf=Gh&amp;iJ0123",     // HTML-escaped
            "s3cr3tKey+AbC/dEf=Gh\\u0026iJ0123",   // Go's encoding/json
            "s3cr3tKey&#43;AbC/dEf=Gh&amp;iJ0123", // Go's html/template
            "73336372337454b65792b4162432f644566", // hex, cut short
            "s3cr3tKey+AbC/dEf=Gh...",             // cut short
        ] {
            let body = format!("{{\"echo\": \"{spelled}\", \"n\": 1}}");
            let scrubbed = String::from_utf8(wire.scrub(body.as_bytes()).expect(spelled)).unwrap();
            assert!(scrubbed.contains("[redacted:held-credential]"), "{spelled}: {scrubbed}");
            for piece in ["AbC", "dEf", "iJ0123", "Key"] {
                assert!(!scrubbed.contains(piece), "{spelled}: {scrubbed}");
            }
            assert!(scrubbed.ends_with(", \"n\": 1}"), "{scrubbed}");
        }
        assert_eq!(wire.scrub(b"s3cr3tKey is a word; %41 &amp; 78-98"), None);
    }

    #[test]
    fn a_response_repeating_the_credential_has_every_copy_replaced() {
        let wire = OnWire::new(vec!["s3cret-token".into(), "abc".into()], "Bearer s3cret-token".into()).unwrap();
        let body = b"{\"got\":\"Bearer s3cret-token\",\"again\":\"s3cret-token\",\"abc\":1}";
        let scrubbed = String::from_utf8(wire.scrub(body).unwrap()).unwrap();
        assert_eq!(
            scrubbed,
            "{\"got\":\"[redacted:held-credential]\",\"again\":\"[redacted:held-credential]\",\"abc\":1}"
        );
        assert_eq!(wire.scrub(b"nothing here"), None);
        assert_eq!(OnWire::default().scrub(body), None);
        // A header value that does not spell the secret (basic auth's base64) is looked for too.
        let wire = OnWire::new(vec!["pass-word".into()], "Basic dXNlcjpwYXNzLXdvcmQ=".into()).unwrap();
        assert_eq!(wire.scrub(b"echo: Basic dXNlcjpwYXNzLXdvcmQ=").unwrap(), b"echo: [redacted:held-credential]");
        assert_eq!(wire.scrub(b"pw pass-word").unwrap(), b"pw [redacted:held-credential]");
        // Written back escaped, percent-encoded or in base64.
        let wire = OnWire::new(vec!["ab/cd+ef=gh".into()], "X ab/cd+ef=gh".into()).unwrap();
        for spelled in [&b"ab\\/cd+ef=gh"[..], b"ab%2Fcd%2Bef%3Dgh", b"YWIvY2QrZWY9", b"YWIvY2QrZWY9Z2g="] {
            let scrubbed = wire.scrub(spelled).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(spelled)));
            assert!(scrubbed.starts_with(SCRUBBED), "{}", String::from_utf8_lossy(&scrubbed));
        }
    }

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
            ("cookie", "JSESSIONID=agent-held"),
        ] {
            from.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let out = request_headers(&from);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-request-id", "accept-encoding"]);
        assert_eq!(out["accept-encoding"], crate::decode::ACCEPTED);
    }
}
