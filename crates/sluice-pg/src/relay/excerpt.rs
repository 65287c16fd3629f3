//! The first rows of a result kept for the record (`[recording] result_rows`): read from the
//! RowDescription and DataRows exactly as they go to the client, so masked where masking applies.

use super::*;
use sluice_core::{ExcerptLimits, ResultExcerpt};

/// A result's columns as a RowDescription gave them: their names (shared with every excerpt of
/// this shape) and which come in binary.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Shape {
    description: Box<[u8]>,
    pub(super) names: Arc<[String]>,
    binary: Box<[bool]>,
}

/// The shape a RowDescription gives: the last one again when it is the same (a repeated
/// statement's), so that repeating costs a comparison, not a parse.
pub(super) fn shape(row_description: &[u8], last: &mut Option<Arc<Shape>>) -> Arc<Shape> {
    if let Some(shape) = last.as_ref().filter(|s| *s.description == *row_description) {
        return Arc::clone(shape);
    }
    let mut r = Reader::new(row_description);
    let count = r.i16().unwrap_or(0).max(0) as usize;
    let (mut names, mut binary) = (Vec::with_capacity(count.min(64)), Vec::with_capacity(count.min(64)));
    for _ in 0..count {
        let Some(name) = r.cstr() else { break };
        // Table OID, column number, type OID, size, modifier: then the format code.
        let format = r.bytes(4 + 2 + 4 + 2 + 4).and_then(|_| r.i16());
        names.push(String::from_utf8_lossy(name).into_owned());
        binary.push(format == Some(1));
    }
    let shape = Arc::new(Shape { description: row_description.into(), names: names.into(), binary: binary.into() });
    *last = Some(Arc::clone(&shape));
    shape
}

/// Adds a DataRow to `excerpt` unless the limits are reached. A value is read no further than the
/// byte budget and its margin (a binary one is only described).
pub(super) fn capture(excerpt: &mut ResultExcerpt, limits: ExcerptLimits, shape: Option<&Shape>, row: &[u8]) {
    if !excerpt.wants_row(limits) {
        return;
    }
    let mut r = Reader::new(row);
    let count = r.i16().unwrap_or(0).max(0) as usize;
    let binary = |i: usize| shape.and_then(|s| s.binary.get(i)).copied().unwrap_or(false);
    let values = (0..count).map_while(|i| {
        let len = r.i32()?;
        let Ok(len) = usize::try_from(len) else { return Some(None) };
        let bytes = r.bytes(len)?;
        Some(Some(if binary(i) {
            format!("(binary, {len} bytes)")
        } else {
            let cut = &bytes[..bytes.len().min(ResultExcerpt::read_limit(limits))];
            match std::str::from_utf8(cut) {
                // Binary after all (a format the description did not say): described, not kept.
                Err(e) if e.error_len().is_some() => format!("(binary, {len} bytes)"),
                _ => {
                    let mut text = String::from_utf8_lossy(cut).into_owned();
                    if cut.len() < bytes.len() {
                        text.push('…');
                    }
                    text
                }
            }
        }))
    });
    excerpt.push_row(limits, values);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut body = (values.len() as i16).to_be_bytes().to_vec();
        for value in values {
            match value {
                Some(v) => {
                    body.extend((v.len() as i32).to_be_bytes());
                    body.extend(*v);
                }
                None => body.extend((-1i32).to_be_bytes()),
            }
        }
        body
    }

    #[test]
    fn rows_are_kept_as_text_up_to_the_limits() {
        let mut description = 2i16.to_be_bytes().to_vec();
        for (name, format) in [("id", 0i16), ("blob", 1)] {
            description.extend(name.as_bytes());
            description.push(0);
            description.extend([0u8; 16]);
            description.extend(format.to_be_bytes());
        }
        let mut last = None;
        let shape = shape(&description, &mut last);
        assert_eq!(*shape.names, ["id".to_string(), "blob".to_string()]);
        assert_eq!(*shape.binary, [false, true]);
        assert!(Arc::ptr_eq(&shape, &super::shape(&description, &mut last)), "the same description, the same shape");
        let limits = ExcerptLimits { rows: 2, bytes: 8 };
        let margin = ResultExcerpt::read_limit(limits) - 8;
        let mut excerpt = ResultExcerpt::new(Arc::clone(&shape.names));
        capture(&mut excerpt, limits, Some(&shape), &row(&[Some(b"42"), None]));
        let long = "é".repeat(margin);
        capture(&mut excerpt, limits, Some(&shape), &row(&[Some(long.as_bytes()), Some(b"\x00\x01")]));
        capture(&mut excerpt, limits, Some(&shape), &row(&[Some(b"3"), None]));
        let mut unsaid = ResultExcerpt::new(Arc::clone(&shape.names));
        capture(&mut unsaid, limits, None, &row(&[Some(b"\xff\x00\x01"), Some(b"ok")]));
        assert_eq!(unsaid.rows().next().unwrap()[0].as_deref(), Some("(binary, 3 bytes)"));
        let rows: Vec<_> = excerpt.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], [Some("42".to_string()), None]);
        assert!(rows[1][0].as_deref().is_some_and(|v| v.len() > 8 && v.ends_with('…')), "read into the margin");
        assert!(excerpt.truncated);
        excerpt.fit_budget();
        let rows: Vec<_> = excerpt.rows().collect();
        assert_eq!(rows[1][0].as_deref(), Some("ééé…"), "cut where the 8 bytes run out, once masked");
        assert_eq!(rows[1][1].as_deref(), Some("…"));
    }
}
