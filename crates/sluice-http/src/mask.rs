//! Cleaning of responses: the held credential replaced wherever the upstream repeats it; JSON
//! walked token by token (every string and number through the detectors, keys too; values under
//! a sensitive key or pointer replaced whatever they hold), any other body scanned as text. A
//! body sluice cannot decode to read it is not passed on.

use crate::archive::Archives;
use crate::forward::OnWire;
use jiter::Peek;
use sluice_mask::value::ContentMasker;
use sluice_mask::{Finding, SessionMasking};
use std::sync::Arc;

/// A target's JSON keys and pointers whose values are masked whatever they hold.
#[derive(Debug, Default)]
pub struct Sensitive {
    /// Keys in lower case.
    keys: Vec<String>,
    /// Pointers as their reference tokens (`*`: any).
    pointers: Vec<Vec<String>>,
    /// Finds each key in a body written in lower case.
    finders: Vec<memchr::memmem::Finder<'static>>,
    /// The names of the keys and of the fields pointers end at, lower case, each with its finder:
    /// what a body that is not JSON is searched for.
    names: Vec<(String, memchr::memmem::Finder<'static>)>,
    /// Every name a renaming could hide: the keys and every named token of the pointers, lower
    /// case.
    fields: Vec<String>,
    /// The keys as a header name would hold them: lower case, `_` as `-`.
    header_keys: Vec<String>,
}

impl Sensitive {
    pub fn new(keys: Vec<String>, pointers: Vec<Vec<String>>) -> Sensitive {
        let keys: Vec<String> = keys.iter().map(|k| k.to_ascii_lowercase()).collect();
        let finders = keys.iter().map(|k| memchr::memmem::Finder::new(k.as_bytes()).into_owned()).collect();
        let mut names: Vec<String> = keys.clone();
        for pointer in &pointers {
            let named = pointer.iter().rev().find(|t| *t != "*" && t.parse::<usize>().is_err());
            names.extend(named.map(|t| t.to_ascii_lowercase()));
        }
        let mut fields: Vec<String> = keys.clone();
        for token in pointers.iter().flatten() {
            if token != "*" && token.parse::<usize>().is_err() {
                fields.push(token.to_ascii_lowercase());
            }
        }
        for list in [&mut names, &mut fields] {
            list.sort();
            list.dedup();
            list.retain(|n| !n.is_empty());
        }
        let names = names
            .into_iter()
            .map(|n| {
                let finder = memchr::memmem::Finder::new(n.as_bytes()).into_owned();
                (n, finder)
            })
            .collect();
        let header_keys = keys.iter().map(|k| k.replace('_', "-")).collect();
        Sensitive { keys, pointers, finders, names, fields, header_keys }
    }

    /// The first sensitive field named in a body that is not JSON (XML, CSV, HTML, JSONP …),
    /// where its value cannot be found by structure: its name as a whole word followed by what
    /// marks a field (`<password>`, `password,`, `password:`, `password=`), not by a blank or a
    /// full stop as in prose ("invalid password.").
    fn named_in(&self, body: &[u8]) -> Option<&str> {
        if self.names.is_empty() {
            return None;
        }
        let lower = body.to_ascii_lowercase();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let as_field = |at: usize, len: usize| {
            let before = at.checked_sub(1).map(|i| lower[i]);
            // Blanks between a name and what marks it a field (`password = x`, `<password >`).
            let after = lower[at + len..].iter().copied().find(|&b| b != b' ');
            !before.is_some_and(word) && after.is_none_or(|b| b"<>:=\"',;|\t\r\n}]/".contains(&b))
        };
        self.names
            .iter()
            .find(|(name, f)| f.find_iter(&lower).any(|at| as_field(at, name.len())))
            .map(|(n, _)| n.as_str())
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.pointers.is_empty()
    }

    /// A form body (`a=1&password=x`) with the values of sensitive keys replaced, for the
    /// record of a request; `None` when it is not a form or holds none of them.
    pub fn mask_form(&self, body: &[u8]) -> Option<Vec<u8>> {
        if self.keys.is_empty() || crate::request::looks_like_json(body) || !body.contains(&b'=') {
            return None;
        }
        // A nested name counts by its innermost field (`user[password]`, `user.password`).
        let sensitive = |name: &str| {
            let innermost = name.trim().trim_end_matches("[]").trim_end_matches(']');
            let innermost = innermost.rsplit(['[', '.']).next().unwrap_or(innermost);
            self.keys.iter().any(|k| k.eq_ignore_ascii_case(innermost))
        };
        let pairs: Vec<_> = form_urlencoded::parse(body).collect();
        if !pairs.iter().any(|(name, _)| sensitive(name)) {
            return None;
        }
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &pairs {
            if sensitive(name) {
                let mut label = Vec::new();
                sluice_mask::action::redaction(name, &mut label);
                form.append_pair(name, &String::from_utf8_lossy(&label));
            } else {
                form.append_pair(name, value);
            }
        }
        Some(form.finish().into_bytes())
    }

