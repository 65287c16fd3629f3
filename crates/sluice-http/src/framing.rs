//! A second reading of HTTP/1 request framing, from the bytes hyper reads: hyper quietly resolves
//! what a gateway must refuse (a Content-Length beside Transfer-Encoding is dropped, a repeated
//! identical Content-Length is merged), so the handler could not tell. Each request head gets a
//! verdict, queued in order; the handler takes one per request and answers 400 to an ambiguous
//! one before anything is forwarded. The watcher never changes a read or a write: it only looks,
//! and fails one only when the client kept the connection waiting too long (`idle`).

use crate::idle::{ClientTooSlow, Clock, SendClock};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest request head read (hyper is set to the same).
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const MAX_CHUNK_LINE: usize = 4096;

/// What the watcher found of one request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadVerdict {
    Clear,
    /// Why the request is refused.
    Ambiguous(&'static str),
}

/// The verdicts of the heads read so far and not yet taken, in order.
#[derive(Clone, Default)]
pub struct Verdicts(Arc<Mutex<VecDeque<HeadVerdict>>>);

impl Verdicts {
    /// The next request's verdict; `None` when the watcher saw no head for it (then the request
    /// cannot be vouched for).
    pub fn take(&self) -> Option<HeadVerdict> {
        self.0.lock().pop_front()
    }

    fn push(&self, verdict: HeadVerdict) {
        self.0.lock().push_back(verdict);
    }
}

enum Scan {
    /// The first bytes, until they show whether the client speaks HTTP/2.
    Start(Vec<u8>),
    Head(Vec<u8>),
    Body(u64),
    Chunked(Chunk),
    /// Nothing more to read as HTTP/1 requests: HTTP/2, an upgrade, or a head refused.
    Done,
}

enum Chunk {
    Size(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Trailers(Vec<u8>),
}

/// Wraps a client stream and watches its request framing (and, over HTTP/1, how long the
/// client keeps it waiting).
pub struct Watched<S> {
    inner: S,
    scan: Scan,
    verdicts: Verdicts,
    clock: Option<Clock>,
    send: Option<SendClock>,
    http2: bool,
    /// Request heads read whole so far.
    heads: u64,
}

impl<S> Watched<S> {
    pub fn new(inner: S, verdicts: Verdicts) -> Watched<S> {
        Watched { inner, scan: Scan::Start(Vec::new()), verdicts, clock: None, send: None, http2: false, heads: 0 }
    }

    /// Also closes an HTTP/1 connection whose client is too slow with a head, or idle too long,
    /// and any connection whose client leaves what is written to it waiting too long.
    pub fn timed(self, clock: Clock, send: SendClock) -> Watched<S> {
        Watched { clock: Some(clock), send: Some(send), ..self }
    }

    /// What a write (or flush) that took `taken` bytes, or waits, says of the client's reading.
    fn sent<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        taken: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        let Some(send) = self.send.as_mut() else { return polled };
        match &polled {
            Poll::Ready(Ok(done)) if taken(done) => send.wrote(),
            Poll::Pending => {
                if let Err(why) = send.waiting(cx) {
                    return Poll::Ready(Err(ClientTooSlow::io(why)));
                }
            }
            Poll::Ready(_) => {}
        }
        polled
    }

    /// Whether a request head has begun and is not complete.
    fn head_open(&self) -> bool {
        match &self.scan {
            Scan::Start(seen) | Scan::Head(seen) => !seen.is_empty(),
            _ => false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.scan {
                Scan::Done => return,
                Scan::Start(seen) => {
                    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
                    let take = bytes.len().min(PREFACE.len() - seen.len());
                    seen.extend_from_slice(&bytes[..take]);
                    if !PREFACE.starts_with(seen) {
                        // HTTP/1: what was held back is read as the first head.
                        let seen = std::mem::take(seen);
                        self.scan = Scan::Head(Vec::new());
                        self.feed(&seen);
                        bytes = &bytes[take..];
                    } else if seen.len() == PREFACE.len() {
                        // The HTTP/2 preface: framed by HTTP/2, nothing to watch.
                        self.scan = Scan::Done;
                        self.http2 = true;
                        return;
                    } else {
                        return;
                    }
                }
                Scan::Head(head) => {
                    // Blank lines before a request are skipped, as servers do.
                    if head.is_empty() {
                        let skip = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    let before = head.len();
                    head.extend_from_slice(bytes);
                    let from = before.saturating_sub(3);
                    match head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(at) => {
                            let end = from + at + 4;
                            let used = end - before;
                            let head = std::mem::take(head);
                            self.scan = self.judge(&head[..end]);
                            self.heads += 1;
                            bytes = &bytes[used..];
                        }
                        None if head.len() > MAX_HEAD => {
                            self.verdicts.push(HeadVerdict::Ambiguous("a request head larger than 64 KiB"));
                            self.scan = Scan::Done;
                            return;
                        }
                        None => return,
                    }
                }
                Scan::Body(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.scan = Scan::Head(Vec::new());
                    }
                }
                Scan::Chunked(chunk) => match chunk {
                    Chunk::Size(line) | Chunk::Trailers(line) => {
                        let Some(at) = bytes.iter().position(|b| *b == b'\n') else {
                            line.extend_from_slice(bytes);
                            if line.len() > MAX_CHUNK_LINE {
                                self.scan = Scan::Done;
                            }
                            return;
                        };
                        line.extend_from_slice(&bytes[..at]);
                        bytes = &bytes[at + 1..];
                        let line = std::mem::take(line);
                        let trimmed = line.strip_suffix(b"\r").unwrap_or(&line);
                        self.scan = match chunk {
                            Chunk::Size(_) => match chunk_size(trimmed) {
                                Some(0) => Scan::Chunked(Chunk::Trailers(Vec::new())),
                                Some(n) => Scan::Chunked(Chunk::Data(n)),
                                // hyper refuses it too; nothing after it is read as a request.
                                None => Scan::Done,
                            },
                            _ if trimmed.is_empty() => Scan::Head(Vec::new()),
                            _ => Scan::Chunked(Chunk::Trailers(Vec::new())),
                        };
                    }
                    Chunk::Data(left) => {
                        let n = (*left).min(bytes.len() as u64);
                        *left -= n;
                        bytes = &bytes[n as usize..];
                        if *left == 0 {
                            *chunk = Chunk::DataEnd(2);
                        }
                    }
                    Chunk::DataEnd(left) => {
                        let n = (*left as usize).min(bytes.len());
                        *left -= n as u8;
                        bytes = &bytes[n..];
                        if *left == 0 {
                            *chunk = Chunk::Size(Vec::new());
                        }
                    }
                },
            }
        }
    }

    /// Queues the verdict on one complete head and says how its body is framed.
    fn judge(&self, head: &[u8]) -> Scan {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let verdict = match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => framing(&request),
            _ => Err("a request head that cannot be read (an obsolete line folding, a bad header line)"),
        };
        match verdict {
            Ok(next) => {
                self.verdicts.push(HeadVerdict::Clear);
                next
            }
            Err(why) => {
                self.verdicts.push(HeadVerdict::Ambiguous(why));
                Scan::Done
            }
        }
    }
}

