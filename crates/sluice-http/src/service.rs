//! One client connection: TLS, HTTP/1.1 or HTTP/2, and each request through the pipeline — framing
//! verdict, routing, authentication, the session, reading the body, the engine's decision (waiting
//! for a review where the rule says so), the upstream call, masking, the record.

// A refusal (status and answer) is large, and returned only on the cold path of a request.
#![allow(clippy::result_large_err)]

use crate::archive;
use crate::budget::Exhausted;
use crate::charset;
use crate::decode::Decoder;
use crate::forward;
use crate::framing::{HeadVerdict, MAX_HEAD, Verdicts, Watched};
use crate::idle::{Busy, ClientTooSlow, Clock, Held, SendClock};
use crate::location;
use crate::mask::{BodyMasker, Sensitive, Unreadable};
use crate::reply::Answer;
use crate::response::{self, BodyError, OnEnd, Shape, Streamed};
use crate::seen::SeenHeaders;
use crate::stall::Stalls;
use crate::streams::StreamTasks;
use crate::target::{HttpTarget, Presentation};
use crate::websocket;
use crate::{HttpListenerConfig, request};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use sluice_core::audit::now_us;
use sluice_core::http::{HttpAction, WebSocket};
use sluice_core::{ActionDetail, Decision, HttpExcerpts, Protocol, Refusal, RefusalCause, Secret};
use sluice_gate::{ClientInfo, Gate, OpenError, OpenRequest, Outcome, Presented, SessionGate, SessionLog, Standing};
use sluice_mask::SessionMasking;
use sluice_runtime::{Accepted, SessionSlots};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::either::Either;

type ReplyBody = http_body_util::Either<Full<Bytes>, Streamed>;
type Reply = Response<ReplyBody>;

/// The session a connection has open: on one target, for one token.
struct Open<S: SessionGate> {
    target: String,
    token: [u8; 32],
    session: S,
    log: S::Log,
    grant: sluice_gate::SessionGrant,
    seq: u64,
}

/// Whether the session `id` is still the connection's and its token still good: what a stream or
/// a WebSocket asks to go on.
fn still_standing<S: SessionGate>(open: &Option<Open<S>>, id: &Arc<str>) -> bool {
    open.as_ref().is_some_and(|o| o.session.id() == id && matches!(o.session.standing(), Standing::Valid))
}

/// `still_standing` as a stream or a WebSocket asks it on its own timer: without waiting for the
/// session. While a request holds it (or the socket's own message, being decided), it is not
/// asked, and the next check asks again.
fn standing_check<G: Gate>(conn: &Arc<Conn<G>>, id: &Arc<str>) -> impl Fn() -> bool + Send + Sync + 'static {
    let (conn, id) = (Arc::clone(conn), Arc::clone(id));
    move || conn.open.try_lock().map_or(true, |open| still_standing(&open, &id))
}

impl<S: SessionGate> Open<S> {
    /// The session's next exchange, for `action`, recorded under the session's masking.
    fn next_exchange(
        &mut self,
        action: &HttpAction,
        started: Instant,
        started_at_us: i64,
        request_bytes: usize,
    ) -> Exchange<S::Log> {
        self.seq += 1;
        let masking = self.grant.obligations.masking.as_ref();
        Exchange::new(&self.log, masking, action, self.seq, started_at_us, started, request_bytes)
    }

    /// Records a request sluice refused before deciding it (its shape, its body), with why.
    fn record_refusal(
        &mut self,
        action: &HttpAction,
        started: Instant,
        started_at_us: i64,
        status: StatusCode,
        answer: &Answer,
    ) {
        let exchange = self.next_exchange(action, started, started_at_us, 0);
        exchange.finish("deny", answer.error, status.as_u16(), 0, Some(answer.reason.clone()));
    }
}

struct Conn<G: Gate> {
    gate: Arc<G>,
    config: Arc<HttpListenerConfig>,
    peer: String,
    verdicts: Verdicts,
    open: tokio::sync::Mutex<Option<Open<G::Session>>>,
    /// The WebSocket the connection became, relayed by its own task.
    websocket: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The listener's `max_connections` places: the connection takes one with its first
    /// authenticated request, so clients that never authenticate cannot fill them.
    slots: SessionSlots,
    slot: parking_lot::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    seen_headers: parking_lot::Mutex<SeenHeaders>,
    /// Its requests, streams and socket in flight: while any is, the connection is not idle.
    busy: Busy,
    /// Told when the connection takes its place.
    authenticated: tokio::sync::Notify,
    /// Told with each request over HTTP/2 (the watch waits for the first).
    speaks_http2: tokio::sync::Notify,
    /// Its HTTP/2 answers, watched for a client holding them back.
    stalls: Stalls,
}

impl<G: Gate> Conn<G> {
    /// A place among the authenticated connections for this one, if it holds none yet (`Ok(None)`:
    /// it holds one); `Err` when every place is taken.
    fn reserve_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ()> {
        if self.slot.lock().is_some() {
            return Ok(None);
        }
        self.slots.take().map(Some).ok_or(())
    }

    /// Keeps the place reserved for the connection, now authenticated.
    fn keep_slot(&self, place: tokio::sync::OwnedSemaphorePermit) {
        let mut slot = self.slot.lock();
        if slot.is_none() {
            *slot = Some(place);
            self.authenticated.notify_one();
        }
    }
}

