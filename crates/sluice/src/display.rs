//! Output for the CLI: stdout lines that survive a closed pipe, timestamps, durations and aligned
//! tables.

use std::io::Write;
use time::OffsetDateTime;
use time::macros::format_description;

/// `println!` for the CLI's results: a reader that went away (`sluice … | head -1`) ends the
/// command quietly instead of panicking.
macro_rules! out {
    () => { $crate::display::write_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::display::write_line(format_args!($($arg)*)) };
}
pub(crate) use out;

pub fn write_line(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(line).and_then(|()| stdout.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sluice: error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Writes a line that scripts may wait for, and carries on if nobody reads it any more: used by
/// `serve`, which must keep serving when its stdout closes.
pub fn announce(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_fmt(line).and_then(|()| stdout.write_all(b"\n")).and_then(|()| stdout.flush());
}

/// A text on one line (whitespace runs folded, control characters escaped), cut to `max`
/// characters with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = printable(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    if flat.chars().count() <= max {
        return flat;
    }
    flat.chars().take(max.saturating_sub(1)).chain(std::iter::once('…')).collect()
}

/// `text` with its control characters (other than newline and tab) and invisible formatting
/// characters shown as `\u{1b}` escapes: a recorded text (a statement, a value, a client's name,
/// an error quoting what was sent) is the caller's, and must not drive the reader's terminal
/// (escape sequences that move the cursor, retitle the window, or write the clipboard) nor show
/// as other text (a right-to-left override redraws what follows it backwards).
pub fn printable(text: &str) -> String {
    let escaped = |c: char| c.is_control() && c != '\n' && c != '\t' || sluice_core::http::is_invisible_format(c);
    if !text.chars().any(escaped) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match escaped(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// Prints a value as indented JSON, its timestamps as RFC 3339 (see `with_rfc3339_times`).
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(&with_rfc3339_times(serde_json::to_value(value)?))?);
    Ok(())
}

/// Prints a value as one line of JSON (for streams such as `--follow`).
pub fn print_json_line<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string(&with_rfc3339_times(serde_json::to_value(value)?))?);
    Ok(())
}

/// The CLI's JSON shows times as RFC 3339 strings (UTC, microseconds kept); the store and the API
/// keep microseconds since the epoch. A field is a time by its name: `at`, `…_at`, or `…_at_us` /
/// `…_until_us` (which lose their `_us`, since they are no longer microseconds).
pub fn with_rfc3339_times(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(with_rfc3339_times).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| {
                    let time_key = key == "at" || key.ends_with("_at");
                    let us_key = key.strip_suffix("_us").filter(|k| k.ends_with("_at") || k.ends_with("_until"));
                    match (value.as_i64(), time_key, us_key) {
                        (Some(us), true, _) => (key, Value::String(rfc3339(us))),
                        (Some(us), false, Some(renamed)) => (renamed.to_string(), Value::String(rfc3339(us))),
                        (None, false, Some(renamed)) if value.is_null() => (renamed.to_string(), Value::Null),
                        _ => (key, with_rfc3339_times(value)),
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

/// A microsecond timestamp as RFC 3339 with microseconds, for JSON output.
pub use sluice_engine::rfc3339;

pub fn timestamp(us: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| us.to_string())
}

pub fn duration(us: i64) -> String {
    match us {
        ..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// Prints `items` as JSON when `json`, else as a table: `header` over one `row` of cells each.
pub fn print_list<T: serde::Serialize>(
    items: &[T],
    json: bool,
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if json {
        return print_json(&items);
    }
    table(header, &items.iter().map(row).collect::<Vec<_>>());
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell (cells are recorded texts:
/// their control characters escaped).
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|cell| printable(cell)).collect()).collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_durations() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_500_000), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339(1_500_001), "1970-01-01T00:00:01.500001Z");
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("a\u{1b}]52;c;x\u{7}b", 40), "a\\u{1b}]52;c;x\\u{7}b");
        assert_eq!(printable("x\u{9b}y\n"), "x\\u{9b}y\n");
        assert_eq!(printable("a\u{202E}b\u{200B}"), "a\\u{202e}b\\u{200b}");
        assert_eq!(duration(500), "500µs");
        let doc = serde_json::json!({"at": 0, "started_at": 1, "expires_at_us": 2, "valid_until_us": null,
                                     "duration_us": 5, "nested": [{"ended_at": 3}]});
        assert_eq!(
            with_rfc3339_times(doc),
            serde_json::json!({"at": "1970-01-01T00:00:00.000000Z", "started_at": "1970-01-01T00:00:00.000001Z",
                               "expires_at": "1970-01-01T00:00:00.000002Z", "valid_until": null,
                               "duration_us": 5, "nested": [{"ended_at": "1970-01-01T00:00:00.000003Z"}]})
        );
        assert_eq!(duration(2_500), "2.5ms");
        assert_eq!(duration(3_000_000), "3.00s");
    }
}
