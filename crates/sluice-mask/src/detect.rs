//! Content detectors: one aho-corasick pass finds anchors (digits, `@`, key prefixes such as
//! `AKIA` or `-----BEGIN `), each anchor is confirmed by an anchored regex-automata search or a
//! small scanner, and validators (Luhn, SSN rules, IBAN mod-97) drop what only looks right.

use crate::encoded;
use crate::escapes;
use crate::unreadable;
use crate::validate;
use aho_corasick::{AhoCorasick, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};
use std::fmt;

/// The detectors sluice ships. Each has a stable kebab-case name used in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    CreditCard,
    Ssn,
    Email,
    Phone,
    Iban,
    AwsAccessKey,
    GithubToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    OpenaiKey,
    Jwt,
    PrivateKey,
    Credential,
}

impl Builtin {
    pub const ALL: [Builtin; 14] = [
        Builtin::CreditCard,
        Builtin::Ssn,
        Builtin::Email,
        Builtin::Phone,
        Builtin::Iban,
        Builtin::AwsAccessKey,
        Builtin::GithubToken,
        Builtin::SlackToken,
        Builtin::StripeKey,
        Builtin::GoogleApiKey,
        Builtin::OpenaiKey,
        Builtin::Jwt,
        Builtin::PrivateKey,
        Builtin::Credential,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::CreditCard => "credit-card",
            Builtin::Ssn => "ssn",
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Iban => "iban",
            Builtin::AwsAccessKey => "aws-access-key",
            Builtin::GithubToken => "github-token",
            Builtin::SlackToken => "slack-token",
            Builtin::StripeKey => "stripe-key",
            Builtin::GoogleApiKey => "google-api-key",
            Builtin::OpenaiKey => "openai-key",
            Builtin::Jwt => "jwt",
            Builtin::PrivateKey => "private-key",
            Builtin::Credential => "credential",
        }
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// What the detector looks for, for `sluice mask test` and the docs.
    pub fn describe(self) -> &'static str {
        match self {
            Builtin::CreditCard => "payment card numbers, 13–19 digits with spaces or dashes, Luhn-checked",
            Builtin::Ssn => "US social security numbers written 123-45-6789 or 123 45 6789, SSA validity rules",
            Builtin::Email => "email addresses",
            Builtin::Phone => "phone numbers: +country forms and North American (555) 123-4567 / 555-123-4567",
            Builtin::Iban => "IBANs, with or without spaces, country length and mod-97 checked",
            Builtin::AwsAccessKey => "AWS access key ids (AKIA…, ASIA…, A3T…: 16 more letters or digits)",
            Builtin::GithubToken => "GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
            Builtin::SlackToken => "Slack tokens (xoxb-, xoxp-, xapp-…) and webhook, workflow and trigger URLs",
            Builtin::StripeKey => "Stripe secret and restricted keys (sk_live_, rk_live_, sk_test_, sk_prod_…)",
            Builtin::GoogleApiKey => "Google API keys (AIza…)",
            Builtin::OpenaiKey => "sk-… API keys (OpenAI, Anthropic and the like)",
            Builtin::Jwt => "JSON Web Tokens (eyJ….eyJ….signature)",
            Builtin::PrivateKey => "PEM private keys, from BEGIN to END",
            Builtin::Credential => {
                "credentials assigned in text (password=…, secret: …, api_key = \"…\", token => …; the value only, \
                 when it is 8+ characters of enough entropy) and passwords in URLs (scheme://user:password@host)"
            }
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One detector as configured: a built-in or an operator's regular expression.
#[derive(Clone, Debug)]
pub enum DetectorKind {
    Builtin(Builtin),
    Custom(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    #[error("detector {name:?}: invalid pattern: {message}")]
    Pattern { name: String, message: String },
    #[error("detector {name:?} matches the empty string; it would mask nothing or everything")]
    EmptyMatch { name: String },
}

/// A detected span of a value: `detector` indexes the list the scanner was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub detector: usize,
    pub start: usize,
    pub end: usize,
}

/// Each byte of a word one, and each byte's high bit: for reading eight bytes at a time.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGH: u64 = 0x8080_8080_8080_8080;

/// Finds the next digit or `@` eight bytes at a time: most text has neither for long stretches,
/// and where it has them (numbers in log lines and JSON) there is no per-match restart cost.
#[derive(Clone, Copy, Debug)]
struct Triggers {
    /// `HIGH` when digits start something, else 0; the same for `@`.
    digits: u64,
    at: u64,
}

impl Triggers {
    fn any(self) -> bool {
        self.digits | self.at != 0
    }

    /// The high bit of each byte of `w` that is a trigger. Only the lowest set bit is exact (the
    /// subtraction can borrow into higher bytes), which is the only one used.
    fn mask(self, w: u64) -> u64 {
        let digit = w ^ (ONES * 0x30);
        let digits = digit.wrapping_sub(ONES * 10) & !digit & self.digits;
        let at = w ^ (ONES * u64::from(b'@'));
        let ats = at.wrapping_sub(ONES) & !at & self.at;
        digits | ats
    }

    fn is_trigger(self, b: u8) -> bool {
        (b.is_ascii_digit() && self.digits != 0) || (b == b'@' && self.at != 0)
    }

    fn next(self, hay: &[u8], mut i: usize) -> Option<usize> {
        while let Some(chunk) = hay.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let m = self.mask(w);
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        (i..hay.len()).find(|&k| self.is_trigger(hay[k]))
    }
}

/// The literal prefixes that start a secret, per built-in. Each holds one of `A _ - J /`, which
/// `Scanner::scan` relies on to skip the search (a test checks it).
const TOKEN_ANCHORS: &[(&str, Builtin)] = &[
    ("AKIA", Builtin::AwsAccessKey),
    ("A3T", Builtin::AwsAccessKey),
    ("ASIA", Builtin::AwsAccessKey),
    ("ABIA", Builtin::AwsAccessKey),
    ("ACCA", Builtin::AwsAccessKey),
    ("ghp_", Builtin::GithubToken),
    ("gho_", Builtin::GithubToken),
    ("ghu_", Builtin::GithubToken),
    ("ghs_", Builtin::GithubToken),
    ("ghr_", Builtin::GithubToken),
    ("github_pat_", Builtin::GithubToken),
    ("xoxa-", Builtin::SlackToken),
    ("xoxb-", Builtin::SlackToken),
    ("xoxe-", Builtin::SlackToken),
    ("xoxo-", Builtin::SlackToken),
    ("xoxp-", Builtin::SlackToken),
    ("xoxr-", Builtin::SlackToken),
    ("xoxs-", Builtin::SlackToken),
    ("xapp-", Builtin::SlackToken),
    ("hooks.slack.com/services/", Builtin::SlackToken),
    ("hooks.slack.com/workflows/", Builtin::SlackToken),
    ("hooks.slack.com/triggers/", Builtin::SlackToken),
    ("sk_live_", Builtin::StripeKey),
    ("sk_test_", Builtin::StripeKey),
    ("rk_live_", Builtin::StripeKey),
    ("rk_test_", Builtin::StripeKey),
    ("sk_prod_", Builtin::StripeKey),
    ("rk_prod_", Builtin::StripeKey),
    ("AIza", Builtin::GoogleApiKey),
    ("sk-", Builtin::OpenaiKey),
    ("eyJ", Builtin::Jwt),
    ("-----BEGIN ", Builtin::PrivateKey),
];

/// Words that name a credential in an assignment (`db_password = …`), matched case-insensitively
/// anywhere in the name before the separator.
const CREDENTIAL_KEYWORDS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"passphrase",
    b"pwd",
    b"secret",
    b"token",
    b"apikey",
    b"api_key",
    b"api-key",
    b"access_key",
    b"accesskey",
    b"auth_key",
    b"authkey",
    b"credential",
    b"private_key",
];

/// The credentials assigned at separators `seps` (in order; a superset of those that hold one).
fn credentials_at(hay: &[u8], seps: impl Iterator<Item = usize>, detector: usize, out: &mut Vec<Finding>) {
    let mut pos = 0;
    for sep in seps {
        if sep < pos {
            continue;
        }
        let found = if hay[sep..].starts_with(b"://") {
            url_password(hay, sep + 3)
        } else if names_credential(hay, sep) || crate::siblings::named_beside(hay, sep) {
            assigned_value(hay, sep)
        } else {
            None
        };
        if let Some((start, end)) = found {
            out.push(Finding { detector, start, end });
            pos = end;
        }
    }
}

/// The key whose value a sibling may name (`{"name": "DB_PASSWORD", "value": …}`), searched for
/// with the keywords, last.
const VALUE_KEY: &[u8] = b"value";

/// Values at least this long are searched for the credential keywords first; shorter ones are
/// read at every separator (the search's start costs more than reading a few names).
const KEYWORD_SEARCH_FROM: usize = 512;

/// The longest name before a separator that is read for a keyword.
const MAX_CREDENTIAL_NAME: usize = 64;

/// The whole shape of each key, matched anchored at its prefix. ASCII classes only.
fn token_pattern(b: Builtin) -> Option<&'static str> {
    Some(match b {
        Builtin::AwsAccessKey => r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
        Builtin::GithubToken => r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,255}",
        Builtin::SlackToken => {
            r"xox[abeoprs]-[A-Za-z0-9-]{10,250}|xapp-[A-Za-z0-9-]{10,250}|hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+]{20,200}"
        }
        Builtin::StripeKey => r"[rs]k_(?:live|test|prod)_[A-Za-z0-9]{10,247}",
        Builtin::GoogleApiKey => r"AIza[0-9A-Za-z_-]{35}",
        Builtin::OpenaiKey => r"sk-[A-Za-z0-9_-]{20,250}",
        Builtin::Jwt => r"eyJ[A-Za-z0-9_/+-]{2,}\.eyJ[A-Za-z0-9_/+-]{2,}\.[A-Za-z0-9_/+=-]*",
        Builtin::PrivateKey => r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        _ => return None,
    })
}