    /// Whether a field of this name is marked sensitive, or lies on the way to one (a token of a
    /// pointer): renamed in a response (a GraphQL alias), its value would not be found.
    pub fn names_field(&self, field: &str) -> bool {
        self.fields.binary_search(&field.to_ascii_lowercase()).is_ok()
    }

    /// The names whose values are masked whatever they hold: the keys, and the fields pointers
    /// end at (lower case).
    pub fn value_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(name, _)| name.as_str())
    }

    /// Whether any key or pointer is marked sensitive.
    pub fn any(&self) -> bool {
        !self.fields.is_empty() || !self.pointers.is_empty()
    }

    /// Whether a header of this name carries a value under a sensitive key (`X-Password`, for
    /// the key `password`; `-` and `_` alike).
    pub fn names_header(&self, header: &str) -> bool {
        if self.header_keys.is_empty() {
            return false;
        }
        // Header names are lower case; one with `_` (rare) is read with `-`.
        let dashed = header.contains('_').then(|| header.replace('_', "-"));
        let header = dashed.as_deref().unwrap_or(header);
        self.header_keys.iter().any(|k| header.contains(k.as_str()))
    }

    /// The names `names_field` holds, lower case.
    pub fn field_names(&self) -> &[String] {
        &self.fields
    }

    /// Whether a body may hold a value under a sensitive key or pointer, so that it must be
    /// walked. Without escapes a key's text is its bytes: a body none of the keys occurs in
    /// holds none of them. Pointers may end in an index or `*`: a body is always walked for them.
    fn may_apply(&self, body: &[u8], escapes: bool) -> bool {
        !self.pointers.is_empty() || (!self.keys.is_empty() && (escapes || self.occurs_in(body)))
    }

    fn occurs_in(&self, body: &[u8]) -> bool {
        // Lowering a copy and searching it is several times faster than a search that ignores case.
        let lower = body.to_ascii_lowercase();
        self.finders.iter().any(|f| f.find(&lower).is_some())
    }
}

/// What a response is cleaned with: owned, so a stream carries it along.
pub struct BodyMasker {
    masking: Option<SessionMasking>,
    sensitive: Arc<Sensitive>,
    on_wire: Arc<OnWire>,
    archives: Archives,
}

impl BodyMasker {
    pub fn new(masking: Option<SessionMasking>, sensitive: Arc<Sensitive>, on_wire: Arc<OnWire>) -> BodyMasker {
        BodyMasker { masking, sensitive, on_wire, archives: Archives::Refuse }
    }

    /// The masker with the connection's choice for packed bodies (`archives`).
    pub fn with_archives(self, archives: Archives) -> BodyMasker {
        BodyMasker { archives, ..self }
    }

    /// Whether a packed body (an archive, a compressed file, a PDF) is refused: where anything
    /// is masked, unless the connection passes them.
    pub fn refuses_archives(&self) -> bool {
        self.archives == Archives::Refuse && self.active()
    }

    /// The target's sensitive keys and the held credential this masker masks by (with the
    /// session's detectors, the rest of what it is).
    pub fn rules(&self) -> (&Arc<Sensitive>, &Arc<OnWire>) {
        (&self.sensitive, &self.on_wire)
    }

