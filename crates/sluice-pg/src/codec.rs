//! Wire framing and the handful of messages sluice builds or reads itself. Everything else crosses
//! the gateway as untouched bytes.
//!
//! A regular message is a type byte, a big-endian i32 length that counts itself, and the body.

use bytes::{Buf, BufMut, BytesMut};

pub const HEADER_LEN: usize = 5;

/// A complete frame at the front of a buffer: its type and total length (header included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub tag: u8,
    pub len: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below 4: no valid message looks like this.
    BadLength(i32),
    /// The declared length is over the limit.
    TooLarge { tag: u8, len: usize, max: usize },
}

/// Looks at the front of `buf`: `Ok(Some(head))` when a whole frame is there, `Ok(None)` when more
/// bytes are needed (the caller should reserve `needed` bytes), or an error for an impossible length.
pub fn peek_frame(buf: &[u8], max: usize) -> Result<Option<FrameHead>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let declared = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if declared < 4 {
        return Err(FrameError::BadLength(declared));
    }
    let len = declared as usize + 1;
    if len > max {
        return Err(FrameError::TooLarge { tag: buf[0], len, max });
    }
    Ok((buf.len() >= len).then_some(FrameHead { tag: buf[0], len }))
}

/// The declared total length of the frame at the front of `buf`, when its header is complete.
pub fn declared_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= HEADER_LEN).then(|| i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]).max(4) as usize + 1)
}

/// A cursor over a message body for the few messages sluice decodes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Reader { buf: body }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// A NUL-terminated string (bytes without the NUL).
    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = memchr(0, self.buf)?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = &rest[1..];
        Some(s)
    }

    pub fn i16(&mut self) -> Option<i16> {
        if self.buf.len() < 2 {
            return None;
        }
        let v = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        self.buf = &self.buf[2..];
        Some(v)
    }

    pub fn i32(&mut self) -> Option<i32> {
        if self.buf.len() < 4 {
            return None;
        }
        let v = self.buf.get_i32();
        Some(v)
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(first)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Appends a message: writes the tag, reserves the length, lets `body` write, then fills the length.
pub fn put_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    // A NUL inside would end the field early on the other side: drop it.
    out.extend(s.iter().copied().filter(|&b| b != 0));
    out.put_u8(0);
}

/// Authentication request codes (the `R` message).
pub mod auth {
    pub const OK: i32 = 0;
    pub const CLEARTEXT: i32 = 3;
    pub const MD5: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

pub fn authentication(out: &mut BytesMut, code: i32) {
    put_message(out, b'R', |b| b.put_i32(code));
}

pub fn parameter_status(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    put_message(out, b'S', |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    put_message(out, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    put_message(out, b'Z', |b| b.put_u8(status));
}

/// Tells a client asking for a newer minor version (or `_pq_` options) what this side speaks.
pub fn negotiate_protocol_version(out: &mut BytesMut, minor: i32, unsupported: &[String]) {
    put_message(out, b'v', |b| {
        b.put_i32(minor);
        b.put_i32(unsupported.len() as i32);
        for option in unsupported {
            put_cstr(b, option.as_bytes());
        }
    });
}

/// A frontend password message (`p`), also used for SASL responses.
pub fn password_message(out: &mut BytesMut, payload: &[u8]) {
    put_message(out, b'p', |b| b.put_slice(payload));
}

pub fn query(out: &mut BytesMut, text: &str) {
    put_message(out, b'Q', |b| put_cstr(b, text.as_bytes()));
}

/// A Parse of `text` under the statement `name`, with no parameter types.
pub fn parse(out: &mut BytesMut, name: &[u8], text: &str) {
    put_message(out, b'P', |b| {
        put_cstr(b, name);
        put_cstr(b, text.as_bytes());
        b.put_i16(0);
    });
}

/// A Close of the prepared statement `name`.
pub fn close_statement(out: &mut BytesMut, name: &[u8]) {
    put_message(out, b'C', |b| {
        b.put_u8(b'S');
        put_cstr(b, name);
    });
}

pub fn sync(out: &mut BytesMut) {
    put_message(out, b'S', |_| {});
}

/// The row count at the end of a command tag (`SELECT 3`, `INSERT 0 5`, `COPY 10`), if any.
pub fn tag_rows(tag: &[u8]) -> u64 {
    let digits = tag.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits == tag.len() {
        return 0;
    }
    std::str::from_utf8(&tag[tag.len() - digits..]).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_needs_whole_frames_and_rejects_bad_lengths() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, b'I');
        assert_eq!(peek_frame(&buf, 100), Ok(Some(FrameHead { tag: b'Z', len: 6 })));
        assert_eq!(peek_frame(&buf[..5], 100), Ok(None));
        assert_eq!(peek_frame(&buf[..3], 100), Ok(None));
        assert_eq!(peek_frame(&[b'Q', 0, 0, 0, 3], 100), Err(FrameError::BadLength(3)));
        assert_eq!(peek_frame(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100), Err(FrameError::BadLength(-1)));
        assert!(matches!(peek_frame(&[b'Q', 0, 0, 1, 0], 100), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn reader_stops_at_the_end_instead_of_panicking() {
        let mut r = Reader::new(b"abc");
        assert_eq!(r.cstr(), None);
        assert_eq!(r.i32(), None);
        assert_eq!(r.bytes(2), Some(&b"ab"[..]));
        assert_eq!(r.i16(), None);
        let mut r = Reader::new(b"x\0\0\0\0\x07");
        assert_eq!(r.cstr(), Some(&b"x"[..]));
        assert_eq!(r.i32(), Some(7));
    }

    #[test]
    fn tag_rows_reads_the_trailing_count() {
        assert_eq!(tag_rows(b"SELECT 3"), 3);
        assert_eq!(tag_rows(b"INSERT 0 5"), 5);
        assert_eq!(tag_rows(b"CREATE TABLE"), 0);
        assert_eq!(tag_rows(b"BEGIN"), 0);
        assert_eq!(tag_rows(b"99999999999999999999999"), 0);
    }

    #[test]
    fn cstr_drops_embedded_nul() {
        let mut out = BytesMut::new();
        put_cstr(&mut out, b"a\0b");
        assert_eq!(&out[..], b"ab\0");
    }
}
