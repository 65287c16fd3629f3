//! `sluice sessions export ID --har`: an HTTP session's exchanges as a HAR 1.2 log — the format
//! browsers' developer tools and HTTP debugging proxies open — read from the audit log. What the log
//! holds is what the HAR holds: the method, the path and query as recorded (masked), the status,
//! the sizes, the time taken, sluice's verdict, rule and error on each entry (`_sluice`), the
//! bodies' beginnings (masked) where the log keeps them (`[recording] result_rows`), and a
//! WebSocket's messages with its upgrade (`_webSocketMessages`, as Chromium writes them). Headers
//! are not recorded, so the entries have none.

use crate::display::timestamp;
use anyhow::{Result, bail};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use sluice_config::Config;
use sluice_store_sqlite::SqliteStore;
use std::borrow::Cow;
use std::path::Path;

/// What is escaped in a path segment and in a query name or value of the rebuilt URLs.
const PATH: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');
const QUERY: &AsciiSet = &PATH.add(b'&').add(b'=').add(b'+').add(b'/');

pub async fn export(store: &SqliteStore, config: &Config, id: &str, out: Option<&Path>) -> Result<()> {
    let Some((session, _)) = store.session(id).await? else {
        bail!("no session {id}\nhint: `sluice sessions list` shows the recorded sessions and their ids");
    };
    if session.protocol != "http" {
        bail!("session {id} is a {} session; a HAR file holds HTTP exchanges", session.protocol);
    }
    // The upstream's base URL as configured now; the connection's name where it is gone.
    let base = config
        .connections
        .get(&session.connection)
        .and_then(|c| c.options.get("url"))
        .and_then(|u| u.as_str())
        .map_or_else(|| format!("http://{}", session.connection), |u| u.trim_end_matches('/').to_string());
    let mut entries = Vec::new();
    // The WebSocket the session opened last: its entry, and the beginning of its messages' lines.
    let mut socket: Option<(usize, String)> = None;
    for record in store.session_records(id).await? {
        let record: Value = serde_json::from_str(&record.encoded).map_err(|e| {
            anyhow::anyhow!("record {} in the audit log is not JSON ({e}); run `sluice audit verify`", record.seq)
        })?;
        if record["event"]["kind"] != "action" {
            continue;
        }
        let text = record["event"]["text"].as_str().unwrap_or_default();
        match &socket {
            Some((at, prefix)) if text.starts_with(prefix.as_str()) => {
                let message = socket_message(&text[prefix.len()..], &record);
                if let Some(messages) =
                    entries.get_mut(*at).and_then(|e: &mut Value| e["_webSocketMessages"].as_array_mut())
                {
                    messages.push(message);
                }
            }
            _ => {
                let mut entry = entry(&base, &record);
                if record["event"]["detail"]["status"] == 101 {
                    // Its messages are recorded as `WS <path and query> → …`.
                    let target = text.split_once(' ').map_or("", |(_, target)| target);
                    socket = Some((entries.len(), format!("WS {target} ")));
                    entry["_webSocketMessages"] = json!([]);
                }
                entries.push(entry);
            }
        }
    }
    let har = json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "sluice", "version": env!("CARGO_PKG_VERSION") },
            "comment": format!(
                "session {} of {} on {}, from the audit log: paths and queries as recorded (masked); headers and bodies are not recorded",
                session.id, session.identity, session.connection
            ),
            "pages": [],
            "entries": entries,
        }
    });
    let text = serde_json::to_string_pretty(&har)?;
    match out {
        Some(path) => std::fs::write(path, text + "\n")?,
        None => println!("{text}"),
    }
    Ok(())
}

/// One recorded exchange as a HAR entry.
fn entry(base: &str, record: &Value) -> Value {
    let event = &record["event"];
    let detail = &event["detail"];
    let request = Request::parse(event["text"].as_str().unwrap_or_default());
    let time_ms = event["duration_us"].as_f64().unwrap_or(0.0) / 1000.0;
    let query: Vec<Value> = request.query.iter().map(|(n, v)| json!({ "name": n, "value": v })).collect();
    let mut url = format!("{base}{}", utf8_percent_encode(&request.path, PATH));
    for (i, (name, value)) in request.query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&utf8_percent_encode(name, QUERY).to_string());
        if !value.is_empty() {
            url.push('=');
            url.push_str(&utf8_percent_encode(value, QUERY).to_string());
        }
    }
    let response_bytes = detail["response_bytes"].as_i64().unwrap_or(-1);
    let excerpts = &detail["excerpts"];
    let mut entry = json!({
        "startedDateTime": timestamp(record["at_us"].as_i64().unwrap_or(0)),
        "time": time_ms,
        "request": {
            "method": request.method,
            "url": url,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "queryString": query,
            "headersSize": -1,
            "bodySize": detail["request_bytes"].as_i64().unwrap_or(-1),
        },
        "response": {
            "status": detail["status"].as_u64().unwrap_or(0),
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": [],
            "content": { "size": response_bytes, "mimeType": "" },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": response_bytes,
        },
        "cache": {},
        "timings": { "send": 0, "wait": time_ms, "receive": 0 },
        "_sluice": {
            "seq": event["seq"],
            "verdict": event["verdict"],
            "rule": event["rule"],
            "error": detail["error"],
            "graphql": request.graphql,
        },
    });
    // The bodies' beginnings, where the log keeps them ([recording] result_rows), masked.
    if let Some(text) = excerpts["request"].as_str() {
        entry["request"]["postData"] = json!({ "mimeType": "", "text": text });
    }
    if let Some(text) = excerpts["response"].as_str() {
        entry["response"]["content"]["text"] = text.into();
    }
    entry
}