/// Finds sensitive spans in bytes. Built once from the configuration, shared by every session.
pub struct Scanner {
    names: Vec<String>,
    /// Index of each enabled built-in in `names`.
    builtin: [Option<usize>; Builtin::ALL.len()],
    /// Key prefixes (`AKIA`, `ghp_`, `-----BEGIN `…); pattern `i` starts built-in `anchor_kinds[i]`.
    anchors: Option<AhoCorasick>,
    anchor_kinds: Vec<Builtin>,
    /// The credential keywords (lower case): where a name may be assigned a credential; and
    /// `value`, a key whose sibling may name it (`siblings`).
    keywords: AhoCorasick,
    scheme_end: memchr::memmem::Finder<'static>,
    /// Which single bytes start a number or an email address, for the word-at-a-time pass.
    triggers: Triggers,
    token_regexes: Vec<(Builtin, Regex)>,
    /// All custom patterns as one multi-pattern regex; pattern `i` is detector `custom_ids[i]`.
    custom: Option<Regex>,
    custom_ids: Vec<usize>,
    /// The shortest span any detector can report: shorter values are never scanned.
    min_len: usize,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner").field("detectors", &self.names).finish()
    }
}

impl Scanner {
    pub fn new(detectors: &[(String, DetectorKind)]) -> Result<Scanner, ScannerError> {
        let mut builtin = [None; Builtin::ALL.len()];
        let mut custom_patterns = Vec::new();
        let mut custom_ids = Vec::new();
        let mut min_len = usize::MAX;
        for (i, (name, kind)) in detectors.iter().enumerate() {
            match kind {
                DetectorKind::Builtin(b) => {
                    builtin[*b as usize] = Some(i);
                    min_len = min_len.min(min_span(*b));
                }
                DetectorKind::Custom(pattern) => {
                    let re = Regex::new(pattern)
                        .map_err(|e| ScannerError::Pattern { name: name.clone(), message: e.to_string() })?;
                    if re.is_match("") {
                        return Err(ScannerError::EmptyMatch { name: name.clone() });
                    }
                    custom_patterns.push(pattern.as_str());
                    custom_ids.push(i);
                    min_len = 1;
                }
            }
        }
        let on = |b: Builtin| builtin[b as usize].is_some();
        let mut literals: Vec<&str> = Vec::new();
        let mut anchor_kinds = Vec::new();
        for &(literal, b) in TOKEN_ANCHORS {
            if on(b) {
                literals.push(literal);
                anchor_kinds.push(b);
            }
        }
        let mut token_regexes = Vec::new();
        for b in Builtin::ALL {
            if let (true, Some(pattern)) = (on(b), token_pattern(b)) {
                let re = Regex::new(pattern).expect("built-in patterns compile");
                token_regexes.push((b, re));
            }
        }
        let anchors = (!literals.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(&literals)
                .expect("built-in anchors compile")
        });
        let keywords = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(CREDENTIAL_KEYWORDS.iter().chain([&VALUE_KEY]))
            .expect("credential keywords compile");
        let numbers = [Builtin::CreditCard, Builtin::Ssn, Builtin::Phone, Builtin::Iban].into_iter().any(on);
        let triggers =
            Triggers { digits: if numbers { HIGH } else { 0 }, at: if on(Builtin::Email) { HIGH } else { 0 } };
        let custom = if custom_patterns.is_empty() {
            None
        } else {
            Some(
                Regex::new_many(&custom_patterns)
                    .map_err(|e| ScannerError::Pattern { name: "custom detectors".into(), message: e.to_string() })?,
            )
        };
        Ok(Scanner {
            names: detectors.iter().map(|(n, _)| n.clone()).collect(),
            builtin,
            anchors,
            anchor_kinds,
            keywords,
            scheme_end: memchr::memmem::Finder::new(b"://").into_owned(),
            triggers,
            token_regexes,
            custom,
            custom_ids,
            min_len,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, detector: usize) -> &str {
        if detector == self.unreadable() {
            return "unreadable-content";
        }
        self.names.get(detector).map_or("?", String::as_str)
    }

    /// The detector of findings that are content the detectors cannot read, carried where they
    /// read (base64 of a gzip file or of UTF-16 text): one past the configured ones, so that it
    /// has no action of its own (it is redacted, or NULL where a value can be).
    pub fn unreadable(&self) -> usize {
        self.names.len()
    }

    /// Appends the sensitive spans of `hay` to `out`, sorted and merged where they overlap:
    /// those in it as it is, those in what its escapes spell (`ann%40example.com`), and its
    /// base64 runs that carry one (or content the detectors cannot read).
    pub fn scan(&self, hay: &[u8], out: &mut Vec<Finding>) {
        let first = out.len();
        if hay.len() < self.min_len {
            return;
        }
        self.scan_as_is(hay, out);
        self.scan_escaped(hay, out);
        self.scan_encoded(hay, out);
        normalize(&mut out[first..]);
        merge_from(out, first);
    }

    /// The findings in what the escapes of `hay` spell, decoded up to `escapes::LEVELS` times
    /// around each escape, each as the escaped bytes it was read from. A finding that reaches
    /// the edge of the part read does not count unless that is the edge of `hay`: the edge may
    /// have cut a value into one that looks like something else.
    fn scan_escaped(&self, hay: &[u8], out: &mut Vec<Finding>) {
        let mut found = Vec::new();
        escapes::readings(hay, |reading| {
            found.clear();
            self.scan_as_is(reading.text, &mut found);
            self.scan_encoded(reading.text, &mut found);
            for f in &found {
                let (from, mut to) = reading.source(f.start, f.end);
                if from == reading.start && reading.start != 0 {
                    continue;
                }
                if to == reading.end && reading.end != hay.len() {
                    // A private key runs to its end marker, which may lie past what was read.
                    if self.id(Builtin::PrivateKey) != Some(f.detector) {
                        continue;
                    }
                    to = private_key_end(hay, to);
                }
                out.push(Finding { detector: f.detector, start: from, end: to });
            }
        });
    }

    /// Each run of base64 whose content holds a finding, whole (a part of a run cannot be masked
    /// alone): text with a finding, or content the detectors cannot read (an archive, UTF-16
    /// text), as `unreadable()`.
    fn scan_encoded(&self, hay: &[u8], out: &mut Vec<Finding>) {
        let mut found = Vec::new();
        for (start, end) in encoded::runs(hay) {
            for content in encoded::readings(&hay[start..end]) {
                // Short content that begins like a packed format is more likely an identifier.
                let unread = || unreadable::packed(&content).or_else(|| unreadable::wide(&content));
                if content.len() >= MIN_PACKED && unread().is_some() {
                    out.push(Finding { detector: self.unreadable(), start, end });
                    break;
                }
                if !encoded::reads_as_text(&content) {
                    continue;
                }
                found.clear();
                self.scan_as_is(&content, &mut found);
                if let Some(f) = found.iter().min_by_key(|f| f.start) {
                    out.push(Finding { detector: f.detector, start, end });
                    break;
                }
            }
        }
    }

    /// The findings in `hay` read as it is, unsorted.
    fn scan_as_is(&self, hay: &[u8], out: &mut Vec<Finding>) {
        // The built-in detectors read a space and the end of a value alike, and padding holds
        // nothing they find: they skip trailing blanks, so a blank char(n) value costs next to nothing.
        let text = without_trailing_blanks(hay);
        if text.len() >= self.min_len {
            self.scan_builtin(text, out);
        }
        if let Some(custom) = &self.custom {
            for m in custom.find_iter(hay) {
                if m.is_empty() {
                    continue;
                }
                let detector = self.custom_ids[m.pattern().as_usize()];
                out.push(Finding { detector, start: m.start(), end: m.end() });
            }
        }
    }

    fn scan_builtin(&self, hay: &[u8], out: &mut Vec<Finding>) {
        // Every key prefix holds one of these bytes; most values hold none and skip the search.
        let maybe_key =
            || memchr::memchr3(b'A', b'_', b'-', hay).is_some() || memchr::memchr2(b'J', b'/', hay).is_some();
        if let Some(ac) = self.anchors.as_ref().filter(|_| maybe_key()) {
            let mut pos = 0;
            while let Some(m) = ac.find(aho_corasick::Input::new(hay).span(pos..hay.len())) {
                let resume = self.token(hay, m.start(), self.anchor_kinds[m.pattern().as_usize()], out);
                pos = resume.max(m.end());
            }
        }
        if self.id(Builtin::Credential).is_some() {
            self.credentials(hay, out);
        }
        if self.triggers.any() {
            let mut pos = 0;
            while let Some(at) = self.triggers.next(hay, pos) {
                pos = if hay[at] == b'@' { self.email(hay, at, out) } else { self.digits(hay, at, out) };
            }
        }
    }

    fn id(&self, b: Builtin) -> Option<usize> {
        self.builtin[b as usize]
    }

    fn token(&self, hay: &[u8], at: usize, b: Builtin, out: &mut Vec<Finding>) -> usize {
        let Some(detector) = self.id(b) else { return at + 1 };
        let standalone = b == Builtin::PrivateKey || b == Builtin::SlackToken && hay[at] == b'h';
        if !standalone && at > 0 && is_word(hay[at - 1]) {
            return at + 1;
        }
        let Some((_, re)) = self.token_regexes.iter().find(|(t, _)| *t == b) else { return at + 1 };
        let Some(m) = re.search(&Input::new(hay).range(at..).anchored(Anchored::Yes)) else { return at + 1 };
        let mut end = m.end();
        if b == Builtin::PrivateKey {
            end = private_key_end(hay, end);
        } else if hay.get(end).is_some_and(|&c| c.is_ascii_alphanumeric()) {
            // The key's alphabet continues: a longer identifier, not this kind of key.
            return end;
        }
        out.push(Finding { detector, start: at, end });
        end
    }

    /// Values assigned to a credential's name, and passwords in URLs: read at the separators
    /// (`=`, `:`) that may end a name holding a keyword, and at each `://`.
    fn credentials(&self, hay: &[u8], out: &mut Vec<Finding>) {
        let Some(detector) = self.id(Builtin::Credential) else { return };
        // A short value is read at every separator; a long one (JSON, configuration: a
        // separator every few bytes, keywords seldom) only where a keyword's name ends.
        if hay.len() < KEYWORD_SEARCH_FROM {
            credentials_at(hay, memchr::memchr2_iter(b'=', b':', hay), detector, out);
        } else {
            credentials_at(hay, self.keyword_separators(hay).into_iter(), detector, out);
        }
    }

    /// In order, each `://` and each separator a name holding a keyword ends at (past a closing
    /// quote and blanks, as `names_credential` reads back): every separator `names_credential`
    /// may accept, found with one search for the keywords.
    fn keyword_separators(&self, hay: &[u8]) -> Vec<usize> {
        let mut seps: Vec<usize> = self.scheme_end.find_iter(hay).collect();
        // Searched in a lower-case copy: a search that ignores case is several times slower.
        let lower = hay.to_ascii_lowercase();
        let mut at = 0;
        while let Some(m) = self.keywords.find(aho_corasick::Input::new(&lower).span(at..hay.len())) {
            // Every place a keyword starts (one may begin inside another).
            at = m.start() + 1;
            let name_end = m.end() + hay[m.end()..].iter().take_while(|&&c| NAME[c as usize]).count();
            // `value` counts as a whole name only.
            let value_key = m.pattern().as_usize() == CREDENTIAL_KEYWORDS.len();
            if value_key && (name_end != m.end() || m.start() > 0 && NAME[hay[m.start() - 1] as usize]) {
                continue;
            }
            let mut i = name_end;
            if matches!(hay.get(i), Some(b'"' | b'\'')) {
                i += 1;
            }
            i += hay[i..].iter().take(3).take_while(|&&c| matches!(c, b' ' | b'\t')).count();
            if matches!(hay.get(i), Some(b'=' | b':')) {
                seps.push(i);
            }
        }
        seps.sort_unstable();
        seps.dedup();
        seps
    }

    /// `local@domain.tld` around an `@`; the local part and the domain may be written in
    /// letters of any script (`josé@exämple.com`, `用户@例子.中国`), and the top-level domain
    /// in its ASCII form (`xn--p1ai`).
    fn email(&self, hay: &[u8], at: usize, out: &mut Vec<Finding>) -> usize {
        let Some(detector) = self.id(Builtin::Email) else { return at + 1 };
        let local = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
        let mut start = at;
        while start > 0 && at - start < 64 {
            if local(hay[start - 1]) {
                start -= 1;
            } else if let Some(from) = letter_before(hay, start) {
                start = from;
            } else {
                break;
            }
        }
        while start < at && hay[start] == b'.' {
            start += 1;
        }
        if start == at || hay[at - 1] == b'.' {
            return at + 1;
        }
        // Domain: labels of letters, digits and inner hyphens; at least two; a top-level domain
        // of letters.
        let mut end = at + 1;
        let mut labels = 0;
        let mut last_label = (end, end);
        loop {
            let label_start = end;
            while end - label_start < 63 {
                if end < hay.len() && (hay[end].is_ascii_alphanumeric() || hay[end] == b'-') {
                    end += 1;
                } else if let Some(next) = letter_at(hay, end) {
                    end = next;
                } else {
                    break;
                }
            }
            if end == label_start || hay[label_start] == b'-' || hay[end - 1] == b'-' {
                break;
            }
            labels += 1;
            last_label = (label_start, end);
            if end + 1 < hay.len()
                && hay[end] == b'.'
                && (hay[end + 1].is_ascii_alphanumeric() || letter_at(hay, end + 1).is_some())
            {
                end += 1;
            } else {
                break;
            }
        }
        let tld = &hay[last_label.0..last_label.1];
        let letters = |t: &[u8]| t.len() >= 2 && t.iter().all(|&b| b.is_ascii_alphabetic() || b >= 0x80);
        let ascii_form = |t: &[u8]| t.len() > 4 && t[..4].eq_ignore_ascii_case(b"xn--");
        if labels < 2 || !(letters(tld) || ascii_form(tld)) {
            return at + 1;
        }
        out.push(Finding { detector, start, end: last_label.1 });
        last_label.1
    }

    /// Numbers written in groups: card numbers, SSNs, phone numbers, and IBANs (whose check digits
    /// follow the country letters). Returns where the run of groups ends.
    fn digits(&self, hay: &[u8], start: usize, out: &mut Vec<Finding>) -> usize {
        // Two capital letters right before the digits are the rarest condition: tested first.
        if start >= 2
            && hay[start - 1].is_ascii_uppercase()
            && let Some(detector) = self.id(Builtin::Iban)
        {
            let word_start = start == 2 || !is_word(hay[start - 3]);
            if word_start
                && hay[start - 2].is_ascii_uppercase()
                && let Some(end) = iban_at(hay, start - 2)
            {
                out.push(Finding { detector, start: start - 2, end });
                return end;
            }
        }
        let before = start.checked_sub(1).map(|i| hay[i]);
        let after_digit = start >= 2 && hay[start - 2].is_ascii_digit();
        let run = digit_run(hay, start);
        let decimals = before == Some(b'.') && after_digit;
        let thousands = before == Some(b',') && after_digit && run == 3;
        if before.is_some_and(is_word) || decimals || thousands {
            // Inside a word or a number (`3.14159…`, `1,234,567`): skip this run of digits only.
            return start + run;
        }
        let (end, digits, groups) = Groups::extent(hay, start, run);
        // One group without a `+` before it can only be a card number.
        let fewest = if groups == 1 && before != Some(b'+') { 13 } else { MIN_DIGITS };
        if digits < fewest {
            return end;
        }
        let groups = Groups::read(hay, start);
        let after = hay.get(end).copied();
        let after_next = hay.get(end + 1).copied();
        // A decimal point after the digits makes them part of a larger number; a comma does not
        // (it separates CSV fields and list items as often as thousands).
        let ends_cleanly =
            !after.is_some_and(|c| is_word(c) || (c == b'.' && after_next.is_some_and(|d| d.is_ascii_digit())));
        if !ends_cleanly {
            return end;
        }
        let n = groups.len;
        // Digits before group k, so a window's count is one subtraction.
        let mut digits_before = [0usize; MAX_GROUPS + 1];
        for k in 0..n {
            digits_before[k + 1] = digits_before[k] + groups.spans[k].1 - groups.spans[k].0;
        }
        let mut i = 0;
        'windows: while i < n {
            let last = n.min(i + MAX_WINDOW);
            for j in (i..last).rev() {
                let digits = digits_before[j + 1] - digits_before[i];
                if !(MIN_DIGITS..=19).contains(&digits) {
                    continue;
                }
                if let Some(finding) = self.window(hay, &groups, i, j, digits) {
                    out.push(finding);
                    i = j + 1;
                    continue 'windows;
                }
            }
            i += 1;
        }
        end
    }

