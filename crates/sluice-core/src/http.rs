//! An HTTP request as policy sees it: the method, the path in one canonical form, the query, the
//! headers policy may look at and what the body is (its JSON, its GraphQL operation). Normalising
//! is where HTTP gateways are bypassed (`/a/../admin`, `%2e%2e`, `//admin`, `/admin;x`), so a path
//! that two servers could read two ways is refused rather than guessed at.

use std::borrow::Cow;
use std::sync::Arc;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq)]
pub struct HttpAction {
    /// Upper case, as sent (`GET`, `POST`).
    pub method: String,
    /// Percent-decoded, dot segments resolved, empty segments dropped; always starts with `/`.
    pub path: String,
    /// The path is the one sent, undecoded: the target could not be read, and the action only
    /// records its refusal.
    pub path_as_sent: bool,
    /// The query's pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers policy may match on, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: BodySummary,
    /// The request opens a WebSocket, or is a message the client sends on one.
    pub websocket: Option<WebSocket>,
}

/// What an action has to do with a WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebSocket {
    /// The upgrade request that opens it.
    Opening,
    /// A text or binary message the client sends on it: decided as the upgrade's request (its
    /// method, path, query and headers) with the message as its body.
    Message,
}

/// What the body is, without its bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BodySummary {
    /// The media type, lower case, without parameters (`application/json`).
    pub content_type: Option<String>,
    pub length: Option<u64>,
    /// The body read as JSON, when it is JSON (whatever its declared type: servers that ignore
    /// the type would read it so).
    pub json: Option<Arc<serde_json::Value>>,
    /// Why a body that a server may read as JSON (it begins as JSON does, in some encoding) could
    /// not be read as JSON by sluice. Rules that refuse by JSON conditions apply to it.
    pub json_unread: Option<String>,
    /// The body's form fields (`application/x-www-form-urlencoded`, or a body without a type
    /// that is not JSON, read as a form as Rack does), decoded, in order: frameworks read them
    /// as the same parameters as JSON fields.
    pub form: Vec<(String, String)>,
    /// The GraphQL operation the body (or the query string) carries, on a GraphQL endpoint.
    pub graphql: Option<GraphqlOperation>,
    /// SHA-256 of the body's bytes (hex), when there is a body: what an approval is bound to.
    pub digest: Option<String>,
    /// The body's beginning as text, for a reviewer.
    pub excerpt: Option<String>,
}

/// One GraphQL operation, as policy matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphqlOperation {
    pub kind: GraphqlKind,
    /// The operation's name, when it has one.
    pub name: Option<String>,
    /// The fields its top-level selection asks for (through fragments too), by name, not alias.
    pub fields: Vec<String>,
    /// The fields anywhere in the document that an alias gives another name in the response.
    pub renamed: Vec<String>,
    /// The names of every argument and input object field anywhere in the document (what its
    /// fields are selected or filtered by: `where: {ssn: …}` names `where` and `ssn`).
    pub argument_names: Vec<String>,
    /// Sent to a path declared GraphQL (or on a socket speaking GraphQL). One found on another
    /// path (a server may answer GraphQL where the operator did not say) meets the rules that
    /// refuse, but makes nothing a read and satisfies no allow: there it may be a REST body's
    /// field that only looks like GraphQL.
    pub on_endpoint: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphqlKind {
    Query,
    Mutation,
    Subscription,
}

