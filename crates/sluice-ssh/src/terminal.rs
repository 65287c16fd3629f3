//! A terminal's record — an interactive shell's, or a command's output — masked, as the client
//! saw it, as asciicast v2 events handed to the session's log in stretches (the first MiB of
//! each), and the lines typed into it pieced together
//! from keystrokes — an audit aid only: line editing, completion and history make what a shell
//! runs differ from what was typed, so a terminal is not a security boundary.

use std::time::Instant;

/// A stretch is handed to the log once it holds this much (or at the latest each second).
const STRETCH: usize = 32 * 1024;
/// The longest typed line kept.
const MAX_TYPED: usize = 4096;

/// The most output of one command or shell kept in the record.
const MAX_RECORDED: usize = 1024 * 1024;

pub struct CastRecorder {
    started: Instant,
    size: (u32, u32),
    events: String,
    /// Output recorded so far.
    recorded: usize,
}

impl CastRecorder {
    pub fn new(size: (u32, u32)) -> CastRecorder {
        CastRecorder { started: Instant::now(), size, events: String::new(), recorded: 0 }
    }

    pub fn size(&self) -> (u32, u32) {
        self.size
    }

    /// Output the client was sent (up to `MAX_RECORDED`; the record says where it stops).
    pub fn output(&mut self, bytes: &[u8]) {
        if self.recorded >= MAX_RECORDED {
            return;
        }
        let kept = bytes.len().min(MAX_RECORDED - self.recorded);
        self.recorded += kept;
        self.event("o", &String::from_utf8_lossy(&bytes[..kept]));
        if self.recorded >= MAX_RECORDED {
            self.event("o", "\r\n[sluice: the output goes on; the first 1 MiB is recorded]\r\n");
        }
    }

    pub fn resize(&mut self, cols: u32, rows: u32) {
        self.event("r", &format!("{cols}x{rows}"));
    }

    fn event(&mut self, kind: &str, data: &str) {
        let at = self.started.elapsed().as_secs_f64();
        let data = serde_json::to_string(data).unwrap_or_else(|_| "\"\"".into());
        self.events.push_str(&format!("[{at:.6}, \"{kind}\", {data}]\n"));
    }

    /// Whether a stretch is ready to be handed over.
    pub fn full(&self) -> bool {
        self.events.len() >= STRETCH
    }

    /// The events recorded since the last call.
    pub fn take(&mut self) -> Option<String> {
        (!self.events.is_empty()).then(|| std::mem::take(&mut self.events))
    }
}

/// Keystrokes pieced into lines as a plain terminal would edit them (backspace, Ctrl-U, Ctrl-C;
/// escape sequences such as arrows dropped).
#[derive(Default)]
pub struct TypedLines {
    line: Vec<u8>,
    /// Inside an escape sequence: `1` after ESC, `2` inside its `[` parameters.
    escape: u8,
}

impl TypedLines {
    /// The lines `input` completes.
    pub fn push(&mut self, input: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in input {
            match (self.escape, b) {
                (1, b'[' | b'O') => self.escape = 2,
                (1, _) => self.escape = 0,
                (2, 0x40..=0x7e) => self.escape = 0,
                (2, _) => {}
                (_, 0x1b) => self.escape = 1,
                (_, b'\r' | b'\n') => {
                    let line = String::from_utf8_lossy(&self.line).trim().to_string();
                    self.line.clear();
                    if !line.is_empty() {
                        lines.push(line);
                    }
                }
                (_, 0x7f | 0x08) => {
                    self.line.pop();
                }
                (_, 0x15 | 0x03) => self.line.clear(),
                (_, b) if b < 0x20 => {}
                (_, b) if self.line.len() < MAX_TYPED => self.line.push(b),
                _ => {}
            }
        }
        lines
    }
}

/// Typed lines waiting to be seen echoed by the terminal. A line the terminal did not echo — a
/// password typed at a prompt — is not to be recorded.
#[derive(Default)]
pub struct EchoCheck {
    waiting: Vec<(String, Instant)>,
    /// The output since the oldest line waiting was typed (its end, at most `MAX_TYPED` × 16).
    seen: String,
}

impl EchoCheck {
    pub fn typed(&mut self, line: String) {
        self.waiting.push((line, Instant::now()));
    }

    /// Output the client was sent (masked: a line holding a secret is not found echoed, and so
    /// is not recorded either).
    pub fn output(&mut self, out: &[u8]) {
        if self.waiting.is_empty() {
            return;
        }
        self.seen.push_str(&String::from_utf8_lossy(out));
        let keep = MAX_TYPED * 16;
        if self.seen.len() > keep {
            let mut cut = self.seen.len() - keep;
            while !self.seen.is_char_boundary(cut) {
                cut += 1;
            }
            self.seen.drain(..cut);
        }
    }

    /// The lines settled: seen echoed, or typed at least `after` ago; each with whether it was
    /// echoed.
    pub fn settled(&mut self, after: std::time::Duration) -> Vec<(String, bool)> {
        let (seen, mut settled) = (&self.seen, Vec::new());
        self.waiting.retain(|(line, at)| {
            let echoed = seen.contains(line.as_str());
            let done = echoed || at.elapsed() >= after;
            if done {
                settled.push((line.clone(), echoed));
            }
            !done
        });
        if self.waiting.is_empty() {
            self.seen.clear();
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_are_edited_as_a_terminal_edits_them() {
        let mut typed = TypedLines::default();
        assert_eq!(typed.push(b"ls -l"), Vec::<String>::new());
        assert_eq!(typed.push(b"a\r"), vec!["ls -la".to_string()]);
        assert_eq!(typed.push(b"rm -rf /tmpx\x7f\r"), vec!["rm -rf /tmp".to_string()]);
        assert_eq!(typed.push(b"secret\x15whoami\x1b[A\r\r"), vec!["whoami".to_string()]);
        assert_eq!(typed.push(b"sleep 9\x03echo ok\n"), vec!["echo ok".to_string()]);
    }

    #[test]
    fn a_line_the_terminal_did_not_echo_is_told_apart() {
        let mut echo = EchoCheck::default();
        echo.typed("sudo -v".into());
        echo.output(b"sudo -v\r\n[sudo] password for ann: ");
        echo.typed("hunter2".into());
        echo.output(b"\r\n");
        assert_eq!(echo.settled(std::time::Duration::from_secs(60)), vec![("sudo -v".to_string(), true)]);
        assert_eq!(echo.settled(std::time::Duration::ZERO), vec![("hunter2".to_string(), false)]);
    }

    #[test]
    fn output_becomes_asciicast_events() {
        let mut cast = CastRecorder::new((80, 24));
        cast.output(b"hello \"there\"\r\n");
        cast.resize(100, 30);
        let events = cast.take().unwrap();
        let lines: Vec<serde_json::Value> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0][1], "o");
        assert_eq!(lines[0][2], "hello \"there\"\r\n");
        assert_eq!(lines[1][1], "r");
        assert_eq!(lines[1][2], "100x30");
        assert!(cast.take().is_none());
    }
}