pub async fn serve_connection<G: Gate>(gate: Arc<G>, config: Arc<HttpListenerConfig>, accepted: Accepted) {
    let Accepted { tcp, peer, ticket, mut stop, slots } = accepted;
    // Why the connection ended, when sluice ended it for the client's time.
    let mut ended: Option<String> = None;
    let _ = tcp.set_nodelay(true);
    let verdicts = Verdicts::default();
    let conn = Arc::new(Conn {
        gate,
        config: Arc::clone(&config),
        peer: peer.to_string(),
        verdicts: verdicts.clone(),
        open: tokio::sync::Mutex::new(None),
        websocket: parking_lot::Mutex::new(None),
        slots,
        slot: parking_lot::Mutex::new(None),
        seen_headers: Default::default(),
        busy: Busy::default(),
        authenticated: tokio::sync::Notify::new(),
        speaks_http2: tokio::sync::Notify::new(),
        stalls: Stalls::default(),
    });
    // Until its first authenticated request the connection holds only a place in the budget of
    // unauthenticated clients: a newer client may evict it, and it has `header_timeout` to make
    // that request.
    let unauthenticated = async {
        let authenticated = tokio::select! {
            _ = ticket.evicted() => false,
            _ = tokio::time::sleep(config.header_timeout) => false,
            _ = conn.authenticated.notified() => true,
        };
        drop(ticket);
        if authenticated {
            std::future::pending::<()>().await;
        }
        tracing::debug!(%peer, "HTTP connection closed before an authenticated request (evicted or timed out)");
    };
    let service = {
        let conn = Arc::clone(&conn);
        hyper::service::service_fn(move |req| {
            let conn = Arc::clone(&conn);
            async move { Ok::<_, Infallible>(handle(&conn, req).await) }
        })
    };
    let streams = StreamTasks::default();
    let mut builder = hyper_util::server::conn::auto::Builder::new(streams.clone());
    builder.http1().timer(TokioTimer::new()).max_buf_size(MAX_HEAD.max(8192)).keep_alive(true);
    // Pings find a peer that went away without closing (its streams and place would stay).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let served = async {
        let stream = match &config.tls {
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
                match tokio::time::timeout(config.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => Either::Left(stream),
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => Either::Right(tcp),
        };
        // The connection's reader keeps its time (hyper's header timer would also run while it
        // is idle, and cost a timer for each request).
        let clock = Clock::new(config.header_timeout, config.idle_timeout, conn.busy.clone());
        let io = TokioIo::new(Watched::new(stream, verdicts).timed(clock, SendClock::new(config.send_timeout)));
        let serving = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(serving);
        // HTTP/2 is timed by its requests in flight, not by its reads: a client's pings and
        // window updates are no request. Idle, it is closed with GOAWAY (a request crossing it
        // is retried); an answer it holds back with flow control closes it at once.
        let watch_http2 = async {
            conn.speaks_http2.notified().await;
            tokio::select! {
                () = conn.busy.idle(config.idle_timeout) => IDLE_HTTP2,
                () = conn.stalls.stalled(config.send_timeout) => STALLED_HTTP2,
            }
        };
        let served = tokio::select! {
            served = serving.as_mut() => served,
            why = watch_http2 => {
                ended = Some(format!("sluice closed the connection: {why}"));
                if why == IDLE_HTTP2 {
                    serving.as_mut().graceful_shutdown();
                    // Streams a client holds back would keep a graceful close waiting.
                    let _ = tokio::time::timeout(config.send_timeout, serving.as_mut()).await;
                }
                Ok(())
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            if let Some(why) = timed_out(&*e) {
                ended = Some(format!("sluice closed the connection: {why}"));
            }
        }
        // A connection that became a WebSocket lasts as long as it (and its session with it).
        let joined = conn.websocket.lock().take();
        if let Some(joined) = joined {
            let _ = joined.await;
        }
    };
    tokio::select! {
        _ = served => {}
        _ = unauthenticated => {}
        _ = stop.signalled() => {
            if let Some(joined) = conn.websocket.lock().take() {
                joined.abort();
            }
        }
    }
    // HTTP/2 requests still running end now, each recorded before the session's end.
    streams.end().await;
    if let Some(open) = conn.open.lock().await.take() {
        let why = ended.take();
        open.session.end(why.unwrap_or_else(|| "the client closed the connection".into()));
    }
}

const STALLED_HTTP2: &str =
    "an HTTP/2 answer waited http.send_timeout_secs for the client to let it be sent (flow control)";
const IDLE_HTTP2: &str = "the HTTP/2 connection had no request in flight for http.idle_timeout_secs";

/// The reason the connection's reader or writer gave for closing it (`idle`), when it did.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        // An io::Error's source is its inner error's source, not the inner error itself.
        let inner =
            e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref).map(|i| i as &dyn std::error::Error);
        if let Some(slow) = inner.unwrap_or(e).downcast_ref::<ClientTooSlow>() {
            return Some(slow.to_string());
        }
        cause = e.source();
    }
    None
}

/// A request's answer, in flight until written whole.
async fn handle<G: Gate>(conn: &Arc<Conn<G>>, req: Request<Incoming>) -> Response<Held<ReplyBody>> {
    let in_flight = conn.busy.start();
    // The framing watcher reads no heads after an upgrade or CONNECT: unless the protocol is
    // switched, nothing more on the connection can be vouched for.
    let ends_watch = req.version() <= Version::HTTP_11
        && (req.method() == Method::CONNECT || req.headers().contains_key(header::UPGRADE));
    let http2 = req.version() == Version::HTTP_2;
    if http2 {
        conn.speaks_http2.notify_one();
    }
    let reply = match pipeline(conn, req).await {
        Ok(reply) => reply,
        Err((status, answer)) => {
            let mut reply = answer.into_response(status).map(http_body_util::Either::Left);
            // After a request sluice could not read (whole), nothing more on the connection is
            // trusted.
            if matches!(status, StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT) {
                reply.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            reply
        }
    };
    let mut reply = reply;
    if ends_watch && reply.status() != StatusCode::SWITCHING_PROTOCOLS {
        reply.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let stall = http2.then(|| conn.stalls.track());
    reply.map(|body| {
        let held = Held::new(body, in_flight);
        match stall {
            Some(stall) => held.watched(stall),
            None => held,
        }
    })
}

type Refused = (StatusCode, Answer);

fn bad_request(reason: impl Into<String>, hint: &str) -> Refused {
    (StatusCode::BAD_REQUEST, Answer::new("bad_request", reason, hint))
}

/// A body sluice cannot hold now: the budget of bytes held at once is taken by other requests.
fn busy(e: Exhausted) -> Refused {
    (StatusCode::SERVICE_UNAVAILABLE, Answer::new("busy", e.to_string(), BUSY_HINT))
}

const BUSY_HINT: &str = "retry in a second or two, when requests in flight have finished";

#[derive(Debug)]
enum RequestBodyError {
    TooLarge,
    Busy(Exhausted),
    Read(String),
}

/// Reads a request body whole, up to the cap, each byte counted against the listener's budget
/// as it comes (not as announced: a client announcing much and sending nothing holds nothing).
async fn read_request_body(body: Incoming, config: &HttpListenerConfig) -> Result<Bytes, RequestBodyError> {
    let max = config.max_request_body;
    let announced = body.size_hint().exact().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    if announced > max {
        return Err(RequestBodyError::TooLarge);
    }
    let mut share = config.budget.share();
    let mut data = Vec::new();
    let mut body = Limited::new(body, max);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
            Some(_) => RequestBodyError::TooLarge,
            None => RequestBodyError::Read(e.to_string()),
        })?;
        let Ok(chunk) = frame.into_data() else { continue };
        // What is held is the buffer: sized to the announced length once bytes come (a client
        // announcing much and sending nothing holds nothing), else grown by doubling.
        if data.is_empty() && announced >= chunk.len() {
            data.reserve_exact(announced);
        } else {
            data.reserve(chunk.len());
        }
        share.fit(data.capacity()).map_err(RequestBodyError::Busy)?;
        data.extend_from_slice(&chunk);
    }
    Ok(share.hold(data))
}