    fn content(&self) -> Option<ContentMasker<'_>> {
        self.masking.as_ref().map(|m| m.masking().content())
    }

    fn active(&self) -> bool {
        self.content().is_some_and(|c| !c.scanner.is_empty()) || !self.sensitive.is_empty()
    }

    /// Whether the detectors run at all (a stream's pieces are read across units only then).
    pub fn detects(&self) -> bool {
        self.content().is_some_and(|c| !c.scanner.is_empty())
    }

    /// The detectors' findings in `text`, each with the label that stands for what it found.
    pub fn findings(&self, text: &[u8]) -> Vec<(usize, usize, Vec<u8>)> {
        let Some(content) = self.content() else { return Vec::new() };
        let mut found = Vec::new();
        content.scanner.scan(text, &mut found);
        found
            .iter()
            .map(|f| {
                let mut label = Vec::new();
                sluice_mask::action::redaction(content.scanner.name(f.detector), &mut label);
                (f.start, f.end, label)
            })
            .collect()
    }

    /// A body as the client may have it: the credential replaced, then masked (as JSON or as
    /// text); `None` when nothing had to change.
    pub fn clean(&self, body: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if let Some(encoding) = crate::charset::wide(body) {
            return Err(Unreadable::Wide(encoding));
        }
        if let Some(kind) = self.refuses_archives().then(|| sluice_mask::unreadable::packed(body)).flatten() {
            return Err(Unreadable::Packed(kind));
        }
        let scrubbed = self.on_wire.scrub(body);
        if !self.active() {
            return Ok(scrubbed);
        }
        Ok(self.mask(scrubbed.as_deref().unwrap_or(body))?.or(scrubbed))
    }

    /// A whole response body as the client may have it (`clean`), refused when it is not JSON
    /// and names a field marked sensitive: such fields are found by JSON's structure, and the
    /// same record as XML, CSV or an HTML page (an agent may ask for any) names them with nothing
    /// sluice can follow. (A stream's events and a socket's messages are text more often than
    /// records: they are masked by the detectors alone.)
    pub fn clean_document(&self, body: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if !crate::request::looks_like_json(body)
            && crate::charset::wide(body).is_none()
            && let Some(name) = self.sensitive.named_in(body)
        {
            return Err(Unreadable::Keyed(name.to_string()));
        }
        self.clean(body)
    }

    /// A stream's unit (an event's data, a JSON line) as the client may have it (`clean`),
    /// refused when it is not JSON and names a field marked sensitive as a field
    /// (`"password": "…"` of JSON written over several lines, `password=…`): its value could not
    /// be found by structure. Prose that mentions a name ("wrong password.") is not refused.
    pub fn clean_unit(&self, unit: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if !crate::request::looks_like_json(unit)
            && let Some(name) = self.sensitive_named_in(unit)
        {
            return Err(Unreadable::Keyed(name.to_string()));
        }
        self.clean(unit)
    }

    /// The first field marked sensitive that `text` names as a field (`Sensitive::named_in`).
    pub fn sensitive_named_in(&self, text: &[u8]) -> Option<&str> {
        self.sensitive.named_in(text)
    }

    /// A text (a header value, an event's field) as the client may have it: the credential
    /// replaced, the detectors' findings masked; `None` when nothing had to change.
    pub fn clean_text(&self, text: &[u8]) -> Option<Vec<u8>> {
        let scrubbed = self.on_wire.scrub(text);
        self.mask_text(scrubbed.as_deref().unwrap_or(text)).or(scrubbed)
    }

    /// The body masked, or `None` when nothing in it had to change. A body is read as JSON when
    /// it is JSON, whatever type it is declared (a client would read it so).
    ///
    /// The detectors run once over the whole body, so that what a string means in its place
    /// counts (`"password": "hunter2…"` is a credential; `"hunter2…"` alone is not), and each
    /// finding is masked inside the string or number it lies in, keeping the JSON well formed.
    fn mask(&self, body: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if !crate::request::looks_like_json(body) {
            return Ok(self.mask_text(body));
        }
        let content = self.content();
        let mut hits = Vec::new();
        if let Some(content) = &content {
            content.scanner.scan(body, &mut hits);
        }
        let escapes = memchr::memchr(b'\\', body).is_some();
        let by_key = self.sensitive.may_apply(body, escapes);
        let mut tokens = Tokens {
            body,
            content,
            hits,
            next_hit: 0,
            edits: Edits::default(),
            findings: Vec::new(),
            scratch: Vec::new(),
            alike: Vec::new(),
        };
        if !by_key && !escapes {
            // Without escapes every quote opens or closes a string and a string's text is its
            // bytes: the findings are placed without reading the document, unless one crosses
            // a token's end (then the walk below splits it between the tokens it touches).
            if tokens.hits.is_empty() {
                return Ok(None);
            }
            if tokens.place_by_quotes() {
                return Ok(tokens.apply());
            }
            tokens.edits.clear();
            tokens.next_hit = 0;
        }
        let mut walk = JsonWalk { tokens, sensitive: &self.sensitive, path: Vec::new() };
        let mut jiter = jiter::Jiter::new(body);
        let walked = jiter
            .peek()
            .map_err(|e| e.to_string())
            .and_then(|peek| walk.value(&mut jiter, peek, None, 0))
            .and_then(|()| jiter.finish().map_err(|e| e.to_string()));
        match walked {
            Ok(()) => Ok(walk.tokens.apply()),
            // Not JSON after all: the detectors find what they find in it as text; but keys
            // marked sensitive cannot be found in what cannot be read.
            Err(why) if by_key => Err(Unreadable::Json(why)),
            Err(_) => Ok(self.mask_text(body)),
        }
    }

    fn mask_text(&self, text: &[u8]) -> Option<Vec<u8>> {
        self.content()?.mask_line(text, &mut Vec::new())
    }
}

/// A body sluice cannot mask, so does not pass on.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// It starts as JSON but cannot be read as JSON, and keys are marked sensitive.
    #[error("the response looks like JSON but cannot be read as JSON ({0}), so its sensitive keys cannot be found")]
    Json(String),
    /// It is UTF-16 or UTF-32 text, in which the detectors would find nothing.
    #[error(
        "the response is {0} text, which sluice's detectors cannot read (they read text that keeps ASCII as ASCII, as UTF-8 does)"
    )]
    Wide(&'static str),
    /// It is not JSON and names a field marked sensitive.
    #[error(
        "the response is not JSON and names {0:?}, a field marked sensitive, whose value sluice finds only in JSON"
    )]
    Keyed(String),
    /// It is an archive, a compressed file or a PDF, and the connection masks.
    #[error("the response is a {0}: sluice does not open it to read the text inside, so cannot mask it")]
    Packed(&'static str),
}

