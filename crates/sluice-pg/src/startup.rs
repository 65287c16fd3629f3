//! The untyped packets that open a connection: SSLRequest, GSSENCRequest, CancelRequest and the
//! StartupMessage with its parameters.

use crate::codec::Reader;
use crate::error::{PgError, sqlstate};
use tokio::io::{AsyncRead, AsyncReadExt};

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;
/// PostgreSQL refuses startup packets over 10,000 bytes; so does sluice.
const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: i32 },
    Startup { major: i32, minor: i32, params: Vec<(String, String)> },
}

pub async fn read_startup<R: AsyncRead + Unpin>(stream: &mut R) -> Result<StartupPacket, StartupError> {
    let len = stream.read_i32().await.map_err(|_| StartupError::Closed)?;
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(StartupError::Protocol(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid startup packet length {len}"),
        )));
    }
    let mut body = vec![0u8; len as usize - 4];
    stream.read_exact(&mut body).await.map_err(|_| StartupError::Closed)?;
    parse_startup(&body).map_err(StartupError::Protocol)
}

#[derive(Debug)]
pub enum StartupError {
    /// The peer went away or the socket failed: nothing to answer.
    Closed,
    /// A malformed packet: answer with this error and close.
    Protocol(PgError),
}

pub fn parse_startup(body: &[u8]) -> Result<StartupPacket, PgError> {
    let bad = |what: &str| PgError::fatal(sqlstate::PROTOCOL_VIOLATION, format!("invalid startup packet: {what}"));
    let mut r = Reader::new(body);
    let code = r.i32().ok_or_else(|| bad("too short"))?;
    match code {
        SSL_REQUEST => return Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => return Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            let pid = r.i32().ok_or_else(|| bad("short cancel request"))?;
            // Protocol 3.2 allows longer keys; sluice hands out 4-byte keys, so anything else is unknown.
            let secret = r.i32().ok_or_else(|| bad("short cancel request"))?;
            return Ok(StartupPacket::Cancel { pid, secret });
        }
        _ => {}
    }
    let (major, minor) = (code >> 16, code & 0xffff);
    if major != 3 {
        return Err(PgError::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("unsupported frontend protocol {major}.{minor}: sluice speaks 3.0"),
        ));
    }
    let mut params = Vec::new();
    loop {
        let name = r.cstr().ok_or_else(|| bad("unterminated parameter list"))?;
        if name.is_empty() {
            break;
        }
        let value = r.cstr().ok_or_else(|| bad("parameter without a value"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("parameter name is not UTF-8"))?;
        let value = String::from_utf8(value.to_vec()).map_err(|_| bad("parameter value is not UTF-8"))?;
        params.push((name, value));
    }
    Ok(StartupPacket::Startup { major, minor, params })
}

/// The settings of a startup `options` parameter (libpq's `PGOPTIONS`), split as the server splits
/// it — on whitespace, a backslash taking the next character literally — and read as its
/// `-c name=value` / `-cname=value` / `--name=value` switches, names lower-cased with `-` as `_`.
/// Any other switch (`-d 5` sets the server's debug level, `-e` the date style…) is `Err`, with
/// the word as the server would read it: sluice passes on only what it can name.
pub fn options_settings(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_ascii_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let assignment = if word == "-c" {
            words.next().ok_or_else(|| "-c without a setting".to_string())?
        } else if let Some(rest) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            rest.to_string()
        } else {
            return Err(word);
        };
        let Some((name, value)) = assignment.split_once('=') else { return Err(assignment) };
        if name.is_empty() {
            return Err(assignment);
        }
        settings.push((name.to_ascii_lowercase().replace('-', "_"), value.to_string()));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {

    #[test]
    fn options_are_read_as_the_server_reads_them() {
        let ok = |o: &str| super::options_settings(o).unwrap();
        assert_eq!(ok("-c intervalstyle=postgres_verbose"), [("intervalstyle".into(), "postgres_verbose".into())]);
        assert_eq!(
            ok("  -cwork_mem=8MB --Statement-Timeout=5s -c application_name=a\\ b\\\\c "),
            [
                ("work_mem".to_string(), "8MB".to_string()),
                ("statement_timeout".into(), "5s".into()),
                ("application_name".into(), "a b\\c".into())
            ]
        );
        assert_eq!(ok(""), []);
        assert_eq!(super::options_settings("-d 5"), Err("-d".into()));
        assert_eq!(super::options_settings("-c"), Err("-c without a setting".into()));
        assert_eq!(super::options_settings("-c nonsense"), Err("nonsense".into()));
        assert_eq!(super::options_settings("-e"), Err("-e".into()));
    }
    use super::*;

    fn packet(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn startup_parameters_are_read() {
        let body = packet(196608, b"user\0agent\0database\0shop\0\0");
        let parsed = parse_startup(&body).unwrap();
        assert_eq!(
            parsed,
            StartupPacket::Startup {
                major: 3,
                minor: 0,
                params: vec![("user".into(), "agent".into()), ("database".into(), "shop".into())]
            }
        );
    }

    #[test]
    fn special_requests_are_recognised() {
        assert_eq!(parse_startup(&packet(SSL_REQUEST, b"")).unwrap(), StartupPacket::SslRequest);
        assert_eq!(parse_startup(&packet(GSSENC_REQUEST, b"")).unwrap(), StartupPacket::GssEncRequest);
        let cancel = packet(CANCEL_REQUEST, &[0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(parse_startup(&cancel).unwrap(), StartupPacket::Cancel { pid: 7, secret: 9 });
    }

    #[test]
    fn malformed_startup_packets_are_errors() {
        assert!(parse_startup(&packet(196608, b"user\0agent")).is_err());
        assert!(parse_startup(&packet(196608, b"user")).is_err());
        assert!(parse_startup(&packet(2 << 16, b"\0")).is_err());
        assert!(parse_startup(&packet(CANCEL_REQUEST, b"\0\0")).is_err());
        assert!(parse_startup(b"\0\0").is_err());
        assert!(parse_startup(&packet(196608, b"us\xffer\0x\0\0")).is_err());
    }
}