async fn pipeline<G: Gate>(conn: &Arc<Conn<G>>, req: Request<Incoming>) -> Result<Reply, Refused> {
    let started = Instant::now();
    let started_at_us = now_us();
    let websocket = websocket::is_upgrade(req.headers());
    // A request refused for its shape is still answered only once its caller is known, so that
    // the refusal is recorded in the caller's session: probing for a way past the rules leaves
    // a trace. (A caller sluice cannot identify gets the refusal unrecorded, as a failed login
    // is recorded by the gate.)
    let mut refused = shape_refusal(conn, &req, websocket);
    let host = host_of(&req)?;
    let raw_target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut action = match HttpAction::new(req.method().as_str(), &raw_target) {
        Ok(action) => action,
        Err(e) => {
            refused = refused.or_else(|| {
                Some(bad_request(
                    format!("the request target is refused: {e}"),
                    "send a plain path, without encoded slashes, '..' above the root or ';' parameters",
                ))
            });
            // Routed by the path as written, to find whose session records the refusal.
            HttpAction::unreadable(req.method().as_str(), &raw_target)
        }
    };
    action.websocket = websocket.then_some(WebSocket::Opening);
    if refused.is_none() && action.query.iter().any(|(name, _)| request::is_method_override(name)) {
        refused = Some(bad_request(
            "the query carries _method, which would have the upstream run another method than policy decided",
            "send the method you mean on the request line",
        ));
    }
    if refused.is_none() && action.query.iter().any(|(name, _)| request::is_acting_as(name)) {
        refused = Some(bad_request(
            "the query carries sudo, which would have the upstream act as another user than the connection's credential (GitLab reads it)",
            "leave sudo out: the connection acts as its own credential; for another identity, ask an operator for a connection that holds it",
        ));
    }
    let trailing_slash = raw_target.split('?').next().is_some_and(|p| p.len() > 1 && p.ends_with('/'));
    let routed = route(conn.gate.as_ref(), &host, &action.path);
    if let Some(refusal) = refused {
        return Err(record_refusal(conn, &req, routed, &action, refusal, started, started_at_us).await);
    }
    let (target, path) = routed?;
    let options = target.options::<HttpTarget>().ok_or_else(|| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::new("misconfigured", "the target is not an HTTP target", "tell an operator"),
        )
    })?;
    action.path = path;
    let presented = credential(&req)?;
    let mut open_guard = session(conn, &target.name, presented).await?;
    let open = open_guard.as_mut().ok_or_else(|| bad_request("no session", "retry"))?;
    match open.session.standing() {
        Standing::Valid => {}
        Standing::CredentialEnded | Standing::AccessEnded => {
            let ended = open_guard.take();
            if let Some(ended) = ended {
                ended.session.end("its credential was revoked or expired".into());
            }
            let answer = Answer::new(
                "unauthenticated",
                "the token was revoked or has expired",
                "ask an operator for a new token",
            );
            return Err((StatusCode::UNAUTHORIZED, answer));
        }
    }
    // The body, whole, before deciding: its JSON and GraphQL are part of the request. Read
    // without holding the session, so that the connection's other requests go on, and within
    // the target's time, so that a client trickling it cannot hold the connection.
    let session_id = Arc::clone(open.session.id());
    drop(open_guard);
    let (mut parts, body) = req.into_parts();
    // A request without a body (most reads) has nothing to wait for.
    let read = async {
        if body.is_end_stream() {
            return Ok(Ok(Bytes::new()));
        }
        tokio::time::timeout(options.timeout, read_request_body(body, &conn.config)).await
    };
    let body = match read.await {
        Ok(Ok(body)) => Ok(body),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            Answer::new(
                "request_timeout",
                format!("the request body did not arrive within {:?}", options.timeout),
                "send the body at once, or a smaller one",
            ),
        )),
        Ok(Err(RequestBodyError::TooLarge)) => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            Answer::new(
                "body_too_large",
                format!("the request body is larger than {} bytes", conn.config.max_request_body),
                "send a smaller body; an operator sets http.max_request_body_bytes",
            ),
        )),
        Ok(Err(RequestBodyError::Busy(e))) => Err(busy(e)),
        Ok(Err(RequestBodyError::Read(e))) => {
            Err(bad_request(format!("the request body could not be read: {e}"), "send it again"))
        }
    };
    let mut open_guard = same_session(conn, &session_id).await?;
    let body = match body {
        Ok(body) => body,
        Err((status, answer)) => {
            // Recorded like any refusal: a body too large or too slow is an attempt too.
            if let Some(open) = open_guard.as_mut() {
                open.record_refusal(&action, started, started_at_us, status, &answer);
            }
            return Err((status, answer));
        }
    };
    let open = open_guard.as_mut().ok_or_else(|| bad_request("no session", "retry"))?;
    let graphql_endpoint = options.is_graphql_path(&action.path);
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let mut read = request::read_body(&mut action, content_type, &body, graphql_endpoint)
        .and_then(|()| renamed_by_alias(&action, &options.sensitive));
    if read.is_ok()
        && let Some(field) = crate::rename::renamed_field(&options.sensitive, &action)
    {
        read = Err(format!(
            "the query string names {field:?}, a field masked by its name (or on the way to one), where the response could carry it under another name (`alias:{field}`, `{field} as alias`, `f({field})`, `{field}.max()`, `alias[…]={field}`, or next to any other word), so its value might not be masked; ask for it under its own name (`select=id,{field}`), or leave it out"
        ));
    }
    if read.is_ok()
        && options.sensitive.any()
        && let Some(media) = parts.headers.get_all(header::ACCEPT).iter().find_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .find(|m| response::is_structured_binary(m))
                .map(response::media_type)
        })
    {
        read = Err(format!(
            "the request asks for {media}, a format whose field names sluice cannot read, so the connection's sensitive keys could not be masked in the answer; ask for JSON (Accept: application/json)"
        ));
    }
    if let Err(why) = read {
        let answer = Answer::new(
            "unreadable",
            format!("sluice cannot read this request: {why}"),
            "send a request sluice can check (fail closed)",
        )
        .with_rule("unreadable")
        .with_detail(action.summary());
        let mut exchange = open.next_exchange(&action, started, started_at_us, body.len());
        let masking = open.grant.obligations.masking.clone();
        exchange.keep_request_excerpt(masking, &options.sensitive, &body);
        exchange.finish("deny", "unreadable", 400, 0, None);
        return Err((StatusCode::BAD_REQUEST, answer));
    }
    if let Some(refusal) = filter_refusal(&options.sensitive, &action) {
        let (status, answer) = Answer::refusal(&refusal, None);
        let mut exchange = open.next_exchange(&action, started, started_at_us, body.len());
        exchange.keep_request_excerpt(open.grant.obligations.masking.clone(), &options.sensitive, &body);
        exchange.finish("deny", &refusal.rule, status.as_u16(), 0, None);
        return Err((status, answer));
    }
    action.headers = parts
        .headers
        .iter()
        .filter(|(n, _)| !matches!(**n, header::AUTHORIZATION | header::PROXY_AUTHORIZATION | header::COOKIE))
        // As Latin-1, as WSGI and Node read them: a byte past ASCII does not hide a header from policy.
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().iter().map(|&b| char::from(b)).collect()))
        .collect();
    let mut exchange = open.next_exchange(&action, started, started_at_us, body.len());
    let decision = open.session.decide(&sluice_gate::Action::Http(&action)).await;
    let decision = match decision {
        Decision::Hold(hold) => {
            let waiting = open.session.await_review(&hold);
            // Other requests of the connection go on while this one waits.
            drop(open_guard);
            let decided = waiting.await;
            open_guard = same_session(conn, &session_id).await?;
            decided
        }
        other => other,
    };
    let Some(open) = open_guard.as_mut() else {
        return Err((
            StatusCode::UNAUTHORIZED,
            Answer::new("unauthenticated", "the session ended", "send the request again"),
        ));
    };
    // A review may have waited long: the token must still be good for the request to go.
    if !matches!(open.session.standing(), Standing::Valid) {
        let answer = Answer::new(
            "unauthenticated",
            "the token was revoked or has expired while the request waited",
            "ask an operator for a new token",
        );
        open.record_refusal(&action, started, started_at_us, StatusCode::UNAUTHORIZED, &answer);
        return Err((StatusCode::UNAUTHORIZED, answer));
    }
    let rule = decision.rule().to_string();
    exchange.keep_request_excerpt(open.grant.obligations.masking.clone(), &options.sensitive, &body);
    match &decision {
        Decision::Allow { .. } | Decision::Approved { .. } => {}
        Decision::Review(refusal) | Decision::Deny(refusal) => {
            let (status, mut answer) = Answer::refusal(refusal, conn.config.api_url.as_deref());
            if let Some(why) = &action.body.json_unread {
                answer = answer.with_more_hint(format!(
                    "if a rule about the body's fields refused it: sluice could not read them ({why}), so such rules \
                     apply as if they matched; send the fields as UTF-8 JSON without a byte-order mark"
                ));
            }
            let verdict = decision.effect();
            exchange.finish(verdict, &rule, status.as_u16(), 0, None);
            return Err((status, answer));
        }
        Decision::Hold(_) => {
            let answer = Answer::new("review_pending", "the review was not decided", "send the request again");
            return Err((StatusCode::FORBIDDEN, answer));
        }
    }
    exchange.forwarding(&rule);
    // Decided: the body read as JSON or a form (many times its bytes, counted nowhere) is let
    // go before the upstream is waited for.
    action.body.json = None;
    action.body.form = Vec::new();
    let credential = open.grant.credential.clone();
    let masking = open.grant.obligations.masking.clone();
    let log = open.log.clone();
    // After an upgrade the connection carries nothing but the WebSocket, whose messages take
    // the session's next sequence numbers.
    let next_seq = open.seq + 1;
    drop(open_guard);
    // Upstream. A failure from here on is the upstream's: recorded as an allowed exchange that
    // sluice answered for.
    let upstream_failed = |status: StatusCode, error: &'static str, why: String, hint: &str| -> Refused {
        exchange.finish("allow", &rule, status.as_u16(), 0, Some(why.clone()));
        (status, Answer::new(error, why, hint))
    };
    let uri = forward::upstream_uri(options, &action, trailing_slash)
        .map_err(|e| (StatusCode::BAD_GATEWAY, Answer::new("upstream_unavailable", e, "tell an operator")))?;
    let mut headers = forward::request_headers(&parts.headers);
    if websocket {
        websocket::upstream_headers(&parts.headers, &mut headers);
    }
    let on_wire = match forward::present(options, credential.as_ref(), &mut headers).await {
        Ok(on_wire) => on_wire,
        Err(e) => {
            return Err(upstream_failed(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                format!("connection {}: {e}", target.name),
                "tell an operator; the held credential could not be presented",
            ));
        }
    };
    // Moved, not copied: hyper drops it once sent, giving back its share of the budget before
    // the response is read.
    let mut upstream = Request::new(Full::new(body));
    // The method policy decided (upper case), not the client's spelling of it.
    *upstream.method_mut() = Method::from_bytes(action.method.as_bytes()).unwrap_or_else(|_| parts.method.clone());
    *upstream.uri_mut() = uri;
    *upstream.headers_mut() = headers;
    let response = match tokio::time::timeout(options.timeout, options.client().request(upstream)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let why = format!(
                "connection {}: the upstream {} cannot be reached: {}",
                target.name,
                options.authority,
                sluice_core::error_chain(&e)
            );
            return Err(upstream_failed(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                why,
                "try again later; if it persists, tell an operator",
            ));
        }
        Err(_) => {
            let why = format!(
                "connection {}: the upstream {} did not answer within {:?}",
                target.name, options.authority, options.timeout
            );
            return Err(upstream_failed(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                why,
                "try again later, or ask for less",
            ));
        }
    };
    let (mut head, upstream_body) = response.into_parts();
    if head.status == StatusCode::UNAUTHORIZED
        && let Presentation::OAuth2(cache) = &options.presentation
    {
        cache.forget().await;
    }
    let limit = conn.config.max_response_body;
    let decoder = Decoder::new(Some(&crate::decode::coding(&head.headers)), limit).map_err(|e| {
        upstream_failed(StatusCode::BAD_GATEWAY, "upstream_response_refused", e.to_string(), "tell an operator")
    })?;
    // A socket's messages are recorded under its path and query (their escaped parts masked).
    let socket_target = (websocket && head.status == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| action.shown_target(&|part: &str| masking.as_ref().and_then(|m| m.masking().mask_text(part))));
    let masker = BodyMasker::new(masking, Arc::clone(&options.sensitive), on_wire).with_archives(options.archives);
    if let Some(socket_target) = socket_target {
        let client_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
            upstream_failed(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "the client's connection cannot be upgraded".into(),
                "open the WebSocket over HTTP/1.1",
            )
        })?;
        let mut reply = Response::new(http_body_util::Either::Left(Full::new(Bytes::new())));
        *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *reply.headers_mut() = websocket::client_headers(&head.headers);
        // A socket speaks GraphQL on a GraphQL endpoint, and wherever the upstream agreed to a
        // GraphQL subprotocol: its operations then meet the GraphQL rules whatever the path.
        let graphql_socket = options.is_graphql_path(&action.path) || websocket::speaks_graphql(&head.headers);
        let upstream_upgrade = hyper::upgrade::on(Response::from_parts(head, upstream_body));
        exchange.finish("allow", &rule, 101, 0, None);
        let recording = websocket::Recording { log, next_seq, rule: Arc::from(rule.as_str()), target: socket_target };
        let standing = standing_check(conn, &session_id);
        let decide = {
            let (conn, session_id, target) = (Arc::clone(conn), Arc::clone(&session_id), target.clone());
            let socket = action.message_on_socket();
            move |message: Bytes| {
                let (conn, session_id, target, action) =
                    (Arc::clone(&conn), Arc::clone(&session_id), target.clone(), socket.clone());
                async move { decide_message(&conn, &session_id, action, &message, graphql_socket, &target).await }
            }
        };
        let paths = Arc::clone(&options.stream_text);
        let caps = websocket::Caps {
            from_client: conn.config.max_request_body,
            from_upstream: limit,
            budget: conn.config.budget.clone(),
        };
        let joined =
            websocket::relay(client_upgrade, upstream_upgrade, masker, caps, paths, recording, standing, decide);
        let in_flight = conn.busy.start();
        *conn.websocket.lock() = Some(tokio::spawn(async move {
            joined.await;
            drop(in_flight);
        }));
        return Ok(reply);
    }
    // Every Content-Type field counts: clients differ on which of several they read.
    if let Some(charset) =
        head.headers.get_all(header::CONTENT_TYPE).iter().find_map(|ct| charset::declared_unreadable(ct.as_bytes()))
    {
        let charset = crate::reply::quoted_name(&charset);
        let why = format!(
            "the response is declared {charset:?} text, which sluice's detectors cannot read (they read text in which an ASCII character is always its ASCII byte, as UTF-8 and single-byte charsets keep it)"
        );
        return Err(upstream_failed(StatusCode::BAD_GATEWAY, "upstream_response_refused", why, WIDE_HINT));
    }
    // A format whose field names sluice cannot read could carry a sensitive key's value.
    if options.sensitive.any()
        && let Some(media) = head
            .headers
            .get_all(header::CONTENT_TYPE)
            .iter()
            .map(|ct| String::from_utf8_lossy(ct.as_bytes()))
            .find(|media| response::is_structured_binary(media))
            .map(|media| response::media_type(&media))
    {
        let why = format!(
            "the response is {media}, a format whose field names sluice cannot read, so the connection's sensitive keys could not be masked in it"
        );
        return Err(upstream_failed(StatusCode::BAD_GATEWAY, "upstream_response_refused", why, ASK_FOR_JSON));
    }
    // A packed response (an archive, a compressed file, a PDF) where the connection masks.
    let packed_refusal = |why: String| {
        upstream_failed(StatusCode::BAD_GATEWAY, "upstream_response_refused", why, &archives_hint(&target.name))
    };
    // Formats with no signature to know them by when they arrive.
    if masker.refuses_archives()
        && let Some(kind) = head
            .headers
            .get_all(header::CONTENT_TYPE)
            .iter()
            .find_map(|ct| archive::declared(&String::from_utf8_lossy(ct.as_bytes())))
    {
        return Err(packed_refusal(Unreadable::Packed(kind).to_string()));
    }
    let boundary = head.headers.get(header::CONTENT_TYPE).and_then(|ct| crate::multipart::boundary(ct.as_bytes()));
    let shape = Shape::of(&head.headers);
    let binary = response::is_binary_media(head.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes));
    let mut headers = std::mem::take(&mut head.headers);
    forward::strip_response_headers(&mut headers);
    // A redirect or a next page's link keeps the agent on the path it came in on.
    let agent_prefix = if options.hosts.contains(&host) { "" } else { options.prefix.as_str() };
    let relocation = location::Relocation {
        scheme: options.scheme.as_str(),
        authority: options.authority.as_str(),
        base_path: &options.base_path,
        agent_prefix,
    };
    relocation.apply(&mut headers);
    conn.seen_headers.lock().clean(&session_id, &masker, &mut headers);
    if shape != Shape::Whole {
        let status = head.status.as_u16();
        let on_end: OnEnd = Box::new(move |sent, error| exchange.finish("allow", &rule, status, sent, error));
        let joined = Arc::clone(&options.stream_text);
        let standing: response::Standing = Box::new(standing_check(conn, &session_id));
        let session = response::StreamSession { on_end, standing, budget: conn.config.budget.clone() };
        let body = Streamed::new(upstream_body, decoder, shape, masker, limit, joined, session);
        let mut reply = Response::new(http_body_util::Either::Right(body));
        *reply.status_mut() = head.status;
        *reply.headers_mut() = headers;
        return Ok(reply);
    }
    let limits = response::WholeLimits { limit, oversize: conn.config.oversize, timeout: options.timeout };
    let share = conn.config.budget.share();
    let whole = response::read_whole(upstream_body, decoder, &masker, limits, binary, share).await;
    let whole = match whole {
        Ok(whole) => whole,
        Err(e) => {
            let (status, error, hint) = match e {
                BodyError::Timeout(_) => {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "try again later, or ask for less")
                }
                BodyError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy", BUSY_HINT),
                BodyError::TooLarge(_) | BodyError::JsonTooLarge(_) => {
                    (StatusCode::BAD_GATEWAY, "upstream_response_refused", "ask for less (paging, filters)")
                }
                BodyError::Unreadable(Unreadable::Wide(_)) => {
                    (StatusCode::BAD_GATEWAY, "upstream_response_refused", WIDE_HINT)
                }
                BodyError::Unreadable(Unreadable::Keyed(_)) => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_response_refused",
                    "ask for JSON (send Accept: application/json, without a format suffix or parameter), or tell an operator",
                ),
                BodyError::Unreadable(Unreadable::Packed(_)) => {
                    return Err(packed_refusal(e.to_string()));
                }
                _ => (StatusCode::BAD_GATEWAY, "upstream_response_refused", "tell an operator"),
            };
            return Err(upstream_failed(status, error, e.to_string(), hint));
        }
    };
    // A part of a multipart response may be packed where the whole does not begin so.
    if masker.refuses_archives()
        && let Some(boundary) = &boundary
        && let Some(kind) = archive::packed_part(&whole.body, boundary)
    {
        return Err(packed_refusal(format!("a part of {}", Unreadable::Packed(kind))));
    }
    let size = whole.body.len();
    exchange.keep_response_excerpt(&whole.body);
    let mut reply = Response::new(http_body_util::Either::Left(Full::new(whole.body)));
    *reply.status_mut() = head.status;
    *reply.headers_mut() = headers;
    reply.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    let mut cut = None;
    if whole.truncated {
        reply.headers_mut().insert(TRUNCATED, HeaderValue::from(limit));
        cut = Some(format!("the response was cut at {limit} bytes (http.oversize = truncate)"));
    }
    exchange.finish("allow", &rule, head.status.as_u16(), size, cut);
    Ok(reply)
}

