//! Refusals on the wire: a refused message is replaced in place by one the server rejects (so the
//! replies stay in order and an extended pipeline fails up to Sync as it would), and the server's
//! error is swapped for sluice's own.

use super::*;

/// Text the server cannot parse; sent in place of a refused statement.
pub(super) const REFUSAL_MARKER: &str = "sluice refused this statement";

/// The client's error for a refusal of `text` (`None` when the decision allows). A statement refused
/// as unparseable gets exactly the server's syntax error — its message and position, no word of
/// sluice — so clients fix their SQL as usual; that sluice refused it is in the recording.
pub(super) fn refusal_bytes(decision: &Decision, text: &str) -> Option<(Bytes, &'static str)> {
    let (refusal, what) = match decision {
        Decision::Allow { .. } | Decision::Approved { .. } => return None,
        Decision::Deny(r) => (r, "refused by rule"),
        Decision::Review(r) => (r, "needs approval under rule"),
        // Resolved by `decide` before anything asks for bytes; refused if it ever gets here.
        Decision::Hold(h) => {
            let error = PgError::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("sluice: review #{} is still open", h.review_id),
            )
            .with_hint(h.hint.clone());
            return Some((error.to_bytes().freeze(), sqlstate::INSUFFICIENT_PRIVILEGE));
        }
    };
    let code = match refusal.cause {
        RefusalCause::Policy | RefusalCause::Pending { .. } => sqlstate::INSUFFICIENT_PRIVILEGE,
        RefusalCause::Unparseable => sqlstate::SYNTAX_ERROR,
        RefusalCause::Cancelled => sqlstate::QUERY_CANCELED,
        RefusalCause::Unsupported => sqlstate::FEATURE_NOT_SUPPORTED,
    };
    if refusal.cause == RefusalCause::Unparseable {
        let mut error = PgError::error(code, refusal.reason.clone());
        error.position = sluice_sql::error_position(text);
        return Some((error.to_bytes().freeze(), code));
    }
    let mut error = PgError::error(code, format!("sluice: {what} \"{}\": {}", refusal.rule, refusal.reason));
    error.detail = refusal.detail.clone();
    error.hint = refusal.hint.clone();
    Some((error.to_bytes().freeze(), code))
}

/// What sluice sends in place of a statement its parser rejects, so that the client gets the
/// server's own syntax error (message, position, hint: its grammar, which may differ from
/// libpg_query's): a Parse of the text under `name`, which runs nothing, then a Close of it and
/// a Parse of the refusal marker. Where the server's raw parser rejects the text, it skips the
/// rest up to Sync and its error goes to the client as it is. Where the server parses it, the
/// statement is closed again (nothing can bind it) and sluice's refusal replaces the marker's
/// error. Either way the server's transaction fails, as it would have. `sync` ends a simple
/// Query's stand-in.
pub(super) fn probe(name: &[u8], text: &str, sync: bool) -> BytesMut {
    let mut out = BytesMut::new();
    codec::parse(&mut out, name, text);
    codec::close_statement(&mut out, name);
    codec::parse(&mut out, name, REFUSAL_MARKER);
    if sync {
        codec::sync(&mut out);
    }
    out
}

/// A simple-protocol message refused in place: the marker query the server will reject, and the
/// pending entry whose error replaces the server's.
pub(super) fn refused_simple(mut pending: Pending, refusal: (Bytes, &'static str)) -> (BytesMut, Pending) {
    let mut marker = BytesMut::new();
    codec::query(&mut marker, REFUSAL_MARKER);
    pending.refusal = Some(refusal);
    (marker, pending)
}

/// Close messages for the prepared statements a review approved for one run, and a Sync: sent right
/// after the client's Sync that ends their pipeline, so no later message can bind them again (a
/// Close of a statement that does not exist is not an error).
pub(super) fn close_approved(out: &mut BytesMut, names: &[Bytes]) {
    for name in names {
        codec::close_statement(out, name);
    }
    codec::sync(out);
}

/// The refusal of a second Bind of a prepared statement a review approved for one run.
pub(super) fn once_only_refusal(review_id: i64) -> (Bytes, &'static str) {
    let error = PgError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("sluice: review #{review_id} approved one run of this prepared statement, and it has run"),
    )
    .with_hint("send the statement again (Parse) to ask for a new review");
    (error.to_bytes().freeze(), sqlstate::INSUFFICIENT_PRIVILEGE)
}

/// The refusal of a Bind of a name sluice saw no statement prepared under.
pub(super) fn not_prepared(statement: &[u8]) -> (Bytes, &'static str) {
    let error = PgError::error(
        sqlstate::INVALID_SQL_STATEMENT_NAME,
        format!(
            "sluice: prepared statement \"{}\" was not prepared in this session",
            String::from_utf8_lossy(statement)
        ),
    )
    .with_hint("prepare it first (Parse, or SQL PREPARE), then bind it");
    (error.to_bytes().freeze(), sqlstate::INVALID_SQL_STATEMENT_NAME)
}

/// A refused Bind: replaced by a Bind of a statement that does not exist, so the server refuses it
/// in order (and skips the rest up to Sync) and sluice's error replaces its.
pub(super) fn refused_bind(portal: &[u8], refusal: (Bytes, &'static str), mut pending: Pending) -> (BytesMut, Pending) {
    let mut marker = BytesMut::new();
    put_message(&mut marker, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, REFUSAL_MARKER.as_bytes());
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(0);
    });
    pending.refusal = Some(refusal);
    (marker, pending)
}
