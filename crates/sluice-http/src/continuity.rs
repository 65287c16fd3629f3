//! Secrets split across the units of a stream. Each event (or JSON line) is masked on its own as
//! it comes; a stream that sends text in pieces — a language model's tokens, one delta per event
//! — can still spell a card number or a key across several. So each unit, once masked, is held
//! back briefly: the pieces of text that continue one another (a text event's data; the strings
//! at the JSON pointers the connection names, `/choices/*/delta/content` by default) are joined
//! in order, the joined text goes through the detectors, and every piece a finding touches is
//! replaced whole before it leaves. A unit leaves once `WINDOW` bytes of such text came after
//! it, `HOLD` after it came, or when the stream ends. A WebSocket's text messages from the
//! upstream are units the same way.

use crate::mask::BodyMasker;
use jiter::Peek;
use std::collections::VecDeque;
use tokio::time::{Duration, Instant};

/// The longest secret read across units: a unit is held until this much text came after it.
pub const WINDOW: usize = 128;
/// The longest a unit waits for the text after it.
pub const HOLD: Duration = Duration::from_millis(150);
/// JSON nested deeper than this is not read for pieces (it was masked as a unit all the same).
const MAX_DEPTH: usize = 64;

/// One piece of text in a unit's data: which stream of text it continues, where it lies in the
/// data (a JSON string token with its quotes, or the whole text), and its text.
struct Piece {
    stream: String,
    span: (usize, usize),
    text: Vec<u8>,
    json: bool,
    /// What replaces it whole, once a finding across units touched it.
    label: Option<Vec<u8>>,
}

/// A unit masked and waiting.
struct Held {
    /// The unit as it goes to the client, if no piece of it is replaced.
    unit: Vec<u8>,
    /// Its data (an event's data lines joined; a JSON line without its ending).
    data: Vec<u8>,
    pieces: Vec<Piece>,
    arrived: Instant,
}

/// The pointers whose strings continue one another (`*`: any one key or index).
pub type StreamPaths = Vec<Vec<String>>;

/// The units of one stream on their way out.
pub struct Continuity {
    events: bool,
    paths: std::sync::Arc<StreamPaths>,
    held: VecDeque<Held>,
    /// Each stream of text: the end of what was already sent (as it read before any piece was
    /// replaced whole), so that a secret begun there is still found.
    sent: Vec<Sent>,
}

#[derive(Default)]
struct Sent {
    stream: String,
    tail: Vec<u8>,
    /// A finding reached the end of the stream's text so far: it may go on in the next piece (a
    /// private key, a long token), so the tail is kept from where it began, up to `MAX_OPEN`.
    open: bool,
}

/// The most units held: beyond it the first leaves, whatever follows it. Units without text
/// (keep-alive comments, tool-call events) may crowd in behind one that waits; each unit added
/// or sent looks at every unit held, so this keeps the work per unit bounded.
const MAX_HELD: usize = 256;

/// The most text kept for a finding that may still go on (a PEM private key is a few KiB).
const MAX_OPEN: usize = 16 * 1024;

impl Continuity {
    pub fn new(events: bool, paths: std::sync::Arc<StreamPaths>) -> Continuity {
        Continuity { events, paths, held: VecDeque::new(), sent: Vec::new() }
    }

    /// Takes a unit as masked on its own; it waits (with the detectors on) for what follows it.
    pub fn add(&mut self, unit: Vec<u8>, masker: &BodyMasker, now: Instant) {
        let data = if self.events { event_data(&unit) } else { unit[..unit.len() - line_ending(&unit)].to_vec() };
        let pieces = if masker.detects() { self.pieces(&data) } else { Vec::new() };
        let streams: Vec<String> = pieces.iter().map(|p| p.stream.clone()).collect();
        self.held.push_back(Held { unit, data, pieces, arrived: now });
        for stream in dedup(streams) {
            self.read_across(&stream, masker);
        }
    }

    /// The units free to go: those with `WINDOW` bytes of text after them or held for `HOLD`;
    /// with `all`, every one (the stream ended).
    pub fn release(&mut self, now: Instant, all: bool) -> Vec<u8> {
        self.release_units(now, all).concat()
    }

