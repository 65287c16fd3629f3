//! Response bodies decoded from their `Content-Encoding` (gzip, deflate, br, zstd) piece by piece
//! as they arrive, so that a stream is masked as it goes and a whole body is held decoded only up
//! to the cap: the decoders write into a sink that refuses to grow past it (a small body that
//! decodes to gigabytes stops there).

use hyper::HeaderMap;
use hyper::header;
use std::io::{self, Write};

/// What `Accept-Encoding` sluice sends upstream: the encodings it can decode to mask.
pub const ACCEPTED: &str = "gzip, deflate, br, zstd";

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the response is encoded with {0}, which sluice cannot decode to mask")]
    Unsupported(String),
    #[error("the decoded response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the response's encoding is corrupt: {0}")]
    Corrupt(String),
}

/// A body's decoder. `feed` takes the encoded bytes as they come and gives back what they
/// decode to (at most `limit` bytes between two takes); `finish` the rest.
pub struct Decoder {
    kind: Kind,
}

enum Kind {
    Identity(Sink),
    Gzip(flate2::write::MultiGzDecoder<Sink>),
    /// `deflate` is zlib-wrapped by the standard and raw in some servers: which one is known from
    /// the first two bytes, held until they are there.
    DeflateUnknown(Sink, Vec<u8>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    RawDeflate(flate2::write::DeflateDecoder<Sink>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Sink>>),
    Zstd(zstd::stream::write::Decoder<'static, Sink>),
}

/// Every coding still applied to a response's body, as one `Content-Encoding` value: all its
/// `Content-Encoding` fields (an upstream may send several), and any transfer coding but
/// `chunked`, which hyper leaves on the body. What cannot be read is named so that it is refused:
/// a coding sluice did not undo would reach the client unmasked, one decompression away.
pub fn coding(headers: &HeaderMap) -> String {
    let fields = |name| headers.get_all(name).into_iter().map(|v| v.to_str().unwrap_or("unreadable"));
    let content = fields(header::CONTENT_ENCODING).flat_map(|v| v.split(','));
    let transfer = fields(header::TRANSFER_ENCODING)
        .flat_map(|v| v.split(','))
        .filter(|c| !c.trim().eq_ignore_ascii_case("chunked"));
    let codings: Vec<&str> = content
        .chain(transfer)
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .collect();
    codings.join(", ")
}

impl Decoder {
    /// The decoder for a response's `Content-Encoding` (one coding; several are refused).
    pub fn new(encoding: Option<&str>, limit: usize) -> Result<Decoder, DecodeError> {
        let sink = Sink { out: Vec::new(), limit, over: false };
        let kind = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "identity") => Kind::Identity(sink),
            Some("gzip" | "x-gzip") => Kind::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            Some("deflate") => Kind::DeflateUnknown(sink, Vec::new()),
            Some("br") => Kind::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(sink, 8192))),
            Some("zstd") => {
                Kind::Zstd(zstd::stream::write::Decoder::new(sink).map_err(|e| DecodeError::Corrupt(e.to_string()))?)
            }
            Some(other) => return Err(DecodeError::Unsupported(crate::reply::quoted_name(other))),
        };
        Ok(Decoder { kind })
    }

    /// Takes `input`; returns what is decoded so far and not yet taken.
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        // Flushed after each piece: the decoders hold back what they decoded until the next write
        // otherwise, and a stream's event would wait for the one after it.
        let written = match &mut self.kind {
            Kind::Identity(sink) => sink.write_all(input),
            Kind::Gzip(d) => d.write_all(input).and_then(|()| d.flush()),
            Kind::Zlib(d) => d.write_all(input).and_then(|()| d.flush()),
            Kind::RawDeflate(d) => d.write_all(input).and_then(|()| d.flush()),
            Kind::Brotli(d) => d.write_all(input).and_then(|()| d.flush()),
            Kind::Zstd(d) => d.write_all(input).and_then(|()| d.flush()),
            Kind::DeflateUnknown(_, held) => {
                held.extend_from_slice(input);
                if held.len() < 2 {
                    return Ok(Vec::new());
                }
                self.settle_deflate()
            }
        };
        self.check(written)?;
        Ok(std::mem::take(&mut self.sink().out))
    }

    /// Whether the body is sent as it is (no coding to undo).
    pub fn is_identity(&self) -> bool {
        matches!(self.kind, Kind::Identity(_))
    }

    /// As `feed`, appending what is decoded to `out`; a body sent as it is goes there without
    /// passing through the decoder's buffer (`out` is the caller's to keep within the limit).
    pub fn feed_into(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if let Kind::Identity(_) = self.kind {
            out.extend_from_slice(input);
            return Ok(());
        }
        let mut decoded = self.feed(input)?;
        out.append(&mut decoded);
        Ok(())
    }

    /// The end of the body: what the decoder still holds, or why the body was cut short.
    pub fn finish(&mut self) -> Result<Vec<u8>, DecodeError> {
        let flushed = match &mut self.kind {
            Kind::Identity(_) => Ok(()),
            Kind::Gzip(d) => d.try_finish(),
            Kind::Zlib(d) => d.try_finish(),
            Kind::RawDeflate(d) => d.try_finish(),
            Kind::Brotli(d) => d.flush(),
            Kind::Zstd(d) => d.flush(),
            Kind::DeflateUnknown(_, held) if held.is_empty() => Ok(()),
            Kind::DeflateUnknown(..) => self.settle_deflate().and_then(|()| self.finish_settled()),
        };
        self.check(flushed)?;
        Ok(std::mem::take(&mut self.sink().out))
    }

    fn finish_settled(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Zlib(d) => d.try_finish(),
            Kind::RawDeflate(d) => d.try_finish(),
            _ => Ok(()),
        }
    }

    /// Picks zlib or raw deflate by the held first bytes (a zlib header: method 8, and the two
    /// bytes a multiple of 31), and writes them to it.
    fn settle_deflate(&mut self) -> io::Result<()> {
        let Kind::DeflateUnknown(sink, held) = &mut self.kind else { return Ok(()) };
        // One byte alone cannot be a zlib header: it is read as raw deflate (and found corrupt).
        let zlib = match held[..] {
            [first, second, ..] => first & 0x0f == 8 && (u16::from(first) << 8 | u16::from(second)) % 31 == 0,
            _ => false,
        };
        let (sink, held) = (std::mem::take(sink), std::mem::take(held));
        self.kind = match zlib {
            true => Kind::Zlib(flate2::write::ZlibDecoder::new(sink)),
            false => Kind::RawDeflate(flate2::write::DeflateDecoder::new(sink)),
        };
        match &mut self.kind {
            Kind::Zlib(d) => d.write_all(&held).and_then(|()| d.flush()),
            Kind::RawDeflate(d) => d.write_all(&held).and_then(|()| d.flush()),
            _ => Ok(()),
        }
    }

    fn check(&mut self, result: io::Result<()>) -> Result<(), DecodeError> {
        let sink = self.sink();
        if sink.over {
            return Err(DecodeError::TooLarge(sink.limit));
        }
        result.map_err(|e| DecodeError::Corrupt(e.to_string()))
    }

    fn sink(&mut self) -> &mut Sink {
        match &mut self.kind {
            Kind::Identity(sink) | Kind::DeflateUnknown(sink, _) => sink,
            Kind::Gzip(d) => d.get_mut(),
            Kind::Zlib(d) => d.get_mut(),
            Kind::RawDeflate(d) => d.get_mut(),
            Kind::Brotli(d) => d.get_mut(),
            Kind::Zstd(d) => d.get_mut(),
        }
    }
}

