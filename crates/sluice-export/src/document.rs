//! One chained record as a sink sends it: an Elastic Common Schema document (every event kind
//! mapped to ECS's categories, types and outcome; what ECS has no field for under `sluice.*`), or
//! the record exactly as chained with its hash, for receivers that verify the chain themselves.

use serde_json::{Map, Value, json};
use sluice_audit::StoredRecord;
use sluice_config::ExportFormat;
use thiserror::Error;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.17.0";

/// A record ready to send.
#[derive(Clone, Debug)]
pub struct Document {
    pub seq: u64,
    pub at_us: i64,
    /// The record's kind (`action`, `authentication`, …): syslog's MSGID.
    pub kind: String,
    /// RFC 5424 severity: 4 (warning) for failures and refusals, 5 (notice) for changes to
    /// sluice and reviews, 6 (informational) otherwise.
    pub severity: u8,
    /// One line of JSON.
    pub json: String,
}

#[derive(Debug, Error)]
#[error("record {seq} cannot be exported: {reason}")]
pub struct DocumentError {
    pub seq: u64,
    pub reason: String,
}

/// `record` in `format`. The `sluice` format needs nothing of the record but its bytes; mapping
/// to ECS fails on a record this version cannot read (see `unmapped`).
pub fn document(record: &StoredRecord, format: ExportFormat) -> Result<Document, DocumentError> {
    let fail = |reason: String| DocumentError { seq: record.seq, reason };
    let parsed: Value = serde_json::from_str(&record.encoded).unwrap_or(Value::Null);
    let at_us = parsed["at_us"].as_i64().unwrap_or_else(sluice_core::audit::now_us);
    let kind = parsed["event"]["kind"].as_str().unwrap_or("unknown").to_string();
    let (json, severity) = match format {
        ExportFormat::Ecs => {
            if parsed.is_null() {
                return Err(fail("it is not JSON".into()));
            }
            let mapped = ecs(record, &parsed, at_us).map_err(fail)?;
            (Value::Object(mapped.0).to_string(), mapped.1)
        }
        ExportFormat::Sluice => {
            (json!({"seq": record.seq, "hash": hex::encode(record.hash), "record": record.encoded}).to_string(), 6)
        }
    };
    Ok(Document { seq: record.seq, at_us, kind, severity, json })
}

/// The ECS document of a record that cannot be mapped (kind `pipeline_error`, the record's bytes as
/// `event.original`): sent in its place, so that a sink neither stalls on it nor skips it silently.
pub(crate) fn unmapped(record: &StoredRecord, error: &DocumentError) -> Document {
    let at_us = serde_json::from_str::<Value>(&record.encoded)
        .ok()
        .and_then(|r| r["at_us"].as_i64())
        .unwrap_or_else(sluice_core::audit::now_us);
    let doc = json!({
        "@timestamp": timestamp(at_us),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "pipeline_error",
            "module": "sluice",
            "dataset": "sluice.audit",
            "sequence": record.seq,
            "hash": hex::encode(record.hash),
            "original": record.encoded,
        },
        "error": {"message": error.to_string()},
        "sluice": {"seq": record.seq},
    });
    Document { seq: record.seq, at_us, kind: "unmapped".into(), severity: 3, json: doc.to_string() }
}

/// Documents as JSON lines, each ended by a newline.
pub(crate) fn json_lines(docs: &[Document]) -> Vec<u8> {
    let mut lines = Vec::with_capacity(docs.iter().map(|d| d.json.len() + 1).sum());
    for doc in docs {
        lines.extend_from_slice(doc.json.as_bytes());
        lines.push(b'\n');
    }
    lines
}