    /// As `release`, each unit on its own (a WebSocket's messages).
    pub fn release_units(&mut self, now: Instant, all: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(front) = self.held.front() {
            // An empty piece counts as a byte: a stream of empty deltas moves the window too.
            let after: usize = self.held.iter().skip(1).flat_map(|h| &h.pieces).map(|p| p.text.len().max(1)).sum();
            let crowded = self.held.len() > MAX_HELD;
            if !(all || crowded || front.pieces.is_empty() || after >= WINDOW || now >= front.arrived + HOLD) {
                break;
            }
            let Some(held) = self.held.pop_front() else { break };
            let mut unit = Vec::new();
            self.send(held, &mut unit);
            out.push(unit);
        }
        out
    }

    /// The bytes of the units held.
    pub fn held_bytes(&self) -> usize {
        self.held.iter().map(|h| h.unit.len()).sum()
    }

    /// When the first unit held must leave.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.arrived + HOLD)
    }

    fn send(&mut self, held: Held, out: &mut Vec<u8>) {
        let Held { unit, data, pieces, .. } = held;
        for piece in &pieces {
            let sent = self.sent_of(&piece.stream);
            sent.tail.extend_from_slice(&piece.text);
            let keep = if sent.open { MAX_OPEN } else { WINDOW };
            let cut = sent.tail.len().saturating_sub(keep);
            sent.tail.drain(..cut);
        }
        if pieces.iter().all(|p| p.label.is_none()) {
            out.extend_from_slice(&unit);
            return;
        }
        let mut replaced = Vec::with_capacity(data.len());
        let mut at = 0;
        for piece in &pieces {
            let Some(label) = &piece.label else { continue };
            replaced.extend_from_slice(&data[at..piece.span.0]);
            if piece.json {
                replaced.push(b'"');
                replaced.extend_from_slice(label);
                replaced.push(b'"');
            } else {
                replaced.extend_from_slice(label);
            }
            at = piece.span.1;
        }
        replaced.extend_from_slice(&data[at..]);
        if self.events {
            with_event_data(&unit, &replaced, out);
        } else {
            out.extend_from_slice(&replaced);
            out.extend_from_slice(&unit[unit.len() - line_ending(&unit)..]);
        }
    }

    /// Joins one stream's text — what was sent of it, then each held piece — and replaces the
    /// held pieces a finding touches.
    fn read_across(&mut self, stream: &str, masker: &BodyMasker) {
        let mut joined = self.sent_of(stream).tail.clone();
        // Where each held piece of the stream lies in `joined`.
        let mut placed = Vec::new();
        for (u, held) in self.held.iter().enumerate() {
            for (p, piece) in held.pieces.iter().enumerate().filter(|(_, p)| p.stream == stream) {
                let start = joined.len();
                // As it read before any piece was replaced whole: a finding is read to its end.
                joined.extend_from_slice(&piece.text);
                placed.push((start, joined.len(), u, p));
            }
        }
        let findings = masker.findings(&joined);
        self.sent_of(stream).open = findings.iter().any(|(_, end, _)| *end == joined.len());
        for (start, end, label) in findings {
            for &(from, to, u, p) in &placed {
                if from < end && start < to {
                    let piece = &mut self.held[u].pieces[p];
                    piece.label.get_or_insert_with(|| label.clone());
                }
            }
        }
    }

    fn sent_of(&mut self, stream: &str) -> &mut Sent {
        let at = match self.sent.iter().position(|s| s.stream == stream) {
            Some(at) => at,
            None => {
                self.sent.push(Sent { stream: stream.to_string(), ..Sent::default() });
                self.sent.len() - 1
            }
        };
        &mut self.sent[at]
    }

    /// The pieces of a unit's data: the strings at the stream's pointers when it is JSON, the
    /// text itself when it is not.
    fn pieces(&self, data: &[u8]) -> Vec<Piece> {
        if data.is_empty() {
            return Vec::new();
        }
        if crate::request::looks_like_json(data) {
            let mut jiter = jiter::Jiter::new(data);
            let mut found = Vec::new();
            let walked = jiter.peek().ok().is_some_and(|peek| {
                let mut walk = Walk { paths: &self.paths, path: Vec::new(), found: &mut found };
                walk.value(&mut jiter, peek, 0).is_some()
            });
            return if walked { found } else { Vec::new() };
        }
        vec![Piece { stream: String::new(), span: (0, data.len()), text: data.to_vec(), json: false, label: None }]
    }
}

/// Collects the strings at the stream's pointers.
struct Walk<'a> {
    paths: &'a StreamPaths,
    path: Vec<String>,
    found: &'a mut Vec<Piece>,
}

