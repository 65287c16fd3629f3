//! One client connection from first byte to last: TLS negotiation, startup, authentication through
//! the Gate, the upstream session with the held credential, then the relay until either side ends.

use crate::cancel::UpstreamKey;
use crate::codec::{self, HEADER_LEN, auth, peek_frame};
use crate::error::{PgError, sqlstate};
use crate::listener::Shared;
use crate::relay::{self, Context, RelayEnd, Tracker};
use crate::startup::{StartupError, StartupPacket, read_startup};
use crate::stream::PgStream;
use crate::target::PgTarget;
use crate::upstream::{self, PgEndpoint, UpstreamError};
use bytes::BytesMut;
use parking_lot::Mutex;
use sluice_core::review::SAME_STATEMENT;
use sluice_core::{Protocol, Secret};
use sluice_gate::{ClientInfo, Gate, OpenError, OpenRequest, Presented, SessionGate, SessionGrant};
use sluice_policy::is_protected_setting;
use sluice_runtime::{Accepted, SessionSlots, Stop, Ticket};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Startup parameters that name a mode sluice does not relay. The settings policy protects
/// (`is_protected_setting`) are refused as startup parameters too, also inside `options`.
const REFUSED_PARAMETERS: &[&str] = &["replication"];

/// Startup parameters sluice sets itself whatever the client asks: every session speaks UTF-8, the
/// encoding sluice parses statements in (a client's other encoding is dropped, not refused, as
/// drivers send one by default).
const OVERRIDDEN_PARAMETERS: &[&str] = &["client_encoding"];

fn refused_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !OVERRIDDEN_PARAMETERS.contains(&name.as_str())
        && (REFUSED_PARAMETERS.contains(&name.as_str()) || is_protected_setting(&name))
}

/// Whether a client's startup parameter goes on to the upstream.
fn forwarded_parameter(name: &str) -> bool {
    name != "user"
        && name != "database"
        && !name.starts_with("_pq_.")
        && !OVERRIDDEN_PARAMETERS.contains(&name.to_ascii_lowercase().as_str())
}

pub async fn run<G: Gate>(accepted: Accepted, shared: Arc<Shared<G>>) {
    let Accepted { tcp, peer, ticket, mut stop, slots } = accepted;
    let _ = tcp.set_nodelay(true);
    let opened = tokio::select! {
        opened = handshake(tcp, peer, &shared, ticket, slots) => opened,
        _ = stop.signalled() => return,
    };
    let Some(opened) = opened else { return };
    relay_session(opened, peer, &shared, stop).await;
}

/// A session ready to relay.
struct Opened<S> {
    /// Its place among `postgres.max_sessions`, for as long as it lives.
    _slot: OwnedSemaphorePermit,
    client: PgStream,
    upstream: upstream::Upstream,
    session: S,
    connection: String,
    endpoint: Arc<PgEndpoint>,
}

/// Everything before the relay. Returns `None` when the connection ended (answered or not).
/// Until it authenticates, the client holds only its admission `ticket` (which a newer one may
/// evict) and has `handshake_timeout`; a session slot is taken once it has.
async fn handshake<G: Gate>(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared<G>,
    ticket: Ticket,
    slots: SessionSlots,
) -> Option<Opened<G::Session>> {
    let authenticated = tokio::select! {
        result = tokio::time::timeout(shared.config.handshake_timeout, authenticate(tcp, peer, shared)) => match result {
            Ok(authenticated) => authenticated?,
            Err(_) => {
                tracing::info!(%peer, "client did not authenticate in time");
                return None;
            }
        },
        _ = ticket.evicted() => {
            tracing::info!(%peer, "unauthenticated connection evicted to admit a newer one");
            return None;
        }
    };
    drop(ticket);
    let Authenticated { mut client, params, grant, session } = authenticated;
    let max_sessions = shared.config.max_sessions;
    let Some(slot) = slots.take() else {
        tracing::warn!(%peer, max_sessions, "refusing a client: too many sessions");
        let e = PgError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!("sluice is serving its maximum of {max_sessions} sessions"),
        )
        .with_hint("try again later, or raise postgres.max_sessions");
        return fail(&mut client, &e).await;
    };
    open_upstream(client, params, grant, session, slot, shared).await
}

/// A client that proved who it is, with what it asked for.
struct Authenticated<S> {
    client: PgStream,
    params: Vec<(String, String)>,
    grant: SessionGrant,
    session: S,
}