/// Refuses a request (or a WebSocket message) that filters by a field masked by its name (see
/// `oracle`).
fn filter_refusal(sensitive: &Sensitive, action: &HttpAction) -> Option<Refusal> {
    let field = crate::oracle::filtered_field(sensitive, action)?;
    Some(Refusal {
        rule: "sensitive-filter".into(),
        reason: format!(
            "the request filters by {field}, a field this connection masks by its name: whether rows come back would tell its value, one guess at a time"
        ),
        detail: Some(action.summary()),
        hint: Some(format!(
            "select by another field (an id); {field} may be asked for (select=id,{field}) and ordered by ({field}.desc), and comes back masked"
        )),
        cause: RefusalCause::Policy,
    })
}

/// Refuses a GraphQL operation that gives a field masked by its name another name with an
/// alias: its value would come back under a key masking does not know.
fn renamed_by_alias(action: &HttpAction, sensitive: &Sensitive) -> Result<(), String> {
    let renamed = action.body.graphql.as_ref().and_then(|op| op.renamed.iter().find(|f| sensitive.names_field(f)));
    match renamed {
        Some(field) => Err(format!(
            "the document gives {field}, a field masked by its name (or on the way to one), another name with an alias, so its value would not be masked in the response; ask for it without an alias"
        )),
        None => Ok(()),
    }
}