impl Walk<'_> {
    fn value(&mut self, jiter: &mut jiter::Jiter, peek: Peek, depth: usize) -> Option<()> {
        match peek {
            Peek::String => {
                let start = jiter.current_index();
                let text = jiter.known_str().ok()?.as_bytes().to_vec();
                if self.here() {
                    let stream = format!("/{}", self.path.join("/"));
                    let span = (start, jiter.current_index());
                    self.found.push(Piece { stream, span, text, json: true, label: None });
                }
            }
            Peek::Array if depth < MAX_DEPTH => {
                let mut next = jiter.known_array().ok()?;
                let mut index = 0usize;
                while let Some(peek) = next {
                    self.path.push(index.to_string());
                    self.value(jiter, peek, depth + 1)?;
                    self.path.pop();
                    next = jiter.array_step().ok()?;
                    index += 1;
                }
            }
            Peek::Object if depth < MAX_DEPTH => {
                let mut key = jiter.known_object().ok()?.map(str::to_owned);
                while let Some(name) = key {
                    self.path.push(name);
                    let peek = jiter.peek().ok()?;
                    self.value(jiter, peek, depth + 1)?;
                    self.path.pop();
                    key = jiter.next_key().ok()?.map(str::to_owned);
                }
            }
            Peek::Array | Peek::Object => return None,
            _ => jiter.known_skip(peek).ok()?,
        }
        Some(())
    }

    fn here(&self) -> bool {
        self.paths.iter().any(|p| {
            p.len() == self.path.len() && p.iter().zip(&self.path).all(|(token, step)| token == "*" || token == step)
        })
    }
}

fn dedup(mut streams: Vec<String>) -> Vec<String> {
    streams.sort();
    streams.dedup();
    streams
}

/// How many bytes of `line`'s end are its line ending.
pub fn line_ending(line: &[u8]) -> usize {
    match line {
        [.., b'\r', b'\n'] => 2,
        [.., b'\n'] => 1,
        _ => 0,
    }
}