/// JSON nested deeper than this is not walked (and so not passed on where keys are sensitive).
const MAX_DEPTH: usize = 128;

/// The findings of a JSON body's detectors placed in its tokens: each string or number a finding
/// touches is masked where the finding lies in it. Tokens come in order.
struct Tokens<'a> {
    body: &'a [u8],
    content: Option<ContentMasker<'a>>,
    /// What the detectors found in the whole body, in order.
    hits: Vec<Finding>,
    next_hit: usize,
    edits: Edits,
    findings: Vec<Finding>,
    /// A replacement as rendered, before it is escaped into `edits`.
    scratch: Vec<u8>,
    /// Per detector whose replacements are all alike, its replacement escaped, once rendered.
    alike: Vec<Option<Vec<u8>>>,
}

/// Spans of a body to replace, in order, with what replaces them: one buffer for all of them,
/// since a large body may have hundreds.
#[derive(Default)]
struct Edits {
    /// Start and end in the body, and where the replacement ends in `text` (it starts where
    /// the one before ended).
    spans: Vec<(usize, usize, usize)>,
    text: Vec<u8>,
}

impl Edits {
    /// `start..end` to be replaced by `with`, escaped for a JSON string; `quoted`: as a string
    /// of its own.
    fn push(&mut self, start: usize, end: usize, with: &[u8], quoted: bool) {
        if quoted {
            self.text.push(b'"');
        }
        escape_into(with, &mut self.text);
        if quoted {
            self.text.push(b'"');
        }
        self.spans.push((start, end, self.text.len()));
    }

    /// `start..end` to be replaced by `escaped`, escaped already.
    fn push_escaped(&mut self, start: usize, end: usize, escaped: &[u8]) {
        self.text.extend_from_slice(escaped);
        self.spans.push((start, end, self.text.len()));
    }

    fn clear(&mut self) {
        self.spans.clear();
        self.text.clear();
    }

    /// `body` with the edits made; `None` when there are none.
    fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        if self.spans.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(body.len() + self.text.len());
        let (mut at, mut from) = (0, 0);
        for &(start, end, to) in &self.spans {
            out.extend_from_slice(&body[at..start]);
            out.extend_from_slice(&self.text[from..to]);
            (at, from) = (end, to);
        }
        out.extend_from_slice(&body[at..]);
        Some(out)
    }
}

