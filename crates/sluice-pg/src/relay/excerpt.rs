//! The first rows of a result kept for the record (`[recording] result_rows`): read from the
//! RowDescription and DataRows exactly as they go to the client, so masked where masking applies.

use super::*;
use sluice_core::{ExcerptLimits, ResultExcerpt};

/// The result's columns: each one's name and whether its values come in binary.
pub(super) fn columns(row_description: &[u8]) -> Vec<(String, bool)> {
    let mut r = Reader::new(row_description);
    let count = r.i16().unwrap_or(0).max(0) as usize;
    let mut columns = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let Some(name) = r.cstr() else { break };
        // Table OID, column number, type OID, size, modifier: then the format code.
        let format = r.bytes(4 + 2 + 4 + 2 + 4).and_then(|_| r.i16());
        columns.push((String::from_utf8_lossy(name).into_owned(), format == Some(1)));
    }
    columns
}

/// Adds a DataRow to `excerpt` unless the limits are reached. A value is read no further than the
/// byte budget (a binary one is only described).
pub(super) fn capture(excerpt: &mut ResultExcerpt, limits: ExcerptLimits, columns: &[(String, bool)], row: &[u8]) {
    if !excerpt.wants_row(limits) {
        return;
    }
    let mut r = Reader::new(row);
    let count = r.i16().unwrap_or(0).max(0) as usize;
    let mut values = Vec::with_capacity(count.min(64));
    for i in 0..count {
        let Some(len) = r.i32() else { break };
        let Ok(len) = usize::try_from(len) else {
            values.push(None);
            continue;
        };
        let Some(bytes) = r.bytes(len) else { break };
        values.push(Some(if columns.get(i).is_some_and(|(_, binary)| *binary) {
            format!("(binary, {len} bytes)")
        } else {
            let cut = &bytes[..bytes.len().min(limits.bytes + 4)];
            let mut text = String::from_utf8_lossy(cut).into_owned();
            if cut.len() < bytes.len() {
                text.push('…');
            }
            text
        }));
    }
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
        let columns = columns(&description);
        assert_eq!(columns, [("id".to_string(), false), ("blob".to_string(), true)]);
        let limits = ExcerptLimits { rows: 2, bytes: 8 };
        let mut excerpt = ResultExcerpt::new(vec!["id".into(), "blob".into()]);
        capture(&mut excerpt, limits, &columns, &row(&[Some(b"42"), None]));
        capture(&mut excerpt, limits, &columns, &row(&[Some("ééééééé".as_bytes()), Some(b"\x00\x01")]));
        capture(&mut excerpt, limits, &columns, &row(&[Some(b"3"), None]));
        assert_eq!(excerpt.rows[0], [Some("42".to_string()), None]);
        assert_eq!(excerpt.rows[1][0].as_deref(), Some("ééé…"), "cut where the 8 bytes run out");
        assert_eq!(excerpt.rows.len(), 2);
        assert!(excerpt.truncated);
    }
}