    /// Tries the detectors on groups `i..=j`, longest windows first.
    fn window(&self, hay: &[u8], g: &Groups, i: usize, j: usize, digits: usize) -> Option<Finding> {
        let len = |k: usize| g.spans[k].1 - g.spans[k].0;
        let seps = &g.seps[i..j];
        let same_sep = seps.windows(2).all(|w| w[0] == w[1]);
        let span = (g.spans[i].0, g.spans[j].1);
        let plus_before = i == 0 && span.0 > 0 && hay[span.0 - 1] == b'+';
        if let Some(detector) = self.id(Builtin::Phone) {
            if plus_before && (8..=15).contains(&digits) && seps.iter().all(|&s| s != b')') && same_sep {
                return Some(Finding { detector, start: span.0 - 1, end: span.1 });
            }
            if j == i + 2 && len(i) == 3 && len(i + 1) == 3 && len(i + 2) == 4 {
                let area_ok = matches!(hay[g.spans[i].0], b'2'..=b'9') && matches!(hay[g.spans[i + 1].0], b'2'..=b'9');
                let paren = seps[0] == b')' && matches!(seps[1], b' ' | b'-' | b'.');
                if area_ok && paren {
                    return Some(Finding { detector, start: span.0 - 1, end: span.1 });
                }
                if area_ok && same_sep && matches!(seps[0], b' ' | b'-' | b'.') && !plus_before {
                    return Some(Finding { detector, start: span.0, end: span.1 });
                }
            }
        }
        if let Some(detector) = self.id(Builtin::Ssn)
            && j == i + 2
            && len(i) == 3
            && len(i + 1) == 2
            && len(i + 2) == 4
            && same_sep
            && matches!(seps[0], b'-' | b' ')
        {
            let part = |k: usize| &hay[g.spans[k].0..g.spans[k].1];
            if validate::ssn(part(i), part(i + 1), part(i + 2)) {
                return Some(Finding { detector, start: span.0, end: span.1 });
            }
        }
        if let Some(detector) = self.id(Builtin::CreditCard) {
            let grouped = i == j
                || (same_sep
                    && matches!(seps[0], b' ' | b'-')
                    && (i..j).all(|k| (3..=6).contains(&len(k)))
                    && (1..=6).contains(&len(j)));
            if grouped && (13..=19).contains(&digits) {
                let mut buf = [0u8; 19];
                let mut n = 0;
                for k in i..=j {
                    for &d in &hay[g.spans[k].0..g.spans[k].1] {
                        buf[n] = d;
                        n += 1;
                    }
                }
                if validate::card(&buf[..n]) {
                    return Some(Finding { detector, start: span.0, end: span.1 });
                }
            }
        }
        None
    }
}

