//! Reading command lines in worker processes of their own. The parser (brush-parser 0.4.0) can
//! take time exponential in a line's nesting and memory without bound on a few hostile inputs, so
//! a gateway does not parse an agent's line in its own process: a worker with a memory limit
//! reads it, and is killed when it takes too long. Such a line is opaque (refused); the gateway
//! and every other session go on.

use crate::{MAX_LINE, analyze};
use parking_lot::Mutex;
use sluice_core::exec::{ExecAction, ExecRequest};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// A worker's address space: far more than any line a person or an agent writes needs.
const WORKER_MEMORY: u64 = 512 * 1024 * 1024;
/// A worker parses on a thread with this stack, so that what nests deeply fails in the worker.
const WORKER_STACK: usize = 64 * 1024 * 1024;
/// Idle workers kept for the next lines.
const IDLE_WORKERS: usize = 4;

/// Reads lines in workers started as `program args…` (the `sluice` binary, in practice).
pub struct IsolatedReader {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    idle: Mutex<Vec<Worker>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl IsolatedReader {
    pub fn new(program: PathBuf, args: Vec<String>, timeout: Duration) -> IsolatedReader {
        IsolatedReader { program, args, timeout, idle: Mutex::new(Vec::new()) }
    }

    /// The line read by a worker; opaque if the worker fails or takes too long.
    pub async fn analyze(&self, line: &str) -> ExecAction {
        if line.len() > MAX_LINE || line.contains('\0') {
            // Refused without parsing.
            return analyze(line);
        }
        let worker = self.idle.lock().pop();
        let mut worker = match worker {
            Some(worker) => worker,
            None => match self.spawn() {
                Ok(worker) => worker,
                Err(e) => return opaque(line, format!("the command reader could not be started ({e})")),
            },
        };
        match tokio::time::timeout(self.timeout, worker.ask(line)).await {
            Ok(Ok(action)) => {
                let mut idle = self.idle.lock();
                if idle.len() < IDLE_WORKERS {
                    idle.push(worker);
                }
                action
            }
            Ok(Err(e)) => opaque(line, format!("the command reader failed on this line ({e})")),
            Err(_) => {
                // kill_on_drop ends it.
                opaque(line, format!("reading this command line took longer than {} ms", self.timeout.as_millis()))
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the worker has no pipes"));
        };
        Ok(Worker { child, stdin, stdout: BufReader::new(stdout) })
    }
}

impl Worker {
    async fn ask(&mut self, line: &str) -> std::io::Result<ExecAction> {
        let mut request = serde_json::to_vec(line)?;
        request.push(b'\n');
        self.stdin.write_all(&request).await?;
        self.stdin.flush().await?;
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer).await? == 0 {
            let status = self.child.try_wait()?.map(|s| s.to_string()).unwrap_or_default();
            return Err(std::io::Error::other(format!("it stopped {status}").trim_end().to_string()));
        }
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }
}

fn opaque(line: &str, why: String) -> ExecAction {
    ExecAction {
        line: line.to_string(),
        request: ExecRequest::Command,
        commands: Vec::new(),
        opaque: Some(why),
        transfer: None,
    }
}

/// A worker's life: its memory limited, it reads one JSON string per line from standard input and
/// answers each with what the line runs, as one line of JSON, until its input ends.
pub fn worker_main() -> std::io::Result<()> {
    rlimit::setrlimit(rlimit::Resource::AS, WORKER_MEMORY, WORKER_MEMORY)?;
    let serve = || -> std::io::Result<()> {
        let stdin = std::io::stdin().lock();
        let mut stdout = std::io::stdout().lock();
        for request in stdin.lines() {
            let line: String = serde_json::from_str(&request?).map_err(std::io::Error::other)?;
            let mut answer = serde_json::to_vec(&analyze(&line))?;
            answer.push(b'\n');
            stdout.write_all(&answer)?;
            stdout.flush()?;
        }
        Ok(())
    };
    std::thread::Builder::new()
        .name("shell-reader".into())
        .stack_size(WORKER_STACK)
        .spawn(serve)?
        .join()
        .map_err(|_| std::io::Error::other("the reader panicked"))?
}
