//! Masking applied to what the server sends: a plan per result (from its RowDescription, or the
//! portal's description sluice asks for before an Execute), DataRows rewritten value by value,
//! error and notice texts, and COPY rows. A result with nothing to mask passes byte for byte.

use crate::FastMap;
use crate::codec::{HEADER_LEN, Reader, put_message};
use crate::value::{TypeClass, finds_in_binary, mask_value, mask_whole, type_class};
use bytes::{BufMut, Bytes, BytesMut};
use sluice_mask::{ColumnMask, Finding, MaskAction, Masked, SessionMasking};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A field of an ErrorResponse or NoticeResponse: its type, its value, and the value masked.
type NoticeField<'a> = (u8, &'a [u8], Option<Vec<u8>>);

/// One column of a RowDescription, as far as masking cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub format: i16,
}

/// The fields of a RowDescription body; `None` when it is malformed.
pub fn row_description(body: &[u8]) -> Option<Vec<Field>> {
    let mut r = Reader::new(body);
    let count = usize::try_from(r.i16()?).ok()?;
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        r.cstr()?;
        let table_oid = r.i32()? as u32;
        let column = r.i16()?;
        let type_oid = r.i32()? as u32;
        r.i16()?;
        r.i32()?;
        let format = r.i16()?;
        fields.push(Field { table_oid, column, type_oid, format });
    }
    Some(fields)
}

#[derive(Clone, Debug)]
struct ColumnPlan {
    class: TypeClass,
    binary: bool,
    rule: Option<ColumnMask>,
}

impl ColumnPlan {
    fn idle(&self) -> bool {
        self.class == TypeClass::Skip && self.rule.is_none()
    }
}

/// What to do with each column of the result in progress.
#[derive(Clone, Debug, Default)]
pub struct RowPlan {
    columns: Vec<ColumnPlan>,
    /// False when no column needs anything: rows pass untouched.
    active: bool,
    /// Rows that do not fit the plan lose every value (see `unknown`).
    strict: bool,
}

impl RowPlan {
    /// A plan from described fields (a portal's description carries its result formats);
    /// `masks[i]` is column `i`'s rule, if any.
    pub fn new(fields: &[Field], masks: &[Option<ColumnMask>]) -> RowPlan {
        let columns = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let rule = masks.get(i).cloned().flatten();
                ColumnPlan { class: type_class(f.type_oid), binary: f.format == 1, rule }
            })
            .collect();
        RowPlan::of(columns, false)
    }

    /// For rows whose shape sluice does not know: every value is scanned as an opaque one (found
    /// ⇒ NULL), which is right in either format. `strict` (the session has column rules, which
    /// cannot be matched without a shape) makes every value NULL.
    pub fn unknown(strict: bool) -> RowPlan {
        RowPlan { columns: Vec::new(), active: true, strict }
    }

    fn of(columns: Vec<ColumnPlan>, strict: bool) -> RowPlan {
        let active = strict || columns.iter().any(|c| !c.idle());
        RowPlan { columns, active, strict }
    }

    fn opaque(count: usize, strict: bool) -> RowPlan {
        let rule = strict.then(|| ColumnMask { label: Arc::from("unknown-shape"), action: MaskAction::Null });
        let columns =
            (0..count).map(|_| ColumnPlan { class: TypeClass::Opaque, binary: false, rule: rule.clone() }).collect();
        RowPlan::of(columns, strict)
    }

    pub fn is_active(&self) -> bool {
        self.active
    }
}

/// Masks one session's responses; owns the scratch space so a row costs no allocation.
pub struct ResponseMasker {
    session: SessionMasking,
    findings: Vec<Finding>,
    value: Vec<u8>,
    /// Replaced values of the row in progress, back to back; `changes` index into it.
    replaced: Vec<u8>,
    changes: Vec<(usize, Masked, usize, usize)>,
    /// Byte ranges of the values of the row in progress.
    spans: Vec<Option<(usize, usize)>>,
    /// Plans by RowDescription, so a repeated query costs a lookup (see `plan_for`).
    plans: FastMap<Bytes, (Instant, Arc<RowPlan>)>,
}

/// The COPY OUT in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Binary,
}

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Distinct result shapes a session remembers plans for.
const MAX_CACHED_PLANS: usize = 256;
const PLAN_FRESH_FOR: Duration = crate::catalog::FRESH_FOR;