/// The fewest digits any number detector reports (a `+` phone number).
const MIN_DIGITS: usize = 8;
/// The most digit groups one finding may span (`+1 555 123 4567`, `4111 1111 1111 1111 111`).
const MAX_WINDOW: usize = 6;
/// Groups read at once; a longer run is read in several calls.
const MAX_GROUPS: usize = 12;

/// Runs of digits separated by one space, dash or dot (or `) ` after a parenthesised area code).
struct Groups {
    spans: [(usize, usize); MAX_GROUPS],
    /// `seps[k]` lies between group `k` and `k + 1`; `)` stands for a closing parenthesis.
    seps: [u8; MAX_GROUPS],
    len: usize,
}

impl Groups {
    /// Where the groups `read` would return end, how many digits and groups, without keeping
    /// them: most numbers are too short to be anything, and this is all they cost.
    /// `first` is the length of the first run of digits, which the caller has read already.
    fn extent(hay: &[u8], start: usize, first: usize) -> (usize, usize, usize) {
        let (mut i, mut digits, mut groups) = (start, 0, 0);
        let mut run = first;
        loop {
            i += run;
            digits += run;
            groups += 1;
            match separator(hay, start, i, groups) {
                Some((_, skip)) if groups < MAX_GROUPS => i += skip,
                _ => return (i, digits, groups),
            }
            run = digit_run(hay, i);
        }
    }

    fn read(hay: &[u8], start: usize) -> Groups {
        let mut g = Groups { spans: [(0, 0); MAX_GROUPS], seps: [0; MAX_GROUPS], len: 0 };
        let mut i = start;
        loop {
            let run = digit_run(hay, i);
            g.spans[g.len] = (i, i + run);
            i += run;
            g.len += 1;
            match separator(hay, start, i, g.len) {
                Some((sep, skip)) if g.len < MAX_GROUPS => {
                    g.seps[g.len - 1] = sep;
                    i += skip;
                }
                _ => return g,
            }
        }
    }
}

/// The separator at `i` after group number `groups` of a run that began at `start`, and how many
/// bytes it takes, when another group follows it.
fn separator(hay: &[u8], start: usize, i: usize, groups: usize) -> Option<(u8, usize)> {
    let digit_at = |k: usize| hay.get(k).is_some_and(u8::is_ascii_digit);
    match hay.get(i).copied() {
        Some(sep @ (b' ' | b'-' | b'.')) if digit_at(i + 1) => Some((sep, 1)),
        Some(b')') if groups == 1 && start > 0 && hay[start - 1] == b'(' => {
            let skip = if matches!(hay.get(i + 1), Some(b' ' | b'-')) { 2 } else { 1 };
            digit_at(i + skip).then_some((b')', skip))
        }
        _ => None,
    }
}

/// An IBAN starting at `at` (country letters), printed whole or in groups of four.
fn iban_at(hay: &[u8], at: usize) -> Option<usize> {
    let expected = validate::iban_length(&hay[at..at + 2])?;
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut i = at;
    while n < expected {
        let c = *hay.get(i)?;
        if c.is_ascii_digit() || c.is_ascii_uppercase() {
            chars[n] = c;
            n += 1;
            i += 1;
        } else if c == b' ' && n % 4 == 0 && n > 0 && hay.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
        } else {
            return None;
        }
    }
    if hay.get(i).is_some_and(|&c| is_word(c)) || !validate::iban(&chars[..n]) {
        return None;
    }
    Some(i)
}

/// The shortest value each built-in can match, so short values skip scanning.
fn min_span(b: Builtin) -> usize {
    match b {
        Builtin::Credential => 8,
        Builtin::Email => 6,
        Builtin::Phone => 9,
        Builtin::Ssn => 11,
        Builtin::CreditCard => 13,
        Builtin::Iban => 15,
        Builtin::Jwt => 15,
        _ => 20,
    }
}