/// `json` cut to at most `room` bytes for a receiver that takes no more: an ECS document's
/// statement text and message are shortened (and `sluice.truncated` set) so that it stays a valid
/// document; anything else too long is cut short. The log keeps the whole record.
pub fn fit(json: &str, room: usize) -> std::borrow::Cow<'_, str> {
    if json.len() <= room {
        return json.into();
    }
    if let Ok(mut doc @ Value::Object(_)) = serde_json::from_str::<Value>(json) {
        let overshoot = json.len() - room;
        // Room for the marker, the `truncated` flag and escapes the cut text may still need.
        let cut = |text: &str, by: usize| format!("{}…", prefix(text, text.len().saturating_sub(by + 64)));
        if let Some(Value::String(message)) = doc.get_mut("message") {
            *message = cut(message, message.len().min(overshoot));
        }
        let over = |doc: &Value| doc.to_string().len().saturating_sub(room);
        // Then the kept result rows (the log has them whole), then the statement's text.
        if over(&doc) > 0
            && let Some(Value::Object(detail)) = doc.pointer_mut("/sluice/action/detail")
        {
            detail.remove("result");
        }
        let by = over(&doc);
        if by > 0
            && let Some(Value::String(text)) = doc.pointer_mut("/sluice/action/text")
        {
            *text = cut(text, by);
        }
        if let Some(Value::Object(sluice)) = doc.get_mut("sluice") {
            sluice.insert("truncated".into(), true.into());
        }
        let doc = doc.to_string();
        if doc.len() <= room {
            return doc.into();
        }
        return prefix(&doc, room).to_string().into();
    }
    prefix(json, room).into()
}

/// The longest prefix of `text` of at most `len` bytes that ends on a character boundary.
fn prefix(text: &str, len: usize) -> &str {
    let mut end = len.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// RFC 3339 in UTC with microseconds, as ECS's `@timestamp` and RFC 5424's TIMESTAMP take it.
pub fn timestamp(at_us: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_us) * 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000000Z".into())
}

/// The RFC 5424 severity of a mapped document.
fn severity(doc: &Map<String, Value>) -> u8 {
    let event = &doc["event"];
    if event["outcome"] == "failure" {
        4
    } else if event["category"].as_array().is_some_and(|c| c.iter().any(|c| c == "iam" || c == "configuration")) {
        5
    } else {
        6
    }
}

