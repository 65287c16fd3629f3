//! WebSocket upgrades: the upgrade request is decided like any request (on its method, path,
//! query and headers) and sent upstream with the held credential; once the upstream switches
//! protocols, the two connections are joined message by message — each text or binary message the
//! client sends decided by policy before it goes (a refused one closes the socket), each message
//! recorded (an excerpt, masked), the upstream's text and binary messages masked as response
//! bodies are — until either side closes, the client's token stops being valid, or sluice stops.

use crate::budget::{Budget, Share};
use crate::continuity::{Continuity, StreamPaths};
use crate::mask::BodyMasker;
use crate::reply::Answer;
use futures_util::{SinkExt, StreamExt};
use hyper::HeaderMap;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sluice_core::ActionDetail;
use sluice_gate::{Outcome, SessionLog};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes as WsBytes, Error as WsError, Message, Utf8Bytes};

/// How often a joined WebSocket checks that the client's token is still valid.
const STANDING_CHECK: Duration = Duration::from_secs(2);
/// How much of each message its record keeps.
const EXCERPT_CHARS: usize = 200;

/// Whether a request asks to become a WebSocket (`Upgrade: websocket`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket"))))
}

/// The upstream request's upgrade fields, on top of the cleaned request headers: the upgrade
/// itself, and the client's key, version and subprotocols. Extensions are not passed: a
/// compressed message could not be read to be recorded or masked.
pub fn upstream_headers(from: &HeaderMap, to: &mut HeaderMap) {
    to.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    to.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    to.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    for name in [header::SEC_WEBSOCKET_KEY, header::SEC_WEBSOCKET_VERSION, header::SEC_WEBSOCKET_PROTOCOL] {
        to.remove(&name);
        for value in from.get_all(&name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Whether the upstream chose a GraphQL subprotocol for the socket: `graphql-transport-ws`
/// (graphql-ws) or `graphql-ws` (Apollo's subscriptions-transport-ws).
pub fn speaks_graphql(upstream: &HeaderMap) -> bool {
    upstream.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|p| ["graphql-transport-ws", "graphql-ws"].iter().any(|g| p.trim().eq_ignore_ascii_case(g)))
        })
    })
}

/// The client's answer: the upstream's switch, with its accept key and chosen subprotocol.
pub fn client_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in [header::SEC_WEBSOCKET_ACCEPT, header::SEC_WEBSOCKET_PROTOCOL] {
        if let Some(value) = upstream.get(&name) {
            out.insert(name, value.clone());
        }
    }
    out
}

/// What a joined WebSocket records with.
pub struct Recording<L: SessionLog> {
    pub log: L,
    /// The sequence number of the session's next action.
    pub next_seq: u64,
    pub rule: Arc<str>,
    /// The upgrade's path and query as a record line shows them, which every message's record
    /// names.
    pub target: String,
}

