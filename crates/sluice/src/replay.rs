//! `sluice sessions replay`: a recorded session as a timeline read from the audit log — its
//! actions with verdicts, rules, timings, errors and the first rows of each result (masked, as
//! recorded), and the reviews it asked for — printed at once, at the recorded pace (`--speed`),
//! or as JSON.

use crate::display::{duration, one_line, out, print_json, printable, timestamp};
use anyhow::{Result, bail};
use serde_json::{Value, json};
use sluice_store_sqlite::{SessionRow, SqliteStore};
use std::io::Write;
use std::time::Duration;

/// How a replay is shown.
pub struct Playback {
    pub json: bool,
    /// Play at this many times the recorded pace; `None`: print at once.
    pub speed: Option<f64>,
    /// The longest pause between two events when playing, whatever the recording says.
    pub idle_limit: Duration,
}

/// The session and its audit records, each parsed, once the playback options are checked.
async fn recorded(store: &SqliteStore, id: &str, playback: &Playback) -> Result<(SessionRow, Vec<(Value, String)>)> {
    if playback.speed.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        bail!("--speed must be a number above 0");
    }
    let Some((session, _)) = store.session(id).await? else {
        bail!("no session {id}\nhint: `sluice sessions list` shows the recorded sessions and their ids");
    };
    let mut records = Vec::new();
    for record in store.session_records(id).await? {
        let event: Value = serde_json::from_str(&record.encoded).map_err(|e| {
            anyhow::anyhow!("record {} in the audit log is not JSON ({e}); run `sluice audit verify`", record.seq)
        })?;
        records.push((event, hex::encode(record.hash)));
    }
    Ok((session, records))
}

pub async fn replay(store: &SqliteStore, id: &str, playback: Playback) -> Result<()> {
    let (session, records) = recorded(store, id, &playback).await?;
    let mut events = Vec::with_capacity(records.len());
    for (mut event, hash) in records {
        let offset = event["at_us"].as_i64().unwrap_or(session.started_at) - session.started_at;
        event["offset_us"] = offset.into();
        event["hash"] = hash.into();
        events.push(event);
    }
    if playback.json {
        return print_json(&json!({ "session": session, "events": events }));
    }
    header(&session);
    let mut last_offset = 0;
    for event in &events {
        let offset = event["offset_us"].as_i64().unwrap_or(0);
        if let Some(speed) = playback.speed {
            let gap = (offset - last_offset).max(0) as f64 / 1e6 / speed;
            let pause = Duration::try_from_secs_f64(gap).unwrap_or(playback.idle_limit);
            tokio::time::sleep(pause.min(playback.idle_limit)).await;
        }
        last_offset = offset;
        // The event's first line carries its time.
        let mut lines = lines(event).into_iter();
        out!("{:>10}  {}", format!("+{}", seconds(offset)), lines.next().unwrap_or_default());
        for line in lines {
            out!("{:>10}  {line}", "");
        }
    }
    if session.ended_at.is_none() {
        out!();
        out!("(the session is still open: replay it again later for the rest)");
    }
    Ok(())
}

/// The session's interactive terminals, played to standard output (`cast`: written as one
/// asciicast v2 file, later terminals following the first in time).
pub async fn terminal(store: &SqliteStore, id: &str, playback: Playback, cast: bool) -> Result<()> {
    let (session, records) = recorded(store, id, &playback).await?;
    let stretches: Vec<Value> = records
        .into_iter()
        .filter(|(record, _)| record["event"]["kind"] == "terminal")
        .map(|(mut record, _)| record["event"].take())
        .collect();
    let Some(first) = stretches.first() else {
        bail!(
            "session {id} has no interactive terminal recorded\nhint: `sluice sessions replay {id}` shows what it did"
        );
    };
    let mut stdout = std::io::stdout().lock();
    if cast {
        let header = json!({
            "version": 2,
            "width": first["width"],
            "height": first["height"],
            "timestamp": session.started_at / 1_000_000,
            "title": format!("sluice session {} of {} on {}", session.id, session.identity, session.connection),
        });
        writeln!(stdout, "{header}")?;
    }
    // Each terminal's times start at 0: a later one follows the end of the one before.
    let (mut base, mut terminal, mut last, mut played) = (0.0, None, 0.0f64, 0.0f64);
    for stretch in &stretches {
        if terminal != Some(stretch["terminal"].as_u64()) {
            terminal = Some(stretch["terminal"].as_u64());
            base = last;
        }
        for line in stretch["events"].as_str().unwrap_or_default().lines() {
            let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(line) else { continue };
            let (Some(at), Some(kind), Some(data)) =
                (parts.first().and_then(Value::as_f64), parts.get(1), parts.get(2))
            else {
                continue;
            };
            let at = base + at;
            last = at;
            if cast {
                writeln!(stdout, "{}", json!([at, kind, data]))?;
                continue;
            }
            if kind != "o" {
                continue;
            }
            if let Some(speed) = playback.speed {
                let pause = Duration::try_from_secs_f64(((at - played) / speed).max(0.0)).unwrap_or_default();
                stdout.flush()?;
                tokio::time::sleep(pause.min(playback.idle_limit)).await;
            }
            played = at;
            stdout.write_all(data.as_str().unwrap_or_default().as_bytes())?;
        }
    }
    stdout.flush()?;
    Ok(())
}

