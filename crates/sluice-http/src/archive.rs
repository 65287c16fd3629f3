//! Responses whose text lies inside a compression or a container sluice does not open (a gzip or
//! zip file, a PDF's streams): the detectors would read only the packed bytes, so where a
//! connection masks, such a body is refused rather than passed unread. Known by their first
//! bytes (`sluice_mask::unreadable::packed`), the parts of a multipart body each by theirs, and
//! the few formats without a signature by their declared type.

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

/// The packed format a part of a multipart body begins with, if one does.
pub fn packed_part(body: &[u8], boundary: &str) -> Option<&'static str> {
    crate::multipart::parts(body, boundary).iter().find_map(|part| sluice_mask::unreadable::packed(part.content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_part_is_found_by_the_boundary() {
        let gzip = b"\x1F\x8B\x08\x00packed";
        let body = [
            &b"--b\r\nContent-Type: text/plain\r\n\r\nyour export\r\n--b\r\nContent-Type: application/gzip\r\n\r\n"[..],
            gzip,
            b"\r\n--b--\r\n",
        ]
        .concat();
        let declared = crate::multipart::boundary(b"multipart/mixed; boundary=\"b\"").unwrap();
        assert_eq!(packed_part(&body, &declared), Some("gzip file"));
        let text =
            b"--b\r\nContent-Type: text/plain\r\n\r\nabout %PDF-1.7 files\r\n--b\r\n\r\n\x89PNG\xFF\r\n--b--\r\n";
        assert_eq!(packed_part(text, "b"), None);
    }

    #[test]
    fn formats_without_a_signature_are_known_by_their_type() {
        assert_eq!(declared("Application/X-Brotli; q=1"), Some("brotli file"));
        assert_eq!(declared("application/json"), None);
    }
}