/// What policy made of a message the client sent.
pub enum Verdict {
    /// It goes upstream; recorded under the rule that allowed it.
    Pass { rule: Arc<str> },
    /// It does not, and the socket is closed: recorded with the decision's effect (`deny`,
    /// `review`), its rule and why.
    Refuse { effect: &'static str, rule: Arc<str>, answer: Answer },
}

impl Verdict {
    /// The reason of the close frame a refusal ends the socket with (1008, policy violation):
    /// what refused the message and what to do next, in the 123 bytes a close frame holds. The
    /// session's record keeps the whole refusal.
    fn close_reason(&self) -> Option<Utf8Bytes> {
        let Verdict::Refuse { rule, answer, .. } = self else { return None };
        let text = match answer.review_id {
            Some(id) => format!(
                "sluice: approval #{id} pending (rule {rule}); send the same message on a new socket once approved"
            ),
            None if answer.error == "denied" => format!("sluice denied (rule {rule}): {}", answer.reason),
            None => format!("sluice refused ({}): {}", answer.error, answer.reason),
        };
        Some(fitted_reason(text))
    }
}

/// `text` as a close frame's reason: cut, at a character, to the 123 bytes the frame holds.
fn fitted_reason(mut text: String) -> Utf8Bytes {
    let mut end = text.len().min(CONTROL_PAYLOAD - 2);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    Utf8Bytes::from(text)
}

/// How large a message each side may send, and the listener's budget of bytes held at once,
/// which a client's message takes its share of while it is decided and sent.
pub struct Caps {
    /// `http.max_request_body_bytes`: a message is a request's body.
    pub from_client: usize,
    /// `http.max_response_body_bytes`: a message is a response's body.
    pub from_upstream: usize,
    pub budget: Budget,
}

/// A message over a cap, as tungstenite reports it.
fn too_large(e: &WsError) -> bool {
    matches!(e, WsError::Capacity(CapacityError::MessageTooLong { .. }))
}

/// Joins the client's and the upstream's upgraded connections and relays messages until one side
/// closes, policy refuses a message the client sends (`decide`), `standing` says the session may
/// not go on, or `stop` fires.
#[allow(clippy::too_many_arguments)]
pub async fn relay<L, S, D, V>(
    client: OnUpgrade,
    upstream: OnUpgrade,
    masker: BodyMasker,
    caps: Caps,
    joined: Arc<StreamPaths>,
    mut recording: Recording<L>,
    standing: S,
    decide: D,
) where
    L: SessionLog,
    S: Fn() -> bool + Send,
    D: Fn(WsBytes) -> V + Send,
    V: Future<Output = Verdict> + Send,
{
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            let why = format!("the WebSocket could not be joined: {e}");
            return recording.note(Direction::Ended, 0, &why, Some(why.clone()));
        }
    };
    let capped = |max| WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max));
    let mut client =
        WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(capped(caps.from_client))).await;
    let mut upstream =
        WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, Some(capped(caps.from_upstream))).await;
    let mut check = tokio::time::interval(STANDING_CHECK);
    // The upstream's text messages wait briefly for those that follow (a secret split across
    // messages); anything else it sends goes after every text message before it.
    let mut held = Continuity::new(false, joined);
    // A client message being decided (a review in `wait` mode may take minutes): the socket's
    // other traffic goes on meanwhile (the upstream's messages, the token check), but the
    // client's next message waits, so that messages reach the upstream in the order sent.
    let mut deciding: Option<Deciding<V>> = None;
    let ended = loop {
        let deadline = held.deadline();
        tokio::select! {
            verdict = verdict_of(&mut deciding), if deciding.is_some() => {
                let Some(Deciding { message, share, .. }) = deciding.take() else { continue };
                recording.message(Direction::Up, &message, &masker, Some(&verdict));
                if let Some(reason) = verdict.close_reason() {
                    let close = Message::Close(Some(CloseFrame { code: CloseCode::Policy, reason }));
                    let _ = client.send(close).await;
                    break "sluice refused a message the client sent".into();
                }
                if let Err(e) = upstream.send(message).await {
                    break format!("the upstream's side broke: {e}");
                }
                drop(share);
            },
            message = client.next(), if deciding.is_none() => match message {
                Some(Ok(message)) => {
                    let closing = message.is_close();
                    // Held, while it is decided and sent, within the listener's budget.
                    let mut share = caps.budget.share();
                    if let Err(e) = share.fit(message.len()) {
                        let why = format!("{e}; send the message again on a new socket in a second or two");
                        let size = message.len();
                        recording.record(Direction::Up, size, "a message", Some(why), "deny", Arc::from("busy"));
                        let reason = fitted_reason(format!("sluice is busy ({e})"));
                        let close = CloseFrame { code: CloseCode::Again, reason };
                        let _ = client.send(Message::Close(Some(close))).await;
                        break "sluice had no room to hold a message the client sent".into();
                    }
                    // Text and binary messages say what the upstream is to do: decided as the
                    // upgrade's request with the message as its body. Control frames are not.
                    let body = match &message {
                        Message::Text(text) => Some(WsBytes::from(text.clone())),
                        Message::Binary(data) => Some(data.clone()),
                        _ => None,
                    };
                    if let Some(body) = body {
                        deciding = Some(Deciding { message, share, verdict: Box::pin(decide(body)) });
                        continue;
                    }
                    recording.message(Direction::Up, &message, &masker, None);
                    if let Err(e) = upstream.send(without_payload(message)).await {
                        break format!("the upstream's side broke: {e}");
                    }
                    drop(share);
                    if closing {
                        break "the client closed the WebSocket".into();
                    }
                }
                Some(Err(e)) if too_large(&e) => {
                    let why = format!(
                        "a message over {} bytes (http.max_request_body_bytes) is refused: {e}; send smaller messages",
                        caps.from_client
                    );
                    let rule = Arc::from("message_too_large");
                    recording.record(Direction::Up, 0, "a message over the cap", Some(why), "deny", rule);
                    let reason = fitted_reason(format!(
                        "sluice refused a message over {} bytes (http.max_request_body_bytes); send smaller ones",
                        caps.from_client
                    ));
                    let _ = client.send(Message::Close(Some(CloseFrame { code: CloseCode::Size, reason }))).await;
                    linger(client.get_mut(), caps.from_client).await;
                    break "the client sent a message over the cap".into();
                }
                Some(Err(e)) => break format!("the client's side broke: {e}"),
                None => break "the client went away".into(),
            },
            message = upstream.next() => match message {
                Some(Ok(message)) => {
                    let closing = message.is_close();
                    let (text, other) = match clean(message, &masker) {
                        Message::Text(text) => (Some(text), None),
                        other => (None, Some(other)),
                    };
                    let now = tokio::time::Instant::now();
                    if let Some(text) = text {
                        held.add(text.as_bytes().to_vec(), &masker, now);
                    }
                    let mut out = texts(held.release_units(now, other.is_some()));
                    out.extend(other);
                    if let Err(e) = send_all(&mut client, out, &mut recording, &masker).await {
                        break format!("the client's side broke: {e}");
                    }
                    if closing {
                        break "the upstream closed the WebSocket".into();
                    }
                }
                Some(Err(e)) if too_large(&e) => {
                    // Never passed on in part: the client learns why the socket ends.
                    let reason = fitted_reason(format!(
                        "sluice: the upstream sent a message over {} bytes (max_response_body_bytes); ask for less",
                        caps.from_upstream
                    ));
                    let _ = client.send(Message::Close(Some(CloseFrame { code: CloseCode::Size, reason }))).await;
                    break format!(
                        "the upstream sent a message over {} bytes (http.max_response_body_bytes), not passed on",
                        caps.from_upstream
                    );
                }
                Some(Err(e)) => break format!("the upstream's side broke: {e}"),
                None => break "the upstream went away".into(),
            },
            () = sleep_until_some(deadline) => {
                let due = texts(held.release_units(tokio::time::Instant::now(), false));
                if let Err(e) = send_all(&mut client, due, &mut recording, &masker).await {
                    break format!("the client's side broke: {e}");
                }
            },
            _ = check.tick() => {
                if !standing() {
                    let close = Message::Close(Some(CloseFrame {
                        code: CloseCode::Policy,
                        reason: Utf8Bytes::from_static("sluice: the token was revoked or has expired"),
                    }));
                    let _ = client.send(close.clone()).await;
                    let _ = upstream.send(close).await;
                    break "the token was revoked or has expired".into();
                }
            }
        }
    };
    // What the upstream sent before it went away still reaches a client that is there to read it.
    let rest = texts(held.release_units(tokio::time::Instant::now(), true));
    let _ = send_all(&mut client, rest, &mut recording, &masker).await;
    let _ = client.close(None).await;
    let _ = upstream.close(None).await;
    recording.note(Direction::Ended, 0, &ended, None);
}

