//! The canonical bytes of a record, written directly: one pass, no intermediate values. This is
//! on the recorder's path for every statement, where `serde_json` spent ~8 k instructions a record
//! (internally tagged enums go through its map serializer, and every key is escaped); the tests
//! check that the output is exactly what `serde_json` makes of the same record.

use sluice_core::{ActionDetail, ActionRecord, AuditEvent, AuditRecord};

/// Record `seq` of `instance`, as `chain::encode` documents it.
pub(crate) fn record(instance: &str, seq: u64, r: &AuditRecord) -> String {
    let mut out = Json(String::with_capacity(384 + text_len(&r.event)));
    out.raw("{\"v\":");
    out.number(crate::FORMAT_VERSION);
    out.field("instance", instance);
    out.raw(",\"seq\":");
    out.number(seq);
    out.raw(",\"at_us\":");
    out.number(r.at_us);
    out.raw(",\"principal\":{\"name\":");
    out.string(&r.principal.name);
    out.optional("credential_id", r.principal.credential_id.as_deref());
    out.raw("}");
    out.optional("session", r.session.as_deref());
    out.raw(",\"event\":{\"kind\":");
    out.string(r.event.kind());
    event(&mut out, &r.event);
    out.raw("}}");
    out.0
}

fn text_len(event: &AuditEvent) -> usize {
    match event {
        AuditEvent::Action(a) => {
            let extra = match &a.detail {
                ActionDetail::Sql { result, .. } => {
                    result.as_ref().map_or(0, |r| 64 + r.columns.len() * 16 + r.rows().count() * 48)
                }
                ActionDetail::Http { excerpts, .. } => excerpts.as_ref().map_or(0, |e| {
                    64 + e.request.as_ref().map_or(0, String::len) + e.response.as_ref().map_or(0, String::len)
                }),
                ActionDetail::Exec { error, .. } => 64 + error.as_ref().map_or(0, String::len),
            };
            a.text.len() + extra
        }
        AuditEvent::ActionDecided { text, .. } => text.len(),
        AuditEvent::Terminal { events, .. } => events.len() + events.len() / 4,
        _ => 0,
    }
}

/// The event's own fields, after its kind, in the order they are declared (as serde writes them).
fn event(out: &mut Json, event: &AuditEvent) {
    match event {
        AuditEvent::Authentication { protocol, client_addr, target, outcome } => {
            out.field("protocol", protocol.as_str());
            out.field("client_addr", client_addr);
            out.field("target", target);
            out.field("outcome", outcome.as_str());
        }
        AuditEvent::SessionStarted { protocol, target, client_addr, client_tls, client_program } => {
            out.field("protocol", protocol.as_str());
            out.field("target", target);
            out.field("client_addr", client_addr);
            out.raw(if *client_tls { ",\"client_tls\":true" } else { ",\"client_tls\":false" });
            out.optional("client_program", client_program.as_deref());
        }
        AuditEvent::SessionEnded { reason } => out.field("reason", reason),
        AuditEvent::Action(action) => action_record(out, action),
        AuditEvent::ActionDecided { action, text, verdict, rule } => {
            out.field("action", action);
            out.field("text", text);
            out.field("verdict", verdict);
            out.optional("rule", rule.as_deref());
        }
        AuditEvent::Terminal { terminal, width, height, events } => {
            out.raw(",\"terminal\":");
            out.number(*terminal);
            out.raw(",\"width\":");
            out.number(*width);
            out.raw(",\"height\":");
            out.number(*height);
            out.field("events", events);
        }
        AuditEvent::Review { review_id, transition, comment } => {
            out.raw(",\"review_id\":");
            out.number(*review_id);
            out.field("transition", transition);
            out.optional("comment", comment.as_deref());
        }
        AuditEvent::Admin { action, subject, detail } => {
            out.field("action", action.as_str());
            out.field("subject", subject);
            out.optional("detail", detail.as_deref());
        }
    }
}