/// The ECS document of a parsed record, and its severity.
fn ecs(record: &StoredRecord, parsed: &Value, at_us: i64) -> Result<(Map<String, Value>, u8), String> {
    let event = &parsed["event"];
    let kind = event["kind"].as_str().unwrap_or_default();
    let text = |key: &str| event[key].as_str().unwrap_or_default().to_string();
    let principal = &parsed["principal"];
    let who = principal["name"].as_str().unwrap_or("?");
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), timestamp(at_us).into());
    doc.insert("ecs".into(), json!({"version": ECS_VERSION}));
    doc.insert(
        "observer".into(),
        json!({"product": "sluice", "vendor": "sluice", "type": "gateway", "version": env!("CARGO_PKG_VERSION")}),
    );
    doc.insert("user".into(), json!({"name": principal["name"]}));
    let mut sluice = json!({
        "instance": parsed["instance"],
        "seq": record.seq,
        "hash": hex::encode(record.hash),
        "kind": kind,
        "credential_id": principal["credential_id"],
        "session_id": parsed["session"],
    });
    let (category, kind_of_event, outcome, action, message): (&[&str], Vec<&str>, &str, String, String);
    // Fields of `event` some kinds add (`reason`, `duration`).
    let mut event_fields = Map::new();
    match kind {
        "authentication" => {
            let result = text("outcome");
            let ok = result == "success";
            category = &["authentication"];
            kind_of_event = vec!["start"];
            outcome = if ok { "success" } else { "failure" };
            action = "authentication".into();
            if !ok {
                event_fields.insert("reason".into(), result.clone().into());
            }
            source(&mut doc, &text("client_addr"));
            doc.insert("network".into(), json!({"protocol": event["protocol"]}));
            sluice["target"] = event["target"].clone();
            message = format!("{who} authenticating for {}: {result}", text("target"));
        }
        "session_started" => {
            category = &["session"];
            kind_of_event = vec!["start"];
            outcome = "success";
            action = "session-started".into();
            source(&mut doc, &text("client_addr"));
            doc.insert("network".into(), json!({"protocol": event["protocol"]}));
            doc.insert("tls".into(), json!({"established": event["client_tls"]}));
            if let Some(program) = event["client_program"].as_str() {
                doc.insert("user_agent".into(), json!({"original": program}));
            }
            sluice["target"] = event["target"].clone();
            message = format!("session of {who} on {} started", text("target"));
        }
        "session_ended" => {
            category = &["session"];
            kind_of_event = vec!["end"];
            outcome = "success";
            action = "session-ended".into();
            event_fields.insert("reason".into(), event["reason"].clone());
            message = format!("session of {who} ended: {}", text("reason"));
        }
        "action" | "action_decided" => {
            let verdict = text("verdict");
            let decided_only = kind == "action_decided";
            let error_code = &event["detail"]["error_code"];
            // The kind of request: an action's detail names its protocol, a decision its action.
            let protocol = match decided_only {
                true => text("action"),
                false => event["detail"]["protocol"].as_str().unwrap_or("sql").to_string(),
            };
            let (ecs_category, done, decided): (&'static [&'static str], _, _) = match protocol.as_str() {
                "http" => (&["web"], "http-request", "http-decided"),
                "exec" => (&["process"], "ssh-command", "ssh-decided"),
                _ => (&["database"], "sql-statement", "sql-decided"),
            };
            category = ecs_category;
            // ECS's expected types for `database`, `web` and `process` all include access and
            // info: the verdict is the outcome (and `sluice.action.verdict`).
            kind_of_event = match verdict.as_str() {
                "review" => vec!["info"],
                _ => vec!["access"],
            };
            let failed = !error_code.is_null() || event["detail"]["error"].is_string();
            outcome = match (decided_only, verdict.as_str(), failed) {
                (true, _, _) => "unknown",
                (false, "allow", false) => "success",
                _ => "failure",
            };
            action = if decided_only { decided.into() } else { done.into() };
            if !event["rule"].is_null() {
                doc.insert("rule".into(), json!({"name": event["rule"]}));
            }
            if !error_code.is_null() {
                let message = &event["detail"]["error_message"];
                doc.insert("error".into(), json!({"code": error_code, "message": message}));
            }
            if let Some(us) = event["duration_us"].as_i64() {
                event_fields.insert("duration".into(), (us.saturating_mul(1000)).into());
            }
            sluice["action"] = json!({
                "text": event["text"],
                "verdict": verdict,
                "seq": event["seq"],
                "detail": event["detail"],
            });
            message = format!("{who} {verdict}: {}", text("text"));
        }
        "terminal" => {
            category = &["session"];
            kind_of_event = vec!["info"];
            outcome = "success";
            action = "terminal-output".into();
            sluice["terminal"] = json!({
                "terminal": event["terminal"],
                "width": event["width"],
                "height": event["height"],
                "events": event["events"],
            });
            let bytes = event["events"].as_str().map_or(0, str::len);
            message = format!("interactive terminal of {who}: {bytes} bytes of recording");
        }
        "review" => {
            let transition = text("transition");
            category = &["iam"];
            kind_of_event = match transition.as_str() {
                "requested" => vec!["creation"],
                _ => vec!["change"],
            };
            outcome = "success";
            action = format!("review-{transition}");
            sluice["review"] = json!({"id": event["review_id"], "transition": transition, "comment": event["comment"]});
            message = format!("review #{} {transition}", event["review_id"]);
        }
        "admin" => {
            let what = text("action");
            (category, kind_of_event, outcome) = match what.as_str() {
                "token-minted" => (&["iam"], vec!["creation"], "success"),
                "token-revoked" => (&["iam"], vec!["deletion"], "success"),
                "credential-set" => (&["configuration"], vec!["change"], "success"),
                "credential-deleted" => (&["configuration"], vec!["deletion"], "success"),
                "api-authentication-failed" => (&["authentication"], vec!["start"], "failure"),
                "configuration-loaded" => (&["configuration"], vec!["change"], "success"),
                "configuration-refused" => (&["configuration"], vec!["change"], "failure"),
                "audit-records-removed" => (&["configuration"], vec!["deletion"], "success"),
                _ => (&["configuration"], vec!["info"], "unknown"),
            };
            action = what.clone();
            sluice["admin"] = json!({"subject": event["subject"], "detail": event["detail"]});
            message = format!("{who} {what} {}", text("subject"));
        }
        other => return Err(format!("its kind {other:?} is not one this version knows")),
    }
    let mut event_doc = json!({
        "kind": "event",
        "module": "sluice",
        "dataset": "sluice.audit",
        "category": category,
        "type": kind_of_event,
        "outcome": outcome,
        "action": action,
        "sequence": record.seq,
        "id": format!("{}:{}", parsed["instance"].as_str().unwrap_or_default(), record.seq),
        "hash": hex::encode(record.hash),
    });
    if let Value::Object(fields) = &mut event_doc {
        fields.extend(event_fields);
    }
    doc.insert("event".into(), event_doc);
    doc.insert("message".into(), message.into());
    doc.insert("sluice".into(), sluice);
    let severity = severity(&doc);
    Ok((doc, severity))
}