/// A message the client sent, waiting for policy's verdict, with its place in the budget.
struct Deciding<V> {
    message: Message,
    share: Share,
    verdict: std::pin::Pin<Box<V>>,
}

/// The verdict on the message being decided; never, without one.
async fn verdict_of<V: Future<Output = Verdict>>(deciding: &mut Option<Deciding<V>>) -> Verdict {
    match deciding {
        Some(deciding) => deciding.verdict.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Reads and drops what a client is still sending after sluice refused its message, for a while:
/// closed with bytes unread, the connection would be reset, and the client could lose the close
/// frame that says why before reading it.
async fn linger<C: tokio::io::AsyncRead + Unpin>(client: &mut C, at_most: usize) {
    use tokio::io::AsyncReadExt;
    let mut rest = client.take(u64::try_from(at_most).unwrap_or(u64::MAX));
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
}

/// How long a refused client's remaining bytes are read (`linger`).
const LINGER: Duration = Duration::from_secs(2);

/// Sends the upstream's messages to the client, each recorded once it went (after sluice closed
/// the socket, what the upstream still sent goes nowhere, and is not recorded as sent).
async fn send_all<L: SessionLog, C>(
    client: &mut WebSocketStream<C>,
    messages: Vec<Message>,
    recording: &mut Recording<L>,
    masker: &BodyMasker,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for message in messages {
        client.send(message.clone()).await?;
        recording.message(Direction::Down, &message, masker, None);
    }
    Ok(())
}

/// Text messages held for what followed them, as they leave.
fn texts(units: Vec<Vec<u8>>) -> Vec<Message> {
    units.into_iter().map(|unit| Message::text(String::from_utf8_lossy(&unit).into_owned())).collect()
}

/// Waits until `deadline`; for ever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// An upstream message as the client may have it: text and binary cleaned as response bodies are
/// (binary JSON walked as JSON), and what control frames carry (a close reason, a ping's data)
/// as text.
fn clean(message: Message, masker: &BodyMasker) -> Message {
    match message {
        Message::Text(text) => match masker.clean(text.as_bytes()) {
            Ok(None) => Message::Text(text),
            Ok(Some(clean)) => Message::text(String::from_utf8_lossy(&clean).into_owned()),
            Err(e) => Message::text(format!("[sluice: message withheld: {e}]")),
        },
        Message::Binary(data) => match masker.clean(&data) {
            Ok(None) => Message::Binary(data),
            Ok(Some(clean)) => Message::Binary(WsBytes::from(clean)),
            Err(e) => Message::text(format!("[sluice: message withheld: {e}]")),
        },
        Message::Ping(data) => Message::Ping(clean_control(data, masker)),
        Message::Pong(data) => Message::Pong(clean_control(data, masker)),
        Message::Close(Some(frame)) => {
            Message::Close(Some(CloseFrame { reason: clean_reason(&frame.reason, masker), ..frame }))
        }
        other => other,
    }
}

/// A control frame the client sent, as it goes upstream: the signal without the words. A ping's
/// data, a pong's and a close frame's reason are bytes the client chooses that no policy reads;
/// the upstream still learns that the client is there, or that it closes and with which code.
/// (sluice answers the client's pings itself, with their data.)
fn without_payload(message: Message) -> Message {
    match message {
        Message::Ping(_) => Message::Ping(WsBytes::new()),
        Message::Pong(_) => Message::Pong(WsBytes::new()),
        Message::Close(Some(frame)) => {
            Message::Close(Some(CloseFrame { code: frame.code, reason: Utf8Bytes::default() }))
        }
        other => other,
    }
}

/// Bytes a control frame may carry (RFC 6455 §5.5); a close frame's reason has two fewer.
const CONTROL_PAYLOAD: usize = 125;

/// A ping's or pong's data, cleaned as text (and cut to what a control frame holds).
fn clean_control(data: WsBytes, masker: &BodyMasker) -> WsBytes {
    match masker.clean_text(&data) {
        Some(mut clean) => {
            clean.truncate(CONTROL_PAYLOAD);
            WsBytes::from(clean)
        }
        None => data,
    }
}

/// A close frame's reason, cleaned as text (and cut, at a character, to what the frame holds).
fn clean_reason(reason: &Utf8Bytes, masker: &BodyMasker) -> Utf8Bytes {
    match masker.clean_text(reason.as_bytes()) {
        Some(clean) => fitted_reason(String::from_utf8_lossy(&clean).into_owned()),
        None => reason.clone(),
    }
}

#[derive(Clone, Copy)]
enum Direction {
    /// From the client to the upstream.
    Up,
    /// From the upstream to the client.
    Down,
    /// The WebSocket is over.
    Ended,
}

impl<L: SessionLog> Recording<L> {
    /// Records a message, under what policy made of it (one the client sent), else under the
    /// upgrade's rule.
    fn message(&mut self, direction: Direction, message: &Message, masker: &BodyMasker, verdict: Option<&Verdict>) {
        if !self.log.records_outcomes() {
            return;
        }
        let (what, size) = match message {
            Message::Text(text) => {
                let shown = masker.clean_text(text.as_bytes()).map(|c| String::from_utf8_lossy(&c).into_owned());
                let shown = shown.as_deref().unwrap_or(text.as_str());
                let cut: String = shown.chars().take(EXCERPT_CHARS).collect();
                let more = if shown.chars().count() > EXCERPT_CHARS { "…" } else { "" };
                (format!("text {cut}{more}"), text.len())
            }
            Message::Binary(data) => (format!("binary, {} bytes", data.len()), data.len()),
            Message::Close(frame) => {
                let why = frame
                    .as_ref()
                    .map(|f| format!(" ({} {})", u16::from(f.code), clean_reason(&f.reason, masker)))
                    .unwrap_or_default();
                (format!("close{why}"), 0)
            }
            // Pings and pongs keep the connection alive; they say nothing.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return,
        };
        match verdict {
            Some(Verdict::Refuse { effect, rule, answer }) => {
                let hint = answer.hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default();
                let why = Some(format!("{}: {}{hint}", answer.error, answer.reason));
                self.record(direction, size, &what, why, effect, Arc::clone(rule));
            }
            Some(Verdict::Pass { rule }) => self.record(direction, size, &what, None, "allow", Arc::clone(rule)),
            None => self.note(direction, size, &what, None),
        }
    }

    /// Records what happened on the socket under the upgrade's rule.
    fn note(&mut self, direction: Direction, size: usize, what: &str, error: Option<String>) {
        let rule = Arc::clone(&self.rule);
        self.record(direction, size, what, error, "allow", rule);
    }

    fn record(
        &mut self,
        direction: Direction,
        size: usize,
        what: &str,
        error: Option<String>,
        decision: &'static str,
        rule: Arc<str>,
    ) {
        if !self.log.records_outcomes() {
            return;
        }
        let arrow = match direction {
            Direction::Up => "→",
            Direction::Down => "←",
            Direction::Ended => "ended:",
        };
        let (request_bytes, response_bytes) = match direction {
            Direction::Up => (size as u64, 0),
            _ => (0, size as u64),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let started = Instant::now();
        self.log.finish(
            seq,
            Outcome {
                text: Arc::from(format!("WS {} {arrow} {}", self.target, sluice_core::http::shown_text(what))),
                started_at_us: sluice_core::audit::now_us(),
                duration_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(0),
                decision,
                rule: Some(rule),
                detail: ActionDetail::Http { status: 101, request_bytes, response_bytes, error, excerpts: None },
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_websocket_upgrades_are_joined_and_extensions_never_go_upstream() {
        let mut from = HeaderMap::new();
        from.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        from.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        from.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        from.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("permessage-deflate"));
        assert!(is_upgrade(&from));
        let mut to = from.clone();
        upstream_headers(&from, &mut to);
        assert_eq!(to.get_all(header::SEC_WEBSOCKET_KEY).iter().count(), 1);
        assert_eq!(to[header::UPGRADE], "websocket");
        assert_eq!(to[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(to.get(header::SEC_WEBSOCKET_EXTENSIONS).is_none());
        let mut other = HeaderMap::new();
        other.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_upgrade(&other));
    }

    #[test]
    fn a_clients_control_frames_reach_the_upstream_without_their_payloads() {
        let ping = without_payload(Message::Ping(WsBytes::from_static(b"DROP TABLE invoices")));
        assert_eq!(ping, Message::Ping(WsBytes::new()));
        let pong = without_payload(Message::Pong(WsBytes::from_static(b"rm -rf /")));
        assert_eq!(pong, Message::Pong(WsBytes::new()));
        let close = CloseFrame { code: CloseCode::Away, reason: Utf8Bytes::from_static("POST /v1/refunds") };
        let expected = Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: Utf8Bytes::default() }));
        assert_eq!(without_payload(Message::Close(Some(close))), expected);
        assert_eq!(without_payload(Message::Close(None)), Message::Close(None));
    }
}
