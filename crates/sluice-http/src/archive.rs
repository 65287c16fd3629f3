//! Bodies whose text lies inside a compression or a container sluice does not open (a gzip or
//! zip file, a PDF's streams): the detectors would read only the packed bytes, so where a
//! connection masks, such a body is refused rather than passed unread. Known by their first
//! bytes whatever type they declare; the few formats without a signature by their declared type.

use serde::Deserialize;

/// What a connection does with a packed response (`archives`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Archives {
    /// Refused with 502 where the connection masks anything.
    #[default]
    Refuse,
    /// Passed as they are, unopened and so unmasked: for a connection that serves files.
    Pass,
}

/// Leading bytes and the format they begin.
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"\x1F\x8B", "gzip file"),
    (b"\x1F\x9D", "compress (.Z) file"),
    (b"PK\x03\x04", "zip archive (or a document built on one: docx, xlsx, odt, jar, epub)"),
    (b"PK\x05\x06", "zip archive"),
    (b"PK\x07\x08", "zip archive"),
    (b"7z\xBC\xAF\x27\x1C", "7z archive"),
    (b"Rar!\x1A\x07", "RAR archive"),
    (b"\xFD7zXZ\x00", "xz file"),
    (b"LZIP", "lzip file"),
    (b"\x28\xB5\x2F\xFD", "zstd file"),
    (b"\x04\x22\x4D\x18", "LZ4 file"),
    (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "compound document (doc, xls, msg)"),
    (b"MSCF\0\0\0\0", "cabinet archive"),
];

/// A PDF reader finds its header within this many leading bytes.
const PDF_HEADER_WITHIN: usize = 1024;

const PDF: &str = "PDF (its text lies in compressed streams)";

/// The packed format `body` begins with, if any.
pub fn packed(body: &[u8]) -> Option<&'static str> {
    let head = &body[..body.len().min(PDF_HEADER_WITHIN)];
    signature(body).or_else(|| memchr::memmem::find(head, b"%PDF-").map(|_| PDF))
}

/// The packed format anywhere in `body` (a part of a multipart response may be one): at the
/// start of a line, or a PDF's header anywhere.
pub fn packed_inside(body: &[u8]) -> Option<&'static str> {
    let mut lines = std::iter::once(body).chain(memchr::memchr_iter(b'\n', body).map(|i| &body[i + 1..]));
    lines.find_map(signature).or_else(|| memchr::memmem::find(body, b"%PDF-").map(|_| PDF))
}

/// The format whose signature `bytes` begins with.
fn signature(bytes: &[u8]) -> Option<&'static str> {
    if let Some(&(_, name)) = SIGNATURES.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(name);
    }
    match bytes {
        // bzip2's header is text ("BZh9"): its first block's marker follows it.
        [b'B', b'Z', b'h', b'1'..=b'9', rest @ ..] if rest.starts_with(b"1AY&SY") => Some("bzip2 file"),
        // A zlib stream: the header's check bits, with a second byte no text begins so.
        [0x78, second @ (0x01 | 0x9C | 0xDA), ..] if (0x7800 | u16::from(*second)) % 31 == 0 => Some("zlib stream"),
        _ => None,
    }
}

/// A declared media type (parameters allowed, any case) of a packed format without a signature
/// to know it by.
pub fn declared(media: &str) -> Option<&'static str> {
    let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-brotli" | "application/brotli" => Some("brotli file"),
        "application/x-lzma" | "application/lzma" => Some("LZMA file"),
        "application/x-deflate" | "application/deflate" => Some("deflate stream"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn packed_formats_are_known_by_their_first_bytes() {
        assert_eq!(packed(&gzip(b"ssn 123-45-6789")), Some("gzip file"));
        let zlib = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(b"4111 1111 1111 1111").unwrap();
            e.finish().unwrap()
        };
        assert_eq!(packed(&zlib), Some("zlib stream"));
        let zstd = zstd::encode_all(&b"4111 1111 1111 1111"[..], 3).unwrap();
        assert_eq!(packed(&zstd), Some("zstd file"));
        assert_eq!(packed(b"PK\x03\x04\x14\x00"), packed(b"PK\x03\x04"));
        assert!(packed(b"BZh91AY&SY\x00").is_some());
        assert!(packed(b"junk first\n%PDF-1.7\n").is_some());
    }

    #[test]
    fn text_that_begins_alike_is_not_packed() {
        for text in [
            &b"BZh9 is how bzip2 begins"[..],
            b"x^2 + y^2",
            b"xylophone",
            b"PK: 42",
            b"LZ4 is fast",
            b"{\"mime\": \"application/gzip\"}",
            b"",
        ] {
            assert_eq!(packed(text), None, "{}", String::from_utf8_lossy(text));
        }
        let far = [vec![b' '; PDF_HEADER_WITHIN], b"%PDF-1.7".to_vec()].concat();
        assert_eq!(packed(&far), None);
    }

    #[test]
    fn a_packed_part_is_found_inside() {
        let multipart =
            [&b"--b\r\nContent-Type: application/gzip\r\n\r\n"[..], &gzip(b"4111 1111 1111 1111"), b"\r\n--b--\r\n"]
                .concat();
        assert_eq!(packed(&multipart), None);
        assert_eq!(packed_inside(&multipart), Some("gzip file"));
        assert_eq!(packed_inside(b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"), None);
    }

    #[test]
    fn formats_without_a_signature_are_known_by_their_type() {
        assert_eq!(declared("Application/X-Brotli; q=1"), Some("brotli file"));
        assert_eq!(declared("application/json"), None);
    }
}