/// Where a decoder writes: refuses (with an error the decoder passes on) to hold more than
/// `limit` bytes at once.
#[derive(Default)]
struct Sink {
    out: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            self.over = true;
            return Err(io::Error::other("the decoded body is over the limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(encoding: &str, body: &[u8], limit: usize, piece: usize) -> Result<Vec<u8>, DecodeError> {
        let mut decoder = Decoder::new(Some(encoding), limit)?;
        let mut out = Vec::new();
        for chunk in body.chunks(piece) {
            out.extend(decoder.feed(chunk)?);
        }
        out.extend(decoder.finish()?);
        Ok(out)
    }

    #[test]
    fn every_encoding_decodes_in_pieces_within_the_limit() {
        let text: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_string().into_bytes()).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&text).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).unwrap();
        let zstd = zstd::encode_all(&text[..], 3).unwrap();
        for (encoding, body) in [
            ("identity", text.clone()),
            ("gzip", gz.finish().unwrap()),
            ("deflate", zlib.finish().unwrap()),
            ("deflate", raw.finish().unwrap()),
            ("zstd", zstd),
        ] {
            // What a piece decodes to is given back at once, not with the next piece.
            let mut decoder = Decoder::new(Some(encoding), text.len()).unwrap();
            assert_eq!(decoder.feed(&body).unwrap(), text, "{encoding}");
            for piece in [1, 7, 4096, body.len()] {
                assert_eq!(decode_in_pieces(encoding, &body, text.len(), piece).unwrap(), text, "{encoding} {piece}");
            }
            // The limit holds between two takes: what one piece decodes to.
            let short = decode_in_pieces(encoding, &body, text.len() / 4, body.len());
            assert!(matches!(short, Err(DecodeError::TooLarge(_))), "{encoding}: {:?}", short.map(|v| v.len()));
        }
    }

    #[test]
    fn every_coding_field_is_read_and_only_chunked_is_left_to_hyper() {
        let mut headers = HeaderMap::new();
        assert_eq!(coding(&headers), "");
        headers.append(header::CONTENT_ENCODING, "identity".parse().unwrap());
        headers.append(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert_eq!(coding(&headers), "");
        // A second field, a transfer coding, a value that is not text: each is seen, and a
        // decoder for what results is refused unless it is one coding it knows.
        headers.append(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(coding(&headers), "GZIP");
        assert!(Decoder::new(Some(&coding(&headers)), 1).is_ok());
        headers.append(header::TRANSFER_ENCODING, "gzip, chunked".parse().unwrap());
        assert_eq!(coding(&headers), "GZIP, gzip");
        assert!(matches!(Decoder::new(Some(&coding(&headers)), 1), Err(DecodeError::Unsupported(_))));
        let mut odd = HeaderMap::new();
        odd.append(header::CONTENT_ENCODING, hyper::header::HeaderValue::from_bytes(b"g\xffzip").unwrap());
        assert!(matches!(Decoder::new(Some(&coding(&odd)), 1), Err(DecodeError::Unsupported(_))));
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_corrupt() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 50 * 1024 * 1024]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 100_000);
        assert!(matches!(decode_in_pieces("gzip", &bomb, 1024 * 1024, bomb.len()), Err(DecodeError::TooLarge(_))));
        assert!(matches!(decode_in_pieces("gzip", b"not gzip at all", 1000, 4), Err(DecodeError::Corrupt(_))));
        assert!(matches!(
            decode_in_pieces("br", b"\xff\xff\xff\xff not brotli", 1000, 4),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(Decoder::new(Some("compress"), 1), Err(DecodeError::Unsupported(_))));
        assert!(matches!(Decoder::new(Some("gzip, br"), 1), Err(DecodeError::Unsupported(_))));
        // A deflate body of one byte: too short to tell zlib from raw deflate, and corrupt.
        assert!(decode_in_pieces("deflate", b"x", 1000, 1).is_err());
    }
}