impl GraphqlKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GraphqlKind::Query => "query",
            GraphqlKind::Mutation => "mutation",
            GraphqlKind::Subscription => "subscription",
        }
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum HttpTargetError {
    #[error("the method {0:?} is not an HTTP token")]
    Method(String),
    #[error("the request target must be a path starting with '/'")]
    NotAPath,
    #[error("the path has an invalid percent escape")]
    BadEscape,
    #[error("the path decodes to something that is not UTF-8")]
    NotUtf8,
    #[error("the path holds {0}, which servers read in different ways")]
    Ambiguous(&'static str),
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
}

impl HttpAction {
    /// The action for `method` on `target` (origin form: `/path?query`), with no headers or body.
    pub fn new(method: &str, target: &str) -> Result<HttpAction, HttpTargetError> {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            return Err(HttpTargetError::Method(method.to_string()));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok(HttpAction {
            method: method.to_ascii_uppercase(),
            path: normalise_path(path)?,
            path_as_sent: false,
            query: parse_query(query)?,
            headers: Vec::new(),
            body: BodySummary::default(),
            websocket: None,
        })
    }

    /// The action that records a request whose target was refused (`new` failed): its path as
    /// sent, undecoded, and its query's pairs as far as they decode.
    pub fn unreadable(method: &str, target: &str) -> HttpAction {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let lossy =
            |part: &str| String::from_utf8_lossy(&decode_escapes(part, true, false).unwrap_or_default()).into_owned();
        let query = query_pairs(query).map(|(name, value)| (lossy(name), lossy(value))).collect();
        HttpAction {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            path_as_sent: true,
            query,
            headers: Vec::new(),
            body: BodySummary::default(),
            websocket: None,
        }
    }

    /// The same request as a message sent on the WebSocket it opened, without a body yet.
    pub fn message_on_socket(&self) -> HttpAction {
        HttpAction { body: BodySummary::default(), websocket: Some(WebSocket::Message), ..self.clone() }
    }

    /// The method, the path and a GraphQL operation, as a refusal names the request.
    pub fn summary(&self) -> String {
        self.summary_masked(UNMASKED)
    }

    fn summary_masked(&self, mask: MaskPart<'_>) -> String {
        let head = match self.websocket {
            Some(WebSocket::Message) => format!("WS {} message", self.shown_path(mask)),
            _ => format!("{} {}", self.method, self.shown_path(mask)),
        };
        match &self.body.graphql {
            Some(op) => format!("{head} ({} {})", op.kind.as_str(), op.fields.join(", ")),
            None => head,
        }
    }

    /// The request as a reviewer reads it: method, path, query, the headers an approval is bound
    /// to and the body's beginning. `mask` masks each part that is escaped (see `push_shown`).
    pub fn review_text(&self, mask: MaskPart<'_>) -> String {
        let on = if self.websocket == Some(WebSocket::Message) { "WebSocket message on " } else { "" };
        let mut text = format!("{on}{} {}", self.method, self.shown_path(mask));
        self.push_query(&mut text, mask);
        // Header values and the body's beginning escaped as the rest, so that none shows as
        // something else to the reviewer (a right-to-left override, a hidden character); the
        // body keeps its line breaks and tabs, which are how it reads.
        for (name, value) in self.bound_headers() {
            text.push('\n');
            text.push_str(name);
            text.push_str(": ");
            text.push_str(&shown(value, false, mask));
        }
        if let Some(excerpt) = &self.body.excerpt {
            text.push_str("\n\n");
            text.push_str(&shown(excerpt, true, mask));
        }
        text
    }

    /// The request as its record names it: the summary (with a GraphQL operation) and the query.
    /// `mask` masks each part that is escaped (see `push_shown`).
    pub fn record_line(&self, mask: MaskPart<'_>) -> String {
        let mut text = self.summary_masked(mask);
        self.push_query(&mut text, mask);
        text
    }

    /// The request as the durable record of its decision names it, before it is forwarded: the
    /// record line and the body's digest, so that the record says which body (or WebSocket
    /// message) was let through even when the exchange's own record never comes.
    pub fn decided_line(&self, mask: MaskPart<'_>) -> String {
        let mut text = self.record_line(mask);
        if let Some(digest) = &self.body.digest {
            text.push_str(" [body sha256 ");
            text.push_str(digest);
            text.push(']');
        }
        text
    }

    /// The path as records and reviewers read it: decoded, but with what would read as something
    /// else escaped again (see `push_shown`), so that `/a%3Fb` is not shown as `/a?b`.
    /// `mask` masks the path first if it is escaped (see `push_shown`).
    pub fn shown_path(&self, mask: MaskPart<'_>) -> Cow<'_, str> {
        if self.path_as_sent {
            return shown_as_sent(&self.path, mask);
        }
        let mut shown = String::new();
        match push_shown(&mut shown, &self.path, DECODED_PATH, mask) {
            true => Cow::Owned(shown),
            false => Cow::Borrowed(&self.path),
        }
    }

    /// The path and the query as a record line shows them (for a WebSocket's messages).
    pub fn shown_target(&self, mask: MaskPart<'_>) -> String {
        let mut text = self.shown_path(mask).into_owned();
        self.push_query(&mut text, mask);
        text
    }

    /// Appends `?name=value&…` (a pair without a value as its name alone), each escaped as
    /// `push_shown` says so that a name or value cannot read as another pair.
    fn push_query(&self, text: &mut String, mask: MaskPart<'_>) {
        for (i, (name, value)) in self.query.iter().enumerate() {
            text.push(if i == 0 { '?' } else { '&' });
            if !push_shown(text, name, QUERY_NAME, mask) {
                text.push_str(name);
            }
            if !value.is_empty() {
                text.push('=');
                if !push_shown(text, value, QUERY_VALUE, mask) {
                    text.push_str(value);
                }
            }
        }
    }

    /// What an approval is bound to: the method, the path, the query pair by pair, the headers
    /// that may change what the request does and the body's digest; any change to one of them is
    /// another request.
    pub fn canonical(&self) -> String {
        let query: Vec<[&str; 2]> = self.query.iter().map(|(n, v)| [n.as_str(), v.as_str()]).collect();
        let query = serde_json::to_string(&query).unwrap_or_default();
        let mut headers: Vec<[&str; 2]> = self.bound_headers().map(|(n, v)| [n, v]).collect();
        headers.sort_unstable();
        let headers = serde_json::to_string(&headers).unwrap_or_default();
        let socket = match self.websocket {
            None => "",
            Some(WebSocket::Opening) => " websocket",
            Some(WebSocket::Message) => " websocket-message",
        };
        let digest = self.body.digest.as_deref().unwrap_or("-");
        format!("{} {} {query} {headers} {digest}{socket}", self.method, self.shown_path(UNMASKED))
    }

    /// The headers an approval is bound to: all that policy sees but those that describe the
    /// client or the transfer rather than what is asked (a tenant, an account, a content type
    /// are bound; a user agent, a trace id, an idempotency key that a client makes anew on each
    /// try are not, so that the same request sent again after approval is the one approved).
    fn bound_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().filter(|(n, _)| !is_incidental_header(n)).map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether the request only reads: a safe method, or a GraphQL query. Never the opening of a
    /// WebSocket, whose messages may do anything the upstream takes; a message on one only when
    /// it is a GraphQL query (its method is the upgrade's, which says nothing of what it does).
    pub fn reads_only(&self) -> bool {
        match (&self.body.graphql, self.websocket) {
            (_, Some(WebSocket::Opening)) => false,
            (Some(op), _) if op.kind != GraphqlKind::Query => false,
            (Some(op), _) if op.on_endpoint => true,
            (_, Some(WebSocket::Message)) => false,
            (_, None) => matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS"),
        }
    }

    /// The value of a header policy may see (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Headers that say how a client asks, not what: left out of what an approval is bound to.
fn is_incidental_header(name: &str) -> bool {
    const INCIDENTAL: [&str; 25] = [
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "b3",
        "baggage",
        "cache-control",
        "connection",
        "content-length",
        "date",
        "expect",
        "host",
        "idempotency-key",
        "keep-alive",
        "pragma",
        "te",
        "traceparent",
        "tracestate",
        "transfer-encoding",
        "sentry-trace",
        "upgrade",
        "user-agent",
        "x-cloud-trace-context",
        "x-correlation-id",
        "x-request-id",
    ];
    INCIDENTAL.contains(&name)
        || name.starts_with("x-stainless-")
        // The key and version of a WebSocket handshake change with every socket; the subprotocol
        // says how the upstream reads its messages, so an approval is bound to it.
        || name.starts_with("sec-websocket-") && name != "sec-websocket-protocol"
        || name.starts_with("x-amzn-trace")
        || name.starts_with("x-b3-")
        || name.starts_with("x-datadog-")
        || name.starts_with("x-sluice-")
}

/// A field or parameter name (or a path) as the most lenient servers compare names: in
/// Unicode's compatibility form (NFKC: fullwidth `ａｄｍｉｎ` is `admin`, `ſ` is `s`, the Kelvin
/// sign is `K`, as servers that normalise read them), without case, with the dotted and dotless
/// `İ` and `ı` as `i` (Java's and .NET's case-insensitive comparisons) and a final `ς` as `σ`.
pub fn fold_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.nfkc()
        .map(|c| match c {
            '\u{130}' | '\u{131}' => 'i',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .map(|c| if c == '\u{3C2}' { '\u{3C3}' } else { c })
        .collect()
}

/// A query or form parameter's name as the most lenient frameworks read it: folded
/// (`fold_name`), with PHP's rewriting (leading blanks dropped; a space, `.` or `[` left unclosed
/// made `_`) and without a final `[]` (`force[]` is `force` to PHP, Rails and qs).
pub fn parameter_name(name: &str) -> String {
    let name = fold_name(name.trim_start());
    let name = name.strip_suffix("[]").unwrap_or(&name);
    // PHP rewrites only up to the first `[` that opens a subscript (`a[b]` stays nested).
    let (head, rest) = match name.find('[') {
        Some(open) if name[open..].contains(']') => name.split_at(open),
        _ => (name, ""),
    };
    let head: String = head.chars().map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c }).collect();
    format!("{head}{rest}")
}

/// A JSON pointer's reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
pub fn pointer_tokens(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// The canonical form of a request path (see `HttpAction::path`).
pub fn normalise_path(path: &str) -> Result<String, HttpTargetError> {
    if !path.starts_with('/') {
        return Err(HttpTargetError::NotAPath);
    }
    // Built in place: each kept segment is appended with its '/', and `..` cuts back to the
    // last one (where each segment starts is remembered).
    let mut out = String::with_capacity(path.len());
    let mut starts: Vec<usize> = Vec::new();
    for raw in path.split('/').skip(1) {
        if raw.contains('\\') {
            return Err(HttpTargetError::Ambiguous("a backslash"));
        }
        if raw.contains(';') {
            return Err(HttpTargetError::Ambiguous("a ';' path parameter"));
        }
        let decoded = percent_decode(raw, false)?;
        if decoded.contains('/') || decoded.contains('\\') {
            return Err(HttpTargetError::Ambiguous("an encoded slash"));
        }
        if decoded.chars().any(char::is_control) {
            return Err(HttpTargetError::Ambiguous("a control character"));
        }
        // `.. `, ` `, `...`: Windows servers trim them to `..`, `.` or nothing.
        if !matches!(&*decoded, "" | "." | "..") && decoded.chars().all(|c| c == '.' || c.is_whitespace()) {
            return Err(HttpTargetError::Ambiguous("a segment of dots and blanks alone"));
        }
        if !decoded.is_ascii() && reads_as_delimiter(&decoded) {
            return Err(HttpTargetError::Ambiguous(
                "a character that Unicode's compatibility form reads as a path delimiter ('．', '／', '…')",
            ));
        }
        // `%252e` decodes to `%2e`: a server (or a framework behind it) that decodes again reads
        // `.`, and `%252f` becomes a `/` the rules never saw.
        if decoded.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit()) {
            return Err(HttpTargetError::Ambiguous("an escape still encoded after decoding (double encoding)"));
        }
        match &*decoded {
            "" | "." => {}
            ".." => {
                let start = starts.pop().ok_or(HttpTargetError::AboveRoot)?;
                out.truncate(start);
            }
            segment => {
                starts.push(out.len());
                out.push('/');
                out.push_str(segment);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether a character of `segment` becomes `.`, `/`, `\\`, `%`, `;`, `?` or `#` in Unicode's
/// compatibility form, which servers that normalise (and Windows's best-fit conversion) read.
fn reads_as_delimiter(segment: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    segment
        .chars()
        .filter(|c| !c.is_ascii())
        .any(|c| std::iter::once(c).nfkc().any(|d| matches!(d, '.' | '/' | '\\' | '%' | ';' | '?' | '#')))
}

/// Text for a record line that is already masked (a WebSocket message's excerpt): `%`, controls,
/// line breaks and invisible formatting escaped, as in the rest of the line.
pub fn shown_text(text: &str) -> Cow<'_, str> {
    shown(text, false, UNMASKED)
}

/// `text` with `%`, controls, whitespace other than a space and invisible formatting escaped;
/// `lines`: line breaks and tabs kept as they are. Text that is escaped is masked with `mask`
/// first, as `push_shown` says.
fn shown<'a>(text: &'a str, lines: bool, mask: MaskPart<'_>) -> Cow<'a, str> {
    let escaped = |c: char| c == '%' || is_unseen(c) && !(lines && matches!(c, '\n' | '\t'));
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let masked = mask(text);
    let text = masked.as_deref().unwrap_or(text);
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match escaped(c) {
            true => push_escaped(&mut shown, c),
            false => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// What is escaped in a decoded path: what would read as a query, a fragment or an escape, and a
/// space, which separates a line's parts (`WS /chat message` is a WebSocket message, not the
/// request `WS /chat%20message`).
const DECODED_PATH: &[char] = &['%', '?', '#', ' '];

/// What is escaped in a query's name and value: what would read as another pair, a fragment or an
/// escape, and a space (`?room=1 → text hi` would read as a WebSocket message's line).
const QUERY_NAME: &[char] = &['%', '&', '=', '#', ' '];
const QUERY_VALUE: &[char] = &['%', '&', '#', ' '];

/// A refused path as sent holds its escapes (and no space, control, '?' or '#'), but may hold raw
/// UTF-8. It is shown as sent, but for a segment whose decoding (as far as it decodes, and
/// decoded again while escapes are left: the target may have been refused for being encoded
/// twice) holds something to mask: an escape's last hex digit glued to a card number hides it
/// from the detectors (`%0A4111…`), and so do escaped spaces between its groups. That segment is
/// shown decoded, masked and escaped again, with what its decoding made a `/`, `\` or `;`
/// escaped too, so that it still reads as the one segment it was.
fn shown_as_sent<'a>(path: &'a str, mask: MaskPart<'_>) -> Cow<'a, str> {
    if path.contains('%') {
        let masked: Vec<Option<String>> = path
            .split('/')
            .map(|segment| segment.contains('%').then(|| mask_deep(&decode_lossy(segment), mask)).flatten())
            .collect();
        if masked.iter().any(Option::is_some) {
            let mut shown = String::with_capacity(path.len() + 16);
            for (i, (segment, masked)) in path.split('/').zip(masked).enumerate() {
                if i > 0 {
                    shown.push('/');
                }
                match masked {
                    Some(masked) => push_escaping(&mut shown, &masked, DECODED_SEGMENT),
                    None => shown.push_str(segment),
                }
            }
            return Cow::Owned(shown);
        }
    }
    let mut shown = String::new();
    match push_shown(&mut shown, path, &[], mask) {
        true => Cow::Owned(shown),
        false => Cow::Borrowed(path),
    }
}

/// What is escaped in one decoded segment of a refused path shown decoded.
const DECODED_SEGMENT: &[char] = &['%', '?', '#', ' ', '/', '\\', ';'];

/// `part` masked, or its decoding masked (up to three levels, while escapes are left) when only
/// that holds something to mask: an escape encoded twice (`%250A4111…`) glues its hex digit to
/// what follows at every level but the last. `None`: nothing to mask at any level.
fn mask_deep(part: &str, mask: MaskPart<'_>) -> Option<String> {
    let mut text = Cow::Borrowed(part);
    for _ in 0..3 {
        if let Some(masked) = mask(&text) {
            return Some(masked);
        }
        if !text.contains('%') {
            return None;
        }
        let deeper = decode_lossy(&text);
        if deeper == *text {
            return None;
        }
        text = Cow::Owned(deeper);
    }
    mask(&text)
}

/// Masks a part of a record line before it is escaped; `None`: nothing to mask.
pub type MaskPart<'a> = &'a dyn Fn(&str) -> Option<String>;

/// For lines no one keeps (a policy's own reading, what an approval is bound to).
pub const UNMASKED: MaskPart<'static> = &|_| None;

/// Appends `part` to `text` with the characters in `special` (`%` and a space among them for a
/// decoded part), controls, invisible formatting (bidirectional overrides, zero-width
/// characters) and whitespace other than a space percent-encoded, and says so; appends nothing
/// and returns false when `part` needs no escape. Those are what would make a decoded path or
/// query read as another in a record line: `?` as a query, `&` as another pair, ` (query …)` as
/// a GraphQL operation, ` [body sha256 …]` as a body's digest, ` → text …` as a WebSocket
/// message, a line break as another record, a right-to-left override as text in another order.
/// Everything else stays as decoded (an e-mail's `+`, a name in any script). A part that is
/// escaped is first masked with `mask`, as it was sent: an escape ends in a letter or digit,
/// which glued to what follows would hide it from the detectors that read the line when it is
/// recorded (`%0A4111…` is no card number to them), and escaped spaces hide a card's groups.
fn push_shown(text: &mut String, part: &str, special: &[char], mask: MaskPart<'_>) -> bool {
    if !needs_escape(part, special) {
        return false;
    }
    let masked = mask_deep(part, mask);
    push_escaping(text, masked.as_deref().unwrap_or(part), special);
    true
}

/// Appends `part` with what `push_shown` says is escaped, escaped.
fn push_escaping(text: &mut String, part: &str, special: &[char]) {
    text.reserve(part.len() + 8);
    for c in part.chars() {
        match escapes(special, c) {
            true => push_escaped(text, c),
            false => text.push(c),
        }
    }
}

fn push_escaped(text: &mut String, c: char) {
    for b in c.encode_utf8(&mut [0; 4]).bytes() {
        text.push('%');
        text.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
        text.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
    }
}

fn needs_escape(part: &str, special: &[char]) -> bool {
    part.chars().any(|c| escapes(special, c))
}

/// Whether the character `c` is escaped (see `push_shown`): past ASCII, only letters and
/// digits stay as they are (a look-alike `？`, an arrow, a symbol drawn blank would read as
/// something else).
fn escapes(special: &[char], c: char) -> bool {
    special.contains(&c) || is_unseen(c) || !c.is_ascii() && !c.is_alphanumeric()
}

/// Controls, line breaks and whitespace other than a space, and what shows as nothing.
fn is_unseen(c: char) -> bool {
    c.is_control() || is_invisible_format(c) || c.is_whitespace() && c != ' '
}

/// Characters that show as nothing, or change how the text around them is shown: Unicode's
/// default-ignorable code points (zero-width characters, bidirectional overrides, variation
/// selectors, tags), the interlinear annotation marks, and letters drawn blank (a braille blank,
/// the Hangul fillers).
pub fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, HttpTargetError> {
    query_pairs(query)
        .map(|(name, value)| {
            let (name, value) = (percent_decode(name, true)?, percent_decode(value, true)?);
            if !is_plain_parameter(&name, &value) {
                return Err(HttpTargetError::Ambiguous(
                    "a control character in a query parameter's name, or NUL in its value",
                ));
            }
            Ok((name.into_owned(), value.into_owned()))
        })
        .collect()
}

/// A query string's `name=value` pairs, undecoded (a pair without `=` is a name with an empty
/// value; empty pairs are skipped).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|pair| !pair.is_empty()).map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Whether a parameter (query or form) reads the same to every server: PHP cuts a name at NUL
/// (`_method%00x` is `_method`), and C code cuts a value there.
pub fn is_plain_parameter(name: &str, value: &str) -> bool {
    !name.chars().any(char::is_control) && !value.contains('\0')
}

/// Decodes `%XX` escapes (and `+` as a space in a query).
fn percent_decode(s: &str, plus_is_space: bool) -> Result<Cow<'_, str>, HttpTargetError> {
    if !s.bytes().any(|b| b == b'%' || plus_is_space && b == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let out = decode_escapes(s, plus_is_space, true).ok_or(HttpTargetError::BadEscape)?;
    String::from_utf8(out).map(Cow::Owned).map_err(|_| HttpTargetError::NotUtf8)
}

/// Decodes the escapes that are two hex digits, leaves the others as they are, and reads what is
/// not UTF-8 as U+FFFD: a refused path, as far as it reads.
fn decode_lossy(s: &str) -> String {
    let out = decode_escapes(s, false, false).unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

/// `%XX` escapes decoded; a `%` not followed by two hex digits is an error when `strict`, and
/// left as it is when not.
fn decode_escapes(s: &str, plus_is_space: bool, strict: bool) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits, no more and no less (`from_str_radix` alone takes `%+9` as a tab,
        // where a server leaves it as it is).
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| Some(hex_value(h[0])? << 4 | hex_value(h[1])?));
        match (bytes[i], escaped) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'%', None) if strict => return None,
            (b'+', _) if plus_is_space => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_on_a_websocket_is_neither_its_opening_nor_a_read() {
        let get = HttpAction::new("GET", "/ws?room=1").unwrap();
        let opening = HttpAction { websocket: Some(WebSocket::Opening), ..get.clone() };
        let mut message = opening.message_on_socket();
        message.body.digest = Some("d".into());
        let mut posted = HttpAction { method: "GET".into(), ..get.clone() };
        posted.body.digest = Some("d".into());
        // An approval of one is not an approval of another.
        let canonicals = [&get, &opening, &message, &posted].map(HttpAction::canonical);
        assert!(canonicals.iter().enumerate().all(|(i, c)| canonicals[..i].iter().all(|o| o != c)), "{canonicals:?}");
        assert!(get.reads_only() && !opening.reads_only() && !message.reads_only());
        message.body.graphql = Some(GraphqlOperation {
            kind: GraphqlKind::Query,
            name: None,
            fields: vec![],
            renamed: vec![],
            argument_names: vec![],
            on_endpoint: true,
        });
        assert!(message.reads_only(), "a GraphQL query is a read on a socket too");
        assert_eq!(message.summary(), "WS /ws message (query )");
        assert!(message.review_text(UNMASKED).starts_with("WebSocket message on GET /ws?room=1"));
        assert_eq!(message.decided_line(UNMASKED), "WS /ws message (query )?room=1 [body sha256 d]");
        assert_eq!(get.decided_line(UNMASKED), "GET /ws?room=1");
        // Bound to the subprotocol the socket asked for, not to its handshake's key.
        let on = |protocol: &str, key: &str| {
            let mut on = message.clone();
            on.headers =
                vec![("sec-websocket-protocol".into(), protocol.into()), ("sec-websocket-key".into(), key.into())];
            on.canonical()
        };
        assert_eq!(on("graphql-transport-ws", "a"), on("graphql-transport-ws", "b"));
        assert_ne!(on("graphql-transport-ws", "a"), on("stomp", "a"));
    }

    #[test]
    fn a_record_line_shows_what_was_escaped_as_escaped() {
        let line = |target: &str| HttpAction::new("GET", target).unwrap().record_line(UNMASKED);
        // Decoded where nothing reads differently; `%`, `?`, `#` and a space escaped again (a
        // space separates the line's parts: `WS /chat message` is a WebSocket message).
        assert_eq!(line("/caf%C3%A9/ab?q=x+y&e=a%2Bb%40example.com"), "GET /café/ab?q=x%20y&e=a+b@example.com");
        assert_eq!(line("/chat%20message?x=1"), "GET /chat%20message?x=1");
        assert_eq!(line("/a%3Fb%23c%25d"), "GET /a%3Fb%23c%25d");
        // A name or value cannot read as another pair, a line break as another record.
        assert_eq!(line("/?a%26b%3Dc=d%26e%3Df"), "GET /?a%26b%3Dc=d%26e=f");
        assert_eq!(line("/?q=x%0Ay%E2%80%A8z"), "GET /?q=x%0Ay%E2%80%A8z");
        // Nor show in another order, or hide a character.
        assert_eq!(line("/files/%E2%80%AEtxt.exe?n=a%E2%80%8Bb"), "GET /files/%E2%80%AEtxt.exe?n=a%E2%80%8Bb");
        // Nor as a GraphQL operation or a body's digest.
        assert_eq!(line("/graphql%20(query%20me)"), "GET /graphql%20(query%20me)");
        let mut post = HttpAction::new("POST", "/a?x=1%20[body%20sha256%20f]").unwrap();
        assert_eq!(post.decided_line(UNMASKED), "POST /a?x=1%20[body%20sha256%20f]");
        post.body.digest = Some("d".into());
        assert_eq!(post.decided_line(UNMASKED), "POST /a?x=1%20[body%20sha256%20f] [body sha256 d]");
        // Nor a request as a WebSocket's message (whose line is `WS /ws?room=1 → text …`).
        assert_eq!(
            HttpAction::new("ws", "/ws?room=1%20%E2%86%92%20text%20hi").unwrap().record_line(UNMASKED),
            "WS /ws?room=1%20%E2%86%92%20text%20hi"
        );
        // A refused target is shown with the escapes it was sent with, its query as it decodes.
        for raw in ["/v1/%252e%252e/admin", "/a%2fb", "/a%zz"] {
            assert_eq!(
                HttpAction::unreadable("get", &format!("{raw}?q=1&n=a%26b%zz")).record_line(UNMASKED),
                format!("GET {raw}?q=1&n=a%26b%25zz")
            );
        }
        assert_eq!(HttpAction::unreadable("GET", "/a%2f\u{202E}b").record_line(UNMASKED), "GET /a%2f%E2%80%AEb");
        // A part that is escaped is masked first: the escape's last hex digit, glued to what
        // follows, would hide it from the detectors the line meets when it is recorded.
        let card = |part: &str| part.contains("4111111111111111").then(|| part.replace("4111111111111111", "[card]"));
        let masked = |target: &str| HttpAction::new("GET", target).unwrap().record_line(&card);
        assert_eq!(masked("/c/4111111111111111%3F?q=%0A4111111111111111"), "GET /c/[card]%3F?q=%0A[card]");
        // A refused path as sent too, as far as it decodes: what it hides is masked, and it is
        // then shown decoded and escaped again; with nothing to mask, it is shown as sent.
        let refused = |target: &str| HttpAction::unreadable("GET", target).record_line(&card);
        assert_eq!(refused("/c/%0A4111111111111111/%zz"), "GET /c/%0A[card]/%zz");
        assert_eq!(refused("/c/%0A4111/%zz"), "GET /c/%0A4111/%zz");
        // What the decoding made a delimiter stays escaped; an escape encoded twice is decoded
        // as far as it hides something (a detector finds a card only apart from other digits and
        // letters).
        assert_eq!(refused("/v1/%2e%2e%2Fadmin%0A4111111111111111"), "GET /v1/..%2Fadmin%0A[card]");
        let apart = |part: &str| {
            let at = part.find("4111111111111111")?;
            let glued = part[..at].chars().next_back().is_some_and(char::is_alphanumeric);
            (!glued).then(|| part.replace("4111111111111111", "[card]"))
        };
        let refused_apart = |target: &str| HttpAction::unreadable("GET", target).record_line(&apart);
        assert_eq!(refused_apart("/v1/x%250A4111111111111111"), "GET /v1/x%0A[card]");
        let masked_apart = |target: &str| HttpAction::new("GET", target).unwrap().record_line(&apart);
        assert_eq!(masked_apart("/c?q=%250A4111111111111111"), "GET /c?q=%0A[card]");
        let spaced = |part: &str| part.contains("4111 1111").then(|| part.replace("4111 1111", "[card]"));
        assert_eq!(HttpAction::unreadable("GET", "/c/4111%201111%FF").record_line(&spaced), "GET /c/[card]%EF%BF%BD");
        // Parts with nothing to escape are left to the recorder's own masking of the whole line.
        assert_eq!(masked("/c/4111111111111111?q=4111111111111111"), "GET /c/4111111111111111?q=4111111111111111");
        assert_eq!(shown_text("50% done\nnext [redacted:email]"), "50%25 done%0Anext [redacted:email]");
        assert_eq!(HttpAction::new("GET", "/ws?room=a%26b").unwrap().shown_target(UNMASKED), "/ws?room=a%26b");
        // What an approval is bound to is unchanged for a path with nothing to escape.
        assert_eq!(HttpAction::new("GET", "/a/b?c=d").unwrap().canonical(), r#"GET /a/b [["c","d"]] [] -"#);
    }

    #[test]
    fn dot_segments_and_repeated_slashes_resolve_to_one_path() {
        for path in [
            "/admin/users",
            "//admin//users",
            "/x/../admin/users",
            "/admin/./users",
            "/%61dmin/users",
            "/x/%2e%2e/admin/users",
        ] {
            assert_eq!(normalise_path(path).unwrap(), "/admin/users", "{path}");
        }
        for (path, normal) in [("/", "/"), ("//", "/"), ("/a/..", "/"), ("/a/b/..", "/a"), ("/a/b/../../c/", "/c")] {
            assert_eq!(normalise_path(path).unwrap(), normal, "{path}");
        }
    }

    #[test]
    fn paths_servers_read_differently_are_refused() {
        assert_eq!(normalise_path("/admin%2fusers"), Err(HttpTargetError::Ambiguous("an encoded slash")));
        assert_eq!(normalise_path("/admin%5cusers"), Err(HttpTargetError::Ambiguous("an encoded slash")));
        assert_eq!(normalise_path("/admin\\users"), Err(HttpTargetError::Ambiguous("a backslash")));
        assert_eq!(
            normalise_path("/admin;jsessionid=1/users"),
            Err(HttpTargetError::Ambiguous("a ';' path parameter"))
        );
        assert_eq!(normalise_path("/admin%00"), Err(HttpTargetError::Ambiguous("a control character")));
        assert_eq!(normalise_path("/../etc"), Err(HttpTargetError::AboveRoot));
        assert_eq!(normalise_path("/a%zz"), Err(HttpTargetError::BadEscape));
        assert_eq!(normalise_path("/a%+9"), Err(HttpTargetError::BadEscape));
        assert_eq!(HttpAction::new("GET", "/?v=%-1").map(|_| ()), Err(HttpTargetError::BadEscape));
        assert_eq!(normalise_path("/a%e2%28"), Err(HttpTargetError::NotUtf8));
        assert_eq!(normalise_path("admin"), Err(HttpTargetError::NotAPath));
        let twice = HttpTargetError::Ambiguous("an escape still encoded after decoding (double encoding)");
        assert_eq!(normalise_path("/x/%252e%252e/admin"), Err(twice.clone()));
        assert_eq!(normalise_path("/a%252Fb"), Err(twice));
        assert_eq!(normalise_path("/files/100%25").as_deref(), Ok("/files/100%"));
        for blank in ["/%20/admin", "/x/..%20/admin", "/x/.%20/admin", "/x/.../admin", "/x/%C2%A0/admin"] {
            assert_eq!(
                normalise_path(blank),
                Err(HttpTargetError::Ambiguous("a segment of dots and blanks alone")),
                "{blank}"
            );
        }
        for lookalike in ["/x/%EF%BC%8E%EF%BC%8E/admin", "/admin%EF%BC%8Fx", "/x/%E2%80%A6/admin"] {
            assert!(
                matches!(normalise_path(lookalike), Err(HttpTargetError::Ambiguous(w)) if w.contains("compatibility")),
                "{lookalike}"
            );
        }
        assert_eq!(normalise_path("/caf%C3%A9/%EF%BD%81").as_deref(), Ok("/café/ａ"));
    }

    #[test]
    fn the_query_is_decoded_pair_by_pair() {
        let action = HttpAction::new("get", "/search?q=a+b&tag=%41&flag").unwrap();
        assert_eq!(action.method, "GET");
        assert_eq!(action.path, "/search");
        assert_eq!(
            action.query,
            [("q".into(), "a b".into()), ("tag".into(), "A".into()), ("flag".into(), String::new())]
        );
        assert_eq!(action.summary(), "GET /search");
    }

    #[test]
    fn an_approval_is_bound_to_the_headers_that_say_what_is_asked() {
        let with = |headers: &[(&str, &str)]| {
            let mut action = HttpAction::new("POST", "/v1/payments").unwrap();
            action.headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            action
        };
        let approved = with(&[("x-tenant-id", "acme"), ("user-agent", "curl/8"), ("content-type", "application/json")]);
        let again =
            with(&[("user-agent", "python-httpx"), ("content-type", "application/json"), ("x-tenant-id", "acme")]);
        assert_eq!(approved.canonical(), again.canonical(), "incidental headers and order do not count");
        let other_tenant = with(&[("x-tenant-id", "globex"), ("content-type", "application/json")]);
        assert_ne!(approved.canonical(), other_tenant.canonical());
        let form = with(&[("x-tenant-id", "acme"), ("content-type", "application/x-www-form-urlencoded")]);
        assert_ne!(approved.canonical(), form.canonical());
        assert!(approved.review_text(UNMASKED).contains("x-tenant-id: acme"));
        // What a reviewer reads shows nothing as something else.
        let mut hidden = with(&[("x-tenant-id", "acme\u{202E}emca")]);
        hidden.body.excerpt = Some("{\n\t\"to\": \"ann\u{200B}\u{13430}\", \"pct\": \"5%\"\r}".into());
        // Masked before it is escaped (an escape glued to a card number hides it).
        let mut glued = with(&[("x-tenant-id", "ref\u{AD}4111111111111111")]);
        glued.body.excerpt = Some("ref\r4111111111111111".into());
        let card = |part: &str| part.contains("4111111111111111").then(|| part.replace("4111111111111111", "[card]"));
        assert!(glued.review_text(&card).ends_with("x-tenant-id: ref%C2%AD[card]\n\nref%0D[card]"));
        let text = hidden.review_text(UNMASKED);
        assert!(
            text.ends_with(
                "x-tenant-id: acme%E2%80%AEemca\n\n{\n\t\"to\": \"ann%E2%80%8B%F0%93%90%B0\", \"pct\": \"5%25\"%0D}"
            ),
            "{text}"
        );
    }

    #[test]
    fn names_fold_as_lenient_servers_fold_them() {
        assert_eq!(parameter_name("Force[]"), "force");
        assert_eq!(parameter_name(" pay.amount"), "pay_amount");
        assert_eq!(parameter_name("[method"), "_method");
        assert_eq!(parameter_name("payment[Amount]"), "payment[amount]");
        assert_eq!(pointer_tokens("/a~1b/c~0d").collect::<Vec<_>>(), ["a/b", "c~d"]);
        assert_eq!(fold_name("AMOUNT"), "amount");
        assert_eq!(fold_name("\u{17F}tatus"), "status");
        assert_eq!(fold_name("\u{212A}ey"), "key");
        assert_eq!(fold_name("adm\u{131}n"), "admin");
        assert_eq!(fold_name("ADM\u{130}N"), "admin");
        assert_eq!(fold_name("\u{FF41}\u{FF44}\u{FF4D}\u{FF49}\u{FF4E}"), "admin");
        assert_eq!(fold_name("\u{39F}\u{3A3}"), fold_name("\u{3BF}\u{3C2}"));
    }

    #[test]
    fn a_method_must_be_a_token() {
        assert_eq!(HttpAction::new("GE T", "/").unwrap_err(), HttpTargetError::Method("GE T".into()));
        assert_eq!(HttpAction::new("", "/").unwrap_err(), HttpTargetError::Method(String::new()));
    }
}
