//! Client → upstream: frames read from the client, handed to the handler of their message group
//! (`simple` for Query and FunctionCall, `extended` for Parse, Bind, Describe, Execute, Sync and
//! Close), and forwarded as they came or as the handler rewrote them.

use super::extended::{Bind, Execute, Parse, Subject};
use super::*;

/// What the relay sends for one client message besides or instead of it; every entry these
/// messages are answered with is already tracked. Filled in place by the message's handler (a
/// field of `ClientSide`), so no message moves it around.
#[derive(Default)]
pub(super) struct Rewrite {
    /// Sent instead of the message.
    pub(super) replacement: Option<BytesMut>,
    /// Sent right before the message.
    pub(super) before: Option<BytesMut>,
    /// Sent right after the message.
    pub(super) after: Option<BytesMut>,
}

/// How far `ClientSide::handle` got with a message.
pub(super) enum Handled {
    /// Handled; what to send is in `ClientSide::rewrite`.
    Done,
    /// It carries a statement to decide: the loop awaits its handler.
    Decide,
    Terminate,
}

/// What the client side keeps between messages: the session's SQL state, the names it prepared,
/// and what a review approved for one run.
pub(super) struct ClientSide<'c, 'a, 'g, S: SessionGate, R> {
    pub(super) ctx: &'c Context<'a, S>,
    pub(super) tracker: &'c Mutex<Tracker>,
    pub(super) client: &'c mut R,
    pub(super) sql: SessionSql<'g, S>,
    /// Text, deciding rule and name effects of each portal, for the Executes.
    pub(super) portals: FastMap<Bytes, Named>,
    /// Prepared statements a review approved for one run: the review, and whether the statement
    /// was bound. At the first Sync after its Bind sluice closes it upstream, so nothing can bind
    /// it again (see `close_approved`). A Parse or Close from the client does not clear an entry:
    /// the server may skip or refuse either.
    pub(super) approved_once: FastMap<Bytes, (i64, bool)>,
    pub(super) close_at_sync: Vec<Bytes>,
    /// Statements sluice closed that way, until the client prepares the name again: binding one is
    /// refused with sluice's reason rather than the server's "does not exist".
    pub(super) closed_by_sluice: FastMap<Bytes, i64>,
    /// The statement each fast-path function OID amounts to, as the catalog named it, and the
    /// type it returns.
    pub(super) fast_path_calls: FastMap<u32, (Arc<str>, u32)>,
    /// Sync and the like carry no text; one shared empty string spares an allocation each.
    pub(super) no_text: Arc<str>,
    /// The portal the client's previous message described: an Execute of it right after needs no
    /// Describe from sluice (the client's own answer precedes the rows).
    pub(super) described_portal: Option<Bytes>,
    /// Extended-protocol messages sent since the last Sync: the server may be skipping to the
    /// next Sync after an error among them, and a probe's own Sync would end that early.
    pub(super) unsynced: bool,
    /// Bytes the client sent while a statement was held; they follow what is in the read buffer.
    pub(super) early: BytesMut,
    /// What to send for the message being handled besides or instead of it.
    pub(super) rewrite: Rewrite,
}

/// What the hold of a statement needs from the client side (see `hold`), borrowed field by field
/// so that the session's SQL state can be borrowed beside it.
macro_rules! held {
    ($side:expr, $kind:expr) => {
        Held {
            tracker: $side.tracker,
            kind: $kind,
            approved_once: &$side.approved_once,
            client: &mut *$side.client,
            early: &mut $side.early,
        }
    };
}
pub(super) use held;

