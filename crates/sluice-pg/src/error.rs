//! Errors as PostgreSQL clients expect them: ErrorResponse messages with severity, SQLSTATE,
//! message, detail and hint. Also the reading of the fields an upstream error carries.

use crate::codec::{Reader, put_cstr, put_message};
use bytes::{BufMut, BytesMut};

/// SQLSTATE codes sluice uses itself.
pub mod sqlstate {
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT: &str = "08001";
    pub const SERVER_REJECTED: &str = "08004";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const PROGRAM_LIMIT: &str = "54000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const QUERY_CANCELED: &str = "57014";
    pub const SUCCESSFUL_COMPLETION: &str = "00000";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgError {
    /// `ERROR` keeps the session; `FATAL` ends it.
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// Where in the statement the error is: a 1-based character position (field `P`).
    pub position: Option<u32>,
}

impl PgError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        PgError { severity: "FATAL", code, message: message.into(), detail: None, hint: None, position: None }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        PgError { severity: "ERROR", code, message: message.into(), detail: None, hint: None, position: None }
    }

    /// A NoticeResponse: information that neither fails nor ends anything.
    pub fn notice(message: impl Into<String>) -> Self {
        PgError {
            severity: "NOTICE",
            code: sqlstate::SUCCESSFUL_COMPLETION,
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let tag = if self.severity == "NOTICE" { b'N' } else { b'E' };
        put_message(out, tag, |b| {
            for (field, value) in [(b'S', self.severity), (b'V', self.severity), (b'C', self.code)] {
                b.put_u8(field);
                put_cstr(b, value.as_bytes());
            }
            b.put_u8(b'M');
            put_cstr(b, self.message.as_bytes());
            if let Some(detail) = &self.detail {
                b.put_u8(b'D');
                put_cstr(b, detail.as_bytes());
            }
            if let Some(hint) = &self.hint {
                b.put_u8(b'H');
                put_cstr(b, hint.as_bytes());
            }
            if let Some(position) = self.position {
                b.put_u8(b'P');
                put_cstr(b, position.to_string().as_bytes());
            }
            b.put_u8(0);
        });
    }

    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(64 + self.message.len());
        self.encode(&mut out);
        out
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

/// The fields of an ErrorResponse or NoticeResponse body that sluice looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerMessage {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    /// The server source file that raised it (`F`).
    pub file: Option<String>,
}

impl ServerMessage {
    pub fn parse(body: &[u8]) -> ServerMessage {
        let mut fields = ServerMessage::default();
        let mut r = Reader::new(body);
        while let Some(kind) = r.u8() {
            if kind == 0 {
                break;
            }
            let Some(value) = r.cstr() else { break };
            let value = String::from_utf8_lossy(value).into_owned();
            match kind {
                b'V' => fields.severity = value,
                b'S' if fields.severity.is_empty() => fields.severity = value,
                b'C' => fields.code = value,
                b'M' => fields.message = value,
                b'D' => fields.detail = Some(value),
                b'F' => fields.file = Some(value),
                _ => {}
            }
        }
        fields
    }

    /// Whether the server's raw parser raised it (its lexer, grammar or the token filter between
    /// them): the text does not parse, before any name is looked up or anything runs.
    pub fn from_raw_parser(&self) -> bool {
        matches!(self.file.as_deref(), Some("scan.l" | "gram.y" | "parser.c" | "scansup.c"))
    }

    pub fn is_fatal(&self) -> bool {
        matches!(self.severity.as_str(), "FATAL" | "PANIC")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_error_parses_back() {
        let e = PgError::error(sqlstate::INSUFFICIENT_PRIVILEGE, "no").with_detail("d").with_hint("h");
        let bytes = e.to_bytes();
        assert_eq!(bytes[0], b'E');
        let parsed = ServerMessage::parse(&bytes[5..]);
        assert_eq!(parsed.code, "42501");
        assert_eq!(parsed.message, "no");
        assert_eq!(parsed.detail.as_deref(), Some("d"));
        assert!(!parsed.is_fatal());
    }

    #[test]
    fn truncated_error_body_does_not_panic() {
        let parsed = ServerMessage::parse(b"SFATAL\0C28P0");
        assert_eq!(parsed.severity, "FATAL");
        assert!(parsed.code.is_empty());
    }
}
