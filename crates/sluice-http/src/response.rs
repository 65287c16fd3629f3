//! The upstream's response body on its way to the client: decoded and cleaned (the held
//! credential replaced, the detectors' findings masked), either whole — read up to the cap, then
//! cleaned at once — or, for streams (server-sent events, JSON lines), event by event as they
//! arrive, without holding the whole body. Nothing leaves uncleaned: a body over the cap is
//! refused (or, where the operator chose so, cut), an event over it ends the stream.

use crate::budget::{Budget, Share};
use crate::continuity::{Continuity, StreamPaths, event_data, line_ending, with_event_data};
use crate::decode::{DecodeError, Decoder};
use crate::mask::BodyMasker;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::HeaderMap;
use hyper::body::{Body, Frame, Incoming};
use hyper::header;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;

/// How a response body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Read whole, then cleaned.
    Whole,
    /// Server-sent events: cleaned event by event (the data lines of an event together).
    Events,
    /// JSON lines: cleaned line by line.
    Lines,
}

impl Shape {
    pub fn of(headers: &HeaderMap) -> Shape {
        let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return Shape::Whole;
        };
        match media_type(content_type).as_str() {
            "text/event-stream" => Shape::Events,
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => Shape::Lines,
            _ => Shape::Whole,
        }
    }
}

/// What sluice does with a whole body larger than the cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Oversize {
    /// 502: the client gets none of it.
    #[default]
    Refuse,
    /// The beginning, up to the cap (at a line's end), cleaned; JSON is refused all the same (a
    /// document cut short is not one).
    Truncate,
}

/// Why a body could not be passed on.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the response is larger than {0} bytes, which sluice does not pass on unmasked")]
    TooLarge(usize),
    #[error("a JSON response larger than {0} bytes cannot be cut short (it would not be JSON)")]
    JsonTooLarge(usize),
    #[error("an event of the stream is larger than {0} bytes")]
    EventTooLarge(usize),
    #[error(transparent)]
    Unreadable(#[from] crate::mask::Unreadable),
    #[error("the upstream did not finish its response within {0:?}")]
    Timeout(Duration),
    #[error("the response could not be read: {0}")]
    Read(String),
    #[error(transparent)]
    Busy(#[from] crate::budget::Exhausted),
    #[error(
        "the stream was ended: its session ended (the token was revoked or has expired, or the connection went on with another target or token)"
    )]
    Revoked,
}

/// Whether the session a stream is sent in may go on: `false` once its token is revoked or has
/// expired (or the connection went on with another).
pub type Standing = Box<dyn Fn() -> bool + Send + Sync>;

/// What a stream tells its session (how it ended) and asks of it (whether it may go on), and
/// the listener's budget for what it holds.
pub struct StreamSession {
    pub on_end: OnEnd,
    pub standing: Standing,
    pub budget: Budget,
}

/// How often a stream asks whether its session may go on.
const STANDING_CHECK: Duration = Duration::from_secs(2);

/// How much of a whole body is read, what becomes of more, and for how long.
#[derive(Clone, Copy)]
pub struct WholeLimits {
    pub limit: usize,
    pub oversize: Oversize,
    pub timeout: Duration,
}

/// A Content-Type's media type, lower case, without its parameters (`application/json`).
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Whether a response's media type is binary (an image, a sound, a video, a font, an archive, a
/// PDF, bytes): not a text in which fields are named.
pub fn is_binary_media(content_type: Option<&[u8]>) -> bool {
    let Some(content_type) = content_type else { return false };
    let media = media_type(&String::from_utf8_lossy(content_type));
    let (kind, subtype) = media.split_once('/').unwrap_or((&media, ""));
    matches!(kind, "image" | "audio" | "video" | "font")
        || kind == "application"
            && matches!(
                subtype,
                "octet-stream" | "pdf" | "zip" | "gzip" | "x-tar" | "x-7z-compressed" | "wasm" | "x-bzip2" | "zstd"
            )
}