impl Tokens<'_> {
    /// The findings of a body without escapes placed by counting quotes; `false` when one does
    /// not lie inside one string or number.
    fn place_by_quotes(&mut self) -> bool {
        let body = self.body;
        // Quotes come every few bytes in JSON: they are counted (their parity says whether a
        // finding is inside a string) rather than visited one by one.
        let (mut counted_to, mut inside) = (0, false);
        let mut i = 0;
        while let Some(&hit) = self.hits.get(i) {
            if hit.start > counted_to {
                inside ^= odd_quotes(&body[counted_to..hit.start]);
                counted_to = hit.start;
            }
            let token = if inside {
                let open = memchr::memrchr(b'"', &body[..hit.start]);
                let close = memchr::memchr(b'"', &body[hit.start..]).map(|c| hit.start + c);
                match (open, close) {
                    (Some(open), Some(close)) if hit.end <= close => (open, close + 1),
                    _ => return false,
                }
            } else {
                match number_around(body, hit.start) {
                    Some((start, end)) if hit.end <= end => (start, end),
                    _ => return false,
                }
            };
            while self.hits.get(i).is_some_and(|h| h.start < token.1) {
                if self.hits[i].end > token.1 {
                    return false;
                }
                i += 1;
            }
            // The token's closing quote, if any, is counted: counting resumes after it.
            inside ^= odd_quotes(&body[counted_to..token.1]);
            counted_to = token.1;
            match body[token.0] {
                b'"' => self.string(token.0, token.1),
                _ => self.number(token.0, token.1),
            }
        }
        true
    }

    /// Whether a finding touches `start..end`; passes those that end before it.
    fn touches(&mut self, start: usize, end: usize) -> bool {
        while self.hits.get(self.next_hit).is_some_and(|h| h.end <= start) {
            self.next_hit += 1;
        }
        self.hits.get(self.next_hit).is_some_and(|h| h.start < end)
    }

    /// The findings overlapping `start..end`, cut to it; those that go on past `end` stay for
    /// the next token.
    fn overlapping(&mut self, start: usize, end: usize) -> Vec<Finding> {
        self.touches(start, end);
        self.cut_to(start, end)
    }

    /// `overlapping`, once `touches` passed those before `start`.
    fn cut_to(&self, start: usize, end: usize) -> Vec<Finding> {
        self.hits[self.next_hit..]
            .iter()
            .take_while(|h| h.start < end)
            .map(|h| Finding { detector: h.detector, start: h.start.max(start), end: h.end.min(end) })
            .collect()
    }

    /// A string token (with its quotes) at `start..end`.
    fn string(&mut self, start: usize, end: usize) {
        let (inner_start, inner_end) = (start + 1, end.saturating_sub(1).max(start + 1));
        self.touches(inner_start, inner_end);
        let Some(content) = &self.content else { return };
        let inner = &self.body[inner_start..inner_end];
        if memchr::memchr(b'\\', inner).is_none() {
            // Its text is its bytes: each finding is replaced where it lies (read in place: a
            // large body may have hundreds).
            let overlapping = self.hits[self.next_hit..].iter().take_while(|h| h.start < inner_end);
            for hit in overlapping {
                let (from, to) = (hit.start.max(inner_start), hit.end.min(inner_end));
                if content.replaces_alike(hit.detector) {
                    if self.alike.len() <= hit.detector {
                        self.alike.resize(hit.detector + 1, None);
                    }
                    let escaped = self.alike[hit.detector].get_or_insert_with(|| {
                        let mut label = Vec::new();
                        content.replacement(hit.detector, &self.body[from..to], &mut label);
                        let mut escaped = Vec::new();
                        escape_into(&label, &mut escaped);
                        escaped
                    });
                    self.edits.push_escaped(from, to, escaped);
                    continue;
                }
                self.scratch.clear();
                content.replacement(hit.detector, &self.body[from..to], &mut self.scratch);
                self.edits.push(from, to, &self.scratch, false);
            }
            return;
        }
        let found = self.cut_to(inner_start, inner_end);
        // With escapes its text differs from its bytes (`ann\u0040example.com` is an address):
        // read as a JSON reader reads it and scanned again; a finding of the whole body the text
        // alone does not confirm takes the string whole.
        let masked = match string_text(&self.body[start..end]) {
            Ok(text) => content.mask_text(&text, &mut self.findings).map(|m| m.into_bytes()),
            Err(_) => None,
        };
        let masked = masked.or_else(|| {
            found.first().map(|f| {
                let mut label = Vec::new();
                sluice_mask::action::redaction(content.scanner.name(f.detector), &mut label);
                label
            })
        });
        if let Some(masked) = masked {
            self.edits.push(start, end, &masked, true);
        }
    }

    /// A number token at `start..end`: a card or account number sent as a JSON number is still
    /// one, sent on as a string with the finding masked.
    fn number(&mut self, start: usize, end: usize) {
        let found = self.overlapping(start, end);
        let Some(content) = self.content.as_ref().filter(|_| !found.is_empty()) else { return };
        let mut text = Vec::new();
        let mut at = start;
        for f in found {
            text.extend_from_slice(&self.body[at..f.start]);
            content.replacement(f.detector, &self.body[f.start..f.end], &mut text);
            at = f.end;
        }
        text.extend_from_slice(&self.body[at..end]);
        self.edits.push(start, end, &text, true);
    }

    /// The body with the edits made; `None` when there are none.
    fn apply(self) -> Option<Vec<u8>> {
        self.edits.apply(self.body)
    }
}

/// The number token around `at`, if `at` is in one.
fn number_around(body: &[u8], at: usize) -> Option<(usize, usize)> {
    let numeric = |c: &u8| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E');
    if !body.get(at).is_some_and(numeric) {
        return None;
    }
    let start = body[..at].iter().rposition(|c| !numeric(c)).map_or(0, |i| i + 1);
    let end = body[at..].iter().position(|c| !numeric(c)).map_or(body.len(), |i| at + i);
    Some((start, end))
}

/// Whether `bytes` holds an odd number of `"`, eight bytes at a time.
fn odd_quotes(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut words = bytes.chunks_exact(8);
    // Only the parity counts, and the parity of a sum of bit counts is that of their XOR: the
    // marks are XORed together and counted once.
    let mut marks = 0u64;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ (ONES * u64::from(b'"'));
        // A byte of `x` is zero (a quote) exactly when its high bit stays clear here; no carry
        // crosses bytes, so each quote is marked exactly once.
        marks ^= !(((x & LOW7) + LOW7) | x | LOW7);
    }
    let rest = words.remainder().iter().filter(|&&b| b == b'"').count() as u32;
    (marks.count_ones() + rest) % 2 == 1
}

/// One JSON body walked token by token, without building it, where keys or pointers are marked
/// sensitive or strings have escapes: values under a sensitive key or pointer are replaced
/// whole, every string and number a finding touches (or that has escapes) is masked. The body
/// goes out as it came, but for the tokens replaced.
struct JsonWalk<'a> {
    tokens: Tokens<'a>,
    sensitive: &'a Sensitive,
    /// The keys and indexes down to the value being walked, when pointers are set.
    path: Vec<String>,
}