/// How a clear request's body is framed, or why the request is ambiguous.
fn framing(request: &httparse::Request<'_, '_>) -> Result<Scan, &'static str> {
    let mut lengths = Vec::new();
    let mut encodings = Vec::new();
    let mut upgrade = request.method == Some("CONNECT");
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            lengths.push(header.value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings.push(header.value);
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let next = match (lengths.as_slice(), encodings.as_slice()) {
        ([], []) => Scan::Body(0),
        ([_, ..], [_, ..]) => return Err("both Content-Length and Transfer-Encoding"),
        ([_, _, ..], _) => return Err("more than one Content-Length"),
        ([length], []) => {
            let text = std::str::from_utf8(length).map_err(|_| "a Content-Length that is not a number")?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err("a Content-Length that is not a number");
            }
            Scan::Body(text.parse().map_err(|_| "a Content-Length that is not a number")?)
        }
        ([], [encoding]) if encoding.eq_ignore_ascii_case(b"chunked") => Scan::Chunked(Chunk::Size(Vec::new())),
        ([], _) => return Err("a Transfer-Encoding other than a single 'chunked'"),
    };
    // After an upgrade the stream is no longer HTTP/1 requests.
    Ok(if upgrade { Scan::Done } else { next })
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let size = line.split(|b| *b == b';').next()?;
    let size = std::str::from_utf8(size).ok()?.trim_matches([' ', '\t']);
    if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let this = &mut *self;
        match &polled {
            Poll::Ready(Ok(())) => {
                let (bytes, heads) = (&buf.filled()[before..], this.heads);
                let got = !bytes.is_empty();
                this.feed(bytes);
                let (open, whole) = (this.head_open(), this.heads > heads);
                if let Some(clock) = this.clock.as_mut().filter(|_| !this.http2) {
                    clock.read(got, open, whole);
                }
            }
            // HTTP/2 keeps its own time (pings).
            Poll::Pending => {
                if let Some(clock) = this.clock.as_mut().filter(|_| !this.http2)
                    && let Err(why) = clock.waiting(cx)
                {
                    return Poll::Ready(Err(ClientTooSlow::io(why)));
                }
            }
            Poll::Ready(Err(_)) => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.sent(cx, polled, |n| *n > 0)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.sent(cx, polled, |()| true)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TLS writes its close_notify here: a client that takes nothing holds it too.
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.sent(cx, polled, |()| true)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.sent(cx, polled, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts_of(chunks: &[&[u8]]) -> Vec<HeadVerdict> {
        let verdicts = Verdicts::default();
        let mut watched = Watched::new(tokio::io::empty(), verdicts.clone());
        for chunk in chunks {
            watched.feed(chunk);
        }
        std::iter::from_fn(|| verdicts.take()).collect()
    }

    #[test]
    fn pipelined_requests_with_each_framing_get_a_verdict_each() {
        let stream = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
            POST /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
            GET /z HTTP/1.1\r\nHost: a\r\n\r\n";
        // Whole, and one byte at a time.
        assert_eq!(verdicts_of(&[stream]), vec![HeadVerdict::Clear; 4]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(verdicts_of(&bytes), vec![HeadVerdict::Clear; 4]);
    }

    #[test]
    fn ambiguous_framing_is_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "both"),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", "more than one"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "single 'chunked'"),
            (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", "not a number"),
            (b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", "cannot be read"),
        ];
        for (head, why) in cases {
            let verdicts = verdicts_of(&[head]);
            assert!(
                matches!(verdicts.as_slice(), [HeadVerdict::Ambiguous(w)] if w.contains(why)),
                "{:?}: {verdicts:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn a_chunk_size_is_hex_digits_only() {
        assert_eq!(chunk_size(b"1f;ext=1"), Some(31));
        assert_eq!(chunk_size(b" 5 "), Some(5));
        for bad in [&b"+5"[..], b"-0", b"0x5", b"", b"5 5"] {
            assert_eq!(chunk_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn http2_and_upgrades_end_the_watch() {
        assert!(verdicts_of(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).is_empty());
        let upgrade = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x05hello GET / HTTP/1.1\r\n\r\n";
        assert_eq!(verdicts_of(&[upgrade]), vec![HeadVerdict::Clear]);
    }
}