impl ResponseMasker {
    pub fn new(session: SessionMasking) -> Self {
        ResponseMasker {
            session,
            findings: Vec::new(),
            value: Vec::new(),
            replaced: Vec::new(),
            changes: Vec::new(),
            spans: Vec::new(),
            plans: FastMap::default(),
        }
    }

    pub fn session(&self) -> &SessionMasking {
        &self.session
    }

    /// The plan made earlier for the same RowDescription, while it is fresh (column names can be
    /// renamed, so no longer than the catalog trusts them).
    pub fn cached_plan(&self, description: &[u8]) -> Option<Arc<RowPlan>> {
        self.plans.get(description).filter(|(at, _)| at.elapsed() < PLAN_FRESH_FOR).map(|(_, p)| Arc::clone(p))
    }

    pub fn remember_plan(&mut self, description: &[u8], plan: &Arc<RowPlan>) {
        if self.plans.len() >= MAX_CACHED_PLANS {
            self.plans.clear();
        }
        self.plans.insert(Bytes::copy_from_slice(description), (Instant::now(), Arc::clone(plan)));
    }

    /// Masks a DataRow. Writes the rewritten frame to `out` and returns true when anything changed;
    /// false means the original frame goes as it is. A row that does not match its plan is masked
    /// as if its shape were unknown.
    pub fn data_row(&mut self, plan: &RowPlan, body: &[u8], out: &mut BytesMut) -> bool {
        if !split_row(body, &mut self.spans) {
            // Malformed from the server: nothing of it is passed on.
            put_message(out, b'D', |b| b.put_i16(0));
            return true;
        }
        let count = self.spans.len();
        let fallback;
        let plan = if plan.columns.len() == count {
            plan
        } else {
            fallback = RowPlan::opaque(count, plan.strict);
            &fallback
        };
        self.changes.clear();
        self.replaced.clear();
        let masking = self.session.masking();
        let content = masking.content();
        for (i, (span, column)) in self.spans.iter().zip(&plan.columns).enumerate() {
            let Some((start, end)) = *span else { continue };
            if column.idle() {
                continue;
            }
            let value = &body[start..end];
            let masked = match &column.rule {
                Some(rule) => mask_whole(column.class, column.binary, value, rule, masking.key(), &mut self.value),
                None => mask_value(&content, column.class, column.binary, value, &mut self.findings, &mut self.value),
            };
            if masked != Masked::Clear {
                let from = self.replaced.len();
                self.replaced.extend_from_slice(&self.value);
                self.changes.push((i, masked, from, self.replaced.len()));
            }
        }
        if self.changes.is_empty() {
            return false;
        }
        put_message(out, b'D', |b| {
            b.put_i16(count as i16);
            let mut changes = self.changes.iter().peekable();
            for (i, span) in self.spans.iter().enumerate() {
                match (changes.next_if(|c| c.0 == i), span) {
                    (Some((_, Masked::Null, _, _)), _) | (None, None) => b.put_i32(-1),
                    (Some(&(_, _, from, to)), _) => {
                        b.put_i32((to - from) as i32);
                        b.put_slice(&self.replaced[from..to]);
                    }
                    (None, Some((start, end))) => {
                        b.put_i32((end - start) as i32);
                        b.put_slice(&body[*start..*end]);
                    }
                }
            }
        });
        true
    }

    /// Masks a FunctionCallResponse (the result of a fast-path call) as the one column of a row
    /// of type `type_oid` in `format`: detectors only, since a function's result is no table's
    /// column. Writes the rewritten frame to `out` and returns true when anything changed.
    ///
    /// A masked result keeps the original's length, cut or filled with `*`: libpq reads a fast-path
    /// result into the caller's buffer (`lo_read`'s) trusting the server's length, so a longer one
    /// would overrun it, and NULL would read as a failed call.
    pub fn function_result(&mut self, type_oid: u32, format: i16, body: &[u8], out: &mut BytesMut) -> bool {
        let field = Field { table_oid: 0, column: 0, type_oid, format };
        let plan = RowPlan::new(&[field], &[]);
        if !plan.is_active() {
            return false;
        }
        // The value as a one-column DataRow: the same length-prefixed value after a count.
        let mut row = BytesMut::with_capacity(body.len() + 2);
        row.put_i16(1);
        row.put_slice(body);
        let mut masked = BytesMut::new();
        if !self.data_row(&plan, &row, &mut masked) {
            return false;
        }
        // Back from a DataRow frame (tag, length, count) to a FunctionCallResponse.
        let original = Reader::new(body).i32().unwrap_or(-1);
        let Ok(length) = usize::try_from(original) else {
            // NULL, or malformed from the server: nothing of it is passed on.
            put_message(out, b'V', |b| b.put_i32(-1));
            return true;
        };
        // The masked value's bytes (none where it became NULL), at the original length.
        let mut value = masked.get(HEADER_LEN + 6..).unwrap_or_default().to_vec();
        value.resize(length, b'*');
        put_message(out, b'V', |b| {
            b.put_i32(original);
            b.put_slice(&value);
        });
        true
    }

