//! A statement held for a review in wait mode: the client is told, the wait ends with the engine's
//! answer, a cancel, the client hanging up, or the session losing its standing.

use super::*;

/// What holding a statement needs besides the gate: the tracker (to name the review if the session
/// ends), and the client, which is still read so that a hang-up ends the wait.
pub(super) struct Held<'a, R> {
    pub(super) tracker: &'a Mutex<Tracker>,
    pub(super) kind: Kind,
    /// Statements approved for one run (SQL `EXECUTE` of them is refused).
    pub(super) approved_once: &'a FastMap<Bytes, (i64, bool)>,
    pub(super) client: &'a mut R,
    /// What the client sent while it waited, handled once the held statement is.
    pub(super) early: &'a mut BytesMut,
}

/// How the session ends if it may not go on (see `Gate::session_standing`).
pub(super) fn standing_end<S: SessionGate>(gate: &S) -> Option<RelayEnd> {
    match gate.standing() {
        Standing::Valid => None,
        Standing::CredentialEnded => {
            let e = PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "sluice: the token this session was opened with ({}) has been revoked or has expired",
                    gate.principal().credential_id
                ),
            )
            .with_hint("reconnect with a valid token; `sluice token list` shows each token's state");
            Some(RelayEnd::CredentialEnded(e))
        }
        Standing::AccessEnded => {
            let e = PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "sluice: the write access this session was opened with has ended (its access grant expired \
                 or was revoked, or the policy changed), and its upstream session is not read-only",
            )
            .with_hint("reconnect: a new session is read-only; `sluice access request` asks for write access again");
            Some(RelayEnd::AccessEnded(e))
        }
    }
}

/// How often a held statement's session checks that it may still go on.
pub(super) const HOLD_STANDING_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds a statement for its review: tells the client (a NoticeResponse), then waits for the
/// gate's answer, a cancel request, or the client hanging up.
pub(super) async fn hold<S, R>(
    ctx: &Context<'_, S>,
    gate: &S,
    text: &str,
    hold: &sluice_core::Hold,
    held: Held<'_, R>,
    cancelled: tokio::sync::futures::Notified<'_>,
) -> Result<Decision, RelayEnd>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    let notice = PgError::notice(hold.notice.clone()).with_hint(hold.hint.clone());
    // The session's other direction writes it between two of the server's messages.
    let _ = ctx.notices.send(notice.to_bytes().freeze());
    held.tracker.lock().holding = Some((hold.review_id, Pending::new(held.kind, Arc::from(text))));
    tokio::pin!(cancelled);
    let waited = gate.await_review(hold);
    tokio::pin!(waited);
    let mut standing = tokio::time::interval(HOLD_STANDING_CHECK);
    let outcome = loop {
        let room = ctx.max_message_bytes.saturating_sub(held.early.len());
        tokio::select! {
            decision = &mut waited => break Ok(decision),
            // A token revoked (or write access ended) while the statement waits: it never runs.
            _ = standing.tick() => if let Some(end) = standing_end(gate) {
                break Err(end);
            },
            _ = &mut cancelled => break Ok(Decision::Deny(Refusal {
                rule: hold.rule.clone(),
                reason: format!("canceling statement due to user request (review #{} stays open)", hold.review_id),
                detail: None,
                hint: Some(format!("once review #{} is approved, re-run {SAME_STATEMENT}: it runs once", hold.review_id)),
                cause: RefusalCause::Cancelled,
            })),
            read = held.client.read_buf(held.early), if room > 0 => match read {
                Ok(0) => break Err(RelayEnd::ClientGone(format!("hung up while review #{} was pending", hold.review_id))),
                Ok(_) => {}
                Err(e) => break Err(RelayEnd::ClientGone(e.to_string())),
            },
        }
    };
    if outcome.is_ok() {
        // Decided: the statement is the relay's again. (A client gone keeps it, to be recorded.)
        held.tracker.lock().holding = None;
    }
    outcome
}
