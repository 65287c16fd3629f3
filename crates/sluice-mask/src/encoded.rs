//! Text carried in base64 (a file's content in an API's JSON, a Kubernetes secret, a `data:`
//! URL): runs of the base64 alphabet long enough to hold a finding, decoded where they decode to
//! text, so that the detectors read what they carry. Lines wrapped as MIME and PEM wrap them (a
//! break after a multiple of four characters, as a byte or as JSON's `\n`) continue a run.

use crate::detect::{HIGH, ONES};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

/// The longest run read from its separators too (`readings`).
const GLUED_WITHIN: usize = 1024;

/// The shortest run read: 16 characters are 12 bytes, room for an SSN with its dashes.
pub const MIN_RUN: usize = 16;

/// The spans of `text` that may be base64 (at least `MIN_RUN` characters of one alphabet, with
/// their padding and wrapped lines), in order.
pub fn runs(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // Where the last run read ended: a wrapped one goes on past the stretch it began in.
    let mut read_to = 0;
    for (from, to) in stretches(text) {
        let mut i = from.max(read_to);
        // Padding counts toward a run's length: an SSN is 15 characters and `=`.
        let core = MIN_RUN - 2;
        while i + core <= to {
            match text[i..i + core].iter().rposition(|&b| !ALPHABET[usize::from(b)]) {
                Some(last) => i += last + 1,
                None => {
                    // `i` follows a byte outside the alphabet (or is the start): a run starts here.
                    let end = run_end(text, i, i + core);
                    if end - i >= MIN_RUN {
                        out.push((i, end));
                    }
                    i = end + 1;
                    read_to = i;
                }
            }
        }
    }
    out
}

/// The stretches of at least `MIN_RUN` bytes in `+`..=`z`, the range that holds both alphabets
/// (and some punctuation). Such a stretch holds a whole aligned word of eight bytes in the range;
/// text has a blank, a quote or a line end every few bytes, none of them in it, so that most
/// words are passed over with one test each.
fn stretches(text: &[u8]) -> Vec<(usize, usize)> {
    let in_range = |b: &u8| (b'+'..=b'z').contains(b);
    let mut out = Vec::new();
    let mut read_to = 0;
    for (k, word) in text.chunks_exact(8).enumerate() {
        let at = k * 8;
        if outside_range(u64::from_le_bytes(word.try_into().unwrap_or([0; 8]))) != 0 || at < read_to {
            continue;
        }
        let from = text[..at].iter().rposition(|b| !in_range(b)).map_or(0, |i| i + 1);
        let to = text[at + 8..].iter().position(|b| !in_range(b)).map_or(text.len(), |i| at + 8 + i);
        if to - from >= MIN_RUN {
            out.push((from, to));
        }
        read_to = to;
    }
    out
}

/// The high bit of each byte of `word` outside `+`..=`z`.
fn outside_range(word: u64) -> u64 {
    let low = word & !HIGH;
    // Per byte, with no carry between bytes (each sum stays under 0x100): its high bit set
    // where the low seven bits are at least `+`, and at least the byte after `z`.
    let from_plus = (low + ONES * (0x80 - u64::from(b'+'))) & HIGH;
    let past_z = (low + ONES * (0x80 - u64::from(b'z') - 1)) & HIGH;
    !(from_plus & !past_z & !word) & HIGH
}

/// Where the run from `start` (in the alphabet up to `at` at least) ends: past its padding, and
/// past each line break that follows a whole number of four-character groups.
fn run_end(text: &[u8], start: usize, at: usize) -> usize {
    let mut line_start = start;
    let mut end = at;
    loop {
        while end < text.len() && ALPHABET[usize::from(text[end])] {
            end += 1;
        }
        let padding = text[end..].iter().take(2).take_while(|&&b| b == b'=').count();
        if padding > 0 {
            return end + padding;
        }
        let breaks = line_break(&text[end..]);
        let next = end + breaks;
        if breaks == 0
            || !(end - line_start).is_multiple_of(4)
            || !text.get(next).is_some_and(|&b| ALPHABET[usize::from(b)])
        {
            return end;
        }
        line_start = next;
        end = next;
    }
}

/// The length of the line break `rest` begins with: a CR, LF or CRLF, or the same as JSON
/// escapes them.
fn line_break(rest: &[u8]) -> usize {
    [&b"\r\n"[..], b"\n", b"\r", b"\\r\\n", b"\\n", b"\\r"].iter().find(|b| rest.starts_with(b)).map_or(0, |b| b.len())
}

/// What `run` may decode to, most likely first: the run whole, then from after each `/` or `+`
/// in it (a path's segments, or base64 that was percent-encoded, glue pieces together), then
/// from its second, third and fourth character (a letter of an escape before it, as the `n` of
/// `\n`, shifts it). Only readings that decode at all, in the alphabet the reading uses.
pub fn readings(run: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let clean: Vec<u8> = {
        let mut clean = Vec::with_capacity(run.len());
        let mut i = 0;
        while i < run.len() {
            match line_break(&run[i..]) {
                0 => {
                    clean.push(run[i]);
                    i += 1;
                }
                n => i += n,
            }
        }
        clean
    };
    // Pieces are glued in paths and parameters, not in a file's content: a long run is read
    // from its separators only as far as a path goes.
    let pieces = if clean.len() <= GLUED_WITHIN { 8 } else { 0 };
    let after_separators = clean.iter().enumerate().filter(|(_, b)| matches!(b, b'/' | b'+')).map(|(i, _)| i + 1);
    let starts: Vec<usize> = std::iter::once(0).chain(after_separators.take(pieces)).chain(1..4).collect();
    starts.into_iter().filter_map(move |from| decode(clean.get(from..)?))
}