    /// Masks the fields of an ErrorResponse or NoticeResponse that can carry data: every one but
    /// severity, code, positions and the server's source location (message, detail, hint, context
    /// and internal query echo values; schema, table, column, datatype and constraint names can be
    /// set to anything by `RAISE … USING`; a field PostgreSQL adds later is masked too). Returns
    /// true when it wrote a new frame.
    pub fn notice(&mut self, tag: u8, body: &[u8], out: &mut BytesMut) -> bool {
        let content = self.session.masking().content();
        let mut fields: Vec<NoticeField<'_>> = Vec::new();
        let mut r = Reader::new(body);
        while let Some(kind) = r.u8() {
            if kind == 0 {
                break;
            }
            let Some(value) = r.cstr() else { break };
            let masked = if matches!(kind, b'S' | b'V' | b'C' | b'P' | b'p' | b'F' | b'L' | b'R') {
                None
            } else {
                content.mask_line(value, &mut self.findings)
            };
            fields.push((kind, value, masked));
        }
        if fields.iter().all(|(_, _, m)| m.is_none()) {
            return false;
        }
        put_message(out, tag, |b| {
            for (kind, value, masked) in &fields {
                b.put_u8(*kind);
                crate::codec::put_cstr(b, masked.as_deref().unwrap_or(value));
            }
            b.put_u8(0);
        });
        true
    }

    /// Masks the value of a ParameterStatus (`set_config('application_name', …)` reports whatever
    /// text it was given). Returns true when it wrote a new frame.
    pub fn parameter_status(&mut self, body: &[u8], out: &mut BytesMut) -> bool {
        let mut r = Reader::new(body);
        let (Some(name), Some(value)) = (r.cstr(), r.cstr()) else { return false };
        let Some(masked) = self.session.masking().content().mask_line(value, &mut self.findings) else { return false };
        put_message(out, b'S', |b| {
            crate::codec::put_cstr(b, name);
            crate::codec::put_cstr(b, &masked);
        });
        true
    }

    /// Masks the payload of a NotificationResponse (`pg_notify` carries any text another session
    /// chose to send). Returns true when it wrote a new frame.
    pub fn notification(&mut self, body: &[u8], out: &mut BytesMut) -> bool {
        let mut r = Reader::new(body);
        let (Some(pid), Some(channel), Some(payload)) = (r.i32(), r.cstr(), r.cstr()) else { return false };
        let Some(masked) = self.session.masking().content().mask_line(payload, &mut self.findings) else {
            return false;
        };
        put_message(out, b'A', |b| {
            b.put_i32(pid);
            crate::codec::put_cstr(b, channel);
            crate::codec::put_cstr(b, &masked);
        });
        true
    }

    /// Masks one CopyData message of a COPY OUT. Text and CSV rows are masked in place; binary
    /// tuples lose (to NULL) each field where anything is found. Returns true when it wrote a frame.
    pub fn copy_data(&mut self, format: CopyFormat, body: &[u8], out: &mut BytesMut) -> bool {
        let content = self.session.masking().content();
        match format {
            CopyFormat::Text => match content.mask_line(body, &mut self.findings) {
                Some(line) => {
                    put_message(out, b'd', |b| b.put_slice(&line));
                    true
                }
                None => false,
            },
            CopyFormat::Binary => {
                self.value.clear();
                let sensitive = |field: &[u8], findings: &mut Vec<Finding>| finds_in_binary(&content, field, findings);
                let Some(changed) = mask_binary_copy(body, &mut self.value, sensitive, &mut self.findings) else {
                    // Not a tuple sluice can read: nothing of it is passed on.
                    put_message(out, b'd', |_| {});
                    return true;
                };
                if changed {
                    put_message(out, b'd', |b| b.put_slice(&self.value));
                }
                changed
            }
        }
    }
}