/// TLS, the startup packet and the token. `None` when the connection ended (answered or not).
async fn authenticate<G: Gate>(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared<G>,
) -> Option<Authenticated<G::Session>> {
    let config = &shared.config;
    let mut client = PgStream::Plain(tcp);
    let params = loop {
        let packet = match read_startup(&mut client).await {
            Ok(packet) => packet,
            Err(StartupError::Closed) => return None,
            Err(StartupError::Protocol(e)) => return fail(&mut client, &e).await,
        };
        match packet {
            StartupPacket::SslRequest if !client.is_tls() => {
                let Some(tls) = config.tls.clone() else {
                    client.write_all(b"N").await.ok()?;
                    continue;
                };
                client.write_all(b"S").await.ok()?;
                let PgStream::Plain(tcp) = client else {
                    return None;
                };
                match tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await {
                    Ok(stream) => client = PgStream::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))),
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "TLS handshake with client failed");
                        return None;
                    }
                }
            }
            StartupPacket::GssEncRequest if !client.is_tls() => client.write_all(b"N").await.ok()?,
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                let e = PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "encryption requested twice");
                return fail(&mut client, &e).await;
            }
            StartupPacket::Cancel { pid, secret } => {
                forward_cancel(shared, pid, secret).await;
                return None;
            }
            StartupPacket::Startup { minor, params, .. } => {
                let unsupported: Vec<String> =
                    params.iter().filter(|(n, _)| n.starts_with("_pq_.")).map(|(n, _)| n.clone()).collect();
                if minor > 0 || !unsupported.is_empty() {
                    let mut out = BytesMut::new();
                    codec::negotiate_protocol_version(&mut out, 0, &unsupported);
                    client.write_all(&out).await.ok()?;
                }
                break params;
            }
        }
    };
    if config.require_tls && !client.is_tls() {
        let e = PgError::fatal(sqlstate::INVALID_AUTHORIZATION, "sluice accepts only TLS connections")
            .with_hint("connect with sslmode=require");
        return fail(&mut client, &e).await;
    }
    // `options` (PGOPTIONS) becomes the settings it holds, each judged like a startup parameter.
    let mut params = params;
    if let Some(at) = params.iter().position(|(n, _)| n == "options") {
        let (_, options) = params.remove(at);
        match crate::startup::options_settings(&options) {
            Ok(settings) => params.extend(settings),
            Err(word) => {
                let e = PgError::fatal(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("sluice does not accept \"{word}\" in the startup options"),
                )
                .with_hint("pass settings as -c name=value (check PGOPTIONS); other server switches are not relayed");
                return fail(&mut client, &e).await;
            }
        }
    }
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let Some(user) = param("user").filter(|u| !u.is_empty()) else {
        let e =
            PgError::fatal(sqlstate::INVALID_AUTHORIZATION, "no user name given (the user is your sluice identity)");
        return fail(&mut client, &e).await;
    };
    let connection = param("database").filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
    if let Some((name, _)) = params.iter().find(|(n, _)| refused_parameter(n)) {
        let e = PgError::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("sluice does not accept the startup parameter \"{name}\""),
        )
        .with_hint("connect without it (check PGOPTIONS); settings the gateway allows can be changed with SET");
        return fail(&mut client, &e).await;
    }

    // Ask for the token in clear: over TLS that is what PostgreSQL's own `password` method does, and
    // it lets sluice keep only a digest of each token.
    let mut out = BytesMut::new();
    codec::authentication(&mut out, auth::CLEARTEXT);
    client.write_all(&out).await.ok()?;
    client.flush().await.ok()?;
    let secret = match read_password(&mut client).await {
        Ok(Some(secret)) => secret,
        // psql hangs up here to prompt for a password, then connects again.
        Ok(None) => return None,
        Err(e) => return fail(&mut client, &e).await,
    };

    let client_addr = peer.to_string();
    let program = param("application_name");
    let client_info = ClientInfo {
        protocol: Protocol::Postgres,
        addr: &client_addr,
        tls: client.is_tls(),
        program: program.as_deref(),
    };
    let presented = Presented::Token { user: &user, secret: &secret };
    let request = OpenRequest { presented, target: &connection, client: client_info };
    let (grant, session) = match shared.gate.open(request).await {
        Ok(opened) => opened,
        Err(OpenError::Auth(outcome)) => {
            tracing::info!(%peer, user, connection, outcome = outcome.as_str(), "authentication failed");
            let e = PgError::fatal(
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            )
            .with_hint("the user is your sluice identity, the password a sluice token, the database a connection name");
            return fail(&mut client, &e).await;
        }
        Err(OpenError::Misconfigured { connection, reason }) => {
            tracing::error!(%peer, connection, reason, "connection is misconfigured");
            let e = PgError::fatal(
                sqlstate::CANNOT_CONNECT,
                format!("sluice: connection \"{connection}\" is not usable right now"),
            )
            .with_detail(reason)
            .with_hint("an operator must fix this connection in sluice's configuration");
            return fail(&mut client, &e).await;
        }
        Err(OpenError::Store(reason)) => {
            tracing::error!(%peer, reason, "state store unavailable during authentication");
            let e = PgError::fatal(sqlstate::CANNOT_CONNECT, "sluice cannot check credentials right now")
                .with_hint("try again shortly; an operator should check sluice's state store");
            return fail(&mut client, &e).await;
        }
        Err(OpenError::Refused(reason)) => {
            tracing::warn!(%peer, user, connection, reason, "new session refused");
            // The client has not proven anything yet: it learns why in general, the log says which
            // export and how far behind.
            let e = PgError::fatal(sqlstate::CANNOT_CONNECT, "sluice is not accepting new sessions right now")
                .with_detail("the audit log cannot be exported as fast as it is written; sessions are refused until it catches up")
                .with_hint(
                    "sessions already open go on; retry later, and tell an operator: sluice's log names the audit \
                     export that is behind",
                );
            return fail(&mut client, &e).await;
        }
    };
    Some(Authenticated { client, params, grant, session })
}