/// An event's data lines joined by newlines, as a client reads them.
pub fn event_data(event: &[u8]) -> Vec<u8> {
    let data: Vec<&[u8]> = event
        .split_inclusive(|b| *b == b'\n')
        .filter_map(|line| line[..line.len() - line_ending(line)].strip_prefix(b"data:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value))
        .collect();
    data.join(&b'\n')
}

/// `event` with its data lines replaced by `data` (one line per line of it), where the first was.
pub fn with_event_data(event: &[u8], data: &[u8], out: &mut Vec<u8>) {
    let mut written = false;
    for line in event.split_inclusive(|b| *b == b'\n') {
        let ending = &line[line.len() - line_ending(line)..];
        if !line.starts_with(b"data:") {
            out.extend_from_slice(line);
            continue;
        }
        if !written {
            written = true;
            for value in data.split(|b| *b == b'\n') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(value.strip_suffix(b"\r").unwrap_or(value));
                out.extend_from_slice(if ending.is_empty() { b"\n" } else { ending });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Sensitive;
    use sluice_core::Identity;
    use sluice_mask::{MaskingSpec, TokenKey};
    use std::sync::Arc;

    fn masker() -> BodyMasker {
        let masking = Arc::new(sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([5; 32])).unwrap());
        let session =
            masking.for_session(&Identity { name: "a".into(), groups: vec![], credential_id: "t".into() }, "c");
        BodyMasker::new(Some(session), Arc::new(Sensitive::default()), Arc::default())
    }

    fn paths(pointers: &[&str]) -> Arc<StreamPaths> {
        Arc::new(pointers.iter().map(|p| sluice_core::http::pointer_tokens(p).collect()).collect())
    }

    /// The units through a stream that sees them all at once, then ends.
    fn through(events: bool, pointers: &[&str], units: &[&str]) -> String {
        let (masker, now) = (masker(), Instant::now());
        let mut stream = Continuity::new(events, paths(pointers));
        let mut out = Vec::new();
        for unit in units {
            stream.add(unit.as_bytes().to_vec(), &masker, now);
            out.extend(stream.release(now, false));
        }
        out.extend(stream.release(now, true));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_secret_split_across_text_events_is_masked_in_each() {
        let out = through(false, &[], &[]);
        assert_eq!(out, "");
        let out = through(true, &[], &["data: card 4111 1111\n\n", "data:  1111 1111 thanks\n\n"]);
        assert!(!out.contains("1111"), "{out}");
        assert_eq!(out, "data: [redacted:credit-card]\n\ndata: [redacted:credit-card]\n\n");
    }

    #[test]
    fn a_key_spelled_across_json_deltas_is_masked_in_each_and_the_json_stays_json() {
        let delta = |text: &str| {
            format!("data: {{\"id\":\"c1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
        };
        let units = [delta("Your key is sk-"), delta("proj-Zq7vK2m"), delta("9xWp4LtR8sNb"), delta("."), delta(" Bye")];
        let refs: Vec<&str> = units.iter().map(String::as_str).collect();
        let out = through(true, &["/choices/*/delta/content"], &refs);
        assert!(!out.contains("Zq7vK2m") && !out.contains("9xWp4LtR8sNb"), "{out}");
        let contents: Vec<String> = out
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
                v["choices"][0]["delta"]["content"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(contents[1], "[redacted:openai-key]");
        assert_eq!(contents[2], "[redacted:openai-key]");
        assert_eq!(contents[4], " Bye", "pieces no finding touches go as they came");
    }

    #[test]
    fn tool_call_arguments_and_reasoning_are_joined_by_default() {
        let pointers = crate::target::default_stream_text();
        let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
        let call = |args: &str| {
            format!(
                "data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":\"{args}\"}}}}]}}}}]}}\n\n"
            )
        };
        let thinking = |text: &str| {
            format!(
                "data: {{\"type\":\"content_block_delta\",\"delta\":{{\"type\":\"thinking_delta\",\"thinking\":\"{text}\"}}}}\n\n"
            )
        };
        let partial = |json: &str| {
            format!("data: {{\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{json}\"}}}}\n\n")
        };
        for units in [
            [call("{\\\"card\\\": \\\"4111 1111"), call(" 1111 1111\\\"}")],
            [thinking("the card is 4111 1111"), thinking(" 1111 1111, so")],
            [partial("{\\\"card\\\": \\\"4111 1111"), partial(" 1111 1111\\\"}")],
        ] {
            let refs: Vec<&str> = units.iter().map(String::as_str).collect();
            let out = through(true, &pointers, &refs);
            assert!(!out.contains("1111"), "{out}");
            assert_eq!(out.matches("[redacted:credit-card]").count(), 2, "{out}");
        }
    }

    #[test]
    fn a_private_key_longer_than_the_window_is_masked_to_its_end() {
        let key = format!(
            "Here: -----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\nDone, nothing more to add.",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".repeat(40)
        );
        let pieces: Vec<String> = key.as_bytes().chunks(24).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        let events: Vec<String> = pieces.iter().map(|p| format!("data: {}\n\n", p.replace('\n', " "))).collect();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let out = through(true, &[], &refs);
        assert!(!out.contains("MIIEvQ") && !out.contains("BgkqhkiG9w0BAQ"), "{out}");
        let last = out.rsplit("\n\n").nth(1).unwrap();
        assert_eq!(last, "data: e, nothing more to add.", "what follows the key goes as it came");
    }

    #[test]
    fn strings_at_other_pointers_are_not_joined() {
        // Records, one per line: their ids side by side would read as a card number.
        let units = ["{\"id\":\"41111111\"}\n", "{\"id\":\"11111111\"}\n"];
        assert_eq!(through(false, &["/text"], &units), units.concat());
    }

    #[test]
    fn a_unit_leaves_after_its_hold_or_once_enough_text_follows() {
        let masker = masker();
        let now = Instant::now();
        let mut stream = Continuity::new(true, paths(&[]));
        stream.add(b"data: hello\n\n".to_vec(), &masker, now);
        assert!(stream.release(now, false).is_empty(), "held for what follows");
        assert_eq!(stream.deadline(), Some(now + HOLD));
        assert_eq!(stream.release(now + HOLD, false), b"data: hello\n\n");
        stream.add(b"data: a\n\n".to_vec(), &masker, now);
        stream.add(format!("data: {}\n\n", "x".repeat(WINDOW)).into_bytes(), &masker, now);
        assert_eq!(stream.release(now, false), b"data: a\n\n", "enough text came after it");
        // A unit with no text to join (a comment, an event without data) does not wait.
        let mut stream = Continuity::new(true, paths(&[]));
        stream.add(b": keep-alive\n\n".to_vec(), &masker, now);
        assert_eq!(stream.release(now, false), b": keep-alive\n\n");
    }
}
