//! Content the detectors cannot read, known by its first bytes whatever it is declared: text in
//! an encoding that does not keep ASCII as ASCII (UTF-16, UTF-32), and content packed in a
//! compression or a container (a gzip or zip file, a PDF's streams), whose text the detectors
//! would see only as packed bytes. Adapters refuse such bodies where they mask; the detectors
//! mask such content wherever base64 carries it.

/// The wide encoding a body is in, by its byte-order mark or by the NULs its first characters
/// come with (as JSON readers guess: `{\0"\0` is UTF-16LE); `None` for ASCII-compatible text.
pub fn wide(body: &[u8]) -> Option<&'static str> {
    match body {
        [0, 0, 0xFE, 0xFF, ..] => return Some("UTF-32BE"),
        [0xFF, 0xFE, 0, 0, ..] => return Some("UTF-32LE"),
        [0xFE, 0xFF, ..] => return Some("UTF-16BE"),
        [0xFF, 0xFE, ..] => return Some("UTF-16LE"),
        _ => {}
    }
    // Two characters in UTF-32, four in UTF-16: printable ASCII each, so that binary formats
    // beginning with NULs (sizes, version numbers) are not taken for text.
    let head = body.get(..8)?;
    let text = |b: u8| b == b'\t' || b == b'\n' || b == b'\r' || (0x20..0x7F).contains(&b);
    let units = |width: usize, at: usize| {
        head.chunks(width).all(|unit| unit.iter().enumerate().all(|(i, &b)| if i == at { text(b) } else { b == 0 }))
    };
    [(4, 3, "UTF-32BE"), (4, 0, "UTF-32LE"), (2, 1, "UTF-16BE"), (2, 0, "UTF-16LE")]
        .into_iter()
        .find(|&(width, at, _)| units(width, at))
        .map(|(_, _, name)| name)
}

/// Leading bytes and the format they begin.
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"\x1F\x8B\x08", "gzip file"),
    (b"\x1F\x9D", "compress (.Z) file"),
    (b"PK\x03\x04", "zip archive (or a document built on one: docx, xlsx, odt, jar, epub)"),
    (b"PK\x05\x06", "zip archive"),
    (b"PK\x07\x08", "zip archive"),
    (b"7z\xBC\xAF\x27\x1C", "7z archive"),
    (b"Rar!\x1A\x07", "RAR archive"),
    (b"\xFD7zXZ\x00", "xz file"),
    (b"LZIP\x01", "lzip file"),
    (b"\x02\x21\x4C\x18", "LZ4 file"),
    (b"\xFF\x06\x00\x00sNaPpY", "snappy file"),
    (b"\x89LZO\x00", "LZO file"),
    (b"\x5D\x00\x00", "LZMA file"),
    (b"Obj\x01", "Avro file"),
    (b"ARROW1\0\0", "Arrow file"),
    (b"!<arch>\n", "ar archive (a .deb)"),
    (b"\xED\xAB\xEE\xDB", "RPM package"),
    (b"\x28\xB5\x2F\xFD", "zstd file"),
    (b"\x04\x22\x4D\x18", "LZ4 file"),
    (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "compound document (doc, xls, msg)"),
    (b"MSCF\0\0\0\0", "cabinet archive"),
];

/// A PDF reader finds its header within this many leading bytes.
const PDF_HEADER_WITHIN: usize = 1024;

const PDF: &str = "PDF (its text lies in compressed streams)";

/// The packed format `body` begins with, if any: by its signature; a PDF also after blanks, or
/// after anything within its first 1024 bytes where the body is not text (a reader finds it
/// there; in text, `%PDF-` is more likely a word about PDFs).
pub fn packed(body: &[u8]) -> Option<&'static str> {
    if let Some(found) = signature(body) {
        return Some(found);
    }
    let head = &body[..body.len().min(PDF_HEADER_WITHIN)];
    let at = memchr::memmem::find(head, b"%PDF-")?;
    let before = body[..at].strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body[..at]);
    (before.iter().all(u8::is_ascii_whitespace) || std::str::from_utf8(body).is_err()).then_some(PDF)
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
        // Parquet's marker is text, and ends the file too.
        [b'P', b'A', b'R', b'1', .., b'P', b'A', b'R', b'1'] if bytes.len() >= 12 => {
            Some("Parquet file (its columns are compressed)")
        }
        // zstd's skippable frames may come before its first frame.
        [0x50..=0x5F, 0x2A, 0x4D, 0x18, ..] => Some("zstd file"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn utf16le(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

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
        assert!(packed(b"\n %PDF-1.7\n").is_some());
        assert!(packed(b"junk first\n%PDF-1.7\n\x80\xFF").is_some());
        assert_eq!(packed(b"\x50\x2A\x4D\x18\x00"), Some("zstd file"));
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
            b"LZIP is a compressor",
            b"PAR1234 is a part number",
            b"ORC files",
            b"{\"snippet\": \"valid files start with %PDF-1.7\"}",
        ] {
            assert_eq!(packed(text), None, "{}", String::from_utf8_lossy(text));
        }
        let far = [vec![b' '; PDF_HEADER_WITHIN], b"%PDF-1.7".to_vec()].concat();
        assert_eq!(packed(&far), None);
    }

    #[test]
    fn wide_text_is_known_by_its_mark_or_its_nuls() {
        assert_eq!(wide(&utf16le("{\"card\": \"4111 1111 1111 1111\"}")), Some("UTF-16LE"));
        let be: Vec<u8> = "[1, 2]".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(wide(&be), Some("UTF-16BE"));
        let utf32: Vec<u8> = "card 4111".chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
        assert_eq!(wide(&utf32), Some("UTF-32LE"));
        assert_eq!(wide(b"\xFF\xFEh\0i\0"), Some("UTF-16LE"));
        assert_eq!(wide(b"{\"card\": \"4111\"}"), None);
        // Binary formats with NULs up front are not text: an MP4, a TrueType font, an icon.
        assert_eq!(wide(b"\0\0\0\x20ftypisom"), None);
        assert_eq!(wide(b"\0\x01\0\0\0\x0e\0\x80"), None);
        assert_eq!(wide(b"\0\0\x01\0\x01\0\x10\x10"), None);
        assert_eq!(wide(b"ab"), None);
    }
}