fn header(session: &SessionRow) {
    // Everything printed here came from the client at some point: escaped, like the events.
    out!(
        "session {} of {} (token {}) on {} ({})",
        printable(&session.id),
        printable(&session.identity),
        printable(&session.credential_id),
        printable(&session.connection),
        printable(&session.protocol)
    );
    let client = format!(
        "{}{}{}",
        printable(&session.client_addr),
        if session.client_tls { ", TLS" } else { ", plaintext" },
        session.application_name.as_deref().map(|a| format!(", {}", one_line(a, 80))).unwrap_or_default()
    );
    let ended = match (session.ended_at, session.end_reason.as_deref()) {
        (Some(at), reason) => format!(
            "ended after {} ({})",
            duration(at - session.started_at),
            one_line(reason.unwrap_or("no reason recorded"), 200)
        ),
        (None, _) => "still open".into(),
    };
    out!("client {client}; started {}, {ended}", timestamp(session.started_at));
    out!();
}

fn seconds(us: i64) -> String {
    format!("{:.3}s", us as f64 / 1e6)
}

/// An event as lines of text: the first says what happened, the rest its outcome and result.
fn lines(record: &Value) -> Vec<String> {
    let event = &record["event"];
    // Every text is the caller's or the server's: on one line, control characters escaped.
    let text = |key: &str| one_line(event[key].as_str().unwrap_or_default(), 200);
    match event["kind"].as_str().unwrap_or_default() {
        "session_started" => vec![format!(
            "session started: {} from {}{}",
            one_line(event["client_program"].as_str().unwrap_or("a client"), 80),
            text("client_addr"),
            if event["client_tls"] == true { " over TLS" } else { "" }
        )],
        "session_ended" => vec![format!("session ended: {}", text("reason"))],
        "action_decided" => vec![format!(
            "decided {}{}, recorded before it was forwarded: {}",
            text("verdict"),
            rule(event),
            one_line(&text("text"), 100)
        )],
        "action" => action_lines(event),
        "review" => {
            let by = if record["session"].is_null() {
                format!(" by {}", one_line(record["principal"]["name"].as_str().unwrap_or("?"), 80))
            } else {
                String::new()
            };
            let comment = event["comment"].as_str().map(|c| format!(": {c:?}")).unwrap_or_default();
            vec![format!("review #{} {}{by}{comment}", event["review_id"], text("transition"))]
        }
        "terminal" => vec![format!(
            "terminal of #{}: {} bytes of output recorded (`--terminal` plays it)",
            event["terminal"],
            event["events"].as_str().map_or(0, str::len)
        )],
        other => vec![format!("{other}: {}", one_line(&event.to_string(), 120))],
    }
}

/// The deciding rule, unless it is the default allowing.
fn rule(event: &Value) -> String {
    match (event["rule"].as_str(), event["verdict"].as_str()) {
        (None, _) | (Some("default"), Some("allow")) => String::new(),
        (Some(rule), _) => format!(" (rule {})", printable(rule)),
    }
}