/// Decides a message the client sends on a WebSocket the session `session_id` opened, as the
/// upgrade's request (`action`) with the message as its body; a review in `wait` mode is waited
/// for here, holding the socket's messages back meanwhile.
async fn decide_message<G: Gate>(
    conn: &Conn<G>,
    session_id: &Arc<str>,
    mut action: HttpAction,
    message: &[u8],
    graphql_socket: bool,
    target: &sluice_gate::Target,
) -> websocket::Verdict {
    let refuse =
        |rule: &str, answer: Answer| websocket::Verdict::Refuse { effect: "deny", rule: Arc::from(rule), answer };
    let Some(options) = target.options::<HttpTarget>() else {
        return refuse(
            "misconfigured",
            Answer::new("misconfigured", "the target is not an HTTP target", "tell an operator"),
        );
    };
    let read = request::read_message(&mut action, message, graphql_socket)
        .and_then(|()| renamed_by_alias(&action, &options.sensitive));
    if let Err(why) = read {
        let answer = Answer::new(
            "unreadable",
            format!("sluice cannot read this message: {why}"),
            "send a message sluice can check (fail closed)",
        );
        return refuse("unreadable", answer);
    }
    if let Some(refusal) = filter_refusal(&options.sensitive, &action) {
        return refuse("sensitive-filter", Answer::refusal(&refusal, None).1);
    }
    let mut guard = match same_session(conn, session_id).await {
        Ok(guard) => guard,
        Err((_, answer)) => return refuse(answer.error, answer),
    };
    let Some(open) = guard.as_mut().filter(|o| matches!(o.session.standing(), Standing::Valid)) else {
        let answer =
            Answer::new("unauthenticated", "the token was revoked or has expired", "ask an operator for a new token");
        return refuse("unauthenticated", answer);
    };
    let decision = match open.session.decide(&sluice_gate::Action::Http(&action)).await {
        Decision::Hold(hold) => {
            let waiting = open.session.await_review(&hold);
            drop(guard);
            let decided = waiting.await;
            // A review may have waited long: the token must still be good for the message to go.
            if !still_standing(&*conn.open.lock().await, session_id) {
                let answer = Answer::new(
                    "unauthenticated",
                    "the token was revoked or has expired while the message waited",
                    "ask an operator for a new token",
                );
                return refuse("unauthenticated", answer);
            }
            decided
        }
        other => other,
    };
    let rule: Arc<str> = Arc::from(decision.rule());
    match &decision {
        Decision::Allow { .. } | Decision::Approved { .. } => websocket::Verdict::Pass { rule },
        Decision::Review(refusal) | Decision::Deny(refusal) => {
            let (_, mut answer) = Answer::refusal(refusal, conn.config.api_url.as_deref());
            if let Some(why) = &action.body.json_unread {
                answer = answer.with_more_hint(format!(
                    "if a rule about the message's fields refused it: sluice could not read them ({why}), so such rules apply as if they matched; send the message as UTF-8 JSON"
                ));
            }
            websocket::Verdict::Refuse { effect: decision.effect(), rule, answer }
        }
        Decision::Hold(_) => {
            let answer = Answer::new("review_pending", "the review was not decided", "send the message again");
            websocket::Verdict::Refuse { effect: "review", rule, answer }
        }
    }
}