/// How many ASCII digits start at `i`, eight bytes at a time.
fn digit_run(hay: &[u8], i: usize) -> usize {
    let mut n = 0;
    while let Some(chunk) = hay.get(i + n..i + n + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // Per byte x = b ^ '0' (0..=9 for a digit): the high bit ends up set exactly when x >= 10,
        // with no carry between bytes ((x & 0x7f) + 0x76 < 0x100).
        let x = w ^ (ONES * 0x30);
        let not_digit = (((x & !HIGH) + ONES * 0x76) | x) & HIGH;
        if not_digit != 0 {
            return n + (not_digit.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + hay[i + n..].iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Letters, digits and `_`: the bytes a match may not touch on either side.
const WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || b == b'_';
        c += 1;
    }
    table
};

/// The bytes of a name a credential is assigned to: letters, digits, `_`, `-` and `.`.
pub(crate) const NAME: [bool; 256] = {
    let mut table = WORD;
    table[b'-' as usize] = true;
    table[b'.' as usize] = true;
    table
};

/// Where the letter or digit of another script that ends just before `i` starts, if one does.
fn letter_before(hay: &[u8], i: usize) -> Option<usize> {
    let from = (i.saturating_sub(4)..i).rev().find(|&k| hay[k] >= 0xC0)?;
    let (c, width) = escapes::char_at(hay, from)?;
    (width == i - from && c.is_alphanumeric()).then_some(from)
}

/// Where the letter or digit of another script that starts at `i` ends, if one does.
fn letter_at(hay: &[u8], i: usize) -> Option<usize> {
    let (c, width) = escapes::char_at(hay, i)?;
    c.is_alphanumeric().then_some(i + width)
}

fn is_word(c: u8) -> bool {
    WORD[c as usize]
}

/// Whether the name just before the separator at `sep` (past blanks and a closing quote) holds
/// a credential keyword, in any case: `DB_PASSWORD =`, `"client_secret":`, `auth-token:`.
pub(crate) fn names_credential(hay: &[u8], sep: usize) -> bool {
    let (end, _) = name_end(hay, sep);
    // Read back to the name's start, noting where a keyword's first two letters stand: most
    // names (`"id":`, `"status":` in JSON, where every key has a separator) hold none.
    let mut start = end;
    let mut starts = 0u64;
    while start > 0 && end - start < MAX_CREDENTIAL_NAME {
        let c = hay[start - 1];
        if !NAME[c as usize] {
            break;
        }
        start -= 1;
        if start + 1 < end && starts_keyword(c, hay[start + 1]) {
            starts |= 1 << (start + MAX_CREDENTIAL_NAME - end);
        }
    }
    if starts == 0 || end - start < 3 {
        return false;
    }
    let name = &hay[start..end];
    let offset = start + MAX_CREDENTIAL_NAME - end;
    (0..name.len()).filter(|i| starts >> (i + offset) & 1 == 1).any(|i| {
        CREDENTIAL_KEYWORDS.iter().any(|k| name.get(i..i + k.len()).is_some_and(|w| w.eq_ignore_ascii_case(k)))
    })
}

/// Where the name before the separator at `sep` ends, back past up to three blanks and a
/// closing quote; and that quote, if there is one.
pub(crate) fn name_end(hay: &[u8], sep: usize) -> (usize, Option<u8>) {
    let mut end = sep;
    while end > 0 && sep - end < 3 && matches!(hay[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    match end.checked_sub(1).map(|i| hay[i]) {
        Some(quote @ (b'"' | b'\'')) => (end - 1, Some(quote)),
        _ => (end, None),
    }
}

/// For each byte that may begin a keyword (either case), the letters that follow it in one, a
/// bit per letter; `LETTER` is a byte's bit (0 for what is not a letter): one lookup each.
const KEYWORD_PAIRS: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut k = 0;
    while k < CREDENTIAL_KEYWORDS.len() {
        let word = CREDENTIAL_KEYWORDS[k];
        table[word[0] as usize] |= 1 << (word[1] - b'a');
        table[word[0].to_ascii_uppercase() as usize] |= 1 << (word[1] - b'a');
        k += 1;
    }
    table
};

const LETTER: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut c = 0;
    while c < 26 {
        table[b'a' as usize + c] = 1 << c;
        table[b'A' as usize + c] = 1 << c;
        c += 1;
    }
    table
};

/// Whether the letters `a` and `b`, in any case, begin a credential keyword.
fn starts_keyword(a: u8, b: u8) -> bool {
    KEYWORD_PAIRS[a as usize] & LETTER[b as usize] != 0
}

/// From the separator at `i` (`=`, `:`, `:=`, `=>`; not `==`): an opening quote, then the value —
/// if it looks like a secret.
fn assigned_value(hay: &[u8], mut i: usize) -> Option<(usize, usize)> {
    i += match hay.get(i..)? {
        [b':', b'=', ..] | [b'=', b'>', ..] => 2,
        [b'=', b'=', ..] => return None,
        [b'=' | b':', ..] => 1,
        _ => return None,
    };
    i = skip_blanks(hay, i);
    if matches!(hay.get(i), Some(b'"' | b'\'' | b'`')) {
        i += 1;
    }
    let start = i;
    let stop = |c: u8| {
        c.is_ascii_whitespace()
            || matches!(c, b'"' | b'\'' | b'`' | b';' | b',' | b'&' | b')' | b'}' | b']' | b'<' | b'>')
    };
    while i < hay.len() && !stop(hay[i]) && i - start < 150 {
        i += 1;
    }
    looks_secret(&hay[start..i]).then_some((start, i))
}

/// The password of `scheme://user:password@host` (`i` just after `://`).
fn url_password(hay: &[u8], mut i: usize) -> Option<(usize, usize)> {
    let user_start = i;
    while i < hay.len() && !matches!(hay[i], b':' | b'/' | b'@' | b'?' | b'#') && !hay[i].is_ascii_whitespace() {
        i += 1;
        if i - user_start > 128 {
            return None;
        }
    }
    if i == user_start || hay.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    let start = i;
    while i < hay.len() && !matches!(hay[i], b'/' | b'@' | b'?' | b'#') && !hay[i].is_ascii_whitespace() {
        i += 1;
        if i - start > 256 {
            return None;
        }
    }
    let password = &hay[start..i];
    let placeholder = password.first().is_some_and(|&c| starts_placeholder(c));
    (hay.get(i) == Some(&b'@') && !password.is_empty() && !password.iter().all(u8::is_ascii_digit) && !placeholder)
        .then_some((start, i))
}

/// Whether an assigned value reads as a secret rather than a word, number, date, path, URL or
/// placeholder: 8+ bytes, and either two kinds of character (lower, upper, digit, other) with
/// nearly as much entropy as its length allows (3 bits per byte, or 90% of log2(length) for
/// short ones), or 16+ bytes with 3.5 bits.
fn looks_secret(value: &[u8]) -> bool {
    if value.len() < 8 || starts_placeholder(value[0]) || matches!(value[0], b'/' | b'(') {
        return false;
    }
    if find(value, b"://").is_some() || find(value, b"xxx").is_some() || find(value, b"XXX").is_some() {
        return false;
    }
    // Numbers, dates, times, versions, addresses.
    if value.iter().all(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'.' | b'/' | b'+' | b'T' | b'Z')) {
        return false;
    }
    let mut kinds = [false; 4];
    for &c in value {
        kinds[if c.is_ascii_lowercase() {
            0
        } else if c.is_ascii_uppercase() {
            1
        } else if c.is_ascii_digit() {
            2
        } else {
            3
        }] = true;
    }
    let kinds = kinds.iter().filter(|k| **k).count();
    let bits = entropy(value);
    let enough = 3.0f64.min(0.9 * (value.len() as f64).log2());
    (kinds >= 2 && bits >= enough) || (value.len() >= 16 && bits >= 3.5)
}

/// Whether a value starting with `c` reads as a placeholder or a redaction (`${…}`, `%s`, `{{…}}`,
/// `<…>`, `****`, `[redacted…]`) rather than a secret.
fn starts_placeholder(c: u8) -> bool {
    matches!(c, b'$' | b'%' | b'{' | b'<' | b'*' | b'[')
}

/// Shannon entropy in bits per byte.
fn entropy(value: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in value {
        counts[c as usize] += 1;
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum()
}

fn skip_blanks(hay: &[u8], mut i: usize) -> usize {
    let end = (i + 3).min(hay.len());
    while i < end && matches!(hay[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// The fewest decoded bytes of base64 read as a packed format: a compressed file of anything
/// worth masking is longer, an identifier that happens to begin as one seldom is.
const MIN_PACKED: usize = 24;

/// Where a private key whose header ends at `from` ends: past its end marker's closing dashes;
/// at the end of the value without one.
fn private_key_end(hay: &[u8], from: usize) -> usize {
    find(&hay[from..], b"-----END ")
        .and_then(|i| find(&hay[from + i + 9..], b"-----").map(|j| from + i + 9 + j + 5))
        .unwrap_or(hay.len())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn normalize(findings: &mut [Finding]) {
    findings.sort_unstable_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
}

/// Merges overlapping findings from index `first` on; the earlier one names the merged span.
fn merge_from(out: &mut Vec<Finding>, first: usize) {
    let mut w = first;
    for r in first..out.len() {
        let f = out[r];
        if w > first && f.start < out[w - 1].end {
            out[w - 1].end = out[w - 1].end.max(f.end);
        } else {
            out[w] = f;
            w += 1;
        }
    }
    out.truncate(w);
}

/// `hay` without the spaces at its end, eight at a time.
fn without_trailing_blanks(hay: &[u8]) -> &[u8] {
    let mut end = hay.len();
    while end >= 8 && hay[end - 8..end] == [b' '; 8] {
        end -= 8;
    }
    while end > 0 && hay[end - 1] == b' ' {
        end -= 1;
    }
    &hay[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Scanner {
        let list: Vec<_> = Builtin::ALL.iter().map(|b| (b.name().to_string(), DetectorKind::Builtin(*b))).collect();
        Scanner::new(&list).unwrap()
    }

    fn found(text: &str) -> Vec<(String, String)> {
        let s = all();
        let mut out = Vec::new();
        s.scan(text.as_bytes(), &mut out);
        out.iter().map(|f| (s.name(f.detector).to_string(), text[f.start..f.end].to_string())).collect()
    }

    fn one(text: &str, detector: &str, what: &str) {
        assert_eq!(found(text), vec![(detector.to_string(), what.to_string())], "in {text:?}");
    }

    #[test]
    fn trailing_blanks_change_no_finding() {
        let samples = [
            "card 4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "ssn 123-45-6789",
            "mail jane.doe@example.com",
            "call +1 415 555 0132",
            "key AKIAIOSFODNN7EXAMPLE",
            "token ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "iban DE89 3704 0044 0532 0130 00",
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
            "nothing here",
            "12345678",
            "",
        ];
        for sample in samples {
            for pad in [0, 1, 7, 8, 9, 84] {
                let padded = format!("{sample}{}", " ".repeat(pad));
                assert_eq!(found(&padded), found(sample), "{sample:?} + {pad} spaces");
            }
        }
        assert_eq!(without_trailing_blanks(b"  a b   "), b"  a b");
        assert_eq!(without_trailing_blanks(&[b' '; 84]), b"");
        assert_eq!(without_trailing_blanks(b"x\t "), b"x\t");
    }

    #[test]
    fn digit_runs_are_counted_exactly() {
        let hay = b"x0123456789012345678/9:09/ 8 0a1b";
        for i in 0..hay.len() {
            let slow = hay[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            assert_eq!(digit_run(hay, i), slow, "at {i}");
        }
        let every_byte: Vec<u8> = (0..=255u8).collect();
        for i in 0..every_byte.len() {
            let slow = every_byte[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            assert_eq!(digit_run(&every_byte, i), slow, "at {i}");
        }
    }

    #[test]
    fn finds_each_kind_in_context() {
        one("card 4111 1111 1111 1111 exp 12/28", "credit-card", "4111 1111 1111 1111");
        one("card=4111-1111-1111-1111;", "credit-card", "4111-1111-1111-1111");
        one("amex 3782 822463 10005", "credit-card", "3782 822463 10005");
        one("4111111111111111", "credit-card", "4111111111111111");
        one("Ref 2024 4111 1111 1111 1111", "credit-card", "4111 1111 1111 1111");
        let csv = found("1,Jane,123-45-6789,4111111111111111,x");
        assert_eq!(csv.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(), ["ssn", "credit-card"]);
        one("x,4111111111111111,7", "credit-card", "4111111111111111");
        assert_eq!(found("6789,4111 1111 1111 1111").len(), 1);
        one("ssn: 123-45-6789.", "ssn", "123-45-6789");
        one("SSN 123 45 6789 on file", "ssn", "123 45 6789");
        one("write to jane.doe+x@mail.example.co.uk today", "email", "jane.doe+x@mail.example.co.uk");
        one("call (415) 555-2671", "phone", "(415) 555-2671");
        one("call 415-555-2671 now", "phone", "415-555-2671");
        one("tel +44 20 7946 0958", "phone", "+44 20 7946 0958");
        one("tel:+14155552671", "phone", "+14155552671");
        one("IBAN DE89 3704 0044 0532 0130 00.", "iban", "DE89 3704 0044 0532 0130 00");
        one("iban=GB82WEST12345698765432", "iban", "GB82WEST12345698765432");
        one("key AKIAIOSFODNN7EXAMPLE here", "aws-access-key", "AKIAIOSFODNN7EXAMPLE");
        one(
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github-token",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        );
        one("xoxb-123456789012-abcdefghijkl", "slack-token", "xoxb-123456789012-abcdefghijkl");
        one("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe-key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc");
        one("AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", "google-api-key", "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234");
        one("OPENAI=sk-proj-abcdefghijklmnopqrstuv123", "openai-key", "sk-proj-abcdefghijklmnopqrstuv123");
        one(
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        one(&format!("key: {pem}\nrest"), "private-key", pem);
        one("-----BEGIN PRIVATE KEY-----\nMIIEvQ", "private-key", "-----BEGIN PRIVATE KEY-----\nMIIEvQ");
    }

    #[test]
    fn detectors_are_as_broad_as_the_well_known_rule_sets() {
        one("id AKIA1234567890ABCDEF in text", "aws-access-key", "AKIA1234567890ABCDEF");
        one("id A3TX1234567890ABCDEF", "aws-access-key", "A3TX1234567890ABCDEF");
        one("ASIAY34FZKBOKMUTVV7A", "aws-access-key", "ASIAY34FZKBOKMUTVV7A");
        one(
            "xapp-1-A0123456789-1234567890123-abcdef0123456789",
            "slack-token",
            "xapp-1-A0123456789-1234567890123-abcdef0123456789",
        );
        one("xoxe.xoxp-1-Mi0yLTE3Nzc2MjQ1", "slack-token", "xoxp-1-Mi0yLTE3Nzc2MjQ1");
        let hook = "hooks.slack.com/workflows/T01234567/A0123456789/123456789012345678/abcdefghij";
        one(&format!("https://{hook}"), "slack-token", hook);
        one("sk_prod_0123456789abc", "stripe-key", "sk_prod_0123456789abc");
    }

    /// The separators a long text is read at are found from its keywords: what is found there
    /// is what reading every separator finds.
    #[test]
    fn keyword_separators_find_what_every_separator_finds() {
        let s = all();
        let detector = s.id(Builtin::Credential).unwrap();
        let pieces = [
            "password=Tr0ub4dor&3x",
            "DB_PASSWORD = 'hK9#mQ2$vL7p'",
            "Secret:\t9f8e7d6c5b4a3210ffee",
            r#"{"api_key": "Zx81-Qw7e-Rt6y-Ui5o", "id": 7, "status": "ok"}"#,
            "export AUTH_TOKEN=\"dGhpcyBpcyBhIHRva2Vu\"",
            "client_secret => 'a1B2c3D4e5F6g7H8'",
            "spring.datasource.password:=Sup3rS3cret!",
            "db at postgres://app:s3cr3t-pw@db:5432/shop",
            "X-Api-Key: Zx81Qw7eRt6yUi5o",
            "pwd    =Zx81Qw7eRt6y",
            "'token'   : 'Zx81Qw7eRt6yAb'",
            "my-access.KEY-name: Zx81Qw7eRt6yAb",
            "PassPhraseToken==Zx81Qw7eRt6y",
            "passwordpassword: Zx81Qw7eRt6yCd",
            "token",
            ": = :: ==",
            "note: the password is rotated weekly; secret santa: Dec 20",
            r#"{"name": "DB_PASSWORD", "value": "hK9mQ2vL7pXw"}"#,
            r#"{"Value": "hK9mQ2vL7pXw", "Type": "SecureString", "Name": "/prod/db/password"}"#,
            "- name: API_TOKEN\n  value: Zx81Qw7eRt6yAb\n",
            r#"{"name": "DB_HOST", "value": "db7.internal.example"}"#,
        ];
        let long_name = format!("{}PassPhrase: Zx81Qw7eRt6y {}token: Zx81Qw7eRt6y", "a".repeat(54), "b".repeat(70));
        let mut texts = vec![long_name];
        for (i, _) in pieces.iter().enumerate() {
            // Each piece among the others, in turn first, so every one meets every neighbour.
            let mut text = String::new();
            while text.len() < KEYWORD_SEARCH_FROM * 2 {
                for piece in pieces.iter().cycle().skip(i).take(pieces.len()) {
                    text.push_str(piece);
                    text.push_str(if text.len().is_multiple_of(3) { "\n" } else { " " });
                }
            }
            texts.push(text);
        }
        for text in texts {
            let hay = text.as_bytes();
            let (mut every, mut by_keyword) = (Vec::new(), Vec::new());
            credentials_at(hay, memchr::memchr2_iter(b'=', b':', hay), detector, &mut every);
            credentials_at(hay, s.keyword_separators(hay).into_iter(), detector, &mut by_keyword);
            assert!(!every.is_empty());
            assert_eq!(every, by_keyword, "{text}");
        }
    }

    #[test]
    fn credentials_assigned_in_text() {
        one("password=Tr0ub4dor&3x", "credential", "Tr0ub4dor");
        one("DB_PASSWORD = 'hK9#mQ2$vL7p'", "credential", "hK9#mQ2$vL7p");
        one("secret: 9f8e7d6c5b4a3210ffee", "credential", "9f8e7d6c5b4a3210ffee");
        one(r#"{"api_key": "Zx81-Qw7e-Rt6y-Ui5o"}"#, "credential", "Zx81-Qw7e-Rt6y-Ui5o");
        one("export AUTH_TOKEN=\"dGhpcyBpcyBhIHRva2Vu\"", "credential", "dGhpcyBpcyBhIHRva2Vu");
        one("client_secret => 'a1B2c3D4e5F6g7H8'", "credential", "a1B2c3D4e5F6g7H8");
        one("spring.datasource.password:=Sup3rS3cret!", "credential", "Sup3rS3cret!");
        one("db at postgres://app:s3cr3t-pw@db:5432/shop", "credential", "s3cr3t-pw");
        // A keyword anywhere in the name, in any case, up to the longest name read.
        one("X-Api-Key: Zx81Qw7eRt6yUi5o", "credential", "Zx81Qw7eRt6yUi5o");
        one("pwd=Zx81Qw7eRt6y", "credential", "Zx81Qw7eRt6y");
        let long = format!("{}PassPhrase: Zx81Qw7eRt6y", "a".repeat(54));
        one(&long, "credential", "Zx81Qw7eRt6y");
        assert_eq!(found(&format!("Token{}: Zx81Qw7eRt6y", "a".repeat(60))), vec![], "before the last 64 bytes");
        // With a host that reads as a mail domain, the email detector's wider span covers it.
        let both = found("postgres://app:s3cr3t-pw@db.internal:5432/shop");
        assert!(both.len() == 1 && both[0].1.starts_with("s3cr3t-pw"), "{both:?}");
        let both = found("https://deploy:ghX2aa@git.example.com/repo.git");
        assert!(both.len() == 1 && both[0].1.starts_with("ghX2aa"), "{both:?}");
    }

    #[test]
    fn credentials_named_beside_their_value() {
        // Kubernetes' environment, as JSON and as YAML, one pair or a list.
        one(r#"{"name": "DB_PASSWORD", "value": "hK9mQ2vL7pXw"}"#, "credential", "hK9mQ2vL7pXw");
        one(r#"{"name":"DB_PASSWORD","value":"hK9mQ2vL7pXw"}"#, "credential", "hK9mQ2vL7pXw");
        let env = "env:\n- name: DB_HOST\n  value: db.internal\n- name: DB_PASSWORD\n  value: hK9mQ2vL7pXw\n";
        one(env, "credential", "hK9mQ2vL7pXw");
        one("    - name: API_TOKEN\r\n      value: \"Zx81Qw7eRt6yAb\"\r\n", "credential", "Zx81Qw7eRt6yAb");
        // The value first, and pairs between (AWS's parameters), in any case.
        one(r#"{"value": "hK9mQ2vL7pXw", "name": "smtp_secret"}"#, "credential", "hK9mQ2vL7pXw");
        let ssm = r#"{"Parameter": {"Name": "/prod/db/password", "Type": "SecureString", "Value": "hK9mQ2vL7pXw", "Version": 3}}"#;
        one(ssm, "credential", "hK9mQ2vL7pXw");
        one("- value: hK9mQ2vL7pXw\n  kind: env\n  name: API_KEY\n", "credential", "hK9mQ2vL7pXw");
        // A name with an escaped quote in a string between is still read past.
        one(
            r#"{"name": "api_token", "note": "say \"hi\"", "value": "Zx81Qw7eRt6yAb"}"#,
            "credential",
            "Zx81Qw7eRt6yAb",
        );
        // A value in a long text (read where its key is found, not at every separator).
        let long =
            format!(r#"{{"pad": "{}", "env": [{{"name": "DB_PASSWORD", "value": "hK9mQ2vL7pXw"}}]}}"#, "x".repeat(600));
        one(&long, "credential", "hK9mQ2vL7pXw");
    }

    #[test]
    fn values_beside_other_names_are_left_alone() {
        for text in [
            r#"{"name": "DB_HOST", "value": "db7.internal.example"}"#,
            r#"{"name": "REPLICAS", "value": "Zx81Qw7eRt6yAb"}"#,
            // A sibling in another object, or a key (not a value) that names a credential.
            r#"[{"name": "DB_PASSWORD"}, {"value": "Zx81Qw7eRt6yAb"}]"#,
            r#"{"password_policy": {"min": 8}, "value": "Zx81Qw7eRt6yAb"}"#,
            // YAML: a sibling of another mapping, at another depth.
            "- name: DB_PASSWORD\n- value: Zx81Qw7eRt6yAb\n",
            "name: DB_PASSWORD\nspec:\n  value: Zx81Qw7eRt6yAb\n",
            // Not the key `value`.
            r#"{"name": "DB_PASSWORD", "default_value": "Zx81Qw7eRt6yAb"}"#,
            // Too short to tell, as for `password: hunter2`.
            r#"{"name": "DB_PASSWORD", "value": "hunter2"}"#,
        ] {
            assert_eq!(found(text), vec![], "in {text:?}");
        }
    }

    #[test]
    fn credential_look_alikes_are_left_alone() {
        for text in [
            "password: hunter2",                        // too short to tell
            "the password is stored hashed",            // no assignment
            "password=${DB_PASSWORD}",                  // a placeholder
            "token: undefined",                         // a word
            "tokenizer: wordpiece",                     // a word
            "token_expiry: 2026-11-01T12:00:00Z",       // a timestamp
            "secret_url: https://vault.example.com/v1", // a URL
            "password_file: /etc/sluice/app.pw",        // a path
            "api_key = [redacted:credential]",          // already masked
            "https://example.com:8443/path",            // a port, no user
            "see ftp://anonymous@mirror/",              // a user, no password
            "password = xxxxxxxxxxxx",                  // a placeholder
            "tokens: 1234567890",                       // a number
        ] {
            assert_eq!(found(text), vec![], "in {text:?}");
        }
    }

    #[test]
    fn leaves_look_alikes_alone() {
        for text in [
            "order 1234567812345678",                      // fails Luhn
            "order ORD-2024-000123",                       // order id
            "at 2026-11-24 12:34:56.789+00",               // timestamp
            "id 550e8400-e29b-41d4-a716-446655440000",     // UUID
            "4111111111111112",                            // one digit off
            "000-12-3456 and 666-12-3456 and 123-00-4567", // invalid SSNs
            "version 1.2.3 build 20261124",                // numbers
            "ip 192.168.100.200",                          // address
            "pi 3.14159265358979323846",                   // decimals
            "user@localhost",                              // no TLD
            "hash a3f4111111111111111111aa",               // digits inside a word
            "DE89370400440532013001",                      // IBAN with a bad checksum
            "task-abcdefghijklmnopqrstuvwxyz",             // sk- inside a word
            "AKIA is a prefix",                            // anchor without a key
            "-----BEGIN CERTIFICATE-----",                 // not a private key
            "phone 123-456-7890",                          // area code cannot start with 1
            "amount 1,234,567,890,123.45",                 // money
        ] {
            assert_eq!(found(text), vec![], "in {text:?}");
        }
    }

    #[test]
    fn values_spelled_in_escapes_are_found_as_their_escaped_bytes() {
        one("next=/v1/customers?email=ann%40example.com&page=2", "email", "ann%40example.com");
        one("card=4111%201111%201111%201111", "credit-card", "4111%201111%201111%201111");
        one("twice: ann%2540example.com.", "email", "ann%2540example.com");
        one("<a>ann&#64;example&#x2E;com</a>", "email", "ann&#64;example&#x2E;com");
        one("<td>ann&commat;example&period;com</td>", "email", "ann&commat;example&period;com");
        one(r#"{\"ssn\": \"078\u002d05\u002d1120\"}"#, "ssn", r"078\u002d05\u002d1120");
        one("q=password%3Dhunter2-Zq7vW2xR", "credential", "hunter2-Zq7vW2xR");
        one("/people?ssn=078+05+1120&page=2", "ssn", "078+05+1120");
        one("card=4111+1111+1111+1111", "credit-card", "4111+1111+1111+1111");
        assert!(found("2+2=4, C++ and 1+1").is_empty());
        // What is found as it is stays as found; escapes elsewhere change nothing.
        assert_eq!(
            found("50% of ann@example.com &amp; 4111 1111 1111 1111%20"),
            found("50% of ann@example.com & 4111 1111 1111 1111 ")
        );
        assert!(found("path=%2Fhome%2Fann&x=%20&amp;&#64;").is_empty());
    }

    #[test]
    fn values_shown_through_other_characters_are_found_as_they_show() {
        // grep --color=always, as an agent's command over SSH prints it.
        one("ssn:\x1b[01;31m\x1b[K078-05-1120\x1b[m\x1b[K ok", "ssn", "078-05-1120\x1b[m\x1b[K");
        // man's bold, struck over with backspaces.
        let bold: String = "078-05-1120".chars().map(|c| format!("{c}\x08{c}")).collect();
        one(&format!("SSN: {bold}\n"), "ssn", &bold);
        one("card 4111\u{a0}1111\u{a0}1111\u{a0}1111.", "credit-card", "4111\u{a0}1111\u{a0}1111\u{a0}1111");
        one("card ４１１１ １１１１ １１１１ １１１１.", "credit-card", "４１１１ １１１１ １１１１ １１１１");
        one("رقم ٠٧٨-٠٥-١١٢٠ هنا", "ssn", "٠٧٨-٠٥-١١٢٠");
        one("ssn 078\u{2013}05\u{2013}1120.", "ssn", "078\u{2013}05\u{2013}1120");
        one("mail ann\u{200b}@example\u{ad}.com.", "email", "ann\u{200b}@example\u{ad}.com");
        one("ssn 0\u{332}7\u{332}8\u{332}-05-1120.", "ssn", "0\u{332}7\u{332}8\u{332}-05-1120");
        one("ann&#64example.com", "email", "ann&#64example.com");
        one("mail josé@exämple.com.", "email", "josé@exämple.com");
        one("an jörg.öäü@bücher.de!", "email", "jörg.öäü@bücher.de");
        one("邮箱：用户@例子.中国。", "email", "用户@例子.中国");
        one("to ann@example.xn--p1ai now", "email", "ann@example.xn--p1ai");
        // Text in other scripts and typography, with nothing hidden, finds nothing new.
        assert!(found("Café “naïve” — 3–4 日本語のテキスト ١٢ كلمة").is_empty());
    }

    #[test]
    fn base64_that_carries_a_finding_is_found_whole() {
        // A file as an API returns it (GitHub's contents: wrapped at 60 with JSON's \n).
        let file = "DB_HOST=db.internal\nDB_PASSWORD=Zq7vW2xR9kLm4Tp8\nOWNER=ann@example.com\n";
        let encoded = b64(file);
        let wrapped: Vec<&str> = encoded.as_bytes().chunks(60).map(|l| std::str::from_utf8(l).unwrap()).collect();
        let body = format!(r#"{{"name": ".env", "content": "{}\n", "sha": "e3b0c44298fc1c14"}}"#, wrapped.join("\\n"));
        let findings = found(&body);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].1, wrapped.join("\\n"));
        assert!(found(&b64("nothing to see in this text at all")).is_empty());
    }

    #[test]
    fn base64_is_read_however_it_is_cut_glued_or_escaped() {
        let ssn = b64("id?078-05-1120");
        assert_eq!(ssn, "aWQ/MDc4LTA1LTExMjA=");
        for text in [
            "{\"v\":\"MDc4LTA1LTExMjA=\"}".to_string(),
            "?blob=aWQ%2FMDc4LTA1LTExMjA%3D".to_string(),
            "GET /files/aWQ/MDc4LTA1LTExMjA=".to_string(),
            "ok\\nMDc4LTA1LTExMjA=".to_string(),
            b64_bytes(b"Jos\xe9 078-05-1120"),
            b64_bytes(b"\x1b[31m 078-05-1120\x1b[0m"),
        ] {
            let findings = found(&text);
            assert_eq!(findings.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(), ["ssn"], "{text}: {findings:?}");
        }
        assert!(found("4111&#160;1111&#160;1111&#160;1111").iter().any(|(d, _)| d == "credit-card"));
        one(
            "id=4111%E2%80%891111%E2%80%891111%E2%80%891111",
            "credit-card",
            "4111%E2%80%891111%E2%80%891111%E2%80%891111",
        );
    }

    #[test]
    fn base64_of_what_the_detectors_cannot_read_is_found_whole() {
        let gzip = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(b"ssn,078-05-1120").unwrap();
            e.finish().unwrap()
        };
        let utf16: Vec<u8> = "ssn 078-05-1120".encode_utf16().flat_map(u16::to_le_bytes).collect();
        for content in [gzip, [&b"\xFF\xFE"[..], &utf16].concat()] {
            let text = format!("{{\"content\": \"{}\"}}", b64_bytes(&content));
            let findings = found(&text);
            assert_eq!(findings.len(), 1, "{text}");
            assert_eq!(findings[0].0, "unreadable-content");
        }
        // An identifier that begins as a zlib stream's base64 does is left.
        assert!(found("id eJwAccount2024x").is_empty());
    }

    #[test]
    fn a_private_key_spelled_in_escapes_runs_to_its_end_marker() {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n".repeat(40);
        let key = format!("-----BEGIN&#32;PRIVATE&#32;KEY-----\n{body}-----END PRIVATE KEY-----");
        let text = format!("key: {key} done");
        assert_eq!(found(&text), vec![("private-key".to_string(), key)]);
    }

    fn b64_bytes(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn several_findings_in_one_value_in_order() {
        let f = found(r#"{"email": "a@b.io", "ssn": "123-45-6789", "card": 4111111111111111}"#);
        let names: Vec<_> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["email", "ssn", "credit-card"]);
    }

    #[test]
    fn custom_detectors_and_empty_patterns() {
        let s = Scanner::new(&[("employee-id".into(), DetectorKind::Custom(r"EMP-\d{6}".into()))]).unwrap();
        let mut out = Vec::new();
        s.scan(b"owner EMP-004211, EMP-12", &mut out);
        assert_eq!(out, vec![Finding { detector: 0, start: 6, end: 16 }]);
        assert!(matches!(
            Scanner::new(&[("bad".into(), DetectorKind::Custom("x*".into()))]),
            Err(ScannerError::EmptyMatch { .. })
        ));
        assert!(matches!(
            Scanner::new(&[("bad".into(), DetectorKind::Custom("(".into()))]),
            Err(ScannerError::Pattern { .. })
        ));
    }

    #[test]
    fn every_key_prefix_holds_a_byte_the_prefilter_looks_for() {
        for (literal, _) in TOKEN_ANCHORS {
            assert!(literal.bytes().any(|b| b"A_-J/".contains(&b)), "{literal}");
        }
    }

    #[test]
    fn overlapping_findings_merge() {
        let mut v = vec![
            Finding { detector: 0, start: 5, end: 10 },
            Finding { detector: 1, start: 0, end: 6 },
            Finding { detector: 2, start: 20, end: 22 },
        ];
        normalize(&mut v);
        merge_from(&mut v, 0);
        assert_eq!(v, vec![Finding { detector: 1, start: 0, end: 10 }, Finding { detector: 2, start: 20, end: 22 }]);
    }
}