/// Opens the upstream session of an authenticated client.
async fn open_upstream<G: Gate>(
    mut client: PgStream,
    params: Vec<(String, String)>,
    grant: SessionGrant,
    session: G::Session,
    slot: OwnedSemaphorePermit,
    shared: &Shared<G>,
) -> Option<Opened<G::Session>> {
    let config = &shared.config;
    let forwarded: Vec<(String, String)> = params.iter().filter(|(n, _)| forwarded_parameter(n)).cloned().collect();
    let SessionGrant { target, credential, obligations, .. } = grant;
    let connection = target.name.clone();
    let Some(pg) = target.options::<PgTarget>() else {
        tracing::error!(connection, protocol = target.protocol.as_str(), "not a PostgreSQL target");
        session.upstream_failed();
        let e = PgError::fatal(
            sqlstate::CANNOT_CONNECT,
            format!("sluice: connection \"{connection}\" is not a PostgreSQL target"),
        )
        .with_hint("connect to it with its own protocol's client");
        return fail(&mut client, &e).await;
    };
    let endpoint = Arc::new(pg.endpoint(credential, obligations));
    let upstream = match upstream::connect(&endpoint, &forwarded, config.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::warn!(session = %session.id(), connection, host = endpoint.host, port = endpoint.port, error = %e,
                "cannot open the upstream session");
            session.upstream_failed();
            return fail(&mut client, &upstream_error(&connection, &e)).await;
        }
    };
    Some(Opened { _slot: slot, client, upstream, session, connection, endpoint })
}

/// What the client is told when its upstream cannot be opened. The upstream's own words are passed
/// on where they help (a refused role, a missing database), never the held credential.
fn upstream_error(connection: &str, e: &UpstreamError) -> PgError {
    let (code, hint) = match e {
        UpstreamError::Unreachable { .. } | UpstreamError::Timeout(_) | UpstreamError::Io(_) => {
            (sqlstate::CANNOT_CONNECT, "the upstream server may be down; try again later or ask an operator")
        }
        UpstreamError::Refused(_) | UpstreamError::NoPassword | UpstreamError::UnsupportedAuth(_) => {
            (sqlstate::SERVER_REJECTED, "an operator must check the connection's upstream user and credential")
        }
        UpstreamError::Tls(_) | UpstreamError::Protocol(_) => {
            (sqlstate::CANNOT_CONNECT, "an operator must check the connection's upstream TLS settings")
        }
    };
    let detail = match e {
        UpstreamError::Unreachable { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    PgError::fatal(code, format!("sluice: the upstream of connection \"{connection}\" is unavailable"))
        .with_detail(detail)
        .with_hint(hint)
}

async fn read_password(client: &mut PgStream) -> Result<Option<Secret>, PgError> {
    let mut header = [0u8; HEADER_LEN];
    if client.read_exact(&mut header).await.is_err() {
        return Ok(None);
    }
    let head = peek_frame(&header, 8 * 1024)
        .map_err(|_| PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "invalid password message length"))?;
    let len = match head {
        Some(head) => head.len,
        None => codec::declared_len(&header).unwrap_or(HEADER_LEN),
    };
    if header[0] != b'p' {
        return Err(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("expected a password message, got message type {:?}", header[0] as char),
        ));
    }
    let mut body = vec![0u8; len - HEADER_LEN];
    if client.read_exact(&mut body).await.is_err() {
        return Ok(None);
    }
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let text = std::str::from_utf8(&body[..end])
        .map_err(|_| PgError::fatal(sqlstate::INVALID_PASSWORD, "the password is not valid UTF-8"))?;
    Ok(Some(Secret::new(text)))
}