/// Whether a media type (parameters allowed, any case) is a serialisation that writes field names in a binary form, or leaves
/// them out (CBOR, MessagePack, Smile, BSON, Protocol Buffers, Avro, Ion, Thrift, Cap'n Proto,
/// Parquet, Arrow; spreadsheets and office documents): sluice cannot find a sensitive key's
/// value in it. Spring, ASP.NET and others answer in them when a client asks.
pub fn is_structured_binary(media: &str) -> bool {
    const TYPES: [&str; 30] = [
        "cbor",
        "msgpack",
        "x-msgpack",
        "vnd.msgpack",
        "x-jackson-smile",
        "smile",
        "bson",
        "x-bson",
        "protobuf",
        "x-protobuf",
        "vnd.google.protobuf",
        "x-google-protobuf",
        "avro",
        "avro-binary",
        "x-avro-binary",
        "vnd.apache.avro+binary",
        "ion",
        "x-amz-ion",
        "x-thrift",
        "vnd.apache.thrift.binary",
        "vnd.apache.thrift.compact",
        "capnp",
        "x-capnp",
        "x-parquet",
        "vnd.apache.parquet",
        "vnd.apache.arrow.stream",
        "vnd.apache.arrow.file",
        "vnd.ms-excel",
        "x-hdf5",
        "vnd.sqlite3",
    ];
    // Asked of every response: most media types are lower case already and are not copied.
    let media = media.split(';').next().unwrap_or_default().trim();
    let media = match media.bytes().any(|b| b.is_ascii_uppercase()) {
        true => std::borrow::Cow::Owned(media.to_ascii_lowercase()),
        false => std::borrow::Cow::Borrowed(media),
    };
    let (kind, subtype) = media.split_once('/').unwrap_or((&media, ""));
    media == "avro/binary"
        || kind == "application"
            && (TYPES.contains(&subtype)
                || subtype.starts_with("grpc")
                || ["+cbor", "+msgpack", "+protobuf", "+avro", "+bson"].iter().any(|suffix| subtype.ends_with(suffix))
                || subtype.starts_with("vnd.openxmlformats-officedocument.")
                || subtype.starts_with("vnd.oasis.opendocument."))
}

/// A whole body, cleaned.
pub struct Whole {
    pub body: Bytes,
    /// Set when the body was cut at the cap (`Oversize::Truncate`).
    pub truncated: bool,
}

