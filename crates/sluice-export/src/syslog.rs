//! The syslog sink: each record an RFC 5424 message (its own time, MSGID the record's kind, the
//! document as MSG), sent over UDP (RFC 5426, a datagram each), TCP (RFC 6587) or TLS (RFC 5425),
//! both framed by octet counting so that a message may hold any byte. The framing is sluice's own:
//! the crates at hand stamp messages with the time of sending and frame TLS with newlines.

use crate::tls::client_config;
use crate::{Document, Transport};
use sluice_config::{SYSLOG_FACILITIES, SyslogSink, SyslogTransport};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

pub(crate) struct SyslogSender {
    settings: SyslogSink,
    facility: u8,
    hostname: String,
    pid: u32,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    conn: Option<Connection>,
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection {
    /// Whether the receiver has closed the connection (or sent something, which a syslog
    /// receiver never does unless it is closing it): writing into it would only fill the
    /// kernel's buffer, and the batch would count as delivered and be lost.
    async fn closed_by_peer(&self) -> bool {
        let tcp = match self {
            Connection::Udp(_) => return false,
            Connection::Tcp(tcp) => tcp,
            Connection::Tls(tls) => tls.get_ref().0,
        };
        let mut byte = [0u8; 1];
        // Ready at once only if there is something to read: the end of the stream, data, or an error.
        tokio::time::timeout(Duration::ZERO, tcp.peek(&mut byte)).await.is_ok()
    }
}

impl SyslogSender {
    pub(crate) fn new(settings: SyslogSink) -> Result<SyslogSender, String> {
        let facility = SYSLOG_FACILITIES
            .iter()
            .find(|(name, _)| *name == settings.facility)
            .map(|(_, code)| *code)
            .ok_or_else(|| format!("unknown facility {:?}", settings.facility))?;
        let tls = match settings.transport {
            SyslogTransport::Tls => {
                let host = settings.address.rsplit_once(':').map_or(settings.address.as_str(), |(h, _)| h);
                let name = settings.server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| format!("{name:?} cannot name a TLS server: {e}"))?;
                let config = client_config(settings.ca_file.as_deref())?;
                Some((tokio_rustls::TlsConnector::from(config), name))
            }
            _ => None,
        };
        Ok(SyslogSender { settings, facility, hostname: hostname(), pid: std::process::id(), tls, conn: None })
    }

    async fn connect(&self) -> Result<Connection, String> {
        let address = &self.settings.address;
        let within = |what: &str| format!("{what} {address} did not finish within {}s", CONNECT_TIMEOUT.as_secs());
        if self.settings.transport == SyslogTransport::Udp {
            let socket = UdpSocket::bind(if address.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })
                .await
                .map_err(|e| e.to_string())?;
            socket.connect(address).await.map_err(|e| format!("cannot reach {address}: {e}"))?;
            return Ok(Connection::Udp(socket));
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| within("connecting to"))?
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        match &self.tls {
            None => Ok(Connection::Tcp(tcp)),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| within("the TLS handshake with"))?
                    .map_err(|e| format!("TLS with {address}: {e}"))?;
                Ok(Connection::Tls(Box::new(tls)))
            }
        }
    }

    /// `doc` as an RFC 5424 message, cut to `max_message_bytes`.
    fn message(&self, doc: &Document) -> Vec<u8> {
        let pri = u32::from(self.facility) * 8 + u32::from(doc.severity);
        let header = format!(
            "<{pri}>1 {} {} {} {} {} - ",
            crate::document::timestamp(doc.at_us),
            self.hostname,
            self.settings.app_name,
            self.pid,
            msgid(&doc.kind),
        );
        let room = self.settings.max_message_bytes.saturating_sub(header.len());
        let mut message = header.into_bytes();
        message.extend_from_slice(crate::document::fit(&doc.json, room).as_bytes());
        message
    }
}

#[async_trait::async_trait]
impl Transport for SyslogSender {
    async fn deliver(&mut self, docs: &[Document]) -> Result<(), String> {
        if let Some(conn) = &self.conn
            && conn.closed_by_peer().await
        {
            tracing::info!(address = %self.settings.address, "the syslog receiver closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let messages: Vec<Vec<u8>> = docs.iter().map(|doc| self.message(doc)).collect();
        let Some(conn) = self.conn.as_mut() else { return Err("not connected".into()) };
        let sent = match conn {
            Connection::Udp(socket) => {
                let mut sent = Ok(());
                for mut message in messages {
                    message.truncate(MAX_DATAGRAM);
                    if let Err(e) = socket.send(&message).await {
                        sent = Err(format!("sending to {}: {e}", self.settings.address));
                        break;
                    }
                }
                sent
            }
            Connection::Tcp(_) | Connection::Tls(_) => {
                let mut frames = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
                for message in messages {
                    frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    frames.extend_from_slice(&message);
                }
                let write = async {
                    match conn {
                        Connection::Tcp(tcp) => write_all(tcp, &frames).await,
                        Connection::Tls(tls) => write_all(tls.as_mut(), &frames).await,
                        Connection::Udp(_) => Ok(()),
                    }
                };
                match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("writing to {}: {e}", self.settings.address)),
                    Err(_) => Err(format!(
                        "{} took more than {}s to take a batch",
                        self.settings.address,
                        WRITE_TIMEOUT.as_secs()
                    )),
                }
            }
        };
        if sent.is_err() {
            self.conn = None;
        }
        sent
    }
}

async fn write_all(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// RFC 5424's MSGID: up to 32 printable ASCII characters.
fn msgid(kind: &str) -> String {
    let id: String = kind.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
    if id.is_empty() { "-".into() } else { id }
}

/// This machine's name for the HOSTNAME field (`-`, RFC 5424's nil, when it has none).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if name.is_empty() { "-".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_has_the_rfc5424_header_with_the_records_own_time() {
        let settings = SyslogSink {
            address: "127.0.0.1:514".into(),
            transport: SyslogTransport::Udp,
            facility: "local3".into(),
            app_name: "sluice".into(),
            max_message_bytes: 8192,
            ca_file: None,
            server_name: None,
        };
        let sink = SyslogSender::new(settings).unwrap();
        let doc =
            Document { seq: 1, at_us: 1_796_237_956_347_007, kind: "action".into(), severity: 4, json: "{}".into() };
        let message = String::from_utf8(sink.message(&doc)).unwrap();
        // local3 (19) × 8 + warning (4)
        let expected =
            format!("<156>1 2026-12-02T18:59:16.347007Z {} sluice {} action - {{}}", sink.hostname, sink.pid);
        assert_eq!(message, expected);
    }
}