/// What to do about a response in a format sluice cannot read the fields of.
const ASK_FOR_JSON: &str = "ask for JSON (send Accept: application/json), or tell an operator";

/// What to do about a packed response on connection `name`.
fn archives_hint(name: &str) -> String {
    format!(
        "ask for the content itself rather than a packed copy (uncompressed, as JSON or text); an operator can let connection {name:?} pass packed files unmasked (archives = \"pass\")"
    )
}

/// What to do about a response in an encoding the detectors cannot read.
const WIDE_HINT: &str = "ask the upstream for UTF-8 (send Accept-Charset: utf-8), or tell an operator";

/// Set on a response sluice cut at the cap, to the cap.
const TRUNCATED: HeaderName = HeaderName::from_static("x-sluice-truncated");

/// Why a request is refused for its shape alone, before anything else is read: framing two
/// parsers could read differently, a method or upgrade sluice does not relay, header names and
/// codings that would have the upstream read something policy did not, override fields.
fn shape_refusal<G: Gate>(conn: &Conn<G>, req: &Request<Incoming>, websocket: bool) -> Option<Refused> {
    if req.version() <= Version::HTTP_11 {
        match conn.verdicts.take() {
            Some(HeadVerdict::Clear) => {}
            Some(HeadVerdict::Ambiguous(why)) => {
                return Some(bad_request(
                    format!("the request is framed ambiguously: {why}"),
                    "send one Content-Length or Transfer-Encoding: chunked, never both and never twice",
                ));
            }
            None => {
                return Some(bad_request(
                    "the request's framing could not be checked",
                    "send a plain HTTP/1.1 request",
                ));
            }
        }
    }
    if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
        let answer = Answer::new(
            "method_not_allowed",
            format!("{} is not relayed by sluice", req.method()),
            "sluice relays requests to configured APIs; it is not a tunnel",
        );
        return Some((StatusCode::METHOD_NOT_ALLOWED, answer));
    }
    // A WebSocket upgrade (HTTP/1.1 GET) is decided like any request and joined once the
    // upstream switches; any other upgrade is not relayed.
    if websocket && (req.method() != Method::GET || req.version() != Version::HTTP_11) {
        return Some(bad_request(
            "a WebSocket upgrade is an HTTP/1.1 GET",
            "open the WebSocket with GET over HTTP/1.1 (sluice does not take WebSockets over HTTP/2)",
        ));
    }
    if !websocket
        && let Some(upgrade) = req.headers().get(header::UPGRADE)
        && !upgrade.as_bytes().eq_ignore_ascii_case(b"h2c")
    {
        let answer = Answer::new(
            "upgrade_not_relayed",
            "protocol upgrades other than WebSocket are not relayed",
            "call the API with plain HTTP requests, or open a WebSocket",
        );
        return Some((StatusCode::NOT_IMPLEMENTED, answer));
    }
    if let Some(name) = req.headers().keys().find(|n| n.as_str().contains('_')) {
        return Some(bad_request(
            format!(
                "the header {name} has an underscore: servers behind CGI-style interfaces (WSGI, Rack) read it as {}, a header policy did not see",
                name.as_str().replace('_', "-")
            ),
            "spell header names with hyphens",
        ));
    }
    // One media type: frameworks cut a type at `,` or a space (Rack, PHP) or take the last of
    // several fields (gunicorn), and would read a body sluice did not read as theirs.
    let mut types = req.headers().get_all(header::CONTENT_TYPE).iter();
    if let Some(first) = types.next() {
        if types.next().is_some() {
            return Some(bad_request("the request has more than one Content-Type", "send one Content-Type"));
        }
        let media = first.as_bytes().split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        if media.is_empty() || media.iter().any(|&b| b == b',' || b.is_ascii_whitespace() || !b.is_ascii_graphic()) {
            return Some(bad_request(
                format!("the Content-Type {:?} is not one media type", String::from_utf8_lossy(first.as_bytes())),
                "send one media type, such as application/json",
            ));
        }
    }
    // Every field counts: a server may decode by any of them.
    let bodiless = hyper::body::Body::size_hint(req.body()).exact() == Some(0);
    if let Some(coding) = req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .find(|v| !bodiless && !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        let answer = Answer::new(
            "unsupported_media_type",
            format!(
                "the request body is sent with Content-Encoding {}, which sluice does not decode: what policy would read is not what the upstream reads",
                String::from_utf8_lossy(coding.as_bytes())
            ),
            "send the body uncompressed",
        );
        return Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, answer));
    }
    if let Some(field) = forward::acting_as_field(req.headers()) {
        return Some(bad_request(
            format!(
                "the request carries {field}, which would have the upstream act as another user, or on another resource, than the connection's credential on the path policy decided"
            ),
            &format!(
                "leave {field} out: the connection acts as its own credential; for another identity or resource, ask an operator for a connection that holds it"
            ),
        ));
    }
    forward::overriding_field(req.headers()).map(|field| {
        bad_request(
            format!(
                "the request carries {field}, which would have the upstream run another method or path than policy decided"
            ),
            "send the method and path you mean on the request line, without override headers",
        )
    })
}