/// Reads a body whole (decoded, at most `limit` bytes of it) within `timeout`, and cleans it;
/// what it holds meanwhile, and the cleaned body until it is sent, counts in `share`.
pub async fn read_whole(
    mut body: Incoming,
    mut decoder: Decoder,
    masker: &BodyMasker,
    limits: WholeLimits,
    binary: bool,
    mut share: Share,
) -> Result<Whole, BodyError> {
    let WholeLimits { limit, oversize, timeout } = limits;
    // A record's fields are named in text; in an image or an archive a short key's letters may
    // stand anywhere by chance. Binary by its bytes, not only its declared type: a CSV or XML
    // export served as `application/octet-stream` is a document.
    let clean = |body: &[u8]| match binary && std::str::from_utf8(body).is_err() {
        true => masker.clean(body),
        false => masker.clean_document(body),
    };
    // Sized for the body the upstream announces (never more than the cap): no copy as it grows.
    let announced = body.size_hint().exact().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let capacity = announced.min(limit.saturating_add(1));
    share.fit(capacity)?;
    let mut decoded = Vec::with_capacity(capacity);
    // A body sent as it is, in one piece, is kept as it came: not copied unless masked.
    let mut single: Option<Bytes> = None;
    // Whether the body is over the limit.
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(sluice_core::error_chain(&e)))?;
            let Ok(data) = frame.into_data() else { continue };
            if decoder.is_identity() && decoded.is_empty() && single.is_none() && data.len() <= limit {
                share.fit(capacity.max(data.len()))?;
                single = Some(data);
                continue;
            }
            if let Some(first) = single.take() {
                decoded.extend_from_slice(&first);
            }
            match decoder.feed_into(&data, &mut decoded) {
                Ok(()) => {}
                Err(DecodeError::TooLarge(_)) => return Ok(true),
                Err(e) => return Err(BodyError::from(e)),
            }
            share.fit(decoded.capacity())?;
            if decoded.len() > limit {
                return Ok(true);
            }
        }
        match decoder.finish() {
            Ok(out) => decoded.extend_from_slice(&out),
            Err(DecodeError::TooLarge(_)) => return Ok(true),
            Err(e) => return Err(BodyError::from(e)),
        }
        share.fit(decoded.capacity())?;
        Ok(decoded.len() > limit)
    };
    let over = tokio::time::timeout(timeout, read).await.map_err(|_| BodyError::Timeout(timeout))??;
    if let Some(single) = single {
        let body = match clean(&single)? {
            Some(clean) => share.hold(clean),
            None => share.hold(single),
        };
        return Ok(Whole { body, truncated: false });
    }
    let truncated = over && oversize == Oversize::Truncate;
    if over {
        if oversize == Oversize::Refuse {
            return Err(BodyError::TooLarge(limit));
        }
        if crate::request::looks_like_json(&decoded) {
            return Err(BodyError::JsonTooLarge(limit));
        }
        // Cut at a line's end, so that no value (a card number, a key) is cut in two halves
        // that the detectors would not know.
        // Without a line's end to cut at, any cut may halve a value: the body is refused.
        decoded.truncate(limit);
        let Some(last_line_end) = memchr::memrchr(b'\n', &decoded) else { return Err(BodyError::TooLarge(limit)) };
        decoded.truncate(last_line_end + 1);
    }
    let body = match clean(&decoded)? {
        Some(clean) => share.hold(clean),
        None => share.hold(decoded),
    };
    Ok(Whole { body, truncated })
}

/// What becomes of a stream is recorded once, when it ends or the client goes away: the bytes
/// sent and what went wrong.
pub type OnEnd = Box<dyn FnOnce(usize, Option<String>) + Send>;

/// A streamed body, cleaned event by event as the upstream sends it.
pub struct Streamed {
    upstream: Incoming,
    decoder: Decoder,
    units: Units,
    masker: BodyMasker,
    sent: usize,
    done: bool,
    on_end: Option<OnEnd>,
    /// Wakes the stream when a unit held for what follows it must leave.
    timer: Pin<Box<tokio::time::Sleep>>,
    standing: Standing,
    /// Wakes the stream to ask `standing` again, even while the upstream is silent.
    check: Pin<Box<tokio::time::Sleep>>,
    /// What the stream holds (an event not yet complete, events held for what follows them);
    /// each piece passed on takes its part.
    share: Share,
}

impl Streamed {
    pub fn new(
        upstream: Incoming,
        decoder: Decoder,
        shape: Shape,
        masker: BodyMasker,
        limit: usize,
        joined: Arc<StreamPaths>,
        session: StreamSession,
    ) -> Streamed {
        let StreamSession { on_end, standing, budget } = session;
        let events = shape == Shape::Events;
        Streamed {
            upstream,
            decoder,
            units: Units::new(events, limit, joined),
            masker,
            sent: 0,
            done: false,
            on_end: Some(on_end),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            standing,
            check: Box::pin(tokio::time::sleep(STANDING_CHECK)),
            share: budget.share(),
        }
    }

    /// Whether the session may go on, asked every `STANDING_CHECK` (the timer registered again).
    fn may_go_on(&mut self, cx: &mut Context<'_>) -> bool {
        while self.check.as_mut().poll(cx).is_ready() {
            if !(self.standing)() {
                return false;
            }
            self.check.as_mut().reset(tokio::time::Instant::now() + STANDING_CHECK);
        }
        true
    }