impl JsonWalk<'_> {
    /// Walks the value `jiter` is at; `replace`: the label to replace it whole with.
    fn value(
        &mut self,
        jiter: &mut jiter::Jiter,
        peek: Peek,
        replace: Option<&str>,
        depth: usize,
    ) -> Result<(), String> {
        let start = jiter.current_index();
        if let Some(label) = replace {
            jiter.known_skip(peek).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            sluice_mask::action::redaction(label, &mut out);
            self.tokens.edits.push(start, jiter.current_index(), &out, true);
            return Ok(());
        }
        if matches!(peek, Peek::Array | Peek::Object) && depth >= MAX_DEPTH {
            return Err("it is nested too deeply".into());
        }
        match peek {
            Peek::String => {
                jiter.known_skip(peek).map_err(|e| e.to_string())?;
                self.token(start, jiter.current_index());
            }
            Peek::Array => {
                let mut next = jiter.known_array().map_err(|e| e.to_string())?;
                let mut index = 0usize;
                while let Some(peek) = next {
                    let label = match self.sensitive.pointers.is_empty() {
                        true => None,
                        false => Some(index.to_string()),
                    };
                    if let Some(label) = &label {
                        self.path.push(label.clone());
                    }
                    let replace = label.as_deref().filter(|_| self.pointer_here());
                    self.value(jiter, peek, replace, depth + 1)?;
                    if label.is_some() {
                        self.path.pop();
                    }
                    next = jiter.array_step().map_err(|e| e.to_string())?;
                    index += 1;
                }
            }
            Peek::Object => {
                let body = self.tokens.body;
                // Keys as their bytes in the body (read as text only where they have escapes).
                let span_of = |raw: &[u8]| -> Result<(usize, usize), String> {
                    let at = (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
                    match at >= 1 && at + raw.len() < body.len() {
                        true => Ok((at - 1, at + raw.len() + 1)),
                        false => Err("a key is not where it was read".into()),
                    }
                };
                let mut key = jiter.next_object_bytes().map_err(|e| e.to_string())?.map(span_of).transpose()?;
                while let Some((key_start, key_end)) = key {
                    // Keys can carry personal data too (an e-mail address as a key).
                    self.token(key_start, key_end);
                    let keep_path = !self.sensitive.pointers.is_empty();
                    let sensitive = match keep_path || !self.sensitive.keys.is_empty() {
                        true => {
                            let name = string_text(&body[key_start..key_end])?;
                            if keep_path {
                                self.path.push(name.to_string());
                            }
                            let by_key = self.sensitive.keys.iter().any(|k| k.eq_ignore_ascii_case(&name));
                            (by_key || (keep_path && self.pointer_here())).then(|| name.into_owned())
                        }
                        false => None,
                    };
                    let peek = jiter.peek().map_err(|e| e.to_string())?;
                    self.value(jiter, peek, sensitive.as_deref(), depth + 1)?;
                    if keep_path {
                        self.path.pop();
                    }
                    key = jiter.next_key_bytes().map_err(|e| e.to_string())?.map(span_of).transpose()?;
                }
            }
            _ if peek.is_num() => {
                jiter.known_skip(peek).map_err(|e| e.to_string())?;
                self.tokens.number(start, jiter.current_index());
            }
            _ => jiter.known_skip(peek).map_err(|e| e.to_string())?,
        }
        Ok(())
    }

    /// A string token (a value or a key) at `start..end`, masked if a finding touches it or it
    /// has escapes (which may spell what the whole body's scan could not see).
    fn token(&mut self, start: usize, end: usize) {
        let t = &mut self.tokens;
        if t.touches(start, end) || memchr::memchr(b'\\', &t.body[start..end]).is_some() {
            t.string(start, end);
        }
    }

    fn pointer_here(&self) -> bool {
        let path = &self.path;
        self.sensitive
            .pointers
            .iter()
            .any(|p| p.len() == path.len() && p.iter().zip(path).all(|(token, step)| token == "*" || token == step))
    }
}

/// The text of a JSON string token (with its quotes), as a JSON reader reads it.
fn string_text(token: &[u8]) -> Result<std::borrow::Cow<'_, str>, String> {
    let inner = token.get(1..token.len().saturating_sub(1)).unwrap_or_default();
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).map(std::borrow::Cow::Borrowed).map_err(|e| e.to_string());
    }
    let mut reader = jiter::Jiter::new(token);
    reader.next_str().map(|s| std::borrow::Cow::Owned(s.to_string())).map_err(|e| e.to_string())
}