/// Records a request refused for its shape in its caller's session (opened for it when the
/// request routes and its token is good) and gives the refusal back.
async fn record_refusal<G: Gate>(
    conn: &Conn<G>,
    req: &Request<Incoming>,
    routed: Result<(sluice_gate::Target, String), Refused>,
    action: &HttpAction,
    (status, answer): Refused,
    started: Instant,
    started_at_us: i64,
) -> Refused {
    let (Ok((target, path)), Ok(presented)) = (routed, credential(req)) else { return (status, answer) };
    let Ok(mut guard) = session(conn, &target.name, presented).await else { return (status, answer) };
    if let Some(open) = guard.as_mut() {
        // Named by its path within the target, as the requests it decides are.
        let action = HttpAction { path, ..action.clone() };
        open.record_refusal(&action, started, started_at_us, status, &answer);
    }
    (status, answer)
}

/// The host the client asked for, without its port, lower case.
fn host_of(req: &Request<Incoming>) -> Result<String, Refused> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad_request("the request has more than one Host", "send one Host header")),
        (Some(h), None) => {
            Some(h.to_str().map_err(|_| bad_request("the Host header is not text", "send a host name"))?)
        }
        (None, _) => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    let host = match (header_host, authority) {
        (Some(h), Some(a)) if !h.eq_ignore_ascii_case(a) => {
            return Err(bad_request("the Host header and the request target name different hosts", "send one host"));
        }
        (Some(h), _) => h,
        (None, Some(a)) => a,
        (None, None) => return Err(bad_request("the request names no host", "send a Host header")),
    };
    host_name(host)
        .ok_or_else(|| bad_request(format!("{host:?} is not a host"), "send a host name, with a port if any"))
}

/// A host as routing compares it: without its port, without a final dot, lower case (an IPv6
/// address keeps its brackets).
fn host_name(host: &str) -> Option<String> {
    let authority: hyper::http::uri::Authority = host.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    Some(authority.host().trim_end_matches('.').to_ascii_lowercase())
}

/// The connection's session again, after a wait without it; refused when a request with another
/// target or token replaced it meanwhile (this request must not go on with that session's
/// credential).
async fn same_session<'c, G: Gate>(
    conn: &'c Conn<G>,
    session_id: &Arc<str>,
) -> Result<tokio::sync::MutexGuard<'c, Option<Open<G::Session>>>, Refused> {
    let guard = conn.open.lock().await;
    if guard.as_ref().is_some_and(|o| o.session.id() == session_id) {
        return Ok(guard);
    }
    let answer = Answer::new(
        "session_changed",
        "the connection went on with another target or token while this request waited",
        "send the request again (it may need approving again); keep one token and target per connection",
    );
    Err((StatusCode::CONFLICT, answer))
}

/// The target a request is for, and the path within it: by host name first, then by path prefix.
fn route<G: Gate>(gate: &G, host: &str, path: &str) -> Result<(sluice_gate::Target, String), Refused> {
    let mut targets = gate.targets(Protocol::Http);
    let mut best: Option<(usize, &str)> = None;
    for (i, options) in targets.iter().enumerate().filter_map(|(i, t)| Some((i, t.options::<HttpTarget>()?))) {
        if options.hosts.iter().any(|h| h == host) {
            return Ok((targets.swap_remove(i), path.to_string()));
        }
        let rest = match path.strip_prefix(options.prefix.as_str()) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => continue,
        };
        if best.is_none_or(|(_, r)| rest.len() < r.len()) {
            best = Some((i, rest));
        }
    }
    let best = best.map(|(i, rest)| (i, rest.to_string()));
    best.map(|(i, rest)| (targets.swap_remove(i), rest)).ok_or_else(|| {
        let answer = Answer::new(
            "no_route",
            format!("no HTTP connection is reached at {path} on host {host}"),
            "call an API as /<connection>/<its path> (or by a host name configured for it); ask an operator which connections you may use",
        );
        (StatusCode::NOT_FOUND, answer)
    })
}

/// The sluice token the client presented: `Authorization: Bearer <token>`, or basic auth with
/// the identity's name and the token as its password.
fn credential(req: &Request<Incoming>) -> Result<Credential, Refused> {
    let unauthenticated = |reason: &str| {
        let answer = Answer::new(
            "unauthenticated",
            reason,
            "send your sluice token: Authorization: Bearer <token> (or basic auth with your identity's name and the token as password)",
        );
        (StatusCode::UNAUTHORIZED, answer)
    };
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (Some(_), Some(_)) => {
            return Err(bad_request("the request has more than one Authorization header", "send one"));
        }
        (Some(v), None) => v.to_str().map_err(|_| unauthenticated("the Authorization header is not text"))?,
        (None, _) => return Err(unauthenticated("the request carries no sluice token")),
    };
    let (scheme, rest) =
        value.split_once(' ').ok_or_else(|| unauthenticated("the Authorization header has no scheme"))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credential { user: None, secret: Secret::new(rest) });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| unauthenticated("the basic credentials are not base64 text"))?;
        let (user, token) =
            decoded.split_once(':').ok_or_else(|| unauthenticated("the basic credentials have no ':'"))?;
        return Ok(Credential { user: Some(user.to_string()), secret: Secret::new(token) });
    }
    Err(unauthenticated("the Authorization scheme is neither Bearer nor Basic"))
}

struct Credential {
    user: Option<String>,
    secret: Secret,
}