/// Client → upstream: one loop over the frames of each read, each handled by its message group's
/// handler, then the read written upstream as it came except where a handler rewrote it.
pub async fn client_to_upstream<S, R, W>(
    ctx: &Context<'_, S>,
    gate: &mut S,
    tracker: &Mutex<Tracker>,
    client: &mut R,
    upstream: &mut W,
) -> RelayEnd
where
    S: SessionGate,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut side = ClientSide {
        ctx,
        tracker,
        client,
        sql: SessionSql::new(gate),
        portals: FastMap::default(),
        approved_once: FastMap::default(),
        close_at_sync: Vec::new(),
        closed_by_sluice: FastMap::default(),
        fast_path_calls: FastMap::default(),
        no_text: Arc::from(""),
        described_portal: None,
        unsynced: false,
        early: BytesMut::new(),
        rewrite: Rewrite::default(),
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::new();
    loop {
        if !side.early.is_empty() {
            buf.extend_from_slice(&side.early);
            side.early.clear();
        } else {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            match side.client.read_buf(&mut buf).await {
                Ok(0) => return RelayEnd::ClientGone("connection closed without Terminate".into()),
                Ok(_) => {}
                Err(e) => return RelayEnd::ClientGone(e.to_string()),
            }
        }
        if let Some(end) = standing_end(&*side.sql.gate) {
            return end;
        }
        // `consumed` bytes at the front of `buf` are whole frames already handled; those not yet
        // written to `out` start at `pass_from`.
        let mut consumed = 0;
        let mut terminated = false;
        out.clear();
        let mut pass_from = 0;
        loop {
            let head = match peek_frame(&buf[consumed..], ctx.max_message_bytes) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    if let Some(len) = codec::declared_len(&buf[consumed..]) {
                        buf.reserve(len.saturating_sub(buf.len() - consumed));
                    }
                    break;
                }
                Err(e) => return frame_error(e),
            };
            let body = &buf[consumed + HEADER_LEN..consumed + head.len];
            match side.handle(head.tag, body) {
                Ok(Handled::Done) => {}
                // Each awaited on its own: an await moves its future whole, so one wrapper over
                // all four would move the largest of them for every message.
                Ok(Handled::Decide) => {
                    let decided = match head.tag {
                        b'Q' => side.query(body).await,
                        b'F' => side.function_call(body).await,
                        b'P' => match Parse::read(body) {
                            Ok(parse) => side.parse(parse).await,
                            Err(end) => Err(end),
                        },
                        _ => match Bind::read(body) {
                            Ok(bind) => side.bind(bind).await,
                            Err(end) => Err(end),
                        },
                    };
                    if let Err(end) = decided {
                        return end;
                    }
                }
                Ok(Handled::Terminate) => terminated = true,
                Err(end) => return end,
            }
            if let Some(extra) = side.rewrite.before.take() {
                out.extend_from_slice(&buf[pass_from..consumed]);
                out.extend_from_slice(&extra);
                pass_from = consumed;
            }
            if let Some(marker) = side.rewrite.replacement.take() {
                out.extend_from_slice(&buf[pass_from..consumed]);
                out.extend_from_slice(&marker);
                pass_from = consumed + head.len;
            }
            if let Some(extra) = side.rewrite.after.take() {
                out.extend_from_slice(&buf[pass_from..consumed + head.len]);
                out.extend_from_slice(&extra);
                pass_from = consumed + head.len;
            }
            match head.tag {
                b'S' => side.unsynced = false,
                b'P' | b'B' | b'D' | b'E' | b'C' => side.unsynced = true,
                _ => {}
            }
            consumed += head.len;
            if terminated {
                break;
            }
        }
        let written = if out.is_empty() {
            upstream.write_all(&buf[..consumed]).await
        } else {
            out.extend_from_slice(&buf[pass_from..consumed]);
            upstream.write_all(&out).await
        };
        if let Err(e) = written.and(upstream.flush().await) {
            return RelayEnd::UpstreamGone(e.to_string());
        }
        buf.advance(consumed);
        if terminated {
            return RelayEnd::ClientTerminated;
        }
    }
}

impl<S, R> ClientSide<'_, '_, '_, S, R>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    /// One message from the client, by its type, as far as it can be handled without deciding a
    /// statement: what to send instead of it or beside it (into `self.rewrite`), or that it needs
    /// a decision (the loop then awaits its handler), or that it is a Terminate. The common
    /// messages are handled here, synchronously, so that they build no decision's future.
    fn handle(&mut self, tag: u8, body: &[u8]) -> Result<Handled, RelayEnd> {
        // Only a Describe of a portal directly before its Execute spares sluice's own (a Flush
        // between them sends nothing the server answers).
        let described = if tag == b'H' { self.described_portal.clone() } else { self.described_portal.take() };
        match tag {
            b'Q' | b'F' | b'P' | b'B' => return Ok(Handled::Decide),
            b'D' => self.describe(Subject::read(body, "Describe")?),
            b'E' => self.execute(Execute::read(body)?, described.as_deref()),
            b'S' => self.sync(),
            b'C' => self.close(Subject::read(body, "Close")?),
            b'X' => return Ok(Handled::Terminate),
            b'H' | b'd' | b'c' | b'f' => {}
            other => {
                return Err(RelayEnd::ClientProtocol(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid frontend message type {:?}", other as char),
                )));
            }
        }
        Ok(Handled::Done)
    }

    /// Sends `marker` instead of the message being handled; `pending` is the entry its answer
    /// matches.
    pub(super) fn replace(&mut self, marker: BytesMut, pending: Pending) {
        self.tracker.lock().push(pending);
        self.rewrite.replacement = Some(marker);
    }
}

/// How a frame the client sent that cannot be read ends the session.
fn frame_error(e: FrameError) -> RelayEnd {
    match e {
        FrameError::TooLarge { tag, len, max } => RelayEnd::ClientProtocol(
            PgError::fatal(
                sqlstate::PROGRAM_LIMIT,
                format!("message {:?} of {len} bytes is over sluice's limit of {max} bytes", tag as char),
            )
            .with_hint("raise postgres.max_message_bytes in sluice's configuration, or send less at once"),
        ),
        FrameError::BadLength(n) => RelayEnd::ClientProtocol(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid message length {n}"),
        )),
    }
}