fn action_record(out: &mut Json, a: &ActionRecord) {
    out.raw(",\"seq\":");
    out.number(a.seq);
    out.field("text", &a.text);
    out.raw(",\"duration_us\":");
    out.number(a.duration_us);
    out.field("verdict", a.verdict);
    out.optional("rule", a.rule.as_deref());
    let (path, rows, tag, error_code, error_message, result) = match &a.detail {
        ActionDetail::Sql { path, rows, tag, error_code, error_message, result } => {
            (path, rows, tag, error_code, error_message, result)
        }
        ActionDetail::Http { status, request_bytes, response_bytes, error, excerpts } => {
            out.raw(",\"detail\":{\"protocol\":\"http\",\"status\":");
            out.number(*status);
            out.raw(",\"request_bytes\":");
            out.number(*request_bytes);
            out.raw(",\"response_bytes\":");
            out.number(*response_bytes);
            out.optional("error", error.as_deref());
            if let Some(excerpts) = excerpts {
                out.raw(",\"excerpts\":{\"request\":");
                match &excerpts.request {
                    Some(text) => out.string(text),
                    None => out.raw("null"),
                }
                out.optional("response", excerpts.response.as_deref());
                out.raw("}");
            }
            out.raw("}");
            return;
        }
        ActionDetail::Exec { exit_status, input_bytes, output_bytes, error } => {
            out.raw(",\"detail\":{\"protocol\":\"exec\",\"exit_status\":");
            match exit_status {
                Some(status) => out.number(*status),
                None => out.raw("null"),
            }
            out.raw(",\"input_bytes\":");
            out.number(*input_bytes);
            out.raw(",\"output_bytes\":");
            out.number(*output_bytes);
            out.optional("error", error.as_deref());
            out.raw("}");
            return;
        }
    };
    out.raw(",\"detail\":{\"protocol\":\"sql\"");
    out.field("path", path);
    out.raw(",\"rows\":");
    out.number(*rows);
    out.optional("tag", tag.as_deref());
    out.optional("error_code", error_code.as_deref());
    out.optional("error_message", error_message.as_deref());
    if let Some(result) = result {
        out.raw(",\"result\":{\"columns\":[");
        for (i, column) in result.columns.iter().enumerate() {
            out.raw(if i == 0 { "" } else { "," });
            out.string(column);
        }
        out.raw("],\"rows\":[");
        for (i, row) in result.rows().enumerate() {
            out.raw(if i == 0 { "[" } else { ",[" });
            for (j, value) in row.iter().enumerate() {
                out.raw(if j == 0 { "" } else { "," });
                match value {
                    Some(value) => out.string(value),
                    None => out.raw("null"),
                }
            }
            out.raw("]");
        }
        out.raw(if result.truncated { "],\"truncated\":true}" } else { "]}" });
    }
    out.raw("}");
}

struct Json(String);

impl Json {
    fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    fn number(&mut self, n: impl itoa::Integer) {
        self.0.push_str(itoa::Buffer::new().format(n));
    }

    /// `,"key":"value"` (keys are this file's own, and need no escaping).
    fn field(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    /// `,"key":"value"`, or `,"key":null`.
    fn optional(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(value) => self.string(value),
            None => self.raw("null"),
        }
    }

    fn key(&mut self, key: &str) {
        self.0.push_str(",\"");
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    /// A JSON string, escaped as `serde_json` escapes: `"`, `\` and control characters only
    /// (the short forms where JSON has them, `\u00XX` otherwise); everything else as it is.
    fn string(&mut self, s: &str) {
        self.0.push('"');
        let bytes = s.as_bytes();
        // Most texts need no escape at all: one pass to find out, then one copy.
        if !bytes.iter().fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\')) {
            self.0.push_str(s);
        } else {
            let mut start = 0;
            for (i, &b) in bytes.iter().enumerate() {
                let short = match b {
                    b'"' => "\\\"",
                    b'\\' => "\\\\",
                    b'\n' => "\\n",
                    b'\r' => "\\r",
                    b'\t' => "\\t",
                    0x08 => "\\b",
                    0x0c => "\\f",
                    0..=0x1f => "",
                    _ => continue,
                };
                self.0.push_str(&s[start..i]);
                match short {
                    "" => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        self.0.push_str("\\u00");
                        self.0.push(char::from(HEX[usize::from(b >> 4)]));
                        self.0.push(char::from(HEX[usize::from(b & 0xf)]));
                    }
                    short => self.0.push_str(short),
                }
                start = i + 1;
            }
            self.0.push_str(&s[start..]);
        }
        self.0.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use sluice_core::{AdminAction, AuthOutcome, ExcerptLimits, HttpExcerpts, Principal, Protocol, ResultExcerpt};
    use std::sync::Arc;