/// The connection's session for this target and token, opened (and the previous one ended)
/// when either differs; the refusal when it cannot be opened.
async fn session<'c, G: Gate>(
    conn: &'c Conn<G>,
    target: &str,
    credential: Credential,
) -> Result<tokio::sync::MutexGuard<'c, Option<Open<G::Session>>>, Refused> {
    let token: [u8; 32] = Sha256::digest(credential.secret.expose().as_bytes()).into();
    let mut guard = conn.open.lock().await;
    if guard.as_ref().is_some_and(|o| o.target == target && o.token == token) {
        return Ok(guard);
    }
    if let Some(previous) = guard.take() {
        previous.session.end("the connection went on with another target or token".into());
    }
    let presented = match &credential.user {
        Some(user) => Presented::Token { user, secret: &credential.secret },
        None => Presented::Bearer { secret: &credential.secret },
    };
    let request = OpenRequest {
        presented,
        target,
        client: ClientInfo {
            protocol: Protocol::Http,
            addr: &conn.peer,
            tls: conn.config.tls.is_some(),
            program: None,
        },
    };
    // A place among the authenticated connections is reserved before the token is checked, so
    // that no session is opened (and recorded) only to be ended for want of one.
    let reserved = match conn.reserve_slot() {
        Ok(reserved) => reserved,
        Err(()) => {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Answer::new(
                    "unavailable",
                    "sluice is serving its maximum of HTTP connections",
                    "try again later, reuse a connection, or ask an operator to raise http.max_connections",
                ),
            ));
        }
    };
    match conn.gate.open(request).await {
        Ok((grant, mut session)) => {
            if let Some(place) = reserved {
                conn.keep_slot(place);
            }
            session.started();
            let log = session.log();
            *guard = Some(Open { target: target.to_string(), token, session, log, grant, seq: 0 });
            Ok(guard)
        }
        Err(e) => Err(match e {
            OpenError::Auth(outcome) => (
                StatusCode::UNAUTHORIZED,
                Answer::new(
                    "unauthenticated",
                    format!("authentication failed ({})", outcome.as_str()),
                    "check the sluice token; `sluice token list` shows which are valid, and an operator can grant access to this connection",
                ),
            ),
            OpenError::Misconfigured { connection, reason } => (
                StatusCode::BAD_GATEWAY,
                Answer::new(
                    "misconfigured",
                    format!("connection {connection} is misconfigured: {reason}"),
                    "tell an operator",
                ),
            ),
            OpenError::Store(reason) | OpenError::Refused(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Answer::new("unavailable", format!("sluice cannot open a session now: {reason}"), "try again shortly"),
            ),
        }),
    }
}

/// One request on its way, for its record.
struct Exchange<L: SessionLog> {
    log: L,
    /// The record's line, when the log records outcomes.
    text: Option<Arc<str>>,
    seq: u64,
    started_at_us: i64,
    started: Instant,
    request_bytes: usize,
    excerpts: Option<Box<HttpExcerpts>>,
    /// The rule that let the request go upstream, once it went: an exchange dropped before its
    /// record (the client reset the stream or went away while the upstream answered) is recorded
    /// then, since the upstream may have run it.
    forwarded: Option<Arc<str>>,
    finished: std::sync::atomic::AtomicBool,
}

impl<L: SessionLog> Exchange<L> {
    fn new(
        log: &L,
        masking: Option<&SessionMasking>,
        action: &HttpAction,
        seq: u64,
        started_at_us: i64,
        started: Instant,
        request_bytes: usize,
    ) -> Self {
        // The parts of the line that are escaped are masked as they are (see `record_line`).
        let mask = |part: &str| masking.and_then(|m| m.masking().mask_text(part));
        let text = log.records_outcomes().then(|| Arc::from(action.record_line(&mask)));
        Exchange {
            log: log.clone(),
            text,
            seq,
            started_at_us,
            started,
            request_bytes,
            excerpts: None,
            forwarded: None,
            finished: Default::default(),
        }
    }

    /// Keeps the beginning of the request's body with the record, masked, where the log keeps
    /// results (`[recording] result_rows`): for every exchange, refused ones included, since
    /// what was refused is what a reviewer of the log asks about.
    fn keep_request_excerpt(&mut self, masking: Option<SessionMasking>, sensitive: &Arc<Sensitive>, request: &[u8]) {
        let Some(limits) = self.log.result_excerpt() else { return };
        let masker = BodyMasker::new(masking, Arc::clone(sensitive), Arc::default());
        let form = sensitive.mask_form(request);
        let request = form.as_deref().unwrap_or(request);
        let request = match masker.clean(request) {
            _ if request.is_empty() => None,
            Ok(clean) => Some(excerpt(clean.as_deref().unwrap_or(request), limits.bytes)),
            Err(e) => Some(format!("[withheld: {e}]")),
        };
        self.excerpts = Some(Box::new(HttpExcerpts { request, response: None }));
    }

    /// Adds the beginning of the response's body (as the client got it) to the excerpts kept.
    fn keep_response_excerpt(&mut self, response: &[u8]) {
        let (Some(limits), Some(excerpts)) = (self.log.result_excerpt(), self.excerpts.as_mut()) else { return };
        excerpts.response = (!response.is_empty()).then(|| excerpt(response, limits.bytes));
    }

    /// The request goes upstream under `rule`: from now on it is recorded even if sluice never
    /// answers it.
    fn forwarding(&mut self, rule: &str) {
        self.forwarded = Some(Arc::from(rule));
    }

    /// Hands what became of the request to the session's log (once).
    fn finish(&self, verdict: &'static str, rule: &str, status: u16, response_bytes: usize, error: Option<String>) {
        if self.finished.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(text) = &self.text else { return };
        self.log.finish(
            self.seq,
            Outcome {
                text: Arc::clone(text),
                started_at_us: self.started_at_us,
                duration_us: i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX),
                decision: verdict,
                rule: Some(Arc::from(rule)),
                detail: ActionDetail::Http {
                    status,
                    request_bytes: self.request_bytes as u64,
                    response_bytes: response_bytes as u64,
                    error,
                    excerpts: self.excerpts.clone(),
                },
            },
        );
    }
}

/// The status an exchange is recorded with when the client went away before its answer (as
/// nginx logs it).
const CLIENT_WENT_AWAY: u16 = 499;

impl<L: SessionLog> Drop for Exchange<L> {
    fn drop(&mut self) {
        if let Some(rule) = self.forwarded.take() {
            let why = "the client went away before sluice answered; the upstream may have run the request";
            self.finish("allow", &rule, CLIENT_WENT_AWAY, 0, Some(why.into()));
        }
    }
}

/// At most `max` bytes of `body` as text, cut at a character, with `…` when cut.
fn excerpt(body: &[u8], max: usize) -> String {
    if body.len() <= max {
        return String::from_utf8_lossy(body).into_owned();
    }
    let cut = String::from_utf8_lossy(&body[..max]);
    let mut text: String = cut.trim_end_matches('\u{fffd}').to_string();
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::{ClientTooSlow, host_name, timed_out};

    #[test]
    fn only_sluices_own_time_outs_are_said_to_close_the_connection() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapped(#[source] std::io::Error);
        let ours = Wrapped(ClientTooSlow::io("too slow"));
        assert_eq!(timed_out(&ours).as_deref(), Some("too slow"));
        assert_eq!(timed_out(&ClientTooSlow::io("too slow")).as_deref(), Some("too slow"));
        // The system's own (a peer gone, TCP giving up) is not sluice closing it.
        assert_eq!(timed_out(&Wrapped(std::io::ErrorKind::TimedOut.into())), None);
    }

    #[test]
    fn a_host_is_compared_without_port_case_or_final_dot() {
        for (host, name) in [
            ("Billing.Sluice.Internal:6434", Some("billing.sluice.internal")),
            ("billing.sluice.internal.", Some("billing.sluice.internal")),
            ("127.0.0.1", Some("127.0.0.1")),
            ("[::1]:6434", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("user@billing", None),
            ("bad host", None),
        ] {
            assert_eq!(host_name(host).as_deref(), name, "{host}");
        }
    }
}
