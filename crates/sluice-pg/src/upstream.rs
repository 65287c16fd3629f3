//! Opening a session on the real server: TCP, optional TLS (libpq's sslmodes), the startup
//! message, and authentication with the held credential (SCRAM-SHA-256, MD5 or cleartext).

use crate::codec::{self, Reader, auth, peek_frame, put_cstr};
use crate::error::ServerMessage;
use crate::scram::{ScramClient, md5_password};
use crate::stream::PgStream;
use bytes::{BufMut, Bytes, BytesMut};
use sluice_core::Secret;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything needed to reach one upstream server as one user.
#[derive(Clone, Debug)]
pub struct PgEndpoint {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub tls: UpstreamTls,
    /// Settings sluice pins in every upstream session (sent after the client's startup parameters).
    pub settings: Vec<(String, String)>,
    /// Masking obligations on this session's responses; `None` when nothing is to be masked.
    pub masking: Option<sluice_mask::SessionMasking>,
}

/// TLS towards the upstream, with libpq's `sslmode` meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl UpstreamTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamTlsMode::Disable => "disable",
            UpstreamTlsMode::Prefer => "prefer",
            UpstreamTlsMode::Require => "require",
            UpstreamTlsMode::VerifyCa => "verify-ca",
            UpstreamTlsMode::VerifyFull => "verify-full",
        }
    }
}