    /// The reference: the same envelope, through serde.
    #[derive(Serialize)]
    struct Entry<'a> {
        v: u32,
        instance: &'a str,
        seq: u64,
        at_us: i64,
        principal: &'a Principal,
        session: Option<&'a str>,
        event: &'a AuditEvent,
    }

    fn reference(instance: &str, seq: u64, r: &AuditRecord) -> String {
        let entry = Entry {
            v: crate::FORMAT_VERSION,
            instance,
            seq,
            at_us: r.at_us,
            principal: &r.principal,
            session: r.session.as_deref(),
            event: &r.event,
        };
        serde_json::to_string(&entry).unwrap()
    }

    const AWKWARD: &str =
        "a \"quoted\" \\ back\\slash, tab\t, newline\n, cr\r, \u{8}\u{c}\u{1}\u{1f}\u{7f}, é, 日本, 🦀 /";

    fn events() -> Vec<AuditEvent> {
        let action = |error: Option<&str>, result: Option<ResultExcerpt>| {
            AuditEvent::Action(ActionRecord {
                seq: 3,
                text: Arc::from(format!("SELECT '{AWKWARD}'")),
                duration_us: -1,
                verdict: "deny",
                rule: error.map(Arc::from),
                detail: ActionDetail::Sql {
                    path: "extended",
                    rows: u64::MAX,
                    tag: error.map(|_| Arc::from("SELECT 1")),
                    error_code: error.map(str::to_string),
                    error_message: error.map(|e| format!("{e}: {AWKWARD}")),
                    result: result.map(Box::new),
                },
            })
        };
        let limits = ExcerptLimits { rows: 2, bytes: 10_000 };
        let mut excerpt = ResultExcerpt::new(vec!["n".into(), AWKWARD.into()].into());
        for _ in 0..3 {
            if excerpt.wants_row(limits) {
                excerpt.push_row(limits, [None, Some(AWKWARD.to_string())]);
            }
        }
        vec![
            AuditEvent::Authentication {
                protocol: Protocol::Postgres,
                client_addr: "127.0.0.1:5".into(),
                target: AWKWARD.into(),
                outcome: AuthOutcome::IdentityMismatch,
            },
            AuditEvent::SessionStarted {
                protocol: Protocol::Ssh,
                target: "t".into(),
                client_addr: "[::1]:22".into(),
                client_tls: true,
                client_program: Some(AWKWARD.into()),
            },
            AuditEvent::SessionStarted {
                protocol: Protocol::Http,
                target: "t".into(),
                client_addr: "a".into(),
                client_tls: false,
                client_program: None,
            },
            AuditEvent::SessionEnded { reason: AWKWARD.into() },
            action(None, None),
            action(Some("42501"), None),
            action(None, Some(excerpt)),
            action(None, Some(ResultExcerpt::default())),
            AuditEvent::Action(ActionRecord {
                seq: 1,
                text: Arc::from(AWKWARD),
                duration_us: 7,
                verdict: "allow",
                rule: None,
                detail: ActionDetail::Http {
                    status: 502,
                    request_bytes: 0,
                    response_bytes: u64::MAX,
                    error: Some(AWKWARD.into()),
                    excerpts: Some(Box::new(HttpExcerpts { request: None, response: Some(AWKWARD.into()) })),
                },
            }),
            AuditEvent::Action(ActionRecord {
                seq: 3,
                text: Arc::from(AWKWARD),
                duration_us: 9,
                verdict: "allow",
                rule: Some(Arc::from("web-reads")),
                detail: ActionDetail::Exec {
                    exit_status: Some(2),
                    input_bytes: 0,
                    output_bytes: u64::MAX,
                    error: Some(AWKWARD.into()),
                },
            }),
            AuditEvent::Action(ActionRecord {
                seq: 4,
                text: Arc::from("rm x"),
                duration_us: 1,
                verdict: "deny",
                rule: None,
                detail: ActionDetail::Exec { exit_status: None, input_bytes: 3, output_bytes: 0, error: None },
            }),
            AuditEvent::Action(ActionRecord {
                seq: 2,
                text: Arc::from("GET /"),
                duration_us: 7,
                verdict: "allow",
                rule: Some("r".into()),
                detail: ActionDetail::Http {
                    status: 200,
                    request_bytes: 1,
                    response_bytes: 2,
                    error: None,
                    excerpts: None,
                },
            }),
            AuditEvent::Action(ActionRecord {
                seq: 3,
                text: Arc::from("POST /"),
                duration_us: 7,
                verdict: "allow",
                rule: None,
                detail: ActionDetail::Http {
                    status: 201,
                    request_bytes: 1,
                    response_bytes: 2,
                    error: None,
                    excerpts: Some(Box::new(HttpExcerpts { request: Some(AWKWARD.into()), response: None })),
                },
            }),
            AuditEvent::ActionDecided { action: "sql", text: Arc::from(AWKWARD), verdict: "allow", rule: None },
            AuditEvent::ActionDecided { action: "sql", text: Arc::from("x"), verdict: "allow", rule: Some("r".into()) },
            AuditEvent::Review { review_id: -7, transition: "approved".into(), comment: Some(AWKWARD.into()) },
            AuditEvent::Terminal { terminal: 3, width: 80, height: 24, events: format!("[0.5, \"o\", {AWKWARD:?}]\n") },
            AuditEvent::Review { review_id: i64::MAX, transition: "requested".into(), comment: None },
            AuditEvent::Admin { action: AdminAction::TokenMinted, subject: "t_1".into(), detail: Some(AWKWARD.into()) },
            AuditEvent::Admin { action: AdminAction::ApiAuthenticationFailed, subject: "GET /".into(), detail: None },
        ]
    }

    #[test]
    fn every_kind_of_record_is_encoded_exactly_as_serde_json_encodes_it() {
        for (n, event) in events().into_iter().enumerate() {
            for (principal, session) in [
                (Principal::new(AWKWARD, Some("t_\u{1}".into())), Some(Arc::from("s_1"))),
                (Principal::new("cli:ops", None), None),
            ] {
                let record = AuditRecord { at_us: i64::MIN + n as i64, principal, session, event: event.clone() };
                assert_eq!(super::record("i_\"x", n as u64, &record), reference("i_\"x", n as u64, &record));
            }
        }
    }
}