fn decode(clean: &[u8]) -> Option<Vec<u8>> {
    if clean.len() < MIN_RUN - 2 {
        return None;
    }
    let url_safe = clean.iter().any(|&b| b == b'-' || b == b'_');
    if url_safe && clean.iter().any(|&b| b == b'+' || b == b'/') {
        return None;
    }
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    engine.decode(clean).ok()
}

/// Whether decoded bytes read as text, in any charset that keeps ASCII: nine in ten printable
/// ASCII or blanks (Latin-1 or UTF-8 letters, a colour code, are the rest), as few random bytes
/// are.
pub fn reads_as_text(bytes: &[u8]) -> bool {
    let printable = bytes.iter().filter(|&&b| matches!(b, b'\t' | b'\n' | b'\r' | 0x20..=0x7E)).count();
    printable * 10 >= bytes.len() * 9
}

const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);

/// Both alphabets' characters.
const ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;

    fn b64(text: &str) -> String {
        general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn runs_of_base64_text_decode() {
        let body = format!(r#"{{"content": "{}", "id": "x"}}"#, b64("ssn: 078-05-1120"));
        let found = runs(body.as_bytes());
        assert_eq!(found.len(), 1);
        let (start, end) = found[0];
        assert_eq!(&body[start..end], b64("ssn: 078-05-1120"));
        assert_eq!(first(&body.as_bytes()[start..end]), b"ssn: 078-05-1120");
        let url_safe = general_purpose::URL_SAFE_NO_PAD.encode("card?4111>1111 1111 1111");
        assert_eq!(first(url_safe.as_bytes()), b"card?4111>1111 1111 1111");
        // Padding counts toward the length: an SSN alone is 15 characters and `=`.
        let ssn = b64("078-05-1120");
        assert_eq!(runs(format!("\"{ssn}\"").as_bytes()), vec![(1, 17)]);
    }

    #[test]
    fn the_byte_range_test_is_exact() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut eight = [b'a'; 8];
                eight[at] = b;
                let outside = !(b'+'..=b'z').contains(&b);
                let expected = if outside { 0x80u64 << (8 * at) } else { 0 };
                assert_eq!(outside_range(u64::from_le_bytes(eight)), expected, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn runs_are_found_wherever_they_start() {
        let run = b64("the owner is ann@example.com");
        for lead in 0..20 {
            let text = format!("{}\"{run}\" {}", "ab cd ".repeat(lead), "x".repeat(lead % (MIN_RUN - 1)));
            let start = text.find(&run).unwrap();
            assert_eq!(runs(text.as_bytes()), vec![(start, start + run.len())], "{text}");
        }
        assert_eq!(runs(run.as_bytes()), vec![(0, run.len())]);
        assert_eq!(runs(&run.as_bytes()[..MIN_RUN - 1]), vec![]);
    }

    #[test]
    fn wrapped_lines_continue_a_run() {
        let text = "name: Ann\nssn: 078-05-1120\nemail: ann@example.com\n".repeat(3);
        let wrapped: Vec<String> =
            b64(&text).as_bytes().chunks(60).map(|l| String::from_utf8(l.to_vec()).unwrap()).collect();
        for joiner in ["\n", "\r\n", "\\n"] {
            let body = format!("\"{}{joiner}\"", wrapped.join(joiner));
            let found = runs(body.as_bytes());
            assert_eq!(found.len(), 1, "{joiner:?}: {found:?}");
            assert_eq!(first(&body.as_bytes()[found[0].0..found[0].1]), text.as_bytes());
        }
    }

    #[test]
    fn glued_pieces_are_read_from_each_separator_and_alignment() {
        let ssn = b64("id?078-05-1120");
        for glued in [format!("files/aWQ/{ssn}"), format!("n{ssn}"), format!("2F{ssn}")] {
            let read: Vec<Vec<u8>> = readings(glued.as_bytes()).collect();
            assert!(read.iter().any(|r| r == b"id?078-05-1120"), "{glued}");
        }
    }

    #[test]
    fn what_is_not_base64_text_is_left() {
        for text in [
            "an ordinary sentence with short words only",
            "3f2a9c1e-7b4d-4e8a-9c3f-2d1b0a9e8f7c",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "/api/v1/customers/12345/invoices",
            "ThisIsAVeryLongIdentifierName",
        ] {
            let texts = runs(text.as_bytes())
                .into_iter()
                .flat_map(|(s, e)| readings(&text.as_bytes()[s..e]).collect::<Vec<_>>())
                .filter(|r| reads_as_text(r));
            assert_eq!(texts.count(), 0, "{text}");
        }
        assert!(reads_as_text(b"Jos\xe9 078-05-1120") && reads_as_text(b"\x1b[31m078-05-1120\x1b[0m"));
    }

    fn first(run: &[u8]) -> Vec<u8> {
        readings(run).next().unwrap()
    }
}