/// `source.address`/`ip`/`port` from a client address (`ip:port`, `[v6]:port`, or a socket path).
fn source(doc: &mut Map<String, Value>, address: &str) {
    let mut source = json!({"address": address});
    if let Ok(addr) = address.parse::<std::net::SocketAddr>() {
        source["ip"] = addr.ip().to_string().into();
        source["port"] = addr.port().into();
    }
    doc.insert("source".into(), source);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, event: &str) -> StoredRecord {
        let encoded = format!(
            r#"{{"v":1,"instance":"i_0011223344556677","seq":{seq},"at_us":1796237956347007,"principal":{{"name":"agent","credential_id":"4f01"}},"session":"s_1","event":{event}}}"#
        );
        StoredRecord { seq, encoded, hash: [7; 32] }
    }

    fn ecs_of(event: &str) -> Value {
        serde_json::from_str(&document(&stored(9, event), ExportFormat::Ecs).unwrap().json).unwrap()
    }

    #[test]
    fn a_refused_statement_maps_to_a_denied_database_event() {
        let doc = ecs_of(
            r#"{"kind":"action","seq":1,"text":"DELETE FROM orders","duration_us":515,"verdict":"deny","rule":"no-deletes","detail":{"protocol":"sql","path":"simple","rows":0,"tag":null,"error_code":"42501","error_message":null}}"#,
        );
        assert_eq!(doc["@timestamp"], "2026-12-02T18:59:16.347007Z");
        assert_eq!(doc["event"]["category"], json!(["database"]));
        assert_eq!(doc["event"]["type"], json!(["access"]));
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["message"], "agent deny: DELETE FROM orders");
        assert_eq!(doc["event"]["sequence"], 9);
        assert_eq!(doc["event"]["id"], "i_0011223344556677:9");
        assert_eq!(doc["event"]["duration"], 515_000);
        assert_eq!(doc["rule"]["name"], "no-deletes");
        assert_eq!(doc["error"]["code"], "42501");
        assert_eq!(doc["user"]["name"], "agent");
        assert_eq!(doc["sluice"]["action"]["text"], "DELETE FROM orders");
        assert_eq!(doc["sluice"]["session_id"], "s_1");
        assert_eq!(doc["event"]["hash"], hex::encode([7u8; 32]));
    }

    #[test]
    fn each_protocols_actions_map_to_their_own_category() {
        let command = ecs_of(
            r#"{"kind":"action","seq":2,"text":"rm -rf /srv","duration_us":9,"verdict":"deny","rule":"no-rm","detail":{"protocol":"exec","exit_status":null,"input_bytes":0,"output_bytes":0}}"#,
        );
        assert_eq!(command["event"]["category"], json!(["process"]));
        assert_eq!(
            (command["event"]["action"].as_str(), command["event"]["outcome"].as_str()),
            (Some("ssh-command"), Some("failure"))
        );
        let request = ecs_of(
            r#"{"kind":"action","seq":3,"text":"GET /v1/x","duration_us":9,"verdict":"allow","detail":{"protocol":"http","status":502,"request_bytes":0,"response_bytes":0,"error":"upstream down"}}"#,
        );
        assert_eq!(request["event"]["category"], json!(["web"]));
        assert_eq!(
            (request["event"]["action"].as_str(), request["event"]["outcome"].as_str()),
            (Some("http-request"), Some("failure"))
        );
        let decided = ecs_of(r#"{"kind":"action_decided","action":"exec","text":"touch x","verdict":"allow"}"#);
        assert_eq!(decided["event"]["action"], "ssh-decided");
        assert_eq!(decided["event"]["category"], json!(["process"]));
    }

    #[test]
    fn a_failed_authentication_names_its_reason_and_source() {
        let doc = ecs_of(
            r#"{"kind":"authentication","protocol":"postgres","client_addr":"127.0.0.1:5999","target":"shop","outcome":"revoked_token"}"#,
        );
        assert_eq!(doc["event"]["category"], json!(["authentication"]));
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["event"]["reason"], "revoked_token");
        assert_eq!(doc["source"]["ip"], "127.0.0.1");
        assert_eq!(doc["source"]["port"], 5999);
        let record = stored(
            9,
            r#"{"kind":"authentication","protocol":"postgres","client_addr":"x","target":"shop","outcome":"revoked_token"}"#,
        );
        assert_eq!(document(&record, ExportFormat::Ecs).unwrap().severity, 4);
    }

    #[test]
    fn every_admin_action_has_a_category_and_an_outcome() {
        for (action, category, outcome) in [
            ("token-minted", "iam", "success"),
            ("token-revoked", "iam", "success"),
            ("credential-set", "configuration", "success"),
            ("credential-deleted", "configuration", "success"),
            ("api-authentication-failed", "authentication", "failure"),
            ("configuration-loaded", "configuration", "success"),
            ("configuration-refused", "configuration", "failure"),
            ("audit-records-removed", "configuration", "success"),
        ] {
            let doc = ecs_of(&format!(r#"{{"kind":"admin","action":"{action}","subject":"x","detail":null}}"#));
            assert_eq!(doc["event"]["category"], json!([category]), "{action}");
            assert_eq!(doc["event"]["outcome"], outcome, "{action}");
            assert_eq!(doc["event"]["action"], action);
        }
    }

    #[test]
    fn the_sluice_format_carries_the_chained_bytes_and_hash() {
        let record = stored(3, r#"{"kind":"session_ended","reason":"client closed"}"#);
        let doc: Value = serde_json::from_str(&document(&record, ExportFormat::Sluice).unwrap().json).unwrap();
        assert_eq!(doc["record"], record.encoded.as_str());
        assert_eq!(doc["seq"], 3);
        assert_eq!(doc["hash"], hex::encode([7u8; 32]));
    }

    #[test]
    fn a_document_too_long_for_its_receiver_is_shortened_and_stays_valid() {
        let long = "é".repeat(5000);
        let event = format!(
            r#"{{"kind":"action","seq":1,"text":"SELECT '{long}'","duration_us":5,"verdict":"allow","rule":null,"detail":{{"protocol":"sql","path":"simple","rows":1,"tag":"SELECT 1","error_code":null,"error_message":null}}}}"#
        );
        let full = document(&stored(4, &event), ExportFormat::Ecs).unwrap().json;
        assert!(full.len() > 10_000);
        let fitted = fit(&full, 2048);
        assert!(fitted.len() <= 2048, "{}", fitted.len());
        let doc: Value = serde_json::from_str(&fitted).unwrap();
        assert_eq!(doc["sluice"]["truncated"], true);
        assert!(doc["sluice"]["action"]["text"].as_str().unwrap().starts_with("SELECT 'éé"));
        assert_eq!(doc["event"]["sequence"], 4);
        assert_eq!(fit(&full, full.len()), full.as_str());
        // A little over: shortening the message is enough, and the statement stays whole.
        let near: Value = serde_json::from_str(&fit(&full, full.len() - 10)).unwrap();
        assert_eq!(near["sluice"]["action"]["text"], format!("SELECT '{long}'"));
        assert!(near["message"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn an_unknown_kind_is_an_error_not_a_guess() {
        let record = stored(3, r#"{"kind":"teleport"}"#);
        let error = document(&record, ExportFormat::Ecs).unwrap_err();
        let doc: Value = serde_json::from_str(&unmapped(&record, &error).json).unwrap();
        assert_eq!(doc["event"]["kind"], "pipeline_error");
        assert_eq!(doc["event"]["original"], record.encoded.as_str());
        assert!(doc["error"]["message"].as_str().unwrap().contains("teleport"));
    }
}