/// The byte ranges of a DataRow body's values (`None` for SQL NULL), into `spans`; false when the
/// body is malformed.
fn split_row(body: &[u8], spans: &mut Vec<Option<(usize, usize)>>) -> bool {
    spans.clear();
    let mut r = Reader::new(body);
    let Some(count) = r.i16().and_then(|c| usize::try_from(c).ok()) else { return false };
    for _ in 0..count {
        let Some(len) = r.i32() else { return false };
        if len < 0 {
            spans.push(None);
            continue;
        }
        let start = body.len() - r.remaining();
        if r.bytes(len as usize).is_none() {
            return false;
        }
        spans.push(Some((start, start + len as usize)));
    }
    r.remaining() == 0
}

/// Rewrites a binary COPY message (an optional file header, then one tuple or the trailer) into
/// `out`, with every field `sensitive` says yes to set to NULL. `None` when it cannot be read.
fn mask_binary_copy(
    body: &[u8],
    out: &mut Vec<u8>,
    mut sensitive: impl FnMut(&[u8], &mut Vec<Finding>) -> bool,
    findings: &mut Vec<Finding>,
) -> Option<bool> {
    let mut r = Reader::new(body);
    if body.starts_with(COPY_SIGNATURE) {
        r.bytes(COPY_SIGNATURE.len() + 4)?;
        let extension = usize::try_from(r.i32()?).ok()?;
        r.bytes(extension)?;
        out.extend_from_slice(&body[..body.len() - r.remaining()]);
        if r.remaining() == 0 {
            return Some(false);
        }
    }
    let count = r.i16()?;
    out.extend_from_slice(&count.to_be_bytes());
    let mut changed = false;
    for _ in 0..count.max(0) {
        let len = r.i32()?;
        if len < 0 {
            out.extend_from_slice(&len.to_be_bytes());
            continue;
        }
        let field = r.bytes(len as usize)?;
        if sensitive(field, findings) {
            changed = true;
            out.extend_from_slice(&(-1i32).to_be_bytes());
        } else {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
    }
    (r.remaining() == 0).then_some(changed)
}

/// The overall format of a CopyOutResponse body.
pub fn copy_format(body: &[u8]) -> CopyFormat {
    if body.first() == Some(&1) { CopyFormat::Binary } else { CopyFormat::Text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;
    use sluice_mask::{MaskingSpec, TokenKey};

    fn masker() -> ResponseMasker {
        let masking = Arc::new(sluice_mask::compile(&MaskingSpec::default(), TokenKey::new([5; 32])).unwrap());
        let who = Identity { name: "a".into(), groups: vec![], credential_id: "t".into() };
        ResponseMasker::new(masking.for_session(&who, "c"))
    }

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    fn field(type_oid: u32, format: i16) -> Field {
        Field { table_oid: 0, column: 0, type_oid, format }
    }

    #[test]
    fn data_rows_are_masked_by_type_and_format() {
        let mut m = masker();
        let plan = RowPlan::new(&[field(23, 0), field(25, 0), field(20, 1), field(25, 0)], &[]);
        assert!(plan.is_active());
        let card = 4111111111111111i64.to_be_bytes();
        let body = row(&[Some(b"42"), Some(b"mail a@b.io"), Some(&card), None]);
        let mut out = BytesMut::new();
        assert!(m.data_row(&plan, &body, &mut out));
        assert_eq!(&out[5..], &row(&[Some(b"42"), Some(b"mail [redacted:email]"), None, None])[..]);

        let clean = row(&[Some(b"1"), Some(b"hello"), Some(&7i64.to_be_bytes()), None]);
        out.clear();
        assert!(!m.data_row(&plan, &clean, &mut out));
        assert!(out.is_empty());

        let ints = RowPlan::new(&[field(23, 0)], &[]);
        assert!(!ints.is_active(), "an int4 result needs no work");
    }

    #[test]
    fn a_row_that_does_not_fit_its_plan_is_masked_as_unknown() {
        let mut m = masker();
        let plan = RowPlan::new(&[field(23, 0)], &[]);
        let mut out = BytesMut::new();
        assert!(m.data_row(&plan, &row(&[Some(b"1"), Some(b"x 123-45-6789")]), &mut out));
        assert_eq!(&out[5..], &row(&[Some(b"1"), None])[..]);
        out.clear();
        assert!(m.data_row(&RowPlan::unknown(true), &row(&[Some(b"1"), Some(b"x")]), &mut out));
        assert_eq!(&out[5..], &row(&[None, None])[..], "strict: column rules cannot be matched, so nothing passes");
        out.clear();
        assert!(m.data_row(&plan, b"\x00\x01\x00\x00\x00\x09abc", &mut out), "truncated row is dropped");
        assert_eq!(&out[5..], &[0, 0]);
    }

    #[test]
    fn column_rules_mask_whole_values_in_either_format() {
        let mut m = masker();
        let ssn = Some(ColumnMask { label: Arc::from("pii"), action: MaskAction::Partial { keep_last: 4 } });
        let plan = RowPlan::new(&[field(23, 1), field(25, 1), field(23, 1)], &[None, ssn.clone(), ssn]);
        let mut out = BytesMut::new();
        let body = row(&[Some(&1i32.to_be_bytes()), Some(b"123456789"), Some(&5i32.to_be_bytes())]);
        assert!(m.data_row(&plan, &body, &mut out));
        assert_eq!(&out[5..], &row(&[Some(&1i32.to_be_bytes()), Some(b"*****6789"), None])[..]);
    }

    #[test]
    fn row_descriptions_parse() {
        let mut rd = Vec::new();
        rd.extend_from_slice(&1i16.to_be_bytes());
        rd.extend_from_slice(b"ssn\0");
        rd.extend_from_slice(&16384i32.to_be_bytes());
        rd.extend_from_slice(&3i16.to_be_bytes());
        rd.extend_from_slice(&25i32.to_be_bytes());
        rd.extend_from_slice(&(-1i16).to_be_bytes());
        rd.extend_from_slice(&(-1i32).to_be_bytes());
        rd.extend_from_slice(&0i16.to_be_bytes());
        assert_eq!(row_description(&rd), Some(vec![Field { table_oid: 16384, column: 3, type_oid: 25, format: 0 }]));
        assert_eq!(row_description(&rd[..rd.len() - 1]), None);
    }

    #[test]
    fn errors_and_copy_rows_are_masked() {
        let mut m = masker();
        let mut out = BytesMut::new();
        let body = b"SERROR\0C22P02\0Minvalid input syntax for type integer: \"123-45-6789\"\0\0";
        assert!(m.notice(b'E', body, &mut out));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("[redacted:ssn]") && !text.contains("6789") && text.contains("22P02"), "{text}");
        out.clear();
        assert!(!m.notice(b'N', b"SNOTICE\0Mall fine\0\0", &mut out));
        let raised = b"SERROR\0CP0001\0Mx\0cjane@example.com\0tnote 123-45-6789\0Fpl_exec.c\0\0";
        assert!(m.notice(b'E', raised, &mut out));
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("jane@") && !text.contains("6789") && text.contains("pl_exec.c"), "{text}");
        out.clear();
        assert!(m.parameter_status(b"application_name\0jane@example.com\0", &mut out));
        assert_eq!(&out[5..], b"application_name\0[redacted:email]\0");
        out.clear();
        assert!(!m.parameter_status(b"TimeZone\0UTC\0", &mut out));
        assert!(m.notification(b"\0\0\0\x07jobs\0done for jane@example.com\0", &mut out));
        assert_eq!(&out[5..], b"\0\0\0\x07jobs\0done for [redacted:email]\0");
        out.clear();

        assert!(m.copy_data(CopyFormat::Text, b"1\tjane@example.com\t\\N\n", &mut out));
        assert_eq!(&out[5..], b"1\t[redacted:email]\t\\N\n");

        let mut tuple = Vec::new();
        tuple.extend_from_slice(COPY_SIGNATURE);
        tuple.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        tuple.extend_from_slice(&row(&[Some(&7i32.to_be_bytes()), Some(b"4111 1111 1111 1111")]));
        out.clear();
        assert!(m.copy_data(CopyFormat::Binary, &tuple, &mut out));
        let mut expected = tuple[..19].to_vec();
        expected.extend_from_slice(&row(&[Some(&7i32.to_be_bytes()), None]));
        assert_eq!(&out[5..], &expected[..]);
        out.clear();
        assert!(!m.copy_data(CopyFormat::Binary, &(-1i16).to_be_bytes(), &mut out), "trailer passes");
    }
}
