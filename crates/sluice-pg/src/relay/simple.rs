//! The simple protocol's messages from the client: a Query (one message of SQL, answered with
//! its results and ReadyForQuery) and a fast-path FunctionCall (answered as a simple query is).

use super::client::{ClientSide, held};
use super::*;

impl<S, R> ClientSide<'_, '_, '_, S, R>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    /// A Query: decided whole; refused in place, answered by sluice (its own functions), or
    /// passed on.
    pub(super) async fn query(&mut self, body: &[u8]) -> Result<(), RelayEnd> {
        let held = held!(self, Kind::Simple);
        let decided = decide_message(self.ctx, &mut self.sql, cstr_prefix(body), held).await?;
        let refusal = refusal_bytes(&decided.decision, &decided.text);
        let mut pending = Pending::new(Kind::Simple, decided.text).decided(&decided.decision);
        match (refusal, decided.answer) {
            (Some(refusal), _) if unparseable(&decided.decision) && !self.unsynced => {
                self.tracker.lock().statements.remove(&b""[..]);
                pending.refusal = Some(refusal);
                pending.probe = Probe::Sent;
                let marker = probe(b"", &pending.text, true);
                self.replace(marker, pending);
            }
            (Some(refusal), _) => {
                let (marker, pending) = refused_simple(pending, refusal);
                self.replace(marker, pending);
            }
            (None, Some(answer)) => {
                let mut query = BytesMut::new();
                codec::query(&mut query, &answer);
                self.replace(query, pending);
            }
            (None, None) => {
                pending.effects = decided.effects;
                self.tracker.lock().push(pending);
            }
        }
        Ok(())
    }

    /// A fast-path FunctionCall, decided as the statement it amounts to (see `decide_fast_path`).
    pub(super) async fn function_call(&mut self, body: &[u8]) -> Result<(), RelayEnd> {
        let held = held!(self, Kind::Simple);
        let (pending, refusal) =
            decide_fast_path(self.ctx, &mut self.sql, &mut self.fast_path_calls, body, held).await?;
        match refusal {
            Some(refusal) => {
                let (marker, pending) = refused_simple(pending, refusal);
                self.replace(marker, pending);
            }
            None => self.tracker.lock().push(pending),
        }
        Ok(())
    }
}