/// A WebSocket message's record (its line past `WS <target> `: `→ text …`, `← binary, N bytes`,
/// `ended: …`) as the developer tools' HAR files hold one.
fn socket_message(line: &str, record: &Value) -> Value {
    let (kind, rest) = match line.split_once(' ') {
        Some(("→", rest)) => ("send", rest),
        Some(("←", rest)) => ("receive", rest),
        _ => ("receive", line.strip_prefix("ended: ").unwrap_or(line)),
    };
    let (opcode, data) = match rest.split_once(' ') {
        _ if line.starts_with("ended: ") || rest.starts_with("close") => (8, rest),
        Some(("text", data)) => (1, data),
        _ if rest == "text" => (1, ""),
        _ => (2, rest),
    };
    json!({
        "type": kind,
        "time": record["at_us"].as_i64().unwrap_or(0) as f64 / 1e6,
        "opcode": opcode,
        "data": unescape(data),
        "_sluice": { "verdict": record["event"]["verdict"], "rule": record["event"]["rule"] },
    })
}

/// A recorded request line: `METHOD /path[ (kind fields)][?query]`, the path, names and values
/// decoded but for the escapes that keep them apart (`%3F` in a path, `%26` in a value).
struct Request<'a> {
    method: &'a str,
    path: Cow<'a, str>,
    graphql: Option<&'a str>,
    query: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Request<'_> {
    fn parse(text: &str) -> Request<'_> {
        let (method, rest) = text.split_once(' ').unwrap_or((text, "/"));
        // A GraphQL request's line names its operation in parentheses before the query.
        let (path, graphql, query) = match rest.split_once(" (").and_then(|(p, r)| Some((p, r.split_once(')')?))) {
            Some((path, (operation, query))) => (path, Some(operation), query.strip_prefix('?').unwrap_or(query)),
            None => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                (path, None, query)
            }
        };
        let query =
            sluice_core::http::query_pairs(query).map(|(name, value)| (unescape(name), unescape(value))).collect();
        Request { method, path: unescape(path), graphql, query }
    }
}

/// A part of a record line with its escapes undone (one that is not an escape stays as it is: a
/// line recorded before they were written kept `%` as it was).
fn unescape(part: &str) -> Cow<'_, str> {
    percent_decode_str(part).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_lines_are_read_back_into_method_path_operation_and_query() {
        let r = Request::parse("GET /v1/customers?status=open&flag");
        assert_eq!((r.method, &*r.path, r.graphql), ("GET", "/v1/customers", None));
        assert_eq!(r.query, [("status".into(), "open".into()), ("flag".into(), "".into())]);
        let r = Request::parse("POST /graphql (query invoices, me)?trace=1");
        assert_eq!((r.method, &*r.path, r.graphql), ("POST", "/graphql", Some("query invoices, me")));
        assert_eq!(r.query, [("trace".into(), "1".into())]);
        // What the line escapes to keep parts apart is one part again.
        let r = Request::parse("GET /a%3Fb%20(c)?x%26y=1%26z=2&w=100%");
        assert_eq!((&*r.path, r.graphql), ("/a?b (c)", None));
        assert_eq!(r.query, [("x&y".into(), "1&z=2".into()), ("w".into(), "100%".into())]);
        let record = json!({"at_us": 1_700_000_000_000_000i64, "event": {"kind": "action", "seq": 3,
            "text": "GET /a b?q=x y&r=1/2", "duration_us": 1500, "verdict": "allow", "rule": "reads",
            "detail": {"protocol": "http", "status": 200, "request_bytes": 0, "response_bytes": 42}}});
        let e = entry("https://billing.internal/api", &record);
        assert_eq!(e["request"]["url"], "https://billing.internal/api/a%20b?q=x%20y&r=1%2F2");
        assert_eq!(e["response"]["status"], 200);
        assert_eq!(e["time"], 1.5);
        assert_eq!(e["_sluice"]["rule"], "reads");
    }

    #[test]
    fn websocket_message_lines_are_read_as_the_developer_tools_hold_them() {
        let record = json!({"at_us": 1_500_000, "event": {"verdict": "allow", "rule": "sockets"}});
        let m = socket_message("→ text hi%0Athere", &record);
        assert_eq!(
            (&m["type"], &m["opcode"], &m["data"], &m["time"]),
            (&json!("send"), &json!(1), &json!("hi\nthere"), &json!(1.5))
        );
        let m = socket_message("← binary, 12 bytes", &record);
        assert_eq!((&m["type"], &m["opcode"], &m["data"]), (&json!("receive"), &json!(2), &json!("binary, 12 bytes")));
        assert_eq!(socket_message("→ close (1000 )", &record)["opcode"], 8);
        let m = socket_message("ended: the client closed it", &record);
        assert_eq!((&m["opcode"], &m["data"]), (&json!(8), &json!("the client closed it")));
    }
}