async fn fail<T>(client: &mut PgStream, error: &PgError) -> Option<T> {
    let _ = client.write_all(&error.to_bytes()).await;
    let _ = client.flush().await;
    let _ = client.shutdown().await;
    None
}

async fn forward_cancel<G: Gate>(shared: &Shared<G>, pid: i32, secret: i32) {
    let Some(key) = shared.cancel.lookup(pid, secret) else {
        tracing::info!(pid, "cancel request with an unknown key ignored");
        return;
    };
    // A statement held for a review is not upstream yet: the cancel withdraws it here.
    key.hold.notify_waiters();
    if let Err(e) = upstream::cancel(&key.endpoint, key.pid, key.secret, shared.config.connect_timeout).await {
        tracing::warn!(error = %e, "could not forward a cancel request upstream");
    }
}

async fn relay_session<G: Gate>(opened: Opened<G::Session>, peer: SocketAddr, shared: &Shared<G>, mut stop: Stop) {
    let Opened { _slot, mut client, upstream, mut session, connection, endpoint } = opened;
    let session_id = Arc::clone(session.id());
    let hold = Arc::new(tokio::sync::Notify::new());
    let cancel_key = shared.cancel.register(UpstreamKey {
        endpoint: Arc::clone(&endpoint),
        pid: upstream.pid,
        secret: upstream.secret,
        hold: Arc::clone(&hold),
    });

    let mut hello = BytesMut::with_capacity(512);
    codec::authentication(&mut hello, auth::OK);
    for status in &upstream.parameter_status {
        hello.extend_from_slice(status);
    }
    codec::backend_key_data(&mut hello, cancel_key.pid, cancel_key.secret);
    codec::ready_for_query(&mut hello, b'I');
    if client.write_all(&hello).await.is_err() || client.flush().await.is_err() {
        return;
    }
    session.started();
    tracing::info!(session = %session_id, identity = session.principal().name, connection, %peer, "session started");

    let (notices_tx, mut notices_rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Context::<G::Session> {
        log: session.log(),
        session_id: Arc::clone(&session_id),
        classifier: &shared.classifier,
        max_message_bytes: shared.config.max_message_bytes,
        masking: endpoint.masking.clone(),
        catalog: &shared.catalog,
        endpoint: &endpoint,
        lookup_timeout: shared.config.connect_timeout,
        notices: notices_tx,
        cancel: hold,
        sluice_owed: Default::default(),
        reached: Default::default(),
        masked_columns: Default::default(),
        backslash_strings: Default::default(),
    };
    let tracker = Mutex::new(Tracker::new());
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.stream.into_split();
    let end = tokio::select! {
        end = relay::client_to_upstream(&ctx, &mut session, &tracker, &mut client_read, &mut upstream_write) => end,
        end = relay::upstream_to_client(&ctx, &tracker, &mut upstream_read, upstream.leftover, &mut client_write, &mut notices_rx) => end,
        _ = stop.signalled() => RelayEnd::UpstreamGone("sluice is shutting down".into()),
    };
    let reason = end.describe();
    let held_for = Context::<G::Session>::holding(&tracker);
    ctx.record_interrupted(&tracker, &reason);
    let farewell = match &end {
        RelayEnd::ClientProtocol(e)
        | RelayEnd::CredentialEnded(e)
        | RelayEnd::AccessEnded(e)
        | RelayEnd::MaskingArrived(e) => Some(e.clone()),
        RelayEnd::UpstreamGone(why) if stop.is_signalled() => Some(match held_for {
            Some(id) => PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                format!("sluice is shutting down while this statement was held for review #{id}"),
            )
            .with_hint(format!(
                "review #{id} stays open: once it is approved, reconnect and re-run {SAME_STATEMENT}: it runs once"
            )),
            None => PgError::fatal(sqlstate::ADMIN_SHUTDOWN, "sluice is shutting down")
                .with_hint(format!("reconnect in a moment ({why})")),
        }),
        RelayEnd::UpstreamGone(why) => Some(
            PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!("sluice: lost the upstream of connection \"{connection}\""),
            )
            .with_detail(why.clone())
            .with_hint("reconnect; statements in flight may or may not have completed"),
        ),
        _ => None,
    };
    if let Some(e) = farewell {
        let _ = client_write.write_all(&e.to_bytes()).await;
        let _ = client_write.flush().await;
    }
    let _ = client_write.shutdown().await;
    let _ = upstream_write.shutdown().await;
    match &end {
        RelayEnd::ClientTerminated => {
            tracing::info!(session = %session_id, "session ended: {reason}")
        }
        _ => tracing::warn!(session = %session_id, "session ended: {reason}"),
    }
    session.end(reason);
}