#[derive(Clone, Debug)]
pub struct UpstreamTls {
    pub mode: UpstreamTlsMode,
    /// Built once per connection at start-up; `None` only with `Disable`.
    pub config: Option<Arc<rustls::ClientConfig>>,
    pub server_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {addr}: {source}")]
    Unreachable { addr: String, source: std::io::Error },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server refused: {} ({})", .0.message, .0.code)]
    Refused(ServerMessage),
    #[error("the server wants a password and none is held for this connection")]
    NoPassword,
    #[error("the server asked for an authentication method sluice does not support: {0}")]
    UnsupportedAuth(String),
    #[error("protocol error from the server: {0}")]
    Protocol(String),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

/// An authenticated upstream session, ready for queries.
pub struct Upstream {
    pub stream: PgStream,
    /// ParameterStatus messages as the server sent them, to replay to the client.
    pub parameter_status: Vec<Bytes>,
    pub pid: i32,
    pub secret: i32,
    /// Bytes that arrived after ReadyForQuery (normally none).
    pub leftover: BytesMut,
}

const STARTUP_MAX_FRAME: usize = 1 << 20;

pub async fn connect(
    endpoint: &PgEndpoint,
    params: &[(String, String)],
    timeout: Duration,
) -> Result<Upstream, UpstreamError> {
    tokio::time::timeout(timeout, connect_inner(endpoint, params)).await.map_err(|_| UpstreamError::Timeout(timeout))?
}

async fn connect_inner(endpoint: &PgEndpoint, params: &[(String, String)]) -> Result<Upstream, UpstreamError> {
    let mut stream = open_stream(endpoint).await?;

    let mut startup = BytesMut::with_capacity(256);
    startup.put_i32(0);
    startup.put_i32(196608);
    for (name, value) in [("user", endpoint.user.as_str()), ("database", endpoint.database.as_str())]
        .into_iter()
        .chain(params.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .chain(endpoint.settings.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        put_cstr(&mut startup, name.as_bytes());
        put_cstr(&mut startup, value.as_bytes());
    }
    startup.put_u8(0);
    let len = startup.len() as i32;
    startup[0..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&startup).await?;
    stream.flush().await?;

    let mut buf = BytesMut::with_capacity(4096);
    let mut scram: Option<ScramClient> = None;
    let mut parameter_status = Vec::new();
    let mut key = (0, 0);
    loop {
        let frame = read_frame(&mut stream, &mut buf).await?;
        let body = &frame[codec::HEADER_LEN..];
        match frame[0] {
            b'R' => {
                let mut r = Reader::new(body);
                let code = r.i32().ok_or_else(|| UpstreamError::Protocol("short authentication request".into()))?;
                let reply = authenticate(endpoint, code, r.rest(), &mut scram)?;
                if let Some(reply) = reply {
                    stream.write_all(&reply).await?;
                    stream.flush().await?;
                }
            }
            b'S' => parameter_status.push(frame.clone()),
            b'K' => {
                let mut r = Reader::new(body);
                key = (
                    r.i32().ok_or_else(|| UpstreamError::Protocol("short BackendKeyData".into()))?,
                    r.i32().ok_or_else(|| UpstreamError::Protocol("short BackendKeyData".into()))?,
                );
            }
            b'E' => return Err(UpstreamError::Refused(ServerMessage::parse(body))),
            b'N' | b'v' => {}
            b'Z' => {
                return Ok(Upstream { stream, parameter_status, pid: key.0, secret: key.1, leftover: buf });
            }
            other => {
                return Err(UpstreamError::Protocol(format!("unexpected message {:?} during startup", other as char)));
            }
        }
    }
}

/// Answers one authentication request; `None` when no reply is due (Ok, SASL final).
fn authenticate(
    endpoint: &PgEndpoint,
    code: i32,
    data: &[u8],
    scram: &mut Option<ScramClient>,
) -> Result<Option<BytesMut>, UpstreamError> {
    let password = || endpoint.password.as_ref().map(Secret::expose).ok_or(UpstreamError::NoPassword);
    let mut out = BytesMut::new();
    match code {
        auth::OK => return Ok(None),
        auth::CLEARTEXT => {
            let mut payload = BytesMut::new();
            put_cstr(&mut payload, password()?.as_bytes());
            codec::password_message(&mut out, &payload);
        }
        auth::MD5 => {
            let salt = data.get(..4).ok_or_else(|| UpstreamError::Protocol("short MD5 salt".into()))?;
            let mut payload = BytesMut::new();
            put_cstr(&mut payload, md5_password(&endpoint.user, password()?, salt).as_bytes());
            codec::password_message(&mut out, &payload);
        }
        auth::SASL => {
            let mut r = Reader::new(data);
            let mut offered = Vec::new();
            while let Some(m) = r.cstr().filter(|m| !m.is_empty()) {
                offered.push(String::from_utf8_lossy(m).into_owned());
            }
            if !offered.iter().any(|m| m == "SCRAM-SHA-256") {
                return Err(UpstreamError::UnsupportedAuth(format!("SASL {}", offered.join(", "))));
            }
            let client = ScramClient::new(password()?);
            let first = client.client_first();
            let mut payload = BytesMut::new();
            put_cstr(&mut payload, b"SCRAM-SHA-256");
            payload.put_i32(first.len() as i32);
            payload.put_slice(first.as_bytes());
            codec::password_message(&mut out, &payload);
            *scram = Some(client);
        }
        auth::SASL_CONTINUE => {
            let client = scram.as_mut().ok_or_else(|| UpstreamError::Protocol("SASL continue before start".into()))?;
            let reply = client.client_final(data).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            codec::password_message(&mut out, reply.as_bytes());
        }
        auth::SASL_FINAL => {
            let client = scram.as_ref().ok_or_else(|| UpstreamError::Protocol("SASL final before start".into()))?;
            client.verify_server_final(data).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            return Ok(None);
        }
        other => return Err(UpstreamError::UnsupportedAuth(format!("authentication request {other}"))),
    }
    Ok(Some(out))
}

/// TCP plus, per the TLS mode, the SSLRequest exchange and handshake.
async fn open_stream(endpoint: &PgEndpoint) -> Result<PgStream, UpstreamError> {
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    let tcp = TcpStream::connect(&addr).await.map_err(|source| UpstreamError::Unreachable { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let tls = &endpoint.tls;
    let Some(config) = tls.config.clone().filter(|_| tls.mode != UpstreamTlsMode::Disable) else {
        return Ok(PgStream::Plain(tcp));
    };
    let mut tcp = tcp;
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
    let answer = tcp.read_u8().await?;
    match answer {
        b'S' => {
            let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                .map_err(|e| UpstreamError::Tls(format!("bad server name {:?}: {e}", tls.server_name)))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let stream = connector.connect(name, tcp).await.map_err(|e| UpstreamError::Tls(e.to_string()))?;
            Ok(PgStream::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))))
        }
        b'N' if tls.mode == UpstreamTlsMode::Prefer => Ok(PgStream::Plain(tcp)),
        b'N' => Err(UpstreamError::Tls("the server does not accept TLS connections".into())),
        other => Err(UpstreamError::Protocol(format!("unexpected answer {other:#x} to SSLRequest"))),
    }
}

async fn read_frame(stream: &mut PgStream, buf: &mut BytesMut) -> Result<Bytes, UpstreamError> {
    loop {
        match peek_frame(buf, STARTUP_MAX_FRAME) {
            Ok(Some(head)) => return Ok(buf.split_to(head.len).freeze()),
            Ok(None) => {
                buf.reserve(4096);
                if stream.read_buf(buf).await? == 0 {
                    return Err(UpstreamError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Err(e) => return Err(UpstreamError::Protocol(format!("{e:?}"))),
        }
    }
}

/// Opens a session of its own, runs one simple query, and returns its rows as text (`None` for
/// NULL). For sluice's own lookups, never for client traffic.
pub async fn query_once(
    endpoint: &PgEndpoint,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
    let run = async {
        let mut upstream = connect_inner(endpoint, &[]).await?;
        let mut out = BytesMut::new();
        codec::query(&mut out, sql);
        codec::put_message(&mut out, b'X', |_| {});
        upstream.stream.write_all(&out).await?;
        upstream.stream.flush().await?;
        let mut buf = upstream.leftover;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let frame = read_frame(&mut upstream.stream, &mut buf).await?;
            let mut r = Reader::new(&frame[codec::HEADER_LEN..]);
            match frame[0] {
                b'D' => {
                    let count = r.i16().unwrap_or(0).max(0) as usize;
                    let mut row = Vec::with_capacity(count);
                    for _ in 0..count {
                        let len = r.i32().ok_or_else(|| UpstreamError::Protocol("short DataRow".into()))?;
                        row.push(match len {
                            n if n < 0 => None,
                            n => Some(
                                String::from_utf8_lossy(
                                    r.bytes(n as usize)
                                        .ok_or_else(|| UpstreamError::Protocol("short DataRow".into()))?,
                                )
                                .into_owned(),
                            ),
                        });
                    }
                    rows.push(row);
                }
                b'E' => failure = Some(ServerMessage::parse(&frame[codec::HEADER_LEN..])),
                b'Z' => break,
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(UpstreamError::Refused(e)),
            None => Ok(rows),
        }
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| UpstreamError::Timeout(timeout))?
}

/// Sends a CancelRequest for an upstream backend.
pub async fn cancel(endpoint: &PgEndpoint, pid: i32, secret: i32, timeout: Duration) -> Result<(), UpstreamError> {
    let send = async {
        let mut stream = open_stream(endpoint).await?;
        let mut packet = BytesMut::with_capacity(16);
        packet.put_i32(16);
        packet.put_i32(80877102);
        packet.put_i32(pid);
        packet.put_i32(secret);
        stream.write_all(&packet).await?;
        stream.flush().await?;
        // The server closes the connection when done; wait for that so the cancel is delivered.
        let mut sink = [0u8; 16];
        let _ = stream.read(&mut sink).await;
        Ok(())
    };
    tokio::time::timeout(timeout, send).await.map_err(|_| UpstreamError::Timeout(timeout))?
}