    fn end(&mut self, error: Option<String>) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.sent, error);
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        self.end(Some(error.to_string()));
        Poll::Ready(Some(Err(error)))
    }

    /// Passes `out` on (see `piece`).
    fn emit(&mut self, out: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.piece(out) {
            Ok(piece) => {
                self.sent += piece.len();
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            Err(e) => self.fail(e.into()),
        }
    }

    /// `out` as bytes that hold their share of the budget until hyper has written them (a
    /// client that reads slowly keeps what waits for it counted). The share is taken from what
    /// the stream held (`out` was held there), so those bytes are never given back and asked for
    /// again; only what masking added is asked for.
    fn piece(&mut self, out: Vec<u8>) -> Result<Bytes, crate::budget::Exhausted> {
        let mut share = self.share.split(out.len());
        // Shrinking always succeeds.
        let _ = self.share.fit(self.units.held_bytes());
        share.fit(out.len())?;
        Ok(share.hold(out))
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        while !this.done {
            if !this.may_go_on(cx) {
                return this.fail(BodyError::Revoked);
            }
            let polled = Pin::new(&mut this.upstream).poll_frame(cx);
            let Poll::Ready(polled) = polled else {
                // Nothing new: what has waited its time for what follows it leaves now.
                let Some(deadline) = this.units.continuity.deadline() else { return Poll::Pending };
                let due = this.units.continuity.release(Instant::now(), false);
                // Shrinking a share always succeeds.
                let _ = this.share.fit(this.units.held_bytes());
                if !due.is_empty() {
                    return this.emit(due);
                }
                this.timer.as_mut().reset(deadline);
                ready!(this.timer.as_mut().poll(cx));
                continue;
            };
            let out = match polled {
                Some(Ok(frame)) => {
                    // Trailers are not passed on: nothing reads them, and they are not masked.
                    let Ok(data) = frame.into_data() else { continue };
                    match this.decoder.feed(&data) {
                        Ok(decoded) => this.units.push(&decoded, &this.masker),
                        Err(e) => Err(e.into()),
                    }
                }
                Some(Err(e)) => Err(BodyError::Read(sluice_core::error_chain(&e))),
                None => {
                    this.done = true;
                    let rest = this.decoder.finish();
                    let out = rest.map_err(BodyError::from).and_then(|rest| {
                        let mut out = this.units.push(&rest, &this.masker)?;
                        out.extend(this.units.finish(&this.masker)?);
                        Ok(out)
                    });
                    if let Ok(last) = out {
                        let last = match this.piece(last) {
                            Ok(last) => last,
                            Err(e) => return this.fail(e.into()),
                        };
                        // Recorded with the last piece counted, before it goes.
                        this.sent += last.len();
                        this.end(None);
                        return Poll::Ready((!last.is_empty()).then(|| Ok(Frame::data(last))));
                    }
                    out
                }
            };
            let out = out.and_then(|out| {
                this.share.fit(this.units.held_bytes())?;
                Ok(out)
            });
            match out {
                Ok(out) if out.is_empty() => {}
                Ok(out) => return this.emit(out),
                Err(e) => return this.fail(e),
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        self.end(Some(format!("the client went away after {} bytes of the stream", self.sent)));
    }
}

/// Splits a decoded stream into its events (or lines), held until each is complete, cleans each
/// and hands it to `continuity`, which says when it may leave.
struct Units {
    events: bool,
    /// Events: the last byte seen was a CR (read as a line's end), so an LF right after it
    /// belongs to it.
    after_cr: bool,
    /// Events: the stream's first bytes are past (a byte-order mark is dropped only there).
    begun: bool,
    held: Vec<u8>,
    /// Where in `held` the line not yet ended starts (what is before it was looked at).
    resume: usize,
    limit: usize,
    continuity: Continuity,
}

impl Units {
    fn new(events: bool, limit: usize, joined: Arc<StreamPaths>) -> Units {
        Units {
            events,
            after_cr: false,
            begun: false,
            held: Vec::new(),
            resume: 0,
            limit,
            continuity: Continuity::new(events, joined),
        }
    }

    /// Appends decoded bytes to what is held. An event stream's lines end at CR, LF or CRLF and
    /// it may begin with a byte-order mark (as an `EventSource` reads it): a CR alone is written
    /// LF and the mark dropped, so that events and their fields split where a client splits
    /// them. (A CR is held as it came until the next byte says whether an LF follows it.)
    fn take(&mut self, bytes: &[u8]) {
        if !self.events {
            self.held.extend_from_slice(bytes);
            return;
        }
        if !self.after_cr && memchr::memchr(b'\r', bytes).is_none() {
            self.held.extend_from_slice(bytes);
        } else {
            for &b in bytes {
                if self.after_cr && b != b'\n' {
                    self.lone_cr_ends_line();
                }
                self.held.push(b);
                self.after_cr = b == b'\r';
            }
        }
        if !self.begun {
            // Decided once three bytes have come, or fewer that cannot begin a mark.
            const MARK: &[u8] = b"\xEF\xBB\xBF";
            let seen = self.held.len().min(MARK.len());
            if self.held[..seen] != MARK[..seen] {
                self.begun = true;
            } else if seen == MARK.len() {
                self.held.drain(..MARK.len());
                self.begun = true;
            }
        }
    }

    /// The bytes held: an event not yet complete, and events held for what follows them.
    fn held_bytes(&self) -> usize {
        self.held.len() + self.continuity.held_bytes()
    }

    /// The CR last held had no LF after it: it ends its line alone.
    fn lone_cr_ends_line(&mut self) {
        if let Some(last) = self.held.last_mut() {
            *last = b'\n';
        }
        self.after_cr = false;
    }

    /// Takes decoded bytes; returns the cleaned units free to leave. Each byte is looked at once,
    /// however small the pieces an event arrives in.
    fn push(&mut self, bytes: &[u8], masker: &BodyMasker) -> Result<Vec<u8>, BodyError> {
        self.take(bytes);
        let now = Instant::now();
        let mut unit_start = 0;
        let mut line_start = self.resume;
        while let Some(newline) = memchr::memchr(b'\n', &self.held[line_start..]) {
            let newline = line_start + newline;
            let line = &self.held[line_start..newline];
            // A line ends a unit; for events, the empty line after its fields does.
            let ends_unit = !self.events || line.is_empty() || line == b"\r";
            line_start = newline + 1;
            if ends_unit {
                if line_start - unit_start > self.limit {
                    return Err(BodyError::EventTooLarge(self.limit));
                }
                let unit = self.clean_unit(unit_start, line_start, masker)?;
                self.continuity.add(unit, masker, now);
                unit_start = line_start;
            }
        }
        self.held.drain(..unit_start);
        self.resume = self.held.len().min(line_start - unit_start);
        if self.held.len() > self.limit {
            return Err(BodyError::EventTooLarge(self.limit));
        }
        Ok(self.continuity.release(now, false))
    }

    /// What is left when the stream ends: every unit held, and a last one without its terminator.
    fn finish(&mut self, masker: &BodyMasker) -> Result<Vec<u8>, BodyError> {
        let now = Instant::now();
        if self.after_cr {
            self.lone_cr_ends_line();
        }
        if !self.held.is_empty() {
            let unit = self.clean_unit(0, self.held.len(), masker)?;
            self.continuity.add(unit, masker, now);
            self.held.clear();
        }
        self.resume = 0;
        Ok(self.continuity.release(now, true))
    }

    fn clean_unit(&self, start: usize, end: usize, masker: &BodyMasker) -> Result<Vec<u8>, BodyError> {
        let unit = &self.held[start..end];
        let mut out = Vec::with_capacity(unit.len());
        if self.events {
            clean_event(unit, masker, &mut out)?;
            return Ok(out);
        }
        let body_end = unit.len() - line_ending(unit);
        // A JSON text sequence's record separator, or a byte-order mark, before a line's JSON.
        let mark = [&b"\x1e"[..], b"\xEF\xBB\xBF"].into_iter().find(|m| unit.starts_with(m)).map_or(0, <[u8]>::len);
        match masker.clean_unit(&unit[mark..body_end])? {
            Some(clean) => {
                out.extend_from_slice(&unit[..mark]);
                out.extend_from_slice(&clean);
                out.extend_from_slice(&unit[body_end..]);
            }
            None => out.extend_from_slice(unit),
        }
        Ok(out)
    }
}

/// One event: its data lines are one value (joined by newlines, as a client reads them), cleaned
/// as JSON or text and sent as data lines again; its other fields (and comments) as text.
fn clean_event(event: &[u8], masker: &BodyMasker, out: &mut Vec<u8>) -> Result<(), BodyError> {
    let data = event_data(event);
    let clean_data = match data.is_empty() {
        true => None,
        false => masker.clean_unit(&data)?,
    };
    let mut fields = Vec::with_capacity(event.len());
    for line in event.split_inclusive(|b| *b == b'\n') {
        let ending = &line[line.len() - line_ending(line)..];
        let text = &line[..line.len() - ending.len()];
        if text.starts_with(b"data:") {
            fields.extend_from_slice(line);
            continue;
        }
        // A line that is no field of the format (a client reading events skips it; one reading
        // the bytes does not) is held to what a unit is.
        let known = [&b"event:"[..], b"id:", b"retry:", b":"].iter().any(|f| text.starts_with(f));
        if !known && let Some(name) = masker.sensitive_named_in(text) {
            return Err(crate::mask::Unreadable::Keyed(name.to_string()).into());
        }
        match masker.clean_text(text) {
            Some(clean) => {
                fields.extend_from_slice(&clean);
                fields.extend_from_slice(ending);
            }
            None => fields.extend_from_slice(line),
        }
    }
    match clean_data {
        Some(clean) => with_event_data(&fields, &clean, out),
        None => out.extend_from_slice(&fields),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Sensitive;
    use std::sync::Arc;

    fn masker() -> BodyMasker {
        let sensitive = Sensitive::new(vec!["token".into()], Vec::new());
        BodyMasker::new(None, Arc::new(sensitive), Arc::default())
    }

    fn run(events: bool, pieces: &[&[u8]], limit: usize) -> Result<String, BodyError> {
        let masker = masker();
        let mut units = Units::new(events, limit, Arc::default());
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(units.push(piece, &masker)?);
        }
        out.extend(units.finish(&masker)?);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn events_are_cleaned_whole_whatever_the_pieces_they_arrive_in() {
        let stream: &[u8] =
            b"event: a\ndata: {\"token\":\"t1\",\ndata: \"n\":1}\n\n: comment\nid: 2\r\ndata: {\"token\":\"t2\"}\r\n\r\ndata: plain\n\n";
        let expected = "event: a\ndata: {\"token\":\"[redacted:token]\",\ndata: \"n\":1}\n\n: comment\nid: 2\r\ndata: {\"token\":\"[redacted:token]\"}\r\n\r\ndata: plain\n\n";
        for size in [1, 3, 10, stream.len()] {
            let pieces: Vec<&[u8]> = stream.chunks(size).collect();
            assert_eq!(run(true, &pieces, 1000).unwrap(), expected, "{size}");
        }
        // Nothing is sent of an event before its end.
        let masker = masker();
        let mut units = Units::new(true, 1000, Arc::default());
        assert!(units.push(b"data: {\"token\":\"t1\"}\n", &masker).unwrap().is_empty());
        assert_eq!(units.push(b"\n", &masker).unwrap(), b"data: {\"token\":\"[redacted:token]\"}\n\n");
    }

    #[test]
    fn an_event_stream_splits_at_a_cr_alone_and_drops_a_leading_mark_as_clients_do() {
        // A client reads two events here, the second JSON: its sensitive key is masked.
        let stream: &[u8] = b"\xEF\xBB\xBFdata: hi\r\rdata: {\"token\":\"t1\"}\r\r";
        let expected = "data: hi\n\ndata: {\"token\":\"[redacted:token]\"}\n\n";
        for size in [1, 2, 5, stream.len()] {
            let pieces: Vec<&[u8]> = stream.chunks(size).collect();
            assert_eq!(run(true, &pieces, 1000).unwrap(), expected, "{size}");
        }
    }

    #[test]
    fn lines_are_cleaned_one_by_one_and_a_unit_over_the_limit_ends_the_stream() {
        let out = run(false, &[b"{\"token\":1}\n{\"a\"", b":2}\r\n{\"token\":3}"], 100).unwrap();
        assert_eq!(out, "{\"token\":\"[redacted:token]\"}\n{\"a\":2}\r\n{\"token\":\"[redacted:token]\"}");
        assert!(matches!(run(false, &[&[b'x'; 101]], 100), Err(BodyError::EventTooLarge(100))));
        assert!(matches!(run(true, &[b"data: x\n", &[b'x'; 101]], 100), Err(BodyError::EventTooLarge(100))));
    }

    #[test]
    fn a_unit_naming_a_sensitive_field_outside_json_ends_the_stream() {
        use crate::mask::Unreadable;
        let keyed = |r: Result<String, BodyError>| matches!(r, Err(BodyError::Unreadable(Unreadable::Keyed(_))));
        // Pretty-printed JSON sent as lines: a line is a field, not a record.
        assert!(keyed(run(false, &[b"{\n  \"user\": {\n    \"token\": \"t1\"\n  }\n}\n"], 1000)));
        assert!(keyed(run(true, &[b"data: token=t1\n\n"], 1000)));
        assert!(keyed(run(true, &[b"  \"token\": \"t1\"\n\n"], 1000)));
        // Prose that mentions the name is not a field.
        assert_eq!(run(true, &[b"data: the token expired.\n\n"], 1000).unwrap(), "data: the token expired.\n\n");
        // A JSON text sequence's separator, or a byte-order mark, before a line's JSON.
        let out = run(false, &[b"\x1e{\"token\":1}\n\xEF\xBB\xBF{\"token\":2}\n"], 1000).unwrap();
        assert_eq!(out, "\x1e{\"token\":\"[redacted:token]\"}\n\u{feff}{\"token\":\"[redacted:token]\"}\n");
    }

    #[test]
    fn binary_media_are_known_by_their_type() {
        for binary in [&b"image/png"[..], b"application/pdf", b"application/octet-stream; x=1", b"Font/woff2"] {
            assert!(is_binary_media(Some(binary)), "{}", String::from_utf8_lossy(binary));
        }
        for text in [&b"text/csv"[..], b"application/xml", b"application/json", b"text/html; charset=utf-8"] {
            assert!(!is_binary_media(Some(text)), "{}", String::from_utf8_lossy(text));
        }
        assert!(!is_binary_media(None));
    }

    #[test]
    fn shapes_follow_the_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(Shape::of(&headers), Shape::Whole);
        headers.insert(header::CONTENT_TYPE, "Text/Event-Stream; charset=utf-8".parse().unwrap());
        assert_eq!(Shape::of(&headers), Shape::Events);
        headers.insert(header::CONTENT_TYPE, "application/x-ndjson".parse().unwrap());
        assert_eq!(Shape::of(&headers), Shape::Lines);
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(Shape::of(&headers), Shape::Whole);
    }
}