/// Appends `text` as the inside of a JSON string: quotes, backslashes and control characters
/// escaped.
fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    if !text.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\') {
        out.extend_from_slice(text);
        return;
    }
    for &c in text {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            0..0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;
    use sluice_mask::{MaskingSpec, TokenKey};

    fn masker(keys: &[&str], pointers: &[&[&str]], detectors: bool) -> BodyMasker {
        let sensitive = Sensitive::new(
            keys.iter().map(|k| k.to_string()).collect(),
            pointers.iter().map(|p| p.iter().map(|t| t.to_string()).collect()).collect(),
        );
        let masking = detectors.then(|| {
            let masking = Arc::new(sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([5; 32])).unwrap());
            masking.for_session(&Identity { name: "a".into(), groups: vec![], credential_id: "t".into() }, "c")
        });
        BodyMasker::new(masking, Arc::new(sensitive), Arc::default())
    }

    fn clean(masker: &BodyMasker, body: &str) -> Option<String> {
        masker.clean(body.as_bytes()).unwrap().map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_body_that_is_not_json_names_a_sensitive_field_as_a_field_not_in_prose() {
        let sensitive = Sensitive::new(vec!["password".into()], Vec::new());
        for body in [
            &b"<user><password>x</password></user>"[..],
            b"id,Password\n1,x",
            b"password: x",
            b"a=1&password=x",
            b"password = x",
            b"| id | password |",
            b"<password >x</password >",
        ] {
            assert_eq!(sensitive.named_in(body), Some("password"), "{}", String::from_utf8_lossy(body));
        }
        for body in [&b"invalid password."[..], b"wrong password for ann", b"user_password,x", b"passwords: 3"] {
            assert_eq!(sensitive.named_in(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_form_keeps_its_sensitive_values_out_of_the_record() {
        let sensitive = Sensitive::new(vec!["password".into()], Vec::new());
        let masked = sensitive.mask_form(b"user=ann&Password=hunter2&x=a+b").unwrap();
        assert_eq!(String::from_utf8(masked).unwrap(), "user=ann&Password=%5Bredacted%3APassword%5D&x=a+b");
        assert_eq!(sensitive.mask_form(b"user=ann"), None);
        let nested = sensitive.mask_form(b"user%5Bpassword%5D=hunter2&u.password=x").unwrap();
        assert!(!String::from_utf8(nested).unwrap().contains("hunter2"));
        assert_eq!(sensitive.mask_form(br#"{"password":"x"}"#), None);
        assert!(sensitive.names_field("PASSWORD") && !sensitive.names_field("user"));
        let by_pointer =
            Sensitive::new(Vec::new(), vec![vec!["data".into(), "users".into(), "*".into(), "ssn".into()]]);
        assert!(by_pointer.names_field("users") && by_pointer.names_field("ssn") && !by_pointer.names_field("*"));
    }

    #[test]
    fn quotes_are_counted_in_every_position_and_length() {
        let text = r#"{"a":"x\"y","b":[1,"2"],"€":""}"#.as_bytes();
        for start in 0..text.len() {
            for end in start..=text.len() {
                let naive = text[start..end].iter().filter(|&&b| b == b'"').count() % 2 == 1;
                assert_eq!(odd_quotes(&text[start..end]), naive, "{start}..{end}");
            }
        }
    }

    #[test]
    fn sensitive_keys_and_pointers_are_masked_whatever_they_hold() {
        let keys_only = masker(&["password"], &[], false);
        let masker = masker(&["password"], &[&["data", "*", "card"]], false);
        let body =
            r#"{"user":{"Password":{"old":"a","new":"b"},"name":"x"},"data":[{"card":1234,"id":1}],"card":"kept"}"#;
        assert_eq!(
            clean(&masker, body).unwrap(),
            r#"{"user":{"Password":"[redacted:Password]","name":"x"},"data":[{"card":"[redacted:card]","id":1}],"card":"kept"}"#
        );
        assert_eq!(clean(&masker, r#"{"a":1}"#), None);
        // Declared or not, JSON is walked; what is not JSON is left to the detectors.
        assert_eq!(clean(&masker, " [{\"password\": 1}]").unwrap(), " [{\"password\": \"[redacted:password]\"}]");
        assert_eq!(clean(&masker, "password: 1"), None);
        // What starts as JSON but is not (nested too deeply, or with more after it) cannot be
        // searched for its sensitive keys: it is not passed on where one may be in it (its name
        // is there, or escapes could spell it).
        let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(200), "]".repeat(200));
        assert!(masker.clean(deep(r#"{"PassWord":1}"#).as_bytes()).is_err());
        assert!(masker.clean(deep(r#"{"p\u0061ssword":1}"#).as_bytes()).is_err());
        assert!(masker.clean(br#"{"a":1} {"password":"x"}"#).is_err());
        assert_eq!(keys_only.clean(deep(r#"{"user":1}"#).as_bytes()).unwrap(), None);
        assert!(keys_only.clean(deep(r#"{"PassWord":1}"#).as_bytes()).is_err());
        // Escapes spelling a sensitive key are read.
        assert_eq!(clean(&masker, r#"{"p\u0061ssword":"x"}"#).unwrap(), r#"{"p\u0061ssword":"[redacted:password]"}"#);
    }

    #[test]
    fn what_a_value_means_in_its_place_counts() {
        let masker = masker(&[], &[], true);
        // A credential is known by the name it is assigned to: the value alone would not be.
        let body = r#"{"password": "hunter2secretX9", "user": "bob", "dsn": "postgres://bob:s3cretpassw0rd@db/x"}"#;
        assert_eq!(
            clean(&masker, body).unwrap(),
            r#"{"password": "[redacted:credential]", "user": "bob", "dsn": "postgres://bob:[redacted:credential]@db/x"}"#
        );
        // The same with escapes elsewhere in the body (so that it is walked, not placed by quotes).
        let walked = body.replace(r#""bob""#, r#""b\u006fb""#);
        assert_eq!(
            clean(&masker, &walked).unwrap(),
            r#"{"password": "[redacted:credential]", "user": "b\u006fb", "dsn": "postgres://bob:[redacted:credential]@db/x"}"#
        );
    }

    #[test]
    fn findings_placed_by_quotes_match_the_walk() {
        let plain = masker(&[], &[], true);
        // A pointer that matches nothing makes every body walked.
        let walking = masker(&[], &[&["nothing", "here"]], true);
        let bodies = [
            r#"{"customers":[{"id":1,"email":"a1@example.com","note":"call +1 415 555 0100"},{"id":2,"email":"b@ex.org"}]}"#,
            r#"[4111111111111111, "4111 1111 1111 1111", {"ssn": "123-45-6789", "x": -4111111111111111e0}]"#,
            r#"{"k": "AKIAIOSFODNN7EXAMPLE and sk_live_abcdefghijklmnopqrstu", "carol@example.com": [true, null]}"#,
            r#"{"token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "t": "xoxb-123456789012-abcdefghijkl"}"#,
        ];
        for body in bodies {
            assert_eq!(clean(&plain, body), clean(&walking, body), "{body}");
        }
        assert!(clean(&plain, bodies[0]).unwrap().contains(r#""email":"[redacted:email]""#));
        // What is not JSON after all is masked all the same.
        for body in [r#"{"a": "x", "unterminated": "carol@example.com"#, r#"{"a": "x"} trailing carol@example.com"#] {
            assert!(clean(&plain, body).unwrap().contains("[redacted:email]"), "{body}");
        }
    }

    #[test]
    fn a_finding_across_tokens_is_masked_in_each() {
        let masker = masker(&[], &[], true);
        let body = br#"{"a": "left", "b": "right", "n": 12}"#;
        let content = masker.content().unwrap();
        // One finding from inside "left" to inside "right", another from there into the number.
        let at = |s: &str| body.windows(s.len()).position(|w| w == s.as_bytes()).unwrap();
        let hits = vec![
            Finding { detector: 0, start: at("eft"), end: at("ght") },
            Finding { detector: 1, start: at("ht\""), end: at("2}") },
        ];
        let mut tokens = Tokens {
            body,
            content: Some(content),
            hits,
            next_hit: 0,
            edits: Edits::default(),
            findings: vec![],
            scratch: vec![],
            alike: vec![],
        };
        assert!(!tokens.place_by_quotes());
        tokens.edits.clear();
        tokens.next_hit = 0;
        let mut walk = JsonWalk { tokens, sensitive: &Sensitive::default(), path: vec![] };
        let mut jiter = jiter::Jiter::new(body);
        let peek = jiter.peek().unwrap();
        walk.value(&mut jiter, peek, None, 0).unwrap();
        let out = String::from_utf8(walk.tokens.apply().unwrap()).unwrap();
        let (a, b) = (masker.content().unwrap().scanner.name(0).to_string(), masker.content().unwrap().scanner.name(1));
        assert_eq!(
            out,
            format!(
                r#"{{"a": "l[redacted:{a}]", "[redacted:{a}]": "[redacted:{a}]g[redacted:{b}]", "[redacted:{b}]": "[redacted:{b}]2"}}"#
            )
        );
    }

    #[test]
    fn strings_keys_and_numbers_are_read_as_a_json_reader_reads_them() {
        let masker = masker(&[], &[], true);
        // Escapes are read: an address spelled with \u0040 is still one, and so is a key.
        let body = r#"{"a":"ann\u0040example.com","bob@example.com":1,"n":4111111111111111,"s":"fine \"quoted\""}"#;
        assert_eq!(
            clean(&masker, body).unwrap(),
            r#"{"a":"[redacted:email]","[redacted:email]":1,"n":"[redacted:credit-card]","s":"fine \"quoted\""}"#
        );
        // The body goes out as it came (spacing, key order, duplicates) but for what was masked.
        let body = "{ \"x\" : [ 1, 2 ],\n  \"x\": \"mail carol@example.com\" }";
        assert_eq!(clean(&masker, body).unwrap(), "{ \"x\" : [ 1, 2 ],\n  \"x\": \"mail [redacted:email]\" }");
        assert_eq!(clean(&masker, r#"{"plain": "nothing here", "n": 42}"#), None);
        // A text that is not JSON is scanned as text.
        assert_eq!(clean(&masker, "{not json carol@example.com").unwrap(), "{not json [redacted:email]");
    }
}