fn action_lines(event: &Value) -> Vec<String> {
    let verdict = event["verdict"].as_str().unwrap_or("?");
    let detail = &event["detail"];
    let mut lines = vec![format!(
        "#{} {}{}: {}",
        event["seq"],
        if verdict == "allow" { "allow".to_string() } else { printable(&verdict.to_uppercase()) },
        rule(event),
        one_line(event["text"].as_str().unwrap_or_default(), 100)
    )];
    let took = duration(event["duration_us"].as_i64().unwrap_or(0));
    if detail["protocol"] == "exec" {
        let status = match detail["exit_status"].as_u64() {
            Some(status) => format!("exit status {status}"),
            None => "no exit status".into(),
        };
        lines.push(format!(
            "→ {status}, {} bytes in, {} bytes out ({took}){}",
            detail["input_bytes"],
            detail["output_bytes"],
            detail["error"].as_str().map(|e| format!(": {}", one_line(e, 200))).unwrap_or_default()
        ));
        return lines;
    }
    if detail["protocol"] == "http" {
        lines.push(format!(
            "→ HTTP {}, {} bytes in, {} bytes out ({took}){}",
            detail["status"],
            detail["request_bytes"],
            detail["response_bytes"],
            detail["error"].as_str().map(|e| format!(": {}", one_line(e, 200))).unwrap_or_default()
        ));
        for side in ["request", "response"] {
            if let Some(text) = detail["excerpts"][side].as_str() {
                lines.push(format!("  {side}: {}", one_line(text, 200)));
            }
        }
        return lines;
    }
    let outcome = match (detail["error_code"].as_str(), detail["tag"].as_str()) {
        (Some(code), _) => format!(
            "→ error {}: {} ({took})",
            printable(code),
            one_line(detail["error_message"].as_str().unwrap_or("refused by sluice"), 200)
        ),
        (None, Some(tag)) => format!("→ {}, {} rows ({took})", printable(tag), detail["rows"]),
        (None, None) => format!("→ {} rows ({took})", detail["rows"]),
    };
    lines.push(outcome);
    if let Some(result) = detail.get("result").filter(|r| !r.is_null()) {
        lines.extend(result_lines(result));
    }
    lines
}

/// A result's kept rows as an aligned table, values on one line each.
fn result_lines(result: &Value) -> Vec<String> {
    let cell = |v: &Value| match v {
        Value::Null => "NULL".to_string(),
        Value::String(s) => one_line(s, 40),
        other => other.to_string(),
    };
    let columns: Vec<String> = result["columns"].as_array().into_iter().flatten().map(cell).collect();
    let rows: Vec<Vec<String>> = result["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| row.as_array().into_iter().flatten().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in &rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (w, value) in widths.iter_mut().zip(row) {
            *w = (*w).max(value.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  │ {}", padded.join(" │ ").trim_end())
    };
    let mut lines = Vec::new();
    if !columns.is_empty() {
        lines.push(line(&columns));
    }
    lines.extend(rows.iter().map(|row| line(row)));
    if result["truncated"] == true {
        lines.push("  │ … (more than was kept)".into());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_shows_its_verdict_outcome_and_kept_rows() {
        let record = json!({"session": "s_1", "event": {"kind": "action", "seq": 2, "text": "SELECT id, email FROM customers",
            "duration_us": 1500, "verdict": "allow", "rule": null,
            "detail": {"protocol": "sql", "path": "simple", "rows": 2, "tag": "SELECT 2", "error_code": null,
                       "error_message": null,
                       "result": {"columns": ["id", "email"], "rows": [["1", "a•••@example.com"], ["22", null]],
                                  "truncated": true}}}});
        assert_eq!(
            lines(&record),
            [
                "#2 allow: SELECT id, email FROM customers",
                "→ SELECT 2, 2 rows (1.5ms)",
                "  │ id │ email",
                "  │ 1  │ a•••@example.com",
                "  │ 22 │ NULL",
                "  │ … (more than was kept)",
            ]
        );
        let refused = json!({"event": {"kind": "action", "seq": 3, "text": "DELETE FROM orders", "duration_us": 20,
            "verdict": "deny", "rule": "no-deletes",
            "detail": {"rows": 0, "tag": null, "error_code": "42501", "error_message": null}}});
        assert_eq!(
            lines(&refused),
            ["#3 DENY (rule no-deletes): DELETE FROM orders", "→ error 42501: refused by sluice (20µs)"]
        );
    }
}
